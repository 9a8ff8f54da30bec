"""Ranking metrics computed exactly from the 1-based rank of each user's held-out item.

With one relevant item per user: HR@K = Recall@K = 1[rank <= K], NDCG@K = 1[rank <= K] /
log2(rank + 1) (the ideal DCG is 1), MRR = 1 / rank (uncut) and MRR@K = 1[rank <= K] / rank.
"""

from __future__ import annotations

import numpy as np


def per_user_metrics(ranks: np.ndarray, ks: list[int]) -> dict[str, np.ndarray]:
    """Metric name -> per-user values (kept for confidence intervals and paired tests)."""
    ranks = np.asarray(ranks, dtype=np.float64)
    out: dict[str, np.ndarray] = {"MRR": 1.0 / ranks}
    gain = 1.0 / np.log2(ranks + 1.0)
    for k in sorted(set(ks)):
        hit = ranks <= k
        out[f"HR@{k}"] = hit.astype(np.float64)
        out[f"Recall@{k}"] = out[f"HR@{k}"]
        out[f"NDCG@{k}"] = np.where(hit, gain, 0.0)
        out[f"MRR@{k}"] = np.where(hit, 1.0 / ranks, 0.0)
    return out


def summarize(per_user: dict[str, np.ndarray]) -> dict[str, float]:
    return {name: float(v.mean()) if v.size else float("nan") for name, v in per_user.items()}


def confidence_interval(values: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Normal-approximation CI of a mean of per-user values (n is thousands here)."""
    from statistics import NormalDist

    z = NormalDist().inv_cdf(0.5 + level / 2)
    half = z * values.std(ddof=1) / np.sqrt(max(len(values), 1)) if len(values) > 1 else 0.0
    m = float(values.mean())
    return m - float(half), m + float(half)
