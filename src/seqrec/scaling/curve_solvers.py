"""The solvers behind `curves.fit_curve`: a closed-form log-log line and variable projection.

Nonlinear fits use variable projection: for fixed exponents the coefficients enter linearly, so
a grid of exponents is solved in closed form (batched normal equations) and the best grid point
starts ``scipy.optimize.least_squares``. Bootstrap intervals resample runs with replacement; the
resamples are drawn at once as a [B, n] multiplicity matrix, so the log-log fit and the
exponent-grid search are single batched numpy operations; each nonlinear resample is then
polished from its grid optimum.

Numpy only at import time; scipy is imported when a nonlinear fit is polished.
"""

from __future__ import annotations

import numpy as np

EXP_LO, EXP_HI = 1e-3, 5.0
_GRID_1D = np.linspace(0.01, 3.0, 300)
_GRID_2D = np.linspace(0.02, 3.0, 50)


def boot_weights(n: int, n_boot: int, rng: np.random.Generator) -> np.ndarray:
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
