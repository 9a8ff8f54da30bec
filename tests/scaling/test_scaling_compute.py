"""Compute curves from run folders, the compute frontier and iso-FLOP slices."""

from __future__ import annotations

import json

import numpy as np
import pytest

from seqrec.errors import SeqrecError
from seqrec.scaling.compute import (
    Curve,
    budgets_between,
    frontier,
    frontier_reference,
    iso_flop,
    run_curve,
)


def _write_run(path, steps_per_epoch=10, epochs=4, seen=4000, flops_train=3.0):
    path.mkdir()
    res = {
        "steps": steps_per_epoch * epochs,
        "train_interactions": seen,
        "flops_per_interaction": {"forward": 1.0, "train": flops_train},
    }
    (path / "results.json").write_text(json.dumps(res))
    lines = [json.dumps({"event": "start"})]
    for e in range(epochs):
        lines.append(json.dumps({"step": e * steps_per_epoch + 5, "loss": 1.0}))
        step = (e + 1) * steps_per_epoch
        lines.append(json.dumps({"event": "valid", "step": step, "valid/NDCG@10": 0.1 * (e + 1)}))
    (path / "metrics.jsonl").write_text("\n".join(lines) + "\n")


def test_run_curve_flops_are_linear_in_steps(tmp_path):
    _write_run(tmp_path / "r")
    c = run_curve(tmp_path / "r", "r", 123)
    # 4000 interactions over 40 steps at 3 FLOPs each: 300 FLOPs per step, 10 steps per epoch
    assert c.flops.tolist() == [3000.0, 6000.0, 9000.0, 12000.0]
    assert c.metric == pytest.approx([0.1, 0.2, 0.3, 0.4])
    assert c.best_within(6500) == pytest.approx(0.2)
    assert c.best_within(100) is None


def test_run_curve_without_validations_is_an_error(tmp_path):
    _write_run(tmp_path / "r", epochs=0, seen=10)
    with pytest.raises(SeqrecError):
        run_curve(tmp_path / "r", "r", 1)


def _random_curves(rng, n=6):
    out = []
    for i in range(n):
        e = int(rng.integers(2, 9))
        flops = np.cumsum(rng.uniform(1, 5, e)) * 10 ** rng.uniform(0, 2)
        out.append(Curve(f"r{i}", float(i + 1), flops, rng.uniform(0, 1, e)))
    return out


def test_frontier_matches_the_direct_scan():
    rng = np.random.default_rng(0)
    for _ in range(5):
        curves = _random_curves(rng)
        fx, fy = frontier(curves)
        rx, ry = frontier_reference(curves)
        assert np.allclose(fx, rx) and np.allclose(fy, ry)
        assert np.all(np.diff(fy) >= 0)


def test_iso_flop_picks_the_best_size_within_budget():
    small = Curve("s", 1.0, np.array([1.0, 2.0, 3.0]), np.array([0.1, 0.2, 0.25]))
    big = Curve("b", 10.0, np.array([2.5, 5.0, 7.5]), np.array([0.15, 0.3, 0.4]))
    low, high = iso_flop([small, big], [2.0, 6.0])
    assert [p["run"] for p in low["points"]] == ["s"]  # the big run's first epoch costs 2.5
    assert low["best_size"] == 1.0 and low["best"] == pytest.approx(0.2)
    assert high["best_size"] == 10.0 and high["best"] == pytest.approx(0.3)
    assert [p["truncated"] for p in high["points"]] == [False, True]


def test_budgets_span_median_first_to_half_the_largest():
    rng = np.random.default_rng(1)
    curves = [Curve("a", 1, np.array([1.0, 50.0]), np.zeros(2)),
              Curve("b", 2, np.array([4.0, 80.0]), np.zeros(2))]  # fmt: skip
    b = budgets_between(curves, 3)
    assert b[0] == pytest.approx(2.5) and b[-1] == pytest.approx(40.0)
    assert len(budgets_between(_random_curves(rng), 4)) == 4
