"""CTR metrics against brute-force references (all pairs; one user at a time)."""

from __future__ import annotations

import numpy as np
import pytest

from seqrec.eval.ctr import auc, calibration, ctr_metrics, group_auc, log_loss


def brute_auc(s: np.ndarray, y: np.ndarray) -> float:
    pos, neg = s[y == 1], s[y == 0]
    if not len(pos) or not len(neg):
        return float("nan")
    diff = pos[:, None] - neg[None, :]
    return float(((diff > 0) + 0.5 * (diff == 0)).mean())


def brute_gauc(s, y, g) -> tuple[float, int, int]:
    num = den = 0.0
    counted = skipped = 0
    for u in np.unique(g):
        m = g == u
        a = brute_auc(s[m], y[m])
        if np.isnan(a):
            skipped += 1
            continue
        num += a * m.sum()
        den += m.sum()
        counted += 1
    return num / den, counted, skipped


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auc_and_gauc_match_brute_force_with_ties(seed):
    rng = np.random.default_rng(seed)
    n = 400
    s = rng.integers(0, 8, n) / 8.0  # many ties
    y = (rng.random(n) < 0.3 + 0.5 * s).astype(int)
    g = rng.integers(0, 25, n) * 7 + 3  # arbitrary user ids
    assert auc(s, y) == pytest.approx(brute_auc(s, y), abs=1e-12)
    got = group_auc(s, y, g)
    ref = brute_gauc(s, y, g)
    assert got[0] == pytest.approx(ref[0], abs=1e-12)
    assert got[1:] == ref[1:]


def test_gauc_hand_computed():
    # user a: .9(+) .5(-) .1(+): pairs (.9 > .5) yes, (.1 > .5) no -> AUC 1/2, weight 3
    # user b: .4(+) .3(-) .3(-): both pairs won -> AUC 1, weight 3
    # user c: one positive only -> skipped
    # GAUC = (1/2 * 3 + 1 * 3) / 6 = 0.75
    s = np.array([0.9, 0.5, 0.1, 0.4, 0.3, 0.3, 0.8])
    y = np.array([1, 0, 1, 1, 0, 0, 1])
    g = np.array(["a", "a", "a", "b", "b", "b", "c"])
    value, counted, skipped = group_auc(s, y, g)
    assert value == pytest.approx(0.75)
    assert (counted, skipped) == (2, 1)
    # equal user weights: (1/2 + 1) / 2, the same here; with user a twice as heavy it differs
    assert group_auc(s, y, g, weighted=False)[0] == pytest.approx(0.75)
    s2, y2 = np.r_[s, 0.95, 0.05, 0.6], np.r_[y, 0, 0, 1]
    g2 = np.concatenate([g, ["a", "a", "a"]])
    # user a: positives .9 .1 .6 vs negatives .5 .95 .05 -> 2 + 1 + 2 = 5 of 9 pairs won; weight 6
    assert group_auc(s2, y2, g2, weighted=False)[0] == pytest.approx((5 / 9 + 1) / 2)
    assert group_auc(s2, y2, g2)[0] == pytest.approx((5 / 9 * 6 + 1 * 3) / 9)
    assert ctr_metrics(s2, y2, g2)["GAUC_user_mean"] == pytest.approx((5 / 9 + 1) / 2)


def test_gauc_counts_ties_as_half():
    s = np.array([0.2, 0.2, 0.7, 0.1])
    y = np.array([1, 0, 1, 0])
    g = np.array([1, 1, 2, 2])
    assert group_auc(s, y, g) == (pytest.approx(0.75), 2, 0)


def test_auc_one_class_is_nan_and_perfect_is_one():
    assert np.isnan(auc(np.array([0.1, 0.2]), np.array([1, 1])))
    assert auc(np.array([0.1, 0.2, 0.9]), np.array([0, 0, 1])) == 1.0
    assert auc(np.array([0.5, 0.5]), np.array([0, 1])) == 0.5


def test_log_loss_and_calibration():
    p = np.array([0.05, 0.15, 0.95, 0.85, 0.5])
    y = np.array([0, 0, 1, 1, 1])
    ref = -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))
    assert log_loss(p, y) == pytest.approx(ref)
    assert np.isfinite(log_loss(np.array([0.0, 1.0]), np.array([1, 0])))
    cal = calibration(p, y)
    # bins: 0 {.05:0}, 1 {.15:0}, 5 {.5:1}, 8 {.85:1}, 9 {.95:1}
    ref_ece = (0.05 + 0.15 + 0.5 + 0.15 + 0.05) / 5
    assert cal["ECE"] == pytest.approx(ref_ece)
    assert cal["mean_pred"] == pytest.approx(p.mean())
    assert cal["pos_rate"] == pytest.approx(0.6)
    out = ctr_metrics(p, y, np.zeros(5))
    assert out["examples"] == 5 and out["GAUC_users"] == 1


def test_matches_sklearn_when_installed():
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(5)
    s = rng.random(300).round(2)
    y = (rng.random(300) < s).astype(int)
    assert auc(s, y) == pytest.approx(metrics.roc_auc_score(y, s))
    assert log_loss(s, y) == pytest.approx(metrics.log_loss(y, np.clip(s, 1e-7, 1 - 1e-7)))
