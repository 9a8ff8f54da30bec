"""benchmarks/cross_domain_scaling.py on hand-made runs: the vectorised log-log fit against
numpy's polyfit, and the per-domain analysis (points, fits, paired gaps, the exponent
difference) on ranks built so that the answers are known. Nothing here trains."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCH))
import cross_domain_scaling as S  # noqa: E402


def test_log_slopes_match_polyfit_row_by_row():
    rng = np.random.default_rng(0)
    x = np.array([1e3, 4e3, 1.6e4, 6.4e4])
    y = rng.uniform(0.01, 0.1, (5, 4))
    log_a, b = S.log_slopes(x, y)
    for i in range(5):
        slope, intercept = np.polyfit(np.log(x), np.log(y[i]), 1)
        assert b[i] == pytest.approx(slope) and log_a[i] == pytest.approx(intercept)


def _run(family, hidden, n, ranks_by_domain):
    return {
        "run": f"{family}{hidden}",
        "family": family,
        "hidden": hidden,
        "layers": 2,
        "non_embedding": n,
        "epochs_run": 10,
        "best_epoch": 5,
        "stopped_by": "patience",
        "train_seconds": 1.0,
        "ranks": ranks_by_domain,
    }


def test_analysis_finds_the_steeper_joint_curve():
    """Single-domain: the same hit share at every width (flat); joint: more users hit at rank 1
    as the model grows, so its exponent is positive, larger, and joint beats single at the
    largest width, paired over the same users."""
    users = list(range(400))
    widths = [(16, 1_000), (32, 4_000), (64, 16_000)]
    runs = []
    for i, (h, n) in enumerate(widths):
        single = {u: (1 if u < 40 else 500) for u in users}
        joint = {u: (1 if u < 40 * 2**i else 500) for u in users}
        runs.append(_run("single", h, n, {"food": single}))
        runs.append(_run("joint", h, n, {"food": joint, "kitchen": joint}))
    out = S.analyse(runs, n_boot=200, seed=0)
    food = out["food"]
    assert food["users"] == 400
    assert food["single"]["b"] == pytest.approx(0.0, abs=1e-12)
    assert food["joint"]["b"] == pytest.approx(np.log(2) / np.log(4))  # x4 params -> x2 hits
    assert food["joint"]["r2_log"] == pytest.approx(1.0)
    assert [p["ndcg10"] for p in food["single"]["points"]] == pytest.approx([0.1] * 3)
    assert food["b_joint_minus_single"]["share_of_draws_steeper"] == 1.0
    assert food["b_joint_minus_single"]["widths"] == [16, 32, 64]
    gaps = {g["hidden"]: g for g in food["joint_minus_single"]}
    assert gaps[16]["diff"] == pytest.approx(0.0) and gaps[64]["diff"] == pytest.approx(0.3)
    assert gaps[64]["p_ttest"] < 1e-6
    # kitchen has joint runs only: points and a fit, nothing to compare with
    assert "single" not in out["kitchen"] and "joint_minus_single" not in out["kitchen"]
    text = S.table({"name": "x", "title": "T", "metrics": {"by_domain": out}})
    assert "| food | joint | 64 | 16,000 | 0.4000" in text


def test_one_point_gets_no_fit():
    runs = [_run("single", 64, 1_000, {"food": {1: 1, 2: 3}})]
    out = S.analyse(runs, n_boot=10, seed=0)
    assert "b" not in out["food"]["single"] and len(out["food"]["single"]["points"]) == 1
