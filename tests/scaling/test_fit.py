"""Scaling-law fits: known exponents are recovered, intervals cover the truth, held-out R²."""

from __future__ import annotations

import json

import numpy as np
import pytest

from seqrec.errors import SeqrecError
from seqrec.scaling.curve_solvers import nonlinear_fit, power_fit
from seqrec.scaling.curves import compute_optimal, fit_curve, holdout_mask
from seqrec.scaling.fit import fit_table
from seqrec.scaling.fit_plot import plot_fit
from seqrec.scaling.perf_law import _r2

X = np.geomspace(1e4, 1e8, 24)


def test_power_law_noise_free_is_exact():
    fit = fit_curve(X, 3.0 * X**0.21, "power", n_boot=0)
    assert fit.params["b"] == pytest.approx(0.21, abs=1e-10)
    assert fit.params["a"] == pytest.approx(3.0, rel=1e-8)
    assert fit.r2 == pytest.approx(1.0)


def test_power_law_noisy_interval_covers_truth():
    rng = np.random.default_rng(3)
    y = 0.02 * X**0.15 * np.exp(rng.normal(0, 0.05, len(X)))
    fit = fit_curve(X, y, "power", n_boot=400, seed=1)
    lo, hi = fit.ci["b"]
    assert lo < 0.15 < hi and hi - lo < 0.05
    assert fit.ci["a"][0] < 0.02 < fit.ci["a"][1]


def test_vectorised_bootstrap_matches_explicit_refits():
    rng = np.random.default_rng(0)
    y = 2 * X**-0.3 * np.exp(rng.normal(0, 0.1, len(X)))
    idx = rng.integers(0, len(X), (5, len(X)))
    w = np.stack([np.bincount(i, minlength=len(X)) for i in idx]).astype(float)
    batched = power_fit(X, y, w)
    for i in range(5):  # reference: a plain polyfit on the resampled rows
        b, log_a = np.polyfit(np.log(X[idx[i]]), np.log(y[idx[i]]), 1)
        assert batched[i] == pytest.approx([np.exp(log_a), b], rel=1e-9)


def test_saturating_loss_recovers_exponent():
    y = 1.7 + 40.0 * X**-0.28
    fit = fit_curve(X, y, "saturating", n_boot=0)
    assert fit.params["alpha"] == pytest.approx(0.28, rel=1e-5)
    assert fit.params["E"] == pytest.approx(1.7, rel=1e-5)
    rng = np.random.default_rng(5)
    noisy = y + rng.normal(0, 0.01, len(X))
    fit = fit_curve(X, noisy, "saturating", n_boot=200, seed=2)
    assert fit.ci["alpha"][0] < 0.28 < fit.ci["alpha"][1]


def test_saturating_metric_has_a_ceiling():
    y = 0.25 - 3.0 * X**-0.4  # a metric rising to 0.25
    fit = fit_curve(X, y, "saturating", n_boot=0)
    assert fit.params["E"] == pytest.approx(0.25, rel=1e-5)
    assert fit.params["A"] < 0


def joint_data(noise: float, seed: int = 0):
    n, d = np.meshgrid(np.geomspace(1e4, 1e7, 6), np.geomspace(1e5, 1e8, 6))
    n, d = n.ravel(), d.ravel()
    y = 1.5 + 300.0 * n**-0.34 + 900.0 * d**-0.28
    return n, d, y + np.random.default_rng(seed).normal(0, noise, len(y))


def test_joint_law_recovers_alpha_and_beta():
    n, d, y = joint_data(0.0)
    fit = fit_curve(n, y, "joint", d=d, n_boot=0)
    assert fit.params["alpha"] == pytest.approx(0.34, rel=1e-4)
    assert fit.params["beta"] == pytest.approx(0.28, rel=1e-4)
    n, d, y = joint_data(0.003, seed=1)
    fit = fit_curve(n, y, "joint", d=d, n_boot=100, seed=0)
    assert fit.ci["alpha"][0] < 0.34 < fit.ci["alpha"][1]
    assert fit.ci["beta"][0] < 0.28 < fit.ci["beta"][1]


def test_compute_optimal_minimises_the_law_on_the_budget():
    n, d, y = joint_data(0.0)
    fit = fit_curve(n, y, "joint", d=d, n_boot=0)
    c, budget = 6.0, 1e15
    best = compute_optimal(fit, budget, c, minimise=True)
    assert best["params"] * best["data"] * c == pytest.approx(budget)
    grid = np.geomspace(1e3, 1e12, 20001)  # brute force along the budget line
    loss = fit.predict(grid, budget / (c * grid))
    assert best["params"] == pytest.approx(grid[np.argmin(loss)], rel=2e-3)
    assert best["predicted"] <= loss.min() <= best["predicted"] * (1 + 1e-6)


def test_heldout_r2_uses_only_heldout_rows():
    rng = np.random.default_rng(7)
    y = 0.05 * X**0.1 * np.exp(rng.normal(0, 0.05, len(X)))
    held = holdout_mask("largest:5", X)
    assert held.sum() == 5 and held[-5:].all()
    fit = fit_curve(X, y, "power", heldout=held, n_boot=0)
    ref = power_fit(X[~held], y[~held])[0]  # fitted on the rest only
    assert fit.params["b"] == pytest.approx(ref[1])
    pred = ref[0] * X[held] ** ref[1]
    assert fit.r2_heldout == pytest.approx(_r2(y[held], pred))
    assert fit.heldout_true == pytest.approx(y[held].tolist())
    assert fit.n_fit == len(X) - 5
    assert holdout_mask("random:4", X, seed=1).sum() == 4
    # keyed by run ids, a random hold-out picks the same runs whatever the row order
    ids = [f"run{i}" for i in range(len(X))]
    held = holdout_mask("random:4", X, ids=ids)
    order = np.random.default_rng(3).permutation(len(X))
    again = holdout_mask("random:4", X[order], ids=[ids[i] for i in order])
    assert held.sum() == 4 and {ids[i] for i in order[again]} == {
        ids[i] for i in np.flatnonzero(held)
    }
    assert not np.array_equal(held, holdout_mask("random:4", X, seed=1, ids=ids))
    with pytest.raises(SeqrecError, match="holdout"):
        holdout_mask("biggest", X)


def test_nonlinear_fit_rows_are_independent_fits():
    y = 1.0 + 5.0 * X**-0.5
    w = np.ones((2, len(X)))
    w[1, :12] = 0  # the second fit sees only the upper half
    both = nonlinear_fit([X], y, w)
    assert both[:, 2] == pytest.approx([0.5, 0.5], rel=1e-4)


def sweep_rows():
    """Synthetic sweep rows: two families, layers x hidden x data fraction."""
    rng = np.random.default_rng(0)
    rows = []
    for model, shift in (("sasrec", 0.0), ("hstu", 0.005)):
        for layers in (1, 2, 4):
            for hidden in (32, 64, 128):
                for frac in (0.25, 0.5, 1.0):
                    params = 3400 * hidden + layers * 8 * hidden**2
                    tokens = int(1e6 * frac)
                    ndcg = 0.25 - 2.0 * params**-0.3 - 4.0 * tokens**-0.35 + shift
                    rows.append({
                        "config_hash": f"{model}{layers}{hidden}{frac}", "model": model,
                        "layers": layers, "hidden": hidden, "params": params,
                        "non_embedding_params": layers * 8 * hidden**2,
                        "train_tokens": tokens, "train_interactions": tokens * 20,
                        "train_flops": 6.0 * params * tokens * 20, "apen": 0.02,
                        "test_ndcg10": ndcg * np.exp(rng.normal(0, 0.0005)),
                        "train_loss": 7.0 - 10 * ndcg,
                    })  # fmt: skip
    return rows


def test_fit_table_reports_curve_joint_perf_law_and_plot(tmp_path):
    report = fit_table(
        sweep_rows(), "params", "test_ndcg10", budget=1e16, n_boot=20, perf_law_boot=3
    )
    assert report["curve"]["form"] == "power" and report["curve"]["n_heldout"] == 11
    assert report["joint"]["params"]["beta"] == pytest.approx(0.35, abs=0.1)
    assert report["compute_optimal"]["params"] > 0
    assert len(report["perf_law"]["heldout"]) == 11
    assert "r2_heldout" in report["perf_law"]
    loss = fit_table(sweep_rows(), "non_embedding", "train_loss", n_boot=20, holdout="none")
    assert loss["curve"]["form"] == "saturating" and "perf_law" not in loss
    pytest.importorskip("matplotlib")
    plot_fit(report, tmp_path / "fit.png")
    assert (tmp_path / "fit.png").stat().st_size > 10_000
    with pytest.raises(SeqrecError, match="--x"):
        fit_table(sweep_rows(), "width", "test_ndcg10")


def test_cli_fit_reports_the_leave_one_out_score(tmp_path):
    """`seqrec fit --cv`: the Performance Law is also scored by leave-one-out, and the
    report's out-of-fold predictions are the library's (one refit per run)."""
    from typer.testing import CliRunner

    from seqrec.cli import app
    from seqrec.scaling.perf_law_forms import data_term
    from seqrec.scaling.perf_law_table import fit_from_table
    from seqrec.scaling.sweep_table import write_table

    rows = [r for r in sweep_rows() if r["model"] == "sasrec" and r["layers"] != 2]
    rows = rows[::2]  # 9 runs: each refit is a nonlinear least-squares fit
    for r in rows:
        r.update(status="ok", data_fraction=r["train_tokens"] / 1e6)
    write_table(tmp_path / "results.parquet", rows)
    args = ["fit", str(tmp_path / "results.parquet"), "--boot", "0", "--holdout", "none",
            "--json", str(tmp_path / "fit.json")]  # fmt: skip
    res = CliRunner().invoke(app, [*args, "--cv"])
    assert res.exit_code == 0, res.output
    assert f"leave-one-out over {len(rows)} runs" in res.output
    cv = json.loads((tmp_path / "fit.json").read_text())["perf_law"]["cv"]
    assert cv["config_hash"] == [r["config_hash"] for r in rows]
    # run 0's prediction is the law fitted to the other runs, evaluated at run 0
    table = [{**r, "tokens": r["train_tokens"]} for r in rows[1:]]
    rest = fit_from_table(table, "test_ndcg10", n_boot=0)
    big_d = data_term([rows[0]["train_tokens"]], [rows[0]["apen"]])
    want = rest.predict([rows[0]["layers"]], [rows[0]["hidden"]], big_d)[0]
    assert cv["predicted"][0] == pytest.approx(want, rel=1e-6)


def test_bad_fit_choices_are_refused_before_fitting(tmp_path):
    """A misspelt law, data form or family is one clear error, never a table row or 0 runs."""
    from seqrec.scaling.fit import load_rows
    from seqrec.scaling.sweep_table import write_table

    rows = sweep_rows()
    with pytest.raises(SeqrecError, match=r"--law 'perf': use one of seed, code"):
        fit_table(rows, law="perf", n_boot=0)
    with pytest.raises(SeqrecError, match=r"--data-form 'bogus': use one of multiply, divide"):
        fit_table(rows, data_form="bogus", n_boot=0, perf_law=False)
    for r in rows:
        r["status"] = "ok"
    write_table(tmp_path / "results.parquet", rows)
    assert len(load_rows(tmp_path / "results.parquet", "hstu")) == len(rows) // 2
    with pytest.raises(SeqrecError, match=r"--model 'llama'.*it has hstu, sasrec"):
        load_rows(tmp_path / "results.parquet", "llama")
