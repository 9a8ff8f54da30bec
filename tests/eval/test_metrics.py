import math

import numpy as np
import pytest

from seqrec.eval.metrics import confidence_interval, per_user_metrics, summarize


def test_metrics_by_hand():
    ranks = np.array([1, 2, 5, 11])
    m = summarize(per_user_metrics(ranks, [1, 5, 10]))
    assert m["HR@1"] == 0.25
    assert m["HR@5"] == 0.75
    assert m["HR@10"] == 0.75
    assert m["Recall@10"] == m["HR@10"]
    ndcg10 = (1 / math.log2(2) + 1 / math.log2(3) + 1 / math.log2(6) + 0) / 4
    assert m["NDCG@10"] == pytest.approx(ndcg10)
    assert m["NDCG@1"] == pytest.approx(0.25)
    assert m["MRR"] == pytest.approx((1 + 1 / 2 + 1 / 5 + 1 / 11) / 4)
    assert m["MRR@5"] == pytest.approx((1 + 1 / 2 + 1 / 5) / 4)


def test_confidence_interval_contains_mean_and_shrinks():
    rng = np.random.default_rng(0)
    small = rng.random(100)
    big = rng.random(10000)
    lo, hi = confidence_interval(small)
    assert lo < small.mean() < hi
    lo2, hi2 = confidence_interval(big)
    assert hi2 - lo2 < hi - lo
