"""The Performance Law (Shen et al., arXiv 2412.00430): a recommender's metric as a function of
layers N, embedding width d and a data term D' built from the token count and ApEn.

Two laws (METHODS.md §8.3):

- ``law="seed"`` (default), the write-up's form with 7 parameters (w1..w5, p, p2):
      y = w1 (ln N + p / N^w3) + w2 (ln d + p / d^w4) + ln D' + p2 / D'^w5
- ``law="code"``, the fitting script's family with p_f1 = p_f2 = 2 and an intercept
  (6 parameters w1..w5, b; the script fits D itself, here D' is computed):
      y = w1 (-1/(2 N^w3) - w3 ln N) + w2 (-1/(2 d^w4) - w4 ln d) + (-1/(2 D'^w5) - w5 ln D') + b

The data term (``data_term``): ``form="multiply"`` D' = tokens * ApEn (the arXiv write-up and its
summaries) or ``form="divide"`` D' = tokens / ApEn (the P-Law README). The sources conflict and
neither is verified as "the paper's"; both are a switch here. ApEn must be > 0: `[PL]` averages
|ApEn| per user, so pass ``absolute=True`` to the ApEn tools when building D'.

Fitting: ``scipy.optimize.least_squares`` (trf, bounds on the exponents w3..w5 in [0, 5]) from
several starts. Every start draws the nonlinear parameters and solves the parameters that enter
linearly (w1, w2, p2 or b) by linear least squares, so each start begins at the best point of
its slice; the best final cost wins. Confidence intervals resample runs (rows) with replacement
and refit (percentile bootstrap).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from seqrec.errors import SeqrecError

FORMS = ("multiply", "divide")
LAWS = ("seed", "code")
EXP_BOUNDS = (0.0, 5.0)
MAX_NFEV = 1000  # per start; good starts converge in a few hundred evaluations at most


def data_term(tokens, apen, form: str = "multiply") -> np.ndarray:
    """D' from token counts and (positive) ApEn: tokens * ApEn or tokens / ApEn."""
    if form not in FORMS:
        raise SeqrecError(f"unknown data-term form {form!r}; use one of {', '.join(FORMS)}")
    t = _as_float("tokens", tokens)
    a = _as_float("apen", apen)
    if np.any(t <= 0):
        raise SeqrecError("tokens must be > 0")
    if np.any(a <= 0):
        raise SeqrecError(
            "ApEn must be > 0 to build D' (got a value <= 0); `[PL]` averages |ApEn| per user: "
            "compute it with absolute=True (seqrec apen --absolute)"
        )
    return t * a if form == "multiply" else t / a


def _as_float(name: str, values) -> np.ndarray:
    try:
        arr = np.atleast_1d(np.asarray(values, dtype=np.float64))
    except (TypeError, ValueError):
        raise SeqrecError(f"{name} must be numbers") from None
    if arr.ndim != 1:
        raise SeqrecError(f"{name} must be one-dimensional, got shape {arr.shape}")
    bad = np.flatnonzero(~np.isfinite(arr))
    if len(bad):
        raise SeqrecError(f"{name} has a NaN or infinite value at position {int(bad[0])}")
    return arr


# ----------------------------------------------------------------------------------- the laws


def _seed(theta: np.ndarray, n, d, big_d) -> np.ndarray:
    w1, w2, w3, w4, w5, p, p2 = theta
    return (
        w1 * (np.log(n) + p * n**-w3)
        + w2 * (np.log(d) + p * d**-w4)
        + np.log(big_d)
        + p2 * big_d**-w5
    )


def _seed_jac(theta: np.ndarray, n, d, big_d) -> np.ndarray:
    w1, w2, w3, w4, w5, p, p2 = theta
    nw, dw, bw = n**-w3, d**-w4, big_d**-w5
    ln_n, ln_d, ln_b = np.log(n), np.log(d), np.log(big_d)
    return np.stack(
        [
            ln_n + p * nw,
            ln_d + p * dw,
            -w1 * p * nw * ln_n,
            -w2 * p * dw * ln_d,
            -p2 * bw * ln_b,
            w1 * nw + w2 * dw,
            bw,
        ],
        axis=1,
    )


def _seed_linear(nl: dict[str, float], n, d, big_d, y) -> dict[str, float]:
    p, w3, w4, w5 = nl["p"], nl["w3"], nl["w4"], nl["w5"]
    cols = np.stack([np.log(n) + p * n**-w3, np.log(d) + p * d**-w4, big_d**-w5], axis=1)
    coef = np.linalg.lstsq(cols, y - np.log(big_d), rcond=None)[0]
    return {"w1": coef[0], "w2": coef[1], "p2": coef[2]}


def _code(theta: np.ndarray, n, d, big_d) -> np.ndarray:
    w1, w2, w3, w4, w5, b = theta
    return (
        w1 * (-0.5 * n**-w3 - w3 * np.log(n))
        + w2 * (-0.5 * d**-w4 - w4 * np.log(d))
        + (-0.5 * big_d**-w5 - w5 * np.log(big_d))
        + b
    )


def _code_jac(theta: np.ndarray, n, d, big_d) -> np.ndarray:
    w1, w2, w3, w4, w5, _ = theta
    nw, dw, bw = n**-w3, d**-w4, big_d**-w5
    ln_n, ln_d, ln_b = np.log(n), np.log(d), np.log(big_d)
    return np.stack(
        [
            -0.5 * nw - w3 * ln_n,
            -0.5 * dw - w4 * ln_d,
            w1 * (0.5 * nw * ln_n - ln_n),
            w2 * (0.5 * dw * ln_d - ln_d),
            0.5 * bw * ln_b - ln_b,
            np.ones_like(n),
        ],
        axis=1,
    )


def _code_linear(nl: dict[str, float], n, d, big_d, y) -> dict[str, float]:
    w3, w4, w5 = nl["w3"], nl["w4"], nl["w5"]
    cols = np.stack(
        [
            -0.5 * n**-w3 - w3 * np.log(n),
            -0.5 * d**-w4 - w4 * np.log(d),
            np.ones_like(n),
        ],
        axis=1,
    )
    target = y - (-0.5 * big_d**-w5 - w5 * np.log(big_d))
    coef = np.linalg.lstsq(cols, target, rcond=None)[0]
    return {"w1": coef[0], "w2": coef[1], "b": coef[2]}


@dataclass(frozen=True)
class _Law:
    names: tuple[str, ...]
    fn: Any
    jac: Any
    linear: Any
    nonlinear: tuple[str, ...]  # drawn at random for each start; the rest solved linearly

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        lo = np.array([EXP_BOUNDS[0] if k in ("w3", "w4", "w5") else -np.inf for k in self.names])
        hi = np.array([EXP_BOUNDS[1] if k in ("w3", "w4", "w5") else np.inf for k in self.names])
        return lo, hi


_LAWS = {
    "seed": _Law(
        ("w1", "w2", "w3", "w4", "w5", "p", "p2"),
        _seed,
        _seed_jac,
        _seed_linear,
        ("w3", "w4", "w5", "p"),
    ),
    "code": _Law(
        ("w1", "w2", "w3", "w4", "w5", "b"), _code, _code_jac, _code_linear, ("w3", "w4", "w5")
    ),
}


def _law(law: str) -> _Law:
    if law not in _LAWS:
        raise SeqrecError(f"unknown Performance Law form {law!r}; use one of {', '.join(LAWS)}")
    return _LAWS[law]


def performance_law(layers, hidden, data, params: dict[str, float], law: str = "seed"):
    """Predicted metric for arrays of N (layers), d (hidden) and D' with the given parameters."""
    spec = _law(law)
    missing = [k for k in spec.names if k not in params]
    if missing:
        raise SeqrecError(f"law {law!r} needs parameters {', '.join(missing)}")
    n, d, big_d = _check_xyz(layers, hidden, data)
    theta = np.array([params[k] for k in spec.names], dtype=np.float64)
    return spec.fn(theta, n, d, big_d)


def _check_xyz(layers, hidden, data) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n, d, big_d = (
        _as_float(k, v) for k, v in (("layers", layers), ("hidden", hidden), ("D'", data))
    )
    n, d, big_d = np.broadcast_arrays(n, d, big_d)
    if np.any(n < 1) or np.any(d < 1):
        raise SeqrecError("layers and hidden must be >= 1")
    if np.any(big_d <= 0):
        raise SeqrecError("the data term D' must be > 0")
    return n.astype(np.float64), d.astype(np.float64), big_d.astype(np.float64)


# ---------------------------------------------------------------------------------- fitting


class BestShape(NamedTuple):
    layers: int
    hidden: int
    predicted: float


@dataclass(frozen=True)
class PerfLawFit:
    """Fitted parameters, goodness of fit and bootstrap intervals."""

    law: str
    params: dict[str, float]
    r2: float
    rmse: float
    n_points: int
    r2_heldout: float | None = None
    n_heldout: int = 0
    ci: dict[str, tuple[float, float]] | None = None
    ci_level: float = 0.95
    n_boot: int = 0
    form: str | None = None
    metric: str | None = None
    warnings: list[str] = field(default_factory=list)

    def predict(self, layers, hidden, data) -> np.ndarray:
        """Predicted metric at N = layers, d = hidden, D' = data (arrays broadcast)."""
        return performance_law(layers, hidden, data, self.params, self.law)

    def best_shape(self, layers: Sequence[int], hidden: Sequence[int], data: float) -> BestShape:
        """The (layers, hidden) candidate pair with the highest predicted metric at D' = data."""
        return best_shape(self, layers, hidden, data)

    def to_dict(self) -> dict[str, Any]:
        return {
            "law": self.law,
            "form": self.form,
            "metric": self.metric,
            "params": dict(self.params),
            "r2": self.r2,
            "rmse": self.rmse,
            "n_points": self.n_points,
            "r2_heldout": self.r2_heldout,
            "n_heldout": self.n_heldout,
            "ci": None if self.ci is None else {k: list(v) for k, v in self.ci.items()},
            "ci_level": self.ci_level,
            "n_boot": self.n_boot,
            "warnings": list(self.warnings),
        }


def predict(fit: PerfLawFit, layers, hidden, data) -> np.ndarray:
    return fit.predict(layers, hidden, data)


def best_shape(
    fit: PerfLawFit, layers: Sequence[int], hidden: Sequence[int], data: float
) -> BestShape:
    """Grid search over the candidate N and d lists; ties go to the smaller (N, d)."""
    ls = sorted({int(v) for v in layers})
    hs = sorted({int(v) for v in hidden})
    if not ls or not hs:
        raise SeqrecError("best_shape needs at least one candidate for layers and for hidden")
    grid_n, grid_d = np.meshgrid(np.array(ls, float), np.array(hs, float), indexing="ij")
    pred = fit.predict(grid_n.ravel(), grid_d.ravel(), np.full(grid_n.size, float(data)))
    i = int(np.argmax(pred))
    return BestShape(int(grid_n.ravel()[i]), int(grid_d.ravel()[i]), float(pred[i]))


def _r2(y: np.ndarray, pred: np.ndarray) -> float:
    ss_tot = float(((y - y.mean()) ** 2).sum())
    ss_res = float(((y - pred) ** 2).sum())
    return 1.0 - ss_res / ss_tot if ss_tot > 0 else (1.0 if ss_res == 0 else -math.inf)


def _draw_nonlinear(rng: np.random.Generator, names: tuple[str, ...], first: bool) -> dict:
    if first:
        return {k: (0.5 if k.startswith("w") else 1.0) for k in names}
    out = {}
    for k in names:
        if k.startswith("w"):
            out[k] = float(rng.uniform(0.05, 2.0))
        else:  # p: either sign, magnitudes 0.1 .. 100
            out[k] = float(rng.choice([-1.0, 1.0]) * 10 ** rng.uniform(-1, 2))
    return out


def _solve(
    spec: _Law, n, d, big_d, y, starts: list[np.ndarray], max_nfev: int = MAX_NFEV
) -> tuple[np.ndarray, float]:
    try:
        from scipy.optimize import least_squares
    except ImportError:
        raise SeqrecError("fitting the Performance Law needs scipy: `pip install scipy`") from None

    lo, hi = spec.bounds()
    best, best_cost = None, math.inf

    def resid(theta):
        return spec.fn(theta, n, d, big_d) - y

    def jac(theta):
        return spec.jac(theta, n, d, big_d)

    for x0 in starts:
        x0 = np.clip(x0, lo + 1e-9 * np.isfinite(lo), hi - 1e-9 * np.isfinite(hi))
        with np.errstate(all="ignore"):
            try:
                sol = least_squares(
                    resid,
                    x0,
                    jac=jac,
                    bounds=(lo, hi),
                    method="trf",
                    x_scale="jac",
                    max_nfev=max_nfev,
                    xtol=1e-12,
                    ftol=1e-12,
                    gtol=1e-12,
                )
            except ValueError:  # non-finite residuals at the start
                continue
        if np.all(np.isfinite(sol.x)) and sol.cost < best_cost:
            best, best_cost = sol.x, float(sol.cost)
    if best is None:
        raise SeqrecError("the Performance Law fit failed from every start (non-finite values)")
    return best, best_cost


def _starts(spec: _Law, n, d, big_d, y, rng, restarts: int) -> list[np.ndarray]:
    starts = []
    for i in range(restarts):
        nl = _draw_nonlinear(rng, spec.nonlinear, first=i == 0)
        with np.errstate(all="ignore"):
            lin = spec.linear(nl, n, d, big_d, y)
        theta = np.array([{**nl, **lin}[k] for k in spec.names], dtype=np.float64)
        if np.all(np.isfinite(theta)):
            starts.append(theta)
    return starts


def fit(
    layers,
    hidden,
    data,
    metric,
    *,
    law: str = "seed",
    restarts: int = 8,
    n_boot: int = 200,
    ci_level: float = 0.95,
    seed: int = 0,
    heldout: tuple | None = None,
    form: str | None = None,
    metric_name: str | None = None,
) -> PerfLawFit:
    """Fit the law to points (N, d, D', y). ``heldout=(N, d, D', y)`` adds an R² on those points.

    ``n_boot`` bootstrap refits (rows resampled with replacement, started from the full-data
    solution) give percentile intervals at ``ci_level``; ``n_boot=0`` skips them.
    """
    spec = _law(law)
    n, d, big_d = _check_xyz(layers, hidden, data)
    y = _as_float("metric", metric)
    if len(y) != len(n):
        raise SeqrecError(f"got {len(n)} (N, d, D') points but {len(y)} metric values")
    k = len(spec.names)
    if len(y) < k:
        raise SeqrecError(
            f"the {law!r} Performance Law has {k} parameters ({', '.join(spec.names)}) but only "
            f"{len(y)} points were given; fit at least {k} runs"
        )
    if restarts < 1:
        raise SeqrecError("restarts must be >= 1")
    if not 0 < ci_level < 1:
        raise SeqrecError("ci_level must be in (0, 1)")
    warnings = []
    for name, arr in (("layers", n), ("hidden", d), ("D'", big_d)):
        if len(np.unique(arr)) < 3:
            warnings.append(
                f"{name} takes fewer than 3 distinct values: its exponent and offset are "
                "poorly identified (wide intervals)"
            )
    if len(y) == k:
        warnings.append("as many points as parameters: the fit interpolates (R² = 1 by design)")
    rng = np.random.default_rng(seed)
    theta, _ = _solve(spec, n, d, big_d, y, _starts(spec, n, d, big_d, y, rng, restarts))
    pred = spec.fn(theta, n, d, big_d)
    params = {name: float(v) for name, v in zip(spec.names, theta, strict=True)}

    r2_held, n_held = None, 0
    if heldout is not None:
        try:
            hn, hd, hD, hy = heldout
        except (TypeError, ValueError):
            raise SeqrecError("heldout must be a tuple (layers, hidden, D', metric)") from None
        hn, hd, hD = _check_xyz(hn, hd, hD)
        hy = _as_float("held-out metric", hy)
        if len(hy) != len(hn):
            raise SeqrecError(f"held-out: {len(hn)} points but {len(hy)} metric values")
        r2_held, n_held = _r2(hy, spec.fn(theta, hn, hd, hD)), len(hy)

    ci = None
    if n_boot > 0:
        draws = []
        for _ in range(n_boot):
            idx = rng.integers(0, len(y), len(y))
            try:  # one start, from the full-data solution
                draws.append(_solve(spec, n[idx], d[idx], big_d[idx], y[idx], [theta])[0])
            except SeqrecError:
                continue
        if draws:
            arr = np.array(draws)
            a = (1 - ci_level) / 2
            lo, hi = np.quantile(arr, [a, 1 - a], axis=0)
            ci = {name: (float(lo[i]), float(hi[i])) for i, name in enumerate(spec.names)}
            if len(draws) < n_boot:
                warnings.append(f"{n_boot - len(draws)} bootstrap refits failed and were dropped")
    return PerfLawFit(
        law=law,
        params=params,
        r2=_r2(y, pred),
        rmse=float(np.sqrt(np.mean((y - pred) ** 2))),
        n_points=len(y),
        r2_heldout=r2_held,
        n_heldout=n_held,
        ci=ci,
        ci_level=ci_level,
        n_boot=n_boot,
        form=form,
        metric=metric_name,
        warnings=warnings,
    )


_ROW_KEYS = ("layers", "hidden", "tokens", "apen")


def _table(rows: list[dict], metric: str, form: str, what: str):
    if not isinstance(rows, (list, tuple)) or not rows:
        raise SeqrecError(f"{what} must be a non-empty list of dicts")
    cols: dict[str, list] = {k: [] for k in (*_ROW_KEYS, metric)}
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise SeqrecError(f"{what}[{i}] is not a dict")
        missing = [k for k in cols if k not in row]
        if missing:
            raise SeqrecError(
                f"{what}[{i}] lacks {', '.join(missing)} (each row needs "
                f"{', '.join((*_ROW_KEYS, metric))})"
            )
        for k in cols:
            v = row[k]
            try:
                v = float(v)
            except (TypeError, ValueError):
                raise SeqrecError(f"{what}[{i}].{k} is not a number: {v!r}") from None
            if not math.isfinite(v):
                raise SeqrecError(f"{what}[{i}].{k} is {v} (NaN or infinite)")
            cols[k].append(v)
    arrs = {k: np.array(v) for k, v in cols.items()}
    big_d = data_term(arrs["tokens"], arrs["apen"], form)
    return arrs["layers"], arrs["hidden"], big_d, arrs[metric]


def fit_from_table(
    rows: list[dict],
    metric: str,
    form: str = "multiply",
    *,
    law: str = "seed",
    heldout_rows: list[dict] | None = None,
    **kwargs,
) -> PerfLawFit:
    """Fit from run records: dicts with ``layers``, ``hidden``, ``tokens``, ``apen`` and ``metric``.

    D' = data_term(tokens, apen, form). Other keyword arguments go to `fit`.
    """
    if form not in FORMS:
        raise SeqrecError(f"unknown data-term form {form!r}; use one of {', '.join(FORMS)}")
    n, d, big_d, y = _table(rows, metric, form, "rows")
    heldout = None
    if heldout_rows is not None:
        heldout = _table(heldout_rows, metric, form, "heldout_rows")
    return fit(n, d, big_d, y, law=law, heldout=heldout, form=form, metric_name=metric, **kwargs)


def cross_validate(
    rows: list[dict],
    metric: str,
    form: str = "multiply",
    *,
    law: str = "seed",
    restarts: int = 8,
    seed: int = 0,
) -> dict:
    """Leave-one-out: every run predicted by the law fitted to all the other runs.

    A handful of held-out runs gives an R² that swings with which runs were drawn (on our
    Beauty sweep one draw of 3 gave 0.90 and another 0.33); holding out each run once uses
    every run as a test point and has no draw to depend on. Returns the out-of-fold
    predictions, the measured values, and their R² and mean absolute error."""
    if len(rows) < len(_law(law).names) + 2:
        raise SeqrecError(
            f"leave-one-out needs at least {len(_law(law).names) + 2} runs for the {law!r} law; "
            f"got {len(rows)}"
        )
    n, d, big_d, y = _table(rows, metric, form, "rows")
    pred = np.empty(len(rows))
    for i in range(len(rows)):
        rest = rows[:i] + rows[i + 1 :]
        res = fit_from_table(rest, metric, form, law=law, restarts=restarts, seed=seed, n_boot=0)
        pred[i] = res.predict(n[i : i + 1], d[i : i + 1], big_d[i : i + 1])[0]
    return {
        "predicted": pred.tolist(),
        "measured": y.tolist(),
        "r2_cv": _r2(y, pred),
        "mae_cv": float(np.abs(y - pred).mean()),
    }
