"""Scaling-law fits on a sweep's ``results.parquet``.

Forms (x = parameters, non-embedding parameters, training FLOPs or training interactions):

- ``power``: y = a * x^b, fitted as a line in log-log space (closed form; needs y > 0).
- ``saturating``: y = E + A * x^(-alpha). For a loss A > 0 and E is the irreducible loss; for
  a metric A < 0 and E is the ceiling it approaches (1 - metric then falls as a power law).
- ``joint`` (Chinchilla-style, when parameters and data both vary):
  y = E + A * N^(-alpha) + B * D^(-beta), N = parameters (or the chosen parameter column),
  D = training interactions kept (``train_tokens``).

Nonlinear fits use variable projection: for fixed exponents the coefficients enter linearly, so
a grid of exponents is solved in closed form (batched normal equations) and the best grid point
starts ``scipy.optimize.least_squares``. Bootstrap intervals resample runs with replacement; the
resamples are drawn at once as a [B, n] multiplicity matrix, so the log-log fit and the
exponent-grid search are single batched numpy operations; each nonlinear resample is then
polished from its grid optimum. Held-out R² uses only the held-out rows, with a fit on the rest.

The Performance Law is fitted with `seqrec.scaling.perf_law` on the same rows
(N = layers, d = hidden, D' = train_tokens x ApEn).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from seqrec.errors import SeqrecError
from seqrec.scaling.perf_law import FORMS as DATA_FORMS
from seqrec.scaling.perf_law import LAWS, _r2

X_COLUMNS = {
    "params": "params",
    "non_embedding": "non_embedding_params",
    "flops": "train_flops",
    "data": "train_tokens",
    "seen": "train_interactions",
}
Y_COLUMNS = ("test_ndcg10", "test_hr10", "train_loss", "valid_ndcg10", "valid_hr10")
FORMS = ("power", "saturating")
EXP_LO, EXP_HI = 1e-3, 5.0
_GRID_1D = np.linspace(0.01, 3.0, 300)
_GRID_2D = np.linspace(0.02, 3.0, 50)


@dataclass
class CurveFit:
    """One fitted law: parameters, bootstrap intervals and goodness of fit."""

    form: str
    params: dict[str, float]
    ci: dict[str, tuple[float, float]] = field(default_factory=dict)
    r2: float = math.nan
    r2_heldout: float | None = None
    n_fit: int = 0
    n_heldout: int = 0
    heldout_pred: list[float] = field(default_factory=list)
    heldout_true: list[float] = field(default_factory=list)

    def predict(self, x: np.ndarray, d: np.ndarray | None = None) -> np.ndarray:
        p = self.params
        x = np.asarray(x, dtype=np.float64)
        if self.form == "power":
            return p["a"] * x ** p["b"]
        if self.form == "saturating":
            return p["E"] + p["A"] * x ** -p["alpha"]
        return p["E"] + p["A"] * x ** -p["alpha"] + p["B"] * np.asarray(d, float) ** -p["beta"]

    def to_dict(self) -> dict[str, Any]:
        return {
            "form": self.form,
            "params": self.params,
            "ci": {k: list(v) for k, v in self.ci.items()},
            "r2": self.r2,
            "r2_heldout": self.r2_heldout,
            "n_fit": self.n_fit,
            "n_heldout": self.n_heldout,
            "heldout_pred": self.heldout_pred,
            "heldout_true": self.heldout_true,
        }


# -------------------------------------------------------------------------- the solvers


def _boot_weights(n: int, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """[n_boot, n] multiplicities of a with-replacement resample of n rows."""
    idx = rng.integers(0, n, (n_boot, n))
    return np.apply_along_axis(np.bincount, 1, idx, minlength=n).astype(np.float64)


def power_fit(x, y, weights: np.ndarray | None = None) -> np.ndarray:
    """log y = log a + b log x by weighted least squares; rows of ``weights`` are separate fits.

    Returns [n_fits, 2] = (a, b).
    """
    lx, ly = np.log(np.asarray(x, float)), np.log(np.asarray(y, float))
    w = np.ones((1, len(lx))) if weights is None else np.atleast_2d(weights)
    sw = w.sum(1)
    mx, my = (w @ lx) / sw, (w @ ly) / sw
    cov = (w * (lx - mx[:, None]) * (ly - my[:, None])).sum(1)
    var = (w * (lx - mx[:, None]) ** 2).sum(1)
    with np.errstate(divide="ignore", invalid="ignore"):
        b = cov / var
    return np.stack([np.exp(my - b * mx), b], axis=1)


def _basis(exps: np.ndarray, xs: list[np.ndarray]) -> np.ndarray:
    """[G, n, 1 + len(xs)] columns 1, x1^-e1, x2^-e2 for every exponent tuple of ``exps`` [G, m]."""
    n = len(xs[0])
    cols = [np.ones((len(exps), n))] + [x[None, :] ** -exps[:, [j]] for j, x in enumerate(xs)]
    return np.stack(cols, axis=2)


def _grid_solve(exps: np.ndarray, xs, y, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Best grid exponents and their linear coefficients for each weight row: ([B, m], [B, k])."""
    X = _basis(exps, xs)  # [G, n, k]
    g, n, k = X.shape
    # weighted sums over rows as one matmul each: [B, n] @ [n, G * k * k]
    xtwx = (w @ np.einsum("gni,gnj->ngij", X, X).reshape(n, -1)).reshape(len(w), g, k, k)
    xtwy = (w @ (X * y[None, :, None]).transpose(1, 0, 2).reshape(n, -1)).reshape(len(w), g, k)
    ridge = 1e-12 * np.trace(xtwx, axis1=2, axis2=3)[..., None, None] * np.eye(k)
    coef = np.linalg.solve(xtwx + ridge, xtwy[..., None])[..., 0]  # [B, G, k]
    rss = (w * y * y).sum(1)[:, None] - (coef * xtwy).sum(2)
    best = np.nanargmin(np.where(np.isfinite(rss), rss, np.inf), axis=1)
    rows = np.arange(len(w))
    return exps[best], coef[rows, best]


def _project(exps: np.ndarray, xs, y) -> tuple[np.ndarray, np.ndarray]:
    """Coefficients that best fit y for these exponents, and the residual."""
    X = _basis(exps[None, :], xs)[0]
    coef = np.linalg.lstsq(X, y, rcond=None)[0]
    return coef, X @ coef - y


def _polish(exps0: np.ndarray, xs, y, tol: float = 1e-14) -> np.ndarray:
    """Variable projection: least_squares over the exponents only (1 or 2 of them), the
    coefficients solved exactly at each step. Returns (coefficients..., exponents...)."""
    from scipy.optimize import least_squares

    m = len(exps0)
    x0 = np.clip(exps0, EXP_LO + 1e-9, EXP_HI - 1e-9)
    with np.errstate(all="ignore"):
        sol = least_squares(lambda e: _project(e, xs, y)[1], x0, bounds=(EXP_LO, EXP_HI),
                            method="trf", xtol=tol, ftol=tol, gtol=tol, max_nfev=200 * m)  # fmt: skip
    return np.r_[_project(sol.x, xs, y)[0], sol.x]


def nonlinear_fit(xs: list[np.ndarray], y: np.ndarray, weights: np.ndarray | None = None):
    """y = c0 + sum_j c_j x_j^(-e_j): rows of ``weights`` are separate (resampled) fits.

    Returns [n_fits, k + m] = (c0, c1.., e1..). Each x is divided by its geometric mean while
    solving (well-conditioned columns), and the coefficients are mapped back at the end.
    """
    scale = [float(np.exp(np.mean(np.log(x)))) for x in xs]
    xs = [np.asarray(x, np.float64) / s for x, s in zip(xs, scale, strict=True)]
    y = np.asarray(y, np.float64)
    m = len(xs)
    grid = _GRID_1D[:, None] if m == 1 else np.stack(np.meshgrid(_GRID_2D, _GRID_2D), -1)
    grid = grid.reshape(-1, m)
    w = np.ones((1, len(y))) if weights is None else np.atleast_2d(weights)
    exps, _ = _grid_solve(grid, xs, y, w)
    tol = 1e-14 if weights is None else 1e-9  # resamples: far below their spread
    out = np.empty((len(w), 1 + 2 * m))
    for i in range(len(w)):
        keep = np.repeat(np.arange(len(y)), w[i].astype(int))  # the resample's rows
        out[i] = _polish(exps[i], [x[keep] for x in xs], y[keep], tol)
    # (x / s)^-e = x^-e * s^e: fold s^e into the coefficients
    out[:, 1 : 1 + m] *= np.array(scale)[None, :] ** out[:, 1 + m :]
    return out


# ------------------------------------------------------------------------- the front end


def _ci(draws: np.ndarray, names: list[str], level: float) -> dict[str, tuple[float, float]]:
    a = (1 - level) / 2
    lo, hi = np.nanquantile(draws, [a, 1 - a], axis=0)
    return {k: (float(lo[i]), float(hi[i])) for i, k in enumerate(names)}


def fit_curve(
    x,
    y,
    form: str = "power",
    *,
    d=None,
    heldout: np.ndarray | None = None,
    n_boot: int = 500,
    ci_level: float = 0.95,
    seed: int = 0,
) -> CurveFit:
    """Fit ``form`` ('power', 'saturating', or 'joint' with ``d``) on the rows not in
    ``heldout`` (a boolean mask); R² on the held-out rows comes from that fit alone."""
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    d = None if d is None else np.asarray(d, np.float64)
    held = np.zeros(len(y), bool) if heldout is None else np.asarray(heldout, bool)
    fit_rows = ~held
    xs = [x] if d is None else [x, d]
    if np.any(~np.isfinite(y)) or any(np.any(~(v > 0)) for v in xs):
        raise SeqrecError("the fit needs finite y and positive x (and data) values in every row")
    names = {"power": ["a", "b"], "saturating": ["E", "A", "alpha"]}.get(
        form, ["E", "A", "B", "alpha", "beta"]
    )
    if form not in (*FORMS, "joint"):
        raise SeqrecError(f"unknown form {form!r}; use power, saturating or joint")
    if form == "joint" and d is None:
        raise SeqrecError("the joint form needs a data column")
    n = int(fit_rows.sum())
    if n < len(names) + 1:
        raise SeqrecError(
            f"the {form} law has {len(names)} parameters; fit it on at least {len(names) + 1} "
            f"runs (got {n} after holding out {int(held.sum())})"
        )
    if form == "power" and np.any(y <= 0):
        raise SeqrecError("the power form is fitted in log space and needs y > 0")
    fx = [v[fit_rows] for v in xs]
    fy = y[fit_rows]
    solve = (lambda w: power_fit(fx[0], fy, w)) if form == "power" else (
        lambda w: nonlinear_fit(fx, fy, w)
    )  # fmt: skip
    theta = solve(None)[0]
    res = CurveFit(form, {k: float(v) for k, v in zip(names, theta, strict=True)}, n_fit=n)
    res.r2 = _r2(fy, res.predict(*fx))
    if n_boot > 0:
        rng = np.random.default_rng(seed)
        res.ci = _ci(solve(_boot_weights(n, n_boot, rng)), names, ci_level)
    if held.any():
        pred = res.predict(*[v[held] for v in xs])
        res.heldout_pred, res.heldout_true = pred.tolist(), y[held].tolist()
        res.n_heldout = int(held.sum())
        res.r2_heldout = _r2(y[held], pred) if held.sum() >= 2 else None
    return res


def holdout_mask(
    spec: str, key: np.ndarray, seed: int = 0, ids: list[str] | None = None
) -> np.ndarray:
    """``none``, ``largest[:K]`` (the K rows with the largest ``key``; K defaults to a fifth)
    or ``random:K``.

    With ``ids`` (the runs' config hashes), ``random:K`` holds out the K runs whose
    sha256(seed:id) is smallest, so the choice does not depend on the table's row order: a
    sweep that adds runs or renames folders keeps the runs it held out before (unless a new
    run hashes lower). Without ids it draws K row positions."""
    n = len(key)
    mask = np.zeros(n, bool)
    name, _, count = spec.partition(":")
    if name == "none":
        return mask
    try:
        k = int(count) if count else max(1, round(n / 5))
    except ValueError:
        raise SeqrecError(f"--holdout {spec!r}: K must be an integer") from None
    if name not in ("largest", "random") or (name == "random" and not count):
        raise SeqrecError(f"--holdout {spec!r}: use none, largest, largest:K or random:K")
    if not 0 < k < n:
        raise SeqrecError(f"--holdout {spec!r}: K must be between 1 and {n - 1}")
    if name == "largest":
        mask[np.argsort(key, kind="stable")[-k:]] = True
    elif ids is not None:
        if len(ids) != n:
            raise ValueError(f"holdout_mask: {len(ids)} ids for {n} rows")
        draw = [hashlib.sha256(f"{seed}:{i}".encode()).hexdigest() for i in ids]
        mask[np.argsort(draw, kind="stable")[:k]] = True
    else:
        mask[np.random.default_rng(seed).choice(n, k, replace=False)] = True
    return mask


def compute_optimal(joint: CurveFit, budget: float, c_per_nd: float, minimise: bool) -> dict:
    """Chinchilla allocation for C = c * N * D: minimise |A| N^-a + |B| D^-b at fixed C.

    N* = (a|A| / (b|B|))^(1/(a+b)) * (C/c)^(b/(a+b)), D* = C / (c N*). Needs A and B of the
    sign that makes both terms hurt (A, B > 0 for a loss, < 0 for a metric)."""
    p = joint.params
    sign = 1.0 if minimise else -1.0
    A, B = sign * p["A"], sign * p["B"]
    if A <= 0 or B <= 0:
        raise SeqrecError(
            "the joint fit has a term that improves with less model or data (A or B of the wrong "
            "sign), so there is no compute-optimal interior point"
        )
    a, b = p["alpha"], p["beta"]
    nd = budget / c_per_nd
    n_opt = (a * A / (b * B)) ** (1 / (a + b)) * nd ** (b / (a + b))
    d_opt = nd / n_opt
    return {
        "budget_flops": budget,
        "flops_per_param_interaction": c_per_nd,
        "params": float(n_opt),
        "data": float(d_opt),
        "predicted": float(joint.predict(n_opt, d_opt)),
    }


def _law_rows(rows: list[dict]) -> list[dict]:
    """Sweep rows in the Performance Law's terms: tokens = the run's training interactions."""
    return [{**r, "tokens": r["train_tokens"]} for r in rows]


def _perf_law(
    rows: list[dict], held: np.ndarray, metric: str, law: str, form: str, seed: int, n_boot: int
):
    from seqrec.scaling.perf_law import data_term, fit_from_table

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
    """Leave-one-out over every run (``perf_law.cross_validate``), keyed by config hash."""
    from seqrec.scaling.perf_law import cross_validate

    try:
        cv = cross_validate(_law_rows(rows), metric, form, law=law, restarts=restarts, seed=seed)
    except SeqrecError as err:
        return {"error": str(err)}
    cv["config_hash"] = [r["config_hash"] for r in rows]
    return cv


def load_rows(path: Path, model: str | None = None) -> list[dict]:
    from seqrec.scaling.sweep import read_table

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
    if perf_law and y != "train_loss":
        out["perf_law"] = _perf_law(rows, held, y, law, data_form, seed, perf_law_boot)
        if perf_law_cv and "error" not in out["perf_law"]:
            out["perf_law"]["cv"] = _perf_law_cv(rows, y, law, data_form, seed, cv_restarts)
    out["_plot"] = {"x": xv, "y": yv, "held": held, "model": [r["model"] for r in rows]}
    return out


def plot_fit(report: dict[str, Any], path: Path) -> None:
    """Runs (one colour per model family, held-out ones hollow) with the fitted curve on a log
    x axis, and predicted vs measured for the held-out runs."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise SeqrecError("--plot needs matplotlib: `pip install matplotlib`") from None
    data, curve = report["_plot"], report["curve"]
    fit = CurveFit(curve["form"], curve["params"])
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4.5))
    families = sorted(set(data["model"]))
    colours = plt.get_cmap("tab10")
    model = np.array(data["model"])
    for i, fam in enumerate(families):
        sel = model == fam
        for held, face in ((False, colours(i)), (True, "none")):
            pick = sel & (data["held"] == held)
            if pick.any():
                ax.scatter(data["x"][pick], data["y"][pick], edgecolors=colours(i),
                           facecolors=face, label=fam + (" (held out)" if held else ""))  # fmt: skip
    grid = np.geomspace(data["x"].min(), data["x"].max(), 200)
    ax.plot(grid, fit.predict(grid), "k-", lw=1, label=f"{curve['form']} fit")
    ax.set_xscale("log")
    ax.set_xlabel(report["x"])
    ax.set_ylabel(report["y"])
    ax.legend(fontsize=8)
    ax.set_title(f"R² fit {curve['r2']:.3f}, held-out {_fmt(curve['r2_heldout'])}")
    pts = [("curve", curve["heldout_pred"], curve["heldout_true"])]
    pl = report.get("perf_law", {})
    if pl.get("heldout"):
        pts.append(("Performance Law", [h["predicted"] for h in pl["heldout"]],
                    [h["measured"] for h in pl["heldout"]]))  # fmt: skip
    for name, pred, true in pts:
        if pred:
            bx.scatter(true, pred, label=name)
    lims = [float(np.min(data["y"])), float(np.max(data["y"]))]
    bx.plot(lims, lims, "k--", lw=1)
    bx.set_xlabel(f"measured {report['y']}")
    bx.set_ylabel("predicted")
    bx.set_title("held-out runs")
    bx.legend(fontsize=8)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.3f}"
