"""Performance Law fit on synthetic runs drawn from known parameters."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from seqrec.errors import SeqrecError
from seqrec.scaling.perf_law import best_shape, fit, predict
from seqrec.scaling.perf_law_forms import data_term, performance_law
from seqrec.scaling.perf_law_table import cross_validate, fit_from_table

# an interior optimum: N* ~ 9 layers, d* ~ 71 wide (w1, w2 < 0 and p > 0)
SEED_TRUE = {"w1": -0.05, "w2": -0.04, "w3": 1.2, "w4": 0.3, "w5": 0.4, "p": 12.0, "p2": 30.0}
CODE_TRUE = {"w1": 0.02, "w2": 0.03, "w3": 0.8, "w4": 0.6, "w5": 0.05, "b": 1.5}
LAYERS = [2, 4, 8, 12, 16, 24, 32]
HIDDEN = [16, 32, 64, 128, 256]


def synthetic_rows(params, law="seed", form="multiply", noise=1e-3, seed=0, keep=0.45):
    rng = np.random.default_rng(seed)
    grid = itertools.product(LAYERS, HIDDEN, (1e5, 1e6), (0.5, 1.0, 2.0))
    rows = [
        {"layers": n, "hidden": d, "tokens": t, "apen": a}
        for n, d, t, a in grid
        if rng.random() < keep
    ]
    big_d = data_term([r["tokens"] for r in rows], [r["apen"] for r in rows], form)
    y = performance_law(
        [r["layers"] for r in rows], [r["hidden"] for r in rows], big_d, params, law
    )
    for row, v in zip(rows, y, strict=True):
        row["ndcg"] = float(v + rng.normal(0, noise))
    return rows


@pytest.fixture(scope="module")
def seed_rows():
    return synthetic_rows(SEED_TRUE)


@pytest.fixture(scope="module")
def seed_fit(seed_rows):
    return fit_from_table(seed_rows, "ndcg", "multiply", restarts=4, n_boot=30)


def test_recovers_seed_law_parameters(seed_fit, seed_rows):
    assert seed_fit.n_points == len(seed_rows) >= 40
    assert seed_fit.r2 > 0.9999
    for name, true in SEED_TRUE.items():
        assert seed_fit.params[name] == pytest.approx(true, rel=0.05), name
        lo, hi = seed_fit.ci[name]
        assert lo <= seed_fit.params[name] <= hi, name
        assert lo <= true <= hi, (name, lo, hi)
    assert seed_fit.warnings == []
    d = seed_fit.to_dict()
    assert d["law"] == "seed" and d["form"] == "multiply" and d["metric"] == "ndcg"


def test_recovers_code_law_parameters():
    rows = synthetic_rows(CODE_TRUE, law="code", noise=1e-4, seed=1)
    res = fit_from_table(rows, "ndcg", "multiply", law="code", restarts=4, n_boot=0)
    assert res.r2 > 0.999 and res.ci is None
    for name, true in CODE_TRUE.items():
        assert res.params[name] == pytest.approx(true, rel=0.1, abs=2e-3), name


def test_the_two_data_terms_differ(seed_rows, seed_fit):
    tokens, apen = np.array([1e6, 1e6]), np.array([0.5, 2.0])
    np.testing.assert_allclose(data_term(tokens, apen, "multiply"), [5e5, 2e6])
    np.testing.assert_allclose(data_term(tokens, apen, "divide"), [2e6, 5e5])
    # data generated with D' = tokens * ApEn: the divide form cannot fit it
    wrong = fit_from_table(seed_rows, "ndcg", "divide", restarts=2, n_boot=0)
    assert wrong.r2 < 0.9 < seed_fit.r2


def test_heldout_r2_and_predict(seed_rows):
    train, held = seed_rows[::2] + seed_rows[1::4], seed_rows[3::4]
    res = fit_from_table(train, "ndcg", heldout_rows=held, restarts=3, n_boot=0)
    assert res.n_heldout == len(held) and res.r2_heldout > 0.999
    big_d = data_term([r["tokens"] for r in held], [r["apen"] for r in held])
    args = ([r["layers"] for r in held], [r["hidden"] for r in held], big_d)
    np.testing.assert_allclose(predict(res, *args), res.predict(*args))
    np.testing.assert_allclose(res.predict(*args), [r["ndcg"] for r in held], atol=0.01)


def test_leave_one_out_predicts_each_run_from_the_others(seed_rows):
    rows = synthetic_rows(SEED_TRUE, noise=1e-4, seed=1, keep=0.08)
    cv = cross_validate(rows, "ndcg", restarts=2)
    assert len(cv["predicted"]) == len(rows) and cv["r2_cv"] > 0.99
    # prediction 0 is the fit without run 0, evaluated at run 0
    rest = fit_from_table(rows[1:], "ndcg", restarts=2, n_boot=0)
    big_d = data_term([rows[0]["tokens"]], [rows[0]["apen"]])
    one = rest.predict([rows[0]["layers"]], [rows[0]["hidden"]], big_d)[0]
    assert cv["predicted"][0] == pytest.approx(one, rel=1e-9)
    # a run's own value never enters its prediction: moving it off the law leaves the
    # prediction as it was, so its error grows by the move and the CV R² drops
    bad = [dict(r) for r in rows]
    bad[0]["ndcg"] += 0.5
    off = cross_validate(bad, "ndcg", restarts=2)
    assert off["predicted"][0] == pytest.approx(cv["predicted"][0], rel=1e-9)
    assert off["r2_cv"] < cv["r2_cv"]
    with pytest.raises(SeqrecError, match="leave-one-out needs"):
        cross_validate(rows[:5], "ndcg")


def test_best_shape_is_the_grid_argmax(seed_fit):
    shape = best_shape(seed_fit, LAYERS, HIDDEN, 1e6)
    assert (shape.layers, shape.hidden) == (8, 64)  # true optimum N* ~ 9.2, d* ~ 71
    truth = {(n, d): performance_law(n, d, 1e6, SEED_TRUE)[0] for n in LAYERS for d in HIDDEN}
    assert max(truth, key=truth.get) == (8, 64)
    assert shape.predicted == pytest.approx(seed_fit.predict(8, 64, 1e6)[0])
    assert seed_fit.best_shape([4], [32], 1e6)[:2] == (4, 32)


def test_bad_input_is_a_seqrec_error(seed_rows):
    with pytest.raises(SeqrecError, match=r"has 7 parameters .* only 6 points"):
        fit_from_table(seed_rows[:6], "ndcg")
    with pytest.raises(SeqrecError, match=r"has 6 parameters .* only 5 points"):
        fit_from_table(seed_rows[:5], "ndcg", law="code")
    nan_rows = [dict(r) for r in seed_rows]
    nan_rows[3]["ndcg"] = math.nan
    with pytest.raises(SeqrecError, match=r"rows\[3\]\.ndcg is nan"):
        fit_from_table(nan_rows, "ndcg")
    with pytest.raises(SeqrecError, match=r"rows\[0\] lacks hr"):
        fit_from_table(seed_rows, "hr")
    with pytest.raises(SeqrecError, match="NaN or infinite value at position 1"):
        fit([2, 4, 8], [8, 8, 8], [1e5, 1e5, 1e5], [0.1, math.nan, 0.2])
    with pytest.raises(SeqrecError, match=r"3 .* points but 2 metric values"):
        fit([2, 4, 8], [8, 8, 8], [1e5, 1e5, 1e5], [0.1, 0.2])
    zero = [dict(r, apen=0.0) for r in seed_rows]
    with pytest.raises(SeqrecError, match="ApEn must be > 0"):
        fit_from_table(zero, "ndcg")
    with pytest.raises(SeqrecError, match="unknown data-term form 'times'"):
        fit_from_table(seed_rows, "ndcg", "times")
    with pytest.raises(SeqrecError, match="unknown Performance Law form 'paper'"):
        fit_from_table(seed_rows, "ndcg", law="paper")
    with pytest.raises(SeqrecError, match="layers and hidden must be >= 1"):
        performance_law(0, 8, 1e5, SEED_TRUE)
