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

Each law comes with its Jacobian and with the solve of its linear parameters for fixed
nonlinear ones (`Law`), which is what the fitting in `perf_law` starts from.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from seqrec.errors import SeqrecError

FORMS = ("multiply", "divide")
LAWS = ("seed", "code")
EXP_BOUNDS = (0.0, 5.0)


def data_term(tokens, apen, form: str = "multiply") -> np.ndarray:
    """D' from token counts and (positive) ApEn: tokens * ApEn or tokens / ApEn."""
    if form not in FORMS:
        raise SeqrecError(f"unknown data-term form {form!r}; use one of {', '.join(FORMS)}")
    t = as_float("tokens", tokens)
    a = as_float("apen", apen)
    if np.any(t <= 0):
        raise SeqrecError("tokens must be > 0")
    if np.any(a <= 0):
        raise SeqrecError(
            "ApEn must be > 0 to build D' (got a value <= 0); `[PL]` averages |ApEn| per user: "
            "compute it with absolute=True (seqrec apen --absolute)"
        )
    return t * a if form == "multiply" else t / a


def as_float(name: str, values) -> np.ndarray:
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
class Law:
    """One law: parameter names, the function and its Jacobian in those names' order, and the
    least-squares solve of the linear parameters given the ``nonlinear`` ones (fit starts)."""

    names: tuple[str, ...]
    fn: Any
    jac: Any
    linear: Any
    nonlinear: tuple[str, ...]  # drawn at random for each start; the rest solved linearly

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Exponents w3..w5 in EXP_BOUNDS; the other parameters unbounded."""
        lo = np.array([EXP_BOUNDS[0] if k in ("w3", "w4", "w5") else -np.inf for k in self.names])
        hi = np.array([EXP_BOUNDS[1] if k in ("w3", "w4", "w5") else np.inf for k in self.names])
        return lo, hi


_LAWS = {
    "seed": Law(
        ("w1", "w2", "w3", "w4", "w5", "p", "p2"),
        _seed,
        _seed_jac,
        _seed_linear,
        ("w3", "w4", "w5", "p"),
    ),
    "code": Law(
        ("w1", "w2", "w3", "w4", "w5", "b"), _code, _code_jac, _code_linear, ("w3", "w4", "w5")
    ),
}


def get_law(law: str) -> Law:
    """The law named ``law``; an unknown name is a one-line error listing the choices."""
    if law not in _LAWS:
        raise SeqrecError(f"unknown Performance Law form {law!r}; use one of {', '.join(LAWS)}")
    return _LAWS[law]


def performance_law(layers, hidden, data, params: dict[str, float], law: str = "seed"):
    """Predicted metric for arrays of N (layers), d (hidden) and D' with the given parameters."""
    spec = get_law(law)
    missing = [k for k in spec.names if k not in params]
    if missing:
        raise SeqrecError(f"law {law!r} needs parameters {', '.join(missing)}")
    n, d, big_d = check_xyz(layers, hidden, data)
    theta = np.array([params[k] for k in spec.names], dtype=np.float64)
    return spec.fn(theta, n, d, big_d)


def check_xyz(layers, hidden, data) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n, d, big_d = (
        as_float(k, v) for k, v in (("layers", layers), ("hidden", hidden), ("D'", data))
    )
    n, d, big_d = np.broadcast_arrays(n, d, big_d)
    if np.any(n < 1) or np.any(d < 1):
        raise SeqrecError("layers and hidden must be >= 1")
    if np.any(big_d <= 0):
        raise SeqrecError("the data term D' must be > 0")
    return n.astype(np.float64), d.astype(np.float64), big_d.astype(np.float64)
