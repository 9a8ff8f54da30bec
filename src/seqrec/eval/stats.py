"""Uncertainty of ranking metrics: confidence intervals and paired tests between models.

A test split gives one rank per user, so every HR@K / NDCG@K is a mean of per-user values and
two models scored on the same users can be compared user by user. That pairing removes the
between-user variance both models share, which is why a paired difference is far tighter than
the overlap of two separate CIs. Nothing here knows about run folders (``seqrec.comparison`` does);
inputs are plain arrays.

* ``per_user_metrics`` / ``normal_ci`` (from ``metrics``): the per-user values and the normal CI
  of their mean, fine with thousands of users.
* ``t_interval``: the CI of a mean over a handful of seeds, where the normal approximation is
  far too narrow (t with n - 1 degrees of freedom).
* ``paired_test``: B - A per user, its CI, the paired t-test and the Wilcoxon signed-rank test
  (HR values are 0/1 and most NDCG values are 0, so a test free of normality is reported too).
* ``holm``: Holm's step-down adjustment, because a table of p-values invites picking the best.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
from scipy import stats

from seqrec.eval.metrics import confidence_interval as normal_ci
from seqrec.eval.metrics import per_user_metrics

__all__ = [
    "holm",
    "metric_ks",
    "normal_ci",
    "paired_test",
    "per_user_metrics",
    "summarise",
    "t_interval",
]


def metric_ks(metrics: Iterable[str]) -> list[int]:
    """The cut-offs that `per_user_metrics` must compute for these metric names."""
    return sorted({int(m.split("@", 1)[1]) for m in metrics if "@" in m})


def summarise(
    per_user: dict[str, np.ndarray], metrics: Sequence[str], level: float = 0.95
) -> dict[str, dict[str, float]]:
    """Metric -> {mean, ci_low, ci_high}: the normal CI over users of each metric's mean."""
    out = {}
    for key in metrics:
        low, high = normal_ci(np.asarray(per_user[key], dtype=np.float64), level)
        out[key] = {"mean": float(np.mean(per_user[key])), "ci_low": low, "ci_high": high}
    return out


def t_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high) of the mean of a few values, e.g. one metric over seeds.

    With n seeds the sample SD is itself noisy, so the half-width uses Student's t with
    n - 1 degrees of freedom (12.7 x SE for 2 seeds at 95%, not 1.96). One value has no spread
    to estimate: its interval is the value itself, and callers must say where else a CI comes
    from.
    """
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        raise ValueError("t_interval needs at least one value")
    mean = float(x.mean())
    if x.size == 1:
        return mean, mean, mean
    half = float(stats.t.ppf(0.5 + level / 2, x.size - 1) * x.std(ddof=1) / np.sqrt(x.size))
    return mean, mean - half, mean + half


def paired_test(a: np.ndarray, b: np.ndarray, level: float = 0.95) -> dict[str, float]:
    """B - A for per-user values of one metric: mean, its CI, t-test and Wilcoxon p-values.

    Identical arms (every difference 0) get p = 1 from both tests, where scipy would return
    NaN or raise; the Wilcoxon test drops zero differences (``zero_method="wilcox"``), which is
    what "did the users whose rank changed move one way" asks.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(
            f"paired values need one value per user in both arms: {a.shape} vs {b.shape}"
        )
    diff = b - a
    low, high = normal_ci(diff, level)
    if not np.any(diff):
        p_t = p_w = 1.0
    else:
        p_t = float(stats.ttest_rel(b, a).pvalue)
        p_w = float(stats.wilcoxon(diff, zero_method="wilcox").pvalue)
    return {
        "diff": float(diff.mean()),
        "diff_ci_low": low,
        "diff_ci_high": high,
        "p_ttest": p_t,
        "p_wilcoxon": p_w,
        "n_users": int(diff.size),
        "n_nonzero": int(np.count_nonzero(diff)),
    }


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values in input order (step-down, monotone, capped at 1)."""
    p = np.asarray(pvalues, dtype=np.float64)
    m = p.size
    adjusted = np.empty(m)
    running = 0.0
    for i, j in enumerate(np.argsort(p, kind="stable")):
        running = max(running, min(1.0, (m - i) * p[j]))
        adjusted[j] = running
    return adjusted.tolist()
