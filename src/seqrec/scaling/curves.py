"""One scaling law fitted to arrays: power, saturating or joint, with bootstrap intervals and a
held-out R², plus the hold-out choice and the Chinchilla compute-optimal allocation.

Forms (x = parameters, non-embedding parameters, training FLOPs or training interactions):

- ``power``: y = a * x^b, fitted as a line in log-log space (closed form; needs y > 0).
- ``saturating``: y = E + A * x^(-alpha). For a loss A > 0 and E is the irreducible loss; for
  a metric A < 0 and E is the ceiling it approaches (1 - metric then falls as a power law).
- ``joint`` (Chinchilla-style, when parameters and data both vary):
  y = E + A * N^(-alpha) + B * D^(-beta), N = parameters (or the chosen parameter column),
  D = training interactions kept (``train_tokens``).

The solvers are in `curve_solvers`. Held-out R² uses only the held-out rows, with a fit on the
rest.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from seqrec.errors import SeqrecError
from seqrec.scaling.curve_solvers import boot_weights, nonlinear_fit, power_fit
from seqrec.scaling.perf_law import _r2

FORMS = ("power", "saturating")


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
        res.ci = _ci(solve(boot_weights(n, n_boot, rng)), names, ci_level)
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
