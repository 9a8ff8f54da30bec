"""seqrec.eval.stats against brute-force references: metrics, intervals, paired tests, Holm."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import stats as sp

from seqrec.eval import stats as S


def test_per_user_metrics_match_a_loop_over_users():
    ranks = np.array([1, 2, 3, 10, 11, 57, 1, 4])
    got = S.per_user_metrics(ranks, [5, 10])
    for i, r in enumerate(ranks.tolist()):
        assert got["HR@10"][i] == (1.0 if r <= 10 else 0.0)
        assert got["NDCG@5"][i] == pytest.approx(1 / math.log2(r + 1) if r <= 5 else 0.0)
        assert got["MRR"][i] == pytest.approx(1 / r)
    assert S.metric_ks(["NDCG@10", "HR@5", "MRR", "HR@10"]) == [5, 10]


def test_summarise_is_the_normal_interval_of_the_mean():
    rng = np.random.default_rng(0)
    values = rng.random(400)
    got = S.summarise({"NDCG@10": values}, ["NDCG@10"])["NDCG@10"]
    half = 1.959963984540054 * values.std(ddof=1) / math.sqrt(values.size)
    assert got["mean"] == pytest.approx(values.mean())
    assert (got["ci_low"], got["ci_high"]) == pytest.approx(
        (values.mean() - half, values.mean() + half)
    )


def test_t_interval_uses_student_t_over_few_values():
    values = [0.1812, 0.1813, 0.1823, 0.1814, 0.1798]
    mean, low, high = S.t_interval(values)
    x = np.array(values)
    want = sp.t.interval(0.95, x.size - 1, loc=x.mean(), scale=x.std(ddof=1) / math.sqrt(x.size))
    assert mean == pytest.approx(x.mean())
    assert (low, high) == pytest.approx(want)
    # two seeds: the 97.5% quantile of t with 1 degree of freedom is 12.706, not 1.96
    m2, low2, h2 = S.t_interval([0.0, 1.0])
    assert (
        (h2 - m2)
        == (m2 - low2)
        == pytest.approx(12.7062047 * math.sqrt(0.5) / math.sqrt(2), rel=1e-6)
    )
    assert S.t_interval([0.17]) == (0.17, 0.17, 0.17)
    with pytest.raises(ValueError):
        S.t_interval([])


def test_paired_t_test_and_ci_match_their_formulas():
    rng = np.random.default_rng(0)
    a = rng.random(500)
    b = a + 0.05 + 0.2 * rng.standard_normal(500)
    got = S.paired_test(a, b)
    d = b - a
    t = d.mean() / (d.std(ddof=1) / math.sqrt(len(d)))
    assert got["diff"] == pytest.approx(d.mean())
    assert got["p_ttest"] == pytest.approx(2 * sp.t.sf(abs(t), len(d) - 1), rel=1e-9)
    half = 1.959963984540054 * d.std(ddof=1) / math.sqrt(len(d))
    assert (got["diff_ci_low"], got["diff_ci_high"]) == pytest.approx(
        (d.mean() - half, d.mean() + half)
    )
    assert got["n_users"] == 500 and got["n_nonzero"] == 500


def test_wilcoxon_matches_enumerating_every_sign_flip():
    """Exact two-sided p over all 2^n sign assignments of the ranks of |d| (n small, no ties)."""
    rng = np.random.default_rng(3)
    d = (np.arange(12) + 0.5) * rng.choice([-1.0, 1.0], 12) / 100
    a = rng.random(d.size)
    ranks = sp.rankdata(np.abs(d))
    observed = ranks[d > 0].sum()
    sums = np.array([sum(r for r, s in zip(ranks, signs, strict=True) if s)
                     for signs in itertools.product([0, 1], repeat=d.size)])  # fmt: skip
    want = min(1.0, 2 * min((sums <= observed).mean(), (sums >= observed).mean()))
    assert S.paired_test(a, a + d)["p_wilcoxon"] == pytest.approx(want, rel=1e-9)


def test_wilcoxon_drops_users_whose_value_did_not_change():
    """With zero differences (most users, in practice) the p-value is the normal approximation
    of the signed-rank sum over the changed users alone."""
    rng = np.random.default_rng(4)
    d = np.concatenate([(np.arange(30) + 0.5) * rng.choice([-1.0, 1.0], 30) + 0.25, np.zeros(20)])
    nonzero = d[d != 0]
    n = nonzero.size
    t_plus = sp.rankdata(np.abs(nonzero))[nonzero > 0].sum()
    z = (t_plus - n * (n + 1) / 4) / math.sqrt(n * (n + 1) * (2 * n + 1) / 24)
    got = S.paired_test(np.zeros(d.size), d)
    assert got["p_wilcoxon"] == pytest.approx(2 * sp.norm.sf(abs(z)), rel=1e-9)
    assert got["n_nonzero"] == 30 and got["n_users"] == 50


def test_identical_arms_get_p_one_and_mismatched_arms_are_refused():
    a = np.random.default_rng(1).random(50)
    same = S.paired_test(a, a)
    assert same["p_ttest"] == same["p_wilcoxon"] == 1.0 and same["n_nonzero"] == 0
    assert same["diff"] == same["diff_ci_low"] == same["diff_ci_high"] == 0.0
    with pytest.raises(ValueError, match="one value per user"):
        S.paired_test(a, a[:-1])


def _holm_by_definition(p: list[float]) -> list[float]:
    """Adjusted p_i = max over every p_j ranked at or before p_i of min(1, (m - rank_j) p_j)."""
    m = len(p)
    order = sorted(range(m), key=lambda i: (p[i], i))
    rank = {i: r for r, i in enumerate(order)}
    return [max(min(1.0, (m - rank[j]) * p[j]) for j in range(m) if rank[j] <= rank[i])
            for i in range(m)]  # fmt: skip


def test_holm_matches_its_definition():
    # sorted p: 0.01 (x4), 0.02 (x3 = 0.06), 0.03 (x2 = 0.06), 0.5 (x1); monotone, input order
    assert S.holm([0.03, 0.01, 0.5, 0.02]) == pytest.approx([0.06, 0.04, 0.5, 0.06])
    assert S.holm([0.9, 0.8]) == pytest.approx([1.0, 1.0])
    assert S.holm([]) == []
    rng = np.random.default_rng(5)
    for _ in range(50):
        p = rng.choice([rng.random(), 0.01, 0.2], size=int(rng.integers(1, 12))).tolist()
        p = [x if rng.random() < 0.5 else rng.random() ** 3 for x in p]  # ties and small values
        assert S.holm(p) == pytest.approx(_holm_by_definition(p))
