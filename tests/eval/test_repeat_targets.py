"""eval.repeat_targets: a target the user has already seen is ranked, a miss, or left out,
on a hand-computed example, and the rule and its share are written into the protocol."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from seqrec.comparison import repeat_rule
from seqrec.eval.ranking import evaluate, repeat_share
from seqrec.options import EvalConfig

SCORES = torch.tensor([0.0, 5.0, 4.0, 3.0, 2.0, 1.0])  # item 1 scores highest, PAD column 0


class FixedScores(nn.Module):
    """Every history gets the same scores: item i scores SCORES[i]."""

    def __init__(self) -> None:
        super().__init__()
        self.item_weights = torch.eye(len(SCORES))

    def last_hidden(self, batch):
        return SCORES.expand(batch.items.shape[0], -1)


def data():
    """u0: [1, 2] -> 3 (new item); u1: [1, 3] -> 3 (a repeat); u2: [4] -> 1 (new)."""
    hists = [[1, 2], [1, 3], [4]]
    items = np.array([i for h in hists for i in h], dtype=np.int64)
    ends = np.cumsum([len(h) for h in hists])
    return items, ends - [len(h) for h in hists], ends, np.array([3, 3, 1])


@pytest.mark.parametrize(
    ("rule", "ranks", "users"),
    [
        # u1's target 3 (score 3) competes with the unseen items 2 (4), 4 (2), 5 (1): rank 2
        ("rank", [1, 2, 1], [0, 1, 2]),
        # a miss ranks after all 5 items: rank 6, outside every cut-off of this catalogue
        ("miss", [1, 6, 1], [0, 1, 2]),
        ("drop", [1, 1], [0, 2]),
    ],
)
def test_each_rule_on_a_hand_computed_example(rule, ranks, users):
    items, starts, ends, targets = data()
    cfg = EvalConfig(ks=[1, 5], repeat_targets=rule)
    res = evaluate(FixedScores(), items, starts, ends, targets, 10, cfg)
    assert res.ranks.tolist() == ranks
    assert res.users.tolist() == users
    ndcg5 = np.mean([1 / math.log2(r + 1) if r <= 5 else 0.0 for r in ranks])
    assert res.metrics["NDCG@5"] == pytest.approx(ndcg5)
    assert res.protocol["repeat_targets"] == rule
    assert res.protocol["repeat_share"] == pytest.approx(1 / 3)


def test_share_follows_what_is_masked():
    items, starts, ends, targets = data()
    assert repeat_share(items, starts, ends, targets, 10, True) == pytest.approx(1 / 3)
    assert repeat_share(items, starts, ends, targets, 1, "window") == pytest.approx(1 / 3)
    assert repeat_share(items, starts, ends, targets, 10, False) == 0.0
    # u1's window of one item is [3]; with history [3, 1] the window [1] hides the repeat
    items2 = np.array([1, 2, 3, 1, 4])
    assert repeat_share(items2, starts, ends, targets, 1, "window") == 0.0


def test_a_rule_without_masking_is_refused_in_one_line():
    with pytest.raises(ValueError, match=r"eval\.mask_seen=false masks none"):
        EvalConfig(repeat_targets="miss", mask_seen=False)


def test_runs_from_before_the_option_read_as_rank():
    assert repeat_rule({"target_masked_if_seen": False}) == "rank"
    assert repeat_rule({"repeat_targets": "drop"}) == "drop"
