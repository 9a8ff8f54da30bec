"""The chunked cross-entropy kernel against the plain full-logits reference."""

import pytest
import torch

from seqrec.ops.cross_entropy import chunked_cross_entropy, reference_cross_entropy


@pytest.mark.parametrize("chunk", [1, 7, 64, 1000])
def test_chunked_ce_matches_reference_loss_and_grads(chunk):
    g = torch.Generator().manual_seed(0)
    h = torch.randn(50, 16, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(31, 16, generator=g, dtype=torch.float64, requires_grad=True)
    t = torch.randint(1, 31, (50,), generator=g)
    ref = reference_cross_entropy(h, w, t)
    gh, gw = torch.autograd.grad(ref, (h, w))
    got = chunked_cross_entropy(h, w, t, chunk)
    ch, cw = torch.autograd.grad(got, (h, w))
    torch.testing.assert_close(got, ref.to(got.dtype))
    torch.testing.assert_close(ch, gh)
    torch.testing.assert_close(cw, gw)
    assert cw[0].abs().max() < 1e-12  # PAD row gets no gradient


def test_chunked_ce_gradcheck():
    g = torch.Generator().manual_seed(1)
    h = torch.randn(6, 4, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(9, 4, generator=g, dtype=torch.float64, requires_grad=True)
    t = torch.randint(1, 9, (6,), generator=g)
    assert torch.autograd.gradcheck(lambda a, b: chunked_cross_entropy(a, b, t, 4), (h, w))


def test_chunked_ce_loss_of_perfect_scores_is_small():
    w = torch.eye(5) * 50
    h = w[torch.tensor([1, 2, 3])]
    assert chunked_cross_entropy(h, w, torch.tensor([1, 2, 3]), 2) < 1e-6
