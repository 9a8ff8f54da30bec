"""Sampled metrics draw their negatives without replacement, and refuse what cannot be drawn.

With replacement the same item could be counted twice against the target, so `--negatives`
near or above the catalogue size gave "sampled" metrics below full ranking."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from seqrec.errors import SeqrecError
from seqrec.eval.ranking import check_negatives, evaluate, sample_negatives
from seqrec.models import model_config
from seqrec.models.sasrec import SASRec
from seqrec.options import EvalConfig

N_ITEMS = 20


def _model(n_items=N_ITEMS, max_len=6):
    torch.manual_seed(0)
    return SASRec(model_config(hidden=8, layers=1, heads=1, dropout=0.0), n_items, max_len).eval()


def _data():
    """Three users: histories of 3, 8 and 15 distinct items; targets outside them."""
    hists = [[1, 2, 3], list(range(4, 12)), list(range(1, 16))]
    items = np.array([i for h in hists for i in h], dtype=np.int64)
    ends = np.cumsum([len(h) for h in hists])
    return items, ends - [len(h) for h in hists], ends, np.array([10, 2, 18])


@pytest.mark.parametrize("popularity", [False, True])
def test_negatives_are_distinct_and_drawn_only_from_allowed_items(popularity):
    gen = torch.Generator().manual_seed(0)
    allowed = torch.rand(64, N_ITEMS + 1, generator=gen) > 0.3
    allowed[:, 0] = False
    allowed[:, 1:13] = True  # at least 12 allowed items per row
    probs = None
    if popularity:
        probs = torch.rand(N_ITEMS + 1, generator=gen)
        probs[[0, 13, 14]] = 0.0  # never drawn, even where allowed
    for n in (1, 5, 12):
        neg = sample_negatives(allowed, n, probs, gen)
        assert neg.shape == (64, n)
        assert all(len(set(row.tolist())) == n for row in neg)  # no replacement
        assert allowed.gather(1, neg).all()
        if probs is not None:
            assert (probs[neg] > 0).all()


def test_as_many_negatives_as_allowed_items_is_full_ranking():
    """Drawing every other item without replacement ranks the target against all of them."""
    m, (items, starts, ends, targets) = _model(), _data()
    full = evaluate(m, items, starts, ends, targets, 6, EvalConfig(mask_seen=False, ks=[5]))
    every = EvalConfig(mask_seen=False, sampled="uniform", n_negatives=N_ITEMS - 1, ks=[5])
    sampled = evaluate(m, items, starts, ends, targets, 6, every)
    np.testing.assert_array_equal(sampled.ranks, full.ranks)
    assert sampled.protocol["negatives_drawn"] == "without replacement"
    fewer = EvalConfig(mask_seen=False, sampled="uniform", n_negatives=7, ks=[5])
    assert (evaluate(m, items, starts, ends, targets, 6, fewer).ranks <= full.ranks).all()


@pytest.mark.parametrize(
    ("n", "mask_seen", "match"),
    [
        (0, True, "must be at least 1, got 0"),
        (-3, True, "must be at least 1, got -3"),
        (N_ITEMS, False, f"from {N_ITEMS} catalogue items \\({N_ITEMS - 1} besides the target\\)"),
        (5, True, "the user in row 2 has only 4 items left"),  # 20 - 15 seen - target
        (12, True, "users with fewer than 12: 2"),
    ],
)
def test_more_negatives_than_a_user_can_draw_is_refused_in_one_line(n, mask_seen, match):
    m, (items, starts, ends, targets) = _model(), _data()
    # model_copy, as Run.evaluate builds it from --negatives (no validation on the way)
    cfg = EvalConfig(mask_seen=mask_seen, sampled="uniform").model_copy(update={"n_negatives": n})
    with pytest.raises(SeqrecError, match=match) as err:
        evaluate(m, items, starts, ends, targets, 6, cfg)
    assert "\n" not in str(err.value) and "--negatives" in str(err.value)


def test_the_limit_follows_what_is_masked_and_what_has_popularity():
    items, starts, ends, targets = _data()
    check_negatives(4, N_ITEMS, items, starts, ends, targets, 6, True)  # row 2 has 4 left
    with pytest.raises(SeqrecError, match="only 4 items left"):
        check_negatives(5, N_ITEMS, items, starts, ends, targets, 6, True)
    # masking only the last max_len=6 items leaves row 2 with 20 - 6 - 1 = 13
    check_negatives(11, N_ITEMS, items, starts, ends, targets, 6, "window")
    check_negatives(N_ITEMS - 1, N_ITEMS, items, starts, ends, targets, 6, False)
    # a target already in the history is not counted twice
    check_negatives(5, N_ITEMS, items, starts, ends, np.array([10, 2, 3]), 6, True)
    # popularity sampling cannot draw items never seen in training
    pop = np.ones(N_ITEMS + 1)
    pop[[0, 19, 20]] = 0
    with pytest.raises(SeqrecError, match="from 18 catalogue items"):
        check_negatives(18, N_ITEMS, items, starts, ends, targets, 6, False, pop)
    with pytest.raises(SeqrecError, match="row 2 has only 2 items left"):
        check_negatives(4, N_ITEMS, items, starts, ends, targets, 6, True, pop)
