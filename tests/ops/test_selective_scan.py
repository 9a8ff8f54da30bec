"""The chunked selective scan and the vectorised partially flipped scan against their explicit
per-position and per-query references, and the flip against hand-computed values."""

import math

import pytest
import torch
import torch.nn.functional as F

from seqrec.ops.selective_scan import (
    flipped_scan,
    flipped_scan_reference,
    packed_scan,
    partial_flip_order,
    selective_scan,
    selective_scan_reference,
)

TOL = {torch.float32: {"rtol": 1e-4, "atol": 1e-5}, torch.float64: {"rtol": 1e-10, "atol": 1e-12}}


def scan_inputs(batch=2, length=11, width=5, states=3, dtype=torch.float64, seed=0, scale=1.0):
    """u, Δ, A, B, C, D with gradients; ``scale`` multiplies Δ (large = fast decay)."""
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(batch, length, width, generator=g, dtype=dtype)
    delta = scale * F.softplus(torch.randn(batch, length, width, generator=g, dtype=dtype))
    A = -torch.rand(width, states, generator=g, dtype=dtype) * 3 - 0.1
    B = torch.randn(batch, length, states, generator=g, dtype=dtype)
    C = torch.randn(batch, length, states, generator=g, dtype=dtype)
    D = torch.randn(width, generator=g, dtype=dtype)
    return [t.requires_grad_() for t in (u, delta, A, B, C, D)]


def outputs_and_grads(fn, inputs):
    out = fn(*inputs)
    outs = out if isinstance(out, tuple) else (out,)
    weights = [torch.randn(o.shape, generator=torch.Generator().manual_seed(i), dtype=o.dtype)
               for i, o in enumerate(outs)]  # fmt: skip
    grads = torch.autograd.grad(
        sum((o * w).sum() for o, w in zip(outs, weights, strict=True)), inputs
    )
    return [o.detach() for o in outs], grads


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("chunk", [None, 1, 3, 4, 11, 16])
def test_chunked_scan_matches_the_per_position_loop(dtype, chunk):
    inputs = scan_inputs(dtype=dtype)
    fast = outputs_and_grads(lambda *a: selective_scan(*a, states=True, chunk=chunk), inputs)
    slow = outputs_and_grads(lambda *a: selective_scan_reference(*a, states=True), inputs)
    for a, b in zip(fast[0] + list(fast[1]), slow[0] + list(slow[1]), strict=True):
        torch.testing.assert_close(a, b, **TOL[dtype])


def test_reference_is_the_recurrence_written_out():
    """y_2 by hand for one channel and one state, D = 0: h_t = e^{Δ_t A} h_{t-1} + Δ_t B_t u_t."""
    u, delta, B, C = (torch.tensor([[[1.0], [2.0], [3.0]]]) for _ in range(4))
    A = torch.tensor([[-0.5]])
    h = 0.0
    for t in range(3):
        h = math.exp(-0.5 * (t + 1)) * h + (t + 1) * (t + 1) * (t + 1)
    y = selective_scan_reference(u, delta, A, B, C)
    assert y[0, 2, 0].item() == pytest.approx(3 * h)
    assert selective_scan(u, delta, A, B, C, chunk=2)[0, 2, 0].item() == pytest.approx(3 * h)


def test_chunked_scan_is_stable_where_decays_underflow():
    """Δ A down to about -2000 a step: e^{-Λ} would overflow; the chunked path stays finite and
    equal to the loop (states decay to the last input)."""
    inputs = scan_inputs(length=40, dtype=torch.float32, scale=300.0)
    fast = selective_scan(*inputs, chunk=8)
    assert torch.isfinite(fast).all()
    torch.testing.assert_close(fast, selective_scan_reference(*inputs), **TOL[torch.float32])
    _, flipped = flipped_scan(*inputs, keep=3)
    assert torch.isfinite(flipped).all()


def test_partial_flip_order_by_hand():
    assert partial_flip_order(7, 2) == [4, 3, 2, 1, 0, 5, 6]
    assert partial_flip_order(4, 1) == [2, 1, 0, 3]
    assert partial_flip_order(3, 2) == [0, 1, 2]  # one item before the kept two: unchanged
    assert partial_flip_order(2, 5) == [0, 1]


def test_flipped_scan_by_hand():
    """Decay 1/2 a step, B = C = 1, D = 0, u = 1, 2, 3, 4 and r = 1: slot 3 reads 3, 2, 1, then 4.
    h: 3 -> 0.5 * 3 + 2 = 3.5 -> 0.5 * 3.5 + 1 = 2.75 -> 0.5 * 2.75 + 4 = 5.375;
    forward: 1 -> 2.5 -> 4.25 -> 6.125. Slot 2 reads 2, 1, then 3: 2 -> 2 -> 4."""
    u = torch.tensor([[[1.0], [2.0], [3.0], [4.0]]])
    ones = torch.ones(1, 4, 1)
    A = torch.tensor([[-math.log(2.0)]])
    forward, flipped = flipped_scan(u, ones, A, ones, ones, keep=1)
    torch.testing.assert_close(forward[0, :, 0], torch.tensor([1.0, 2.5, 4.25, 6.125]))
    torch.testing.assert_close(flipped[0, :, 0], torch.tensor([1.0, 2.5, 4.0, 5.375]))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("keep", [1, 2, 5, 10, 12])
def test_flipped_scan_matches_one_explicit_scan_per_query(dtype, keep):
    inputs = scan_inputs(length=12, dtype=dtype, seed=1)
    fast = outputs_and_grads(lambda *a: flipped_scan(*a, keep=keep, chunk=4), inputs)
    slow = outputs_and_grads(lambda *a: flipped_scan_reference(*a, keep=keep), inputs)
    for a, b in zip(fast[0] + list(fast[1]), slow[0] + list(slow[1]), strict=True):
        torch.testing.assert_close(a, b, **TOL[dtype])
    if keep < 10:  # long enough prefixes exist: the flip must change something
        assert not torch.allclose(fast[0][0], fast[0][1])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("keep", [None, 1, 3, 11])
def test_packed_loop_matches_the_references_on_real_slots(dtype, keep):
    """Ragged rows (one empty): outputs at real slots and all gradients, PAD slots unread."""
    inputs = scan_inputs(batch=4, length=12, dtype=dtype, seed=2)
    lengths = torch.tensor([5, 12, 0, 9])
    real = (torch.arange(12)[None] < lengths[:, None])[..., None].to(dtype)

    def masked(fn):
        return lambda *a: tuple(y * real for y in fn(*a))

    def reference(*a):
        y, y_flip = flipped_scan_reference(*a, keep=keep or 1)
        return (y,) if keep is None else (y, y_flip)

    def packed(*a):
        y, y_flip = packed_scan(*a, lengths, keep)
        return (y,) if keep is None else (y, y_flip)

    fast = outputs_and_grads(masked(packed), inputs)
    slow = outputs_and_grads(masked(reference), inputs)
    for a, b in zip(fast[0] + list(fast[1]), slow[0] + list(slow[1]), strict=True):
        torch.testing.assert_close(a, b, **TOL[dtype])


def test_flipped_scan_reads_no_later_slot():
    inputs = [t.detach() for t in scan_inputs(length=10)]
    changed = [t.clone() for t in inputs]
    for i in (0, 1, 3, 4):  # u, Δ, B, C after slot 5
        changed[i][:, 6:] = torch.randn_like(changed[i][:, 6:])
    for a, b in zip(flipped_scan(*inputs, keep=2), flipped_scan(*changed, keep=2), strict=True):
        torch.testing.assert_close(a[:, :6], b[:, :6])
        assert not torch.allclose(a[:, 6:], b[:, 6:])


def test_flipped_scan_needs_the_query_kept():
    with pytest.raises(ValueError, match="keep must be >= 1"):
        flipped_scan(*scan_inputs(), keep=0)
