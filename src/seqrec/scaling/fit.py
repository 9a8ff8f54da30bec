"""Scaling-law fits on a sweep's ``results.parquet``: what `seqrec fit` reports.

One x column against one y column: the curve (`curves.fit_curve`, power or saturating), the
Chinchilla joint law when both parameters and data vary (with the compute-optimal size for a
budget), and the Performance Law (`perf_law_table.fit_from_table` on the same rows, N = layers,
d = hidden, D' = train_tokens x ApEn), each scored on the same held-out runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from seqrec.errors import SeqrecError
from seqrec.scaling.curves import compute_optimal, fit_curve, holdout_mask
from seqrec.scaling.perf_law_forms import FORMS as DATA_FORMS
from seqrec.scaling.perf_law_forms import LAWS, data_term
from seqrec.scaling.perf_law_table import cross_validate, fit_from_table
from seqrec.scaling.sweep_table import read_table

X_COLUMNS = {
    "params": "params",
    "non_embedding": "non_embedding_params",
    "flops": "train_flops",
    "data": "train_tokens",
    "seen": "train_interactions",
}
Y_COLUMNS = ("test_ndcg10", "test_hr10", "train_loss", "valid_ndcg10", "valid_hr10")


def _law_rows(rows: list[dict]) -> list[dict]:
    """Sweep rows in the Performance Law's terms: tokens = the run's training interactions."""
    return [{**r, "tokens": r["train_tokens"]} for r in rows]


def _perf_law(
    rows: list[dict], held: np.ndarray, metric: str, law: str, form: str, seed: int, n_boot: int
):
    """The Performance Law fitted to the rows not held out, with its predictions for the
    held-out ones; a law that cannot be fitted is an ``error`` entry, not a failed command."""
    table = _law_rows(rows)
    if any(r.get("apen") is None or r.get("tokens") is None for r in table):
        return {"error": "rows lack apen or train_tokens (sweep with apen: true)"}
    fit_rows = [r for r, h in zip(table, held, strict=True) if not h]
    held_rows = [r for r, h in zip(table, held, strict=True) if h]
    try:
        res = fit_from_table(
            fit_rows,
            metric,
            form,
            law=law,
            heldout_rows=held_rows or None,
            seed=seed,
            n_boot=n_boot,
        )
    except SeqrecError as err:
        return {"error": str(err)}
    out = res.to_dict()
    if held_rows:
        big_d = data_term([r["tokens"] for r in held_rows], [r["apen"] for r in held_rows], form)
        pred = res.predict(
            [r["layers"] for r in held_rows], [r["hidden"] for r in held_rows], big_d
        )
        out["heldout"] = [
            {"config_hash": r["config_hash"], "predicted": float(p), "measured": float(r[metric])}
            for r, p in zip(held_rows, pred, strict=True)
        ]
    return out


def _perf_law_cv(rows: list[dict], metric: str, law: str, form: str, seed: int, restarts: int):
    """Leave-one-out over every run (``perf_law_table.cross_validate``), keyed by config hash."""
    try:
        cv = cross_validate(_law_rows(rows), metric, form, law=law, restarts=restarts, seed=seed)
    except SeqrecError as err:
        return {"error": str(err)}
    cv["config_hash"] = [r["config_hash"] for r in rows]
    return cv


def load_rows(path: Path, model: str | None = None) -> list[dict]:
    """The finished (``status = ok``) rows of a sweep table, of one model family if given."""
    if not Path(path).is_file():
        raise SeqrecError(f"{path} does not exist; pass the results.parquet a sweep wrote")
    rows = [r for r in read_table(path) if r["status"] == "ok"]
    if not model:
        return rows
    kept = [r for r in rows if r["model"] == model]
    if rows and not kept:
        found = ", ".join(sorted({str(r["model"]) for r in rows}))
        raise SeqrecError(
            f"--model {model!r}: no finished run of that family in {path}; it has {found}"
        )
    return kept


def fit_table(
    rows: list[dict],
    x: str = "params",
    y: str = "test_ndcg10",
    *,
    form: str | None = None,
    holdout: str = "largest",
    budget: float | None = None,
    n_boot: int = 500,
    seed: int = 0,
    perf_law: bool = True,
    law: str = "seed",
    data_form: str = "multiply",
    perf_law_boot: int = 200,
    perf_law_cv: bool = False,
    cv_restarts: int = 8,
) -> dict[str, Any]:
    """Everything `seqrec fit` reports, as a JSON-able dict (plus arrays for the plot)."""
    if x not in X_COLUMNS:
        raise SeqrecError(f"--x {x!r}: use one of {', '.join(X_COLUMNS)}")
    if y not in Y_COLUMNS:
        raise SeqrecError(f"--y {y!r}: use one of {', '.join(Y_COLUMNS)}")
    if law not in LAWS:  # checked up front: a bad choice must not surface as a table row
        raise SeqrecError(f"--law {law!r}: use one of {', '.join(LAWS)}")
    if data_form not in DATA_FORMS:
        raise SeqrecError(f"--data-form {data_form!r}: use one of {', '.join(DATA_FORMS)}")
    rows = [r for r in rows if r.get(X_COLUMNS[x]) is not None and r.get(y) is not None]
    if len(rows) < 3:
        raise SeqrecError(f"only {len(rows)} finished runs have {X_COLUMNS[x]} and {y}; need 3+")
    xv = np.array([r[X_COLUMNS[x]] for r in rows], float)
    yv = np.array([r[y] for r in rows], float)
    ids = [r.get("config_hash") for r in rows]
    ids = ids if all(ids) else None  # stable random hold-outs for sweep tables
    held = holdout_mask(holdout, xv, seed, ids)
    form = form or ("saturating" if y == "train_loss" else "power")
    out: dict[str, Any] = {"x": x, "y": y, "n_runs": len(rows), "holdout": holdout}
    out["curve"] = fit_curve(xv, yv, form, heldout=held, n_boot=n_boot, seed=seed).to_dict()
    out.update(_joint(rows, x, y, yv, holdout, budget, n_boot, seed, ids))
    if perf_law and y != "train_loss":
        out["perf_law"] = _perf_law(rows, held, y, law, data_form, seed, perf_law_boot)
        if perf_law_cv and "error" not in out["perf_law"]:
            out["perf_law"]["cv"] = _perf_law_cv(rows, y, law, data_form, seed, cv_restarts)
    out["_plot"] = {"x": xv, "y": yv, "held": held, "model": [r["model"] for r in rows]}
    return out


def _joint(
    rows: list[dict],
    x: str,
    y: str,
    yv: np.ndarray,
    holdout: str,
    budget: float | None,
    n_boot: int,
    seed: int,
    ids: list[str] | None,
) -> dict[str, Any]:
    """The report's ``joint`` and ``compute_optimal`` parts (either may be an ``error``),
    or nothing when the runs do not vary both parameters and data and no budget was asked."""
    out: dict[str, Any] = {}
    nv = np.array([r["params" if x in ("flops", "data", "seen") else X_COLUMNS[x]] for r in rows])
    dv = np.array([r["train_tokens"] or 0 for r in rows], float)
    # A, alpha (B, beta) are only identified with 3+ distinct parameter (data) values
    if len(np.unique(nv)) >= 3 and len(np.unique(dv)) >= 3 and np.all(dv > 0):
        joint_held = holdout_mask(holdout, nv.astype(float) * dv, seed, ids)
        try:
            joint = fit_curve(nv, yv, "joint", d=dv, heldout=joint_held, n_boot=n_boot, seed=seed)
            out["joint"] = joint.to_dict()
            if budget is not None:
                flops = np.array([r["train_flops"] for r in rows], float)
                c = float(np.median(flops / (nv * dv)))
                out["compute_optimal"] = compute_optimal(joint, budget, c, y == "train_loss")
        except SeqrecError as err:
            out["joint"] = {"error": str(err)}
    elif budget is not None:
        out["compute_optimal"] = {"error": "needs 3+ parameter and 3+ data sizes"}
    return out
