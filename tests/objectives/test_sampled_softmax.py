"""Sampled softmax: brute-force agreement, accidental hits, in-batch logQ, config coupling."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from seqrec.data.batches import SeqBatch
from seqrec.errors import SeqrecError
from seqrec.models import model_config
from seqrec.models.sasrec import SASRec
from seqrec.objectives import candidates as candidates_module
from seqrec.objectives.sampled_softmax import (
    plain_sampled_softmax,
    reference_sampled_softmax,
    sample_negatives,
    sampled_softmax_loss,
    shared_sampled_softmax,
)
from seqrec.recipe import build_config


def _inputs(n=7, d=5, v=12, r=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(n, d, generator=g, dtype=torch.float64)
    weight = torch.randn(v + 1, d, generator=g, dtype=torch.float64)
    targets = torch.randint(1, v + 1, (n,), generator=g)
    negatives = torch.randint(1, v + 1, (n, r), generator=g)
    negatives[0, :3] = targets[0]  # accidental hits must drop out
    return hidden, weight, targets, negatives


@pytest.mark.parametrize("normalize", [False, True])
@pytest.mark.parametrize("temperature", [1.0, 0.05])
def test_matches_brute_force(normalize, temperature):
    h, w, t, neg = _inputs()
    got = sampled_softmax_loss(h, w, t, neg, temperature, normalize=normalize)
    want = reference_sampled_softmax(h, w, t, neg, temperature, normalize=normalize)
    assert got.item() == pytest.approx(want, rel=1e-9)


def test_in_batch_logq_matches_brute_force_and_frequency():
    h, w, _, _ = _inputs(n=9)
    t = torch.tensor([3, 3, 3, 5, 5, 7, 8, 8, 8])
    torch.manual_seed(0)
    neg, lq_pos, lq_neg = sample_negatives(t, 12, 20, "in_batch", logq=True)
    assert set(neg.unique().tolist()) <= set(t.tolist())
    freq = torch.bincount(t, minlength=13).double() / len(t)
    torch.testing.assert_close(lq_pos, freq[t].log().float())
    torch.testing.assert_close(lq_neg, freq[neg].log().float())
    got = sampled_softmax_loss(h, w, t, neg, 0.5, lq_pos, lq_neg)
    want = reference_sampled_softmax(h, w, t, neg, 0.5, log_q=freq.log())
    assert got.item() == pytest.approx(want, rel=1e-6)
    # draws follow the batch frequency (3 and 8 three times as often as 7)
    many, _, _ = sample_negatives(t, 12, 20000, "in_batch", logq=False)
    share = torch.bincount(many.flatten(), minlength=13).double() / many.numel()
    np.testing.assert_allclose(share[[3, 5, 7, 8]].numpy(), [3 / 9, 2 / 9, 1 / 9, 3 / 9], atol=0.01)


def test_global_negatives_are_uniform_real_items():
    torch.manual_seed(0)
    neg, lq_pos, lq_neg = sample_negatives(torch.tensor([1, 2]), 10, 5000, "global")
    assert lq_pos is None and lq_neg is None
    assert neg.min() >= 1 and neg.max() <= 10
    share = torch.bincount(neg.flatten(), minlength=11)[1:].double() / neg.numel()
    np.testing.assert_allclose(share.numpy(), 0.1, atol=0.01)


def test_all_negatives_colliding_gives_zero_loss_and_finite_gradients():
    h, w, t, _ = _inputs()
    h.requires_grad_(True)
    neg = t[:, None].expand(-1, 4)
    loss = sampled_softmax_loss(h, w, t, neg, 0.05)
    loss.backward()
    assert loss.item() == 0.0 and torch.isfinite(h.grad).all()


def test_gradients_match_a_dense_masked_softmax():
    h, w, t, neg = _inputs()
    h1, w1 = h.clone().requires_grad_(True), w.clone().requires_grad_(True)
    sampled_softmax_loss(h1, w1, t, neg, 0.3, normalize=True).backward()
    h2, w2 = h.clone().requires_grad_(True), w.clone().requires_grad_(True)
    hn = torch.nn.functional.normalize(h2, dim=-1, eps=1e-6)
    cand = torch.cat([t[:, None], neg], 1)
    e = torch.nn.functional.normalize(w2[cand], dim=-1, eps=1e-6)
    logits = (e @ hn[:, :, None]).squeeze(-1) / 0.3
    hit = torch.cat([torch.zeros_like(t[:, None], dtype=torch.bool), neg == t[:, None]], 1)
    logits = logits.masked_fill(hit, float("-inf"))
    torch.nn.functional.cross_entropy(logits, torch.zeros_like(t)).backward()
    torch.testing.assert_close(h1.grad, h2.grad)
    torch.testing.assert_close(w1.grad, w2.grad)


def test_normalisation_must_agree_with_the_model(tmp_path):
    raw = {"model": {"name": "sasrec"}, "objective": {"name": "ssm", "normalize": True}}
    with pytest.raises(SeqrecError, match="l2_norm_output"):
        build_config(raw)
    raw["model"]["l2_norm_output"] = True
    assert build_config(raw).objective.temperature == 1.0
    with pytest.raises(SeqrecError, match=r"not an option of model\.name=gru4rec"):
        build_config({"model": {"name": "gru4rec", "l2_norm_output": True}})
    with pytest.raises(SeqrecError, match="needs cosine outputs"):
        build_config(
            {"model": {"name": "gru4rec"}, "objective": {"name": "ssm", "normalize": True}}
        )


def test_sasrec_l2_norm_output_scores_cosines():
    torch.manual_seed(0)
    cfg = model_config(hidden=16, layers=2, heads=2, dropout=0.0, l2_norm_output=True)
    m = SASRec(cfg, 30, 8).eval()
    items = torch.tensor([[3, 4, 5, 0], [6, 7, 8, 9]])
    b = SeqBatch(items, items, torch.tensor([3, 4]), torch.arange(2))
    last = m.last_hidden(b)
    torch.testing.assert_close(last.norm(dim=-1), torch.ones(2))
    torch.testing.assert_close(m.item_weights[1:].norm(dim=-1), torch.ones(30))
    assert m.item_weights[0].abs().sum() == 0  # PAD stays zero
    torch.testing.assert_close(m(b)[torch.arange(2), torch.tensor([2, 3])], last)
    torch.testing.assert_close(m(b, reference=True)[1], m(b)[1])


@pytest.mark.parametrize("mode", ["dense", "gather"])
@pytest.mark.parametrize("logq", [False, True])
def test_chunked_fast_path_equals_plain_autograd(monkeypatch, mode, logq):
    """Both scoring modes of the chunked fast path, over several chunks (with a ragged last
    one), give the plain autograd loss and gradients, accidental hits and log q included."""
    monkeypatch.setattr(
        candidates_module, "DENSE_ITEMS_PER_NEGATIVE", 10**6 if mode == "dense" else 0
    )
    h, w, t, neg = _inputs(n=11, r=5)
    lq = torch.randn(w.shape[0], dtype=torch.float64) if logq else None
    lq_pos, lq_neg = (lq[t], lq[neg]) if logq else (None, None)
    grads = []
    for fn, kw in ((sampled_softmax_loss, {"chunk": 4}), (plain_sampled_softmax, {})):
        h1, w1 = h.clone().requires_grad_(True), w.clone().requires_grad_(True)
        loss = fn(h1, w1, t, neg, 0.2, lq_pos, lq_neg, normalize=True, **kw)
        (3.0 * loss).backward()  # the incoming gradient is applied, not assumed to be 1
        grads.append((loss.detach(), h1.grad, w1.grad))
    for fast, plain in zip(*grads, strict=True):
        torch.testing.assert_close(fast, plain)
    with torch.no_grad():  # no gradients wanted: the loss alone
        value = sampled_softmax_loss(h, w, t, neg, 0.2, lq_pos, lq_neg, chunk=4)
    assert value.item() == pytest.approx(
        plain_sampled_softmax(h, w, t, neg, 0.2, lq_pos, lq_neg).item(), rel=1e-12
    )


def test_chunked_fast_path_keeps_fp32_accumulation_for_fp32_inputs():
    h, w, t, neg = (x.float() if x.is_floating_point() else x for x in _inputs(n=50, r=7))
    h.requires_grad_(True)
    loss = sampled_softmax_loss(h, w, t, neg, 0.05, chunk=8)
    want = reference_sampled_softmax(h.detach().double(), w.double(), t, neg, 0.05)
    assert loss.dtype == torch.float32 and loss.item() == pytest.approx(want, rel=1e-5)
    loss.backward()
    assert h.grad.dtype == torch.float32 and torch.isfinite(h.grad).all()


@pytest.mark.parametrize("sampling", ["global", "in_batch"])
@pytest.mark.parametrize("sparse", [False, True])
def test_shared_negatives_path_equals_the_per_position_losses(sampling, sparse):
    """One negative set for the whole batch: the linear-cost path gives the brute-force loss
    and the per-position path's gradients (dense, or sparse over the touched rows)."""
    h, w, t, _ = _inputs(n=9, v=12)
    t[3] = t[0]  # a target twice: its row gets both positions' gradients
    torch.manual_seed(1)
    neg, lq_pos, lq_neg = sample_negatives(t, 12, 8, sampling, logq=True, shared=True)
    assert neg.stride(0) == 0 and neg.shape == (9, 8)
    neg = neg.clone()
    neg[:, 0] = t[0]  # an accidental hit for the positions whose target it is
    log_q = None
    if lq_pos is not None:  # in_batch: q of an item is its share of the batch's targets
        log_q = (torch.bincount(t, minlength=13).double() / len(t)).log()
        lq_neg = log_q[neg].float()
    lq_row = None if lq_neg is None else lq_neg[0]
    h1, w1 = h.clone().requires_grad_(), torch.nn.Parameter(w.clone())
    h2, w2 = h.clone().requires_grad_(), torch.nn.Parameter(w.clone())
    got = shared_sampled_softmax(h1, w1, t, neg[0], 0.5, lq_pos, lq_row, sparse=sparse)
    want = plain_sampled_softmax(h2, w2, t, neg, 0.5, lq_pos, lq_neg)
    assert got.item() == pytest.approx(reference_sampled_softmax(h, w, t, neg, 0.5, log_q))
    torch.testing.assert_close(got, want)
    got.backward()
    want.backward()
    assert w1.grad.is_sparse == sparse
    torch.testing.assert_close(h1.grad, h2.grad)
    torch.testing.assert_close(w1.grad.to_dense(), w2.grad)
