"""Metric against training compute: per-run validation curves, the compute frontier and
iso-FLOP slices (Chinchilla "approach 2": at a fixed budget, the best metric each model size
reaches, as a function of size).

A run folder's ``metrics.jsonl`` has a ``valid`` event after each epoch with the optimizer
``step`` it was taken at; ``results.json`` has the run's total ``steps``, its
``train_interactions`` (targets trained on over all of them) and ``flops_per_interaction``.
Training FLOPs up to a validation are then ``flops_train * train_interactions * step / steps``
(every step trains on about the same number of targets, so compute is linear in steps).

Imports numpy only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from seqrec.errors import SeqrecError


@dataclass(frozen=True)
class Curve:
    """One run's validation metric after each epoch, against cumulative training FLOPs."""

    name: str
    size: float  # the x of the iso-FLOP slice (e.g. non-embedding parameters)
    flops: np.ndarray  # [E] increasing
    metric: np.ndarray  # [E]

    def best_within(self, budget: float) -> float | None:
        """Best metric among the validations taken at or below ``budget`` FLOPs (None if the
        first validation already cost more)."""
        keep = self.flops <= budget
        return float(self.metric[keep].max()) if keep.any() else None


def run_curve(run_dir: Path, name: str, size: float, key: str = "valid/NDCG@10") -> Curve:
    """The validation curve of a finished run folder (results.json + metrics.jsonl)."""
    run_dir = Path(run_dir)
    res = json.loads((run_dir / "results.json").read_text())
    steps, seen = res.get("steps"), res.get("train_interactions")
    if not steps or not seen:
        raise SeqrecError(f"{run_dir}/results.json lacks steps or train_interactions")
    per_step = res["flops_per_interaction"]["train"] * seen / steps
    step, value = [], []
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        ev = json.loads(line)
        if ev.get("event") == "valid" and key in ev:
            step.append(ev["step"])
            value.append(ev[key])
    if not step:
        raise SeqrecError(f"{run_dir}/metrics.jsonl has no {key!r} validation events")
    order = np.argsort(step, kind="stable")
    return Curve(
        name, float(size), np.asarray(step, float)[order] * per_step, np.asarray(value)[order]
    )


def frontier(curves: list[Curve]) -> tuple[np.ndarray, np.ndarray]:
    """The compute frontier: at each validation's FLOPs (sorted), the best metric any run had
    reached at or below that compute. Returns (flops, best) with best non-decreasing."""
    if not curves:
        raise SeqrecError("frontier needs at least one curve")
    flops = np.concatenate([c.flops for c in curves])
    metric = np.concatenate([c.metric for c in curves])
    order = np.argsort(flops, kind="stable")
    return flops[order], np.maximum.accumulate(metric[order])


def frontier_reference(curves: list[Curve]) -> tuple[np.ndarray, np.ndarray]:
    """`frontier` by a direct scan over every (budget, curve) pair; the test's reference."""
    flops = np.sort(np.concatenate([c.flops for c in curves]), kind="stable")
    best = [max(b for c in curves if (b := c.best_within(f)) is not None) for f in flops]
    return flops, np.array(best)


def iso_flop(curves: list[Curve], budgets) -> list[dict]:
    """For each budget, every run's best metric within it (runs whose first validation cost
    more are left out) and the size with the best one. ``truncated`` says whether the run was
    still training at the budget (False: it had stopped, early or at its epoch limit, below it,
    so its value is its final best)."""
    out = []
    for budget in np.asarray(budgets, float):
        pts = []
        for c in sorted(curves, key=lambda c: c.size):
            best = c.best_within(budget)
            if best is not None:
                pts.append(
                    {
                        "run": c.name,
                        "size": c.size,
                        "best": best,
                        "truncated": bool(c.flops[-1] > budget),
                    }
                )
        top = max(pts, key=lambda p: p["best"]) if pts else None
        out.append(
            {
                "budget_flops": float(budget),
                "points": pts,
                "best_size": None if top is None else top["size"],
                "best_run": None if top is None else top["run"],
                "best": None if top is None else top["best"],
            }
        )
    return out


def budgets_between(curves: list[Curve], count: int = 4) -> np.ndarray:
    """``count`` log-spaced budgets from the median first-validation cost (about half the runs
    have a point at the lowest budget) to half the largest total cost (the biggest run is
    still training at the highest one), so the slices cover small and large models alike."""
    lo = float(np.median([c.flops[0] for c in curves]))
    hi = max(float(c.flops[-1]) for c in curves) / 2
    return np.geomspace(lo, max(hi, lo), count)
