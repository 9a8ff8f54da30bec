"""Metrics of the ranking (CTR) task: AUC, GAUC, log loss and calibration, all vectorised.

* AUC is the Mann-Whitney statistic from mid-ranks: the probability that a random positive
  scores above a random negative, a tie counting one half. It is exact (no thresholds), O(n log n).
* GAUC (Zhou et al., DIN 2018) is the per-user AUC averaged with each user's number of
  impressions as weight. A user whose examples are all positive or all negative has no AUC;
  such users are skipped and their number is reported (``GAUC_skipped_users``).
  ``GAUC_user_mean`` is the plain mean over the same users, every user counting once: heavy
  users dominate the weighted GAUC, and a claim should hold under both.
* Log loss is the mean binary cross-entropy of the predicted probabilities (clipped to
  [1e-7, 1 - 1e-7] so one confident mistake cannot make it infinite).
* Calibration: expected calibration error over 10 equal-width probability bins,
  sum_b (n_b / n) |mean prediction_b - positive rate_b|, plus the overall mean prediction next
  to the observed positive rate.

The brute-force references (all pairs, one user at a time) live in tests/eval/test_ctr_metrics.py.
"""

from __future__ import annotations

import numpy as np

EPS = 1e-7


def _midranks_sorted(keys: list[np.ndarray]) -> np.ndarray:
    """Mid-rank (1-based, ties averaged) of each element in an array already sorted by
    ``keys`` (equal rows = a tie run). Returned in sorted order."""
    n = len(keys[0])
    if n == 0:
        return np.zeros(0)
    new = np.zeros(n, dtype=bool)
    new[0] = True
    for k in keys:
        new[1:] |= k[1:] != k[:-1]
    run = np.cumsum(new) - 1  # tie-run id of each sorted element
    first = np.flatnonzero(new)
    last = np.append(first[1:], n) - 1
    return (first[run] + last[run]) / 2.0 + 1.0


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Rank-based AUC (ties count 1/2); NaN when only one class is present."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels).astype(bool)
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(s, kind="stable")
    ranks = _midranks_sorted([s[order]])
    rank_sum = ranks[y[order]].sum()
    return float((rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def per_group_auc(
    scores: np.ndarray, labels: np.ndarray, groups: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """(group ids, their AUCs, their impression counts, groups skipped) for every group that
    holds both classes; GAUC is the impression-weighted mean, and a paired bootstrap over users
    resamples these rows.

    One lexicographic sort by (group, score) gives every group's mid-ranks at once: a
    group's within-group rank is the global mid-rank minus the group's first position.
    """
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels).astype(bool)
    g = np.asarray(groups)
    if len(s) == 0:
        return g[:0], np.zeros(0), np.zeros(0), 0
    uniq, gid = np.unique(g, return_inverse=True)
    order = np.lexsort((s, gid))
    gs, ss, ys = gid[order], s[order], y[order]
    ranks = _midranks_sorted([gs, ss])
    n_groups = len(uniq)
    size = np.bincount(gs, minlength=n_groups)
    start = np.cumsum(size) - size
    local = ranks - start[gs]  # 1-based rank inside the group, ties averaged
    n_pos = np.bincount(gs, weights=ys, minlength=n_groups)
    n_neg = size - n_pos
    rank_sum = np.bincount(gs, weights=np.where(ys, local, 0.0), minlength=n_groups)
    ok = (n_pos > 0) & (n_neg > 0)
    per = (rank_sum[ok] - n_pos[ok] * (n_pos[ok] + 1) / 2.0) / (n_pos[ok] * n_neg[ok])
    return uniq[ok], per, size[ok].astype(np.float64), int((~ok).sum())


def _gauc_means(per: np.ndarray, weights: np.ndarray) -> tuple[float, float]:
    """(impression-weighted, plain) mean of per-user AUCs; NaN when no user counts."""
    if len(per) == 0:
        return float("nan"), float("nan")
    return float((per * weights).sum() / weights.sum()), float(per.mean())


def group_auc(
    scores: np.ndarray, labels: np.ndarray, groups: np.ndarray, weighted: bool = True
) -> tuple[float, int, int]:
    """(GAUC, users counted, users skipped for having one class only); ``weighted=False``
    averages the per-user AUCs with equal weights."""
    _, per, weights, skipped = per_group_auc(scores, labels, groups)
    value = _gauc_means(per, weights)[0 if weighted else 1]
    return value, len(per), skipped


def log_loss(probs: np.ndarray, labels: np.ndarray) -> float:
    p = np.clip(np.asarray(probs, dtype=np.float64), EPS, 1 - EPS)
    y = np.asarray(labels, dtype=np.float64)
    return float(-(y * np.log(p) + (1 - y) * np.log1p(-p)).mean())


def calibration(probs: np.ndarray, labels: np.ndarray, bins: int = 10) -> dict[str, float]:
    """Expected calibration error over ``bins`` equal-width bins (the last bin includes 1.0),
    the mean prediction and the observed positive rate."""
    p = np.asarray(probs, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    which = np.minimum((p * bins).astype(np.int64), bins - 1)
    sum_p = np.bincount(which, weights=p, minlength=bins)
    sum_y = np.bincount(which, weights=y, minlength=bins)
    ece = np.abs(sum_p - sum_y).sum() / max(len(p), 1)  # = sum_b n_b/n |mean_p_b - rate_b|
    return {"ECE": float(ece), "mean_pred": float(p.mean()), "pos_rate": float(y.mean())}


def ctr_metrics(probs: np.ndarray, labels: np.ndarray, users: np.ndarray) -> dict[str, float]:
    """Every ranking-task metric of one split, as a flat dict for results.json."""
    _, per, weights, skipped = per_group_auc(probs, labels, users)  # one sort for both
    weighted, user_mean = _gauc_means(per, weights)
    return {
        "AUC": auc(probs, labels),
        "GAUC": weighted,
        "GAUC_user_mean": user_mean,
        "GAUC_users": len(per),
        "GAUC_skipped_users": skipped,
        "LogLoss": log_loss(probs, labels),
        **calibration(probs, labels),
        "examples": len(labels),
    }
