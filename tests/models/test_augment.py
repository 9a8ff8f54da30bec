"""Batched sequence augmentations against a per-row reference, and their invariants."""

from __future__ import annotations

import math

import pytest
import torch

from seqrec.models import augment as A

N_ITEMS = 50
WIDTH = 9


def batch(seed: int = 0, rows: int = 64, width: int = WIDTH) -> torch.Tensor:
    """Right-padded rows of every length 0..width (items 1..N_ITEMS, repeats allowed)."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.arange(rows) % (width + 1)
    items = torch.randint(1, N_ITEMS + 1, (rows, width), generator=g)
    return torch.where(torch.arange(width)[None, :] < lengths[:, None], items, 0)


def real(row: torch.Tensor) -> list[int]:
    return [int(x) for x in row if x != 0]


def padded(values: list[int], width: int) -> list[int]:
    return values + [0] * (width - len(values))


def right_padded(out: torch.Tensor) -> bool:
    nonzero = out != 0
    return bool((nonzero[:, 1:] <= nonzero[:, :-1]).all())


# ---- a per-row reference of every operator, fed the same uniforms --------------------------


def ref_choose(scores: list[float], n: int, m: int) -> list[int]:
    return sorted(range(n), key=lambda j: (scores[j], j))[:m]


def ref_start(u: float, n: int, k: int) -> int:
    return min(math.floor(u * (n - k + 1)), n - k)


def ref_crop(row, ratio, u):
    seq = real(row)
    n = len(seq)
    if n == 0:
        return []
    k = min(max(1, math.floor(ratio * n)), n)
    s = ref_start(u, n, k)
    return seq[s : s + k]


def ref_mask(row, ratio, scores, token):
    seq = real(row)
    for j in ref_choose(scores, len(seq), math.floor(ratio * len(seq))):
        seq[j] = token
    return seq


def ref_reorder(row, ratio, u, keys):
    seq = real(row)
    n = len(seq)
    k = math.floor(ratio * n)
    s = ref_start(u, n, k)
    order = sorted(range(k), key=lambda j: (keys[s + j], j))
    span = seq[s : s + k]
    seq[s : s + k] = [span[j] for j in order]
    return seq


def ref_substitute(row, ratio, scores, new):
    seq = real(row)
    for j in ref_choose(scores, len(seq), math.floor(ratio * len(seq))):
        seq[j] = new[j]
    return seq


def ref_insert(row, ratio, scores, new, width):
    seq = real(row)
    chosen = set(ref_choose(scores, len(seq), math.floor(ratio * len(seq))))
    out = []
    for j, item in enumerate(seq):
        if j in chosen:
            out.append(new[j])
        out.append(item)
    return out[-width:]


def draws(rows: int, width: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    u = torch.rand(rows, generator=g)
    scores = torch.rand(rows, width, generator=g)
    new = torch.randint(1, N_ITEMS + 1, (rows, width), generator=g)
    return u, scores, new


@pytest.mark.parametrize("ratio", [0.0, 0.2, 0.5, 0.7, 1.0])
@pytest.mark.parametrize("op", A.OPS)
def test_vectorised_operator_equals_per_row_reference(op, ratio):
    items = batch(seed=3)
    before = items.clone()
    u, scores, new = draws(*items.shape, seed=7)
    token = A.mask_token(N_ITEMS)
    if op == "crop":
        out = A.crop(items, ratio, u)
        want = [ref_crop(r, ratio, float(u[i])) for i, r in enumerate(items)]
    elif op == "mask":
        out = A.mask(items, ratio, scores, token)
        want = [ref_mask(r, ratio, scores[i].tolist(), token) for i, r in enumerate(items)]
    elif op == "reorder":
        out = A.reorder(items, ratio, u, scores)
        want = [ref_reorder(r, ratio, float(u[i]), scores[i].tolist()) for i, r in enumerate(items)]
    elif op == "substitute":
        out = A.substitute(items, ratio, scores, new)
        want = [
            ref_substitute(r, ratio, scores[i].tolist(), new[i].tolist())
            for i, r in enumerate(items)
        ]
    else:
        out = A.insert(items, ratio, scores, new)
        want = [
            ref_insert(r, ratio, scores[i].tolist(), new[i].tolist(), WIDTH)
            for i, r in enumerate(items)
        ]
    assert out.shape == items.shape and out.dtype == items.dtype
    assert out.tolist() == [padded(w, WIDTH) for w in want]
    assert torch.equal(items, before)  # never modified in place


@pytest.mark.parametrize("op", A.OPS)
def test_every_operator_keeps_right_padding_and_at_least_one_item(op):
    items = batch(seed=1, rows=200)
    out = A.augment(items, op, 0.6, N_ITEMS, generator=torch.Generator().manual_seed(0))
    assert out.shape == items.shape
    assert right_padded(out)
    n_in, n_out = (items != 0).sum(1), (out != 0).sum(1)
    assert torch.equal(n_out >= 1, n_in >= 1)  # a non-empty row stays non-empty; empty stays empty
    assert out.max() <= N_ITEMS + (op == "mask")
    short = n_in <= 1  # rows of one item (or none) are not augmented for ratios < 1
    assert torch.equal(out[short], items[short])


def test_item_counts_follow_the_ratios():
    items = batch(seed=2, rows=300)
    n = (items != 0).sum(1)
    g = torch.Generator().manual_seed(5)
    token = A.mask_token(N_ITEMS)

    crop = A.augment(items, "crop", 0.6, N_ITEMS, g)
    want = torch.where(n > 0, torch.floor(n * 0.6).long().clamp(min=1), 0)
    assert torch.equal((crop != 0).sum(1), want)
    for i in range(len(items)):  # a crop is a contiguous block of the row
        seq, got = real(items[i]), real(crop[i])
        assert any(seq[s : s + len(got)] == got for s in range(len(seq) - len(got) + 1))

    masked = A.augment(items, "mask", 0.3, N_ITEMS, g)
    assert torch.equal((masked == token).sum(1), torch.floor(n * 0.3).long())
    keep = masked != token
    assert torch.equal(masked[keep], items[keep]) and torch.equal((masked != 0).sum(1), n)

    shuffled = A.augment(items, "reorder", 0.6, N_ITEMS, g)
    assert torch.equal(shuffled.sort(1).values, items.sort(1).values)  # same multiset per row
    changed = (shuffled != items).sum(1)
    assert (changed <= torch.floor(n * 0.6)).all() and changed.sum() > 0

    inserted = A.augment(items, "insert", 0.4, N_ITEMS, g)
    m = torch.floor(n * 0.4).long()
    assert torch.equal((inserted != 0).sum(1), (n + m).clamp(max=WIDTH))

    subst = A.augment(items, "substitute", 0.5, N_ITEMS, g)
    assert torch.equal((subst != 0).sum(1), n)
    assert ((subst != items).sum(1) <= torch.floor(n * 0.5)).all()
    assert (subst <= N_ITEMS).all()


def test_insert_keeps_the_original_order_and_the_newest_items():
    items = torch.tensor([[1, 2, 3, 4, 5, 6, 0, 0]])
    scores = torch.tensor([[0.9, 0.1, 0.8, 0.2, 0.7, 0.3, 0.0, 0.0]])  # picks slots 1, 3, 5
    new = torch.full((1, 8), 40)
    out = A.insert(items, 0.5, scores, new)
    # 1 40 2 3 40 4 5 40 6: 6 items + 3 inserts = 9 > 8 slots: the oldest one is dropped
    assert out.tolist() == [[40, 2, 3, 40, 4, 5, 40, 6]]


def test_augment_uses_the_global_rng_by_default_and_is_reproducible():
    items = batch(seed=4)
    torch.manual_seed(11)
    a = A.random_augment(items, A.OPS, dict.fromkeys(A.OPS, 0.5), N_ITEMS)
    torch.manual_seed(11)
    b = A.random_augment(items, A.OPS, dict.fromkeys(A.OPS, 0.5), N_ITEMS)
    assert torch.equal(a, b)
    torch.manual_seed(12)
    assert not torch.equal(a, A.random_augment(items, A.OPS, dict.fromkeys(A.OPS, 0.5), N_ITEMS))


def test_random_augment_applies_the_chosen_operator_per_row():
    items = batch(seed=5, rows=90)
    ops = ["crop", "mask", "substitute"]
    ratios = {"crop": 0.5, "mask": 0.5, "substitute": 0.5}
    choice = torch.arange(90) % 3
    out = A.random_augment(items, ops, ratios, N_ITEMS, torch.Generator().manual_seed(0), choice)
    # the same operators on the same sub-batches, in the same draw order
    g = torch.Generator().manual_seed(0)
    for i, op in enumerate(ops):
        rows = choice == i
        assert torch.equal(out[rows], A.augment(items[rows], op, ratios[op], N_ITEMS, g))
    # drawn choices cover every operator
    torch.manual_seed(0)
    drawn = A.random_augment(items, ["mask"], {"mask": 0.5}, N_ITEMS)
    assert (drawn == A.mask_token(N_ITEMS)).any()


def test_two_view_choices():
    a, b = A.two_view_choices(2000, 3, distinct=True, generator=torch.Generator().manual_seed(0))
    assert (a != b).all() and set(a.tolist()) == set(b.tolist()) == {0, 1, 2}
    a, b = A.two_view_choices(2000, 3, distinct=False, generator=torch.Generator().manual_seed(0))
    assert 0.2 < (a == b).float().mean() < 0.45  # independent: equal about 1/3 of the time
    with pytest.raises(ValueError, match="at least 2"):
        A.two_view_choices(4, 1, distinct=True)


def test_bad_arguments_are_clear_errors():
    items = batch()
    with pytest.raises(ValueError, match="unknown augmentation 'shuffle'"):
        A.augment(items, "shuffle", 0.5, N_ITEMS)
    with pytest.raises(ValueError, match=r"must be in \[0, 1\]"):
        A.augment(items, "crop", 1.5, N_ITEMS)
