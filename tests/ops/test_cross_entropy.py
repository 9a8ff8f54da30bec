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


def test_chunked_ce_exact_where_the_target_probability_underflows():
    """A target far below the best item (p_t < 1e-30, or 0 in fp32) takes the logsumexp path:
    the loss stays finite and equal to the reference's, in fp32 as in fp64."""
    w = torch.eye(4, 3) * 40.0
    h = torch.tensor([[3.0, -2.0, 0.0], [1.0, 0.0, 0.0], [0.0, 3.0, 0.0]])
    t = torch.tensor([2, 1, 1])  # rows 0 and 2: the target is ~200 / ~120 nats below the best
    for dtype in (torch.float32, torch.float64):
        got = chunked_cross_entropy(h.to(dtype), w.to(dtype), t, 2)
        ref = reference_cross_entropy(h.to(dtype), w.to(dtype), t)
        assert torch.isfinite(got)
        torch.testing.assert_close(got, ref.to(got.dtype))


def test_auto_chunk_keeps_a_cpu_block_in_cache_and_gpu_blocks_large():
    from seqrec.ops.cross_entropy import CPU_BLOCK_BYTES, GPU_CHUNK, auto_chunk

    rows = auto_chunk(3417, torch.device("cpu"))
    assert rows % 32 == 0 and rows * 3417 * 4 <= CPU_BLOCK_BYTES
    assert auto_chunk(10, torch.device("cpu")) == GPU_CHUNK
    assert auto_chunk(10_000_000, torch.device("cpu")) == 32
    assert auto_chunk(3417, torch.device("cuda")) == GPU_CHUNK
