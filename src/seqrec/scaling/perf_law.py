"""Fitting the Performance Law (`perf_law_forms`) to points (N, d, D', y).

``scipy.optimize.least_squares`` (trf, bounds on the exponents w3..w5 in [0, 5]) from
several starts. Every start draws the nonlinear parameters and solves the parameters that enter
linearly (w1, w2, p2 or b) by linear least squares, so each start begins at the best point of
its slice; the best final cost wins. Confidence intervals resample runs (rows) with replacement
and refit (percentile bootstrap). Fitting from run records and leave-one-out scoring are in
`perf_law_table`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from seqrec.errors import SeqrecError
from seqrec.scaling.perf_law_forms import Law, as_float, check_xyz, get_law, performance_law

MAX_NFEV = 1000  # per start; good starts converge in a few hundred evaluations at most


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
    spec: Law, n, d, big_d, y, starts: list[np.ndarray], max_nfev: int = MAX_NFEV
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


def _starts(spec: Law, n, d, big_d, y, rng, restarts: int) -> list[np.ndarray]:
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
    spec = get_law(law)
    n, d, big_d = check_xyz(layers, hidden, data)
    y = as_float("metric", metric)
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
    warnings = _identification_warnings(n, d, big_d, len(y), k)
    rng = np.random.default_rng(seed)
    theta, _ = _solve(spec, n, d, big_d, y, _starts(spec, n, d, big_d, y, rng, restarts))
    pred = spec.fn(theta, n, d, big_d)
    params = {name: float(v) for name, v in zip(spec.names, theta, strict=True)}

    r2_held, n_held = (None, 0) if heldout is None else _heldout_r2(spec, theta, heldout)
    ci = None
    if n_boot > 0:
        ci = _bootstrap_ci(spec, (n, d, big_d, y), theta, rng, n_boot, ci_level, warnings)
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


def _identification_warnings(n, d, big_d, n_points: int, k: int) -> list[str]:
    """What makes the fit's parameters poorly determined, said up front rather than left to
    show as wide intervals."""
    warnings = []
    for name, arr in (("layers", n), ("hidden", d), ("D'", big_d)):
        if len(np.unique(arr)) < 3:
            warnings.append(
                f"{name} takes fewer than 3 distinct values: its exponent and offset are "
                "poorly identified (wide intervals)"
            )
    if n_points == k:
        warnings.append("as many points as parameters: the fit interpolates (R² = 1 by design)")
    return warnings


def _heldout_r2(spec: Law, theta: np.ndarray, heldout) -> tuple[float, int]:
    """R² of the fitted law on ``heldout = (N, d, D', y)`` and the number of those points."""
    try:
        hn, hd, hD, hy = heldout
    except (TypeError, ValueError):
        raise SeqrecError("heldout must be a tuple (layers, hidden, D', metric)") from None
    hn, hd, hD = check_xyz(hn, hd, hD)
    hy = as_float("held-out metric", hy)
    if len(hy) != len(hn):
        raise SeqrecError(f"held-out: {len(hn)} points but {len(hy)} metric values")
    return _r2(hy, spec.fn(theta, hn, hd, hD)), len(hy)


def _bootstrap_ci(
    spec: Law,
    points: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    theta: np.ndarray,
    rng: np.random.Generator,
    n_boot: int,
    ci_level: float,
    warnings: list[str],
) -> dict[str, tuple[float, float]] | None:
    """Percentile intervals from ``n_boot`` refits on rows resampled with replacement, each
    started from the full-data solution ``theta``; refits that fail are dropped (and counted in
    ``warnings``). None when every refit failed."""
    n, d, big_d, y = points
    draws = []
    for _ in range(n_boot):
        idx = rng.integers(0, len(y), len(y))
        try:  # one start, from the full-data solution
            draws.append(_solve(spec, n[idx], d[idx], big_d[idx], y[idx], [theta])[0])
        except SeqrecError:
            continue
    if not draws:
        return None
    arr = np.array(draws)
    a = (1 - ci_level) / 2
    lo, hi = np.quantile(arr, [a, 1 - a], axis=0)
    if len(draws) < n_boot:
        warnings.append(f"{n_boot - len(draws)} bootstrap refits failed and were dropped")
    return {name: (float(lo[i]), float(hi[i])) for i, name in enumerate(spec.names)}
