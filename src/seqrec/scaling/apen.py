"""Approximate Entropy (ApEn, Pincus 1991) of users' item sequences, as used by the Performance Law.

For a sequence x_1..x_n, template length m and tolerance r (METHODS.md §8.1):

    C_i^m(r) = |{j : max_k |x_{i+k} - x_{j+k}| <= r}| / (n - m + 1)     (self-matches counted)
    Phi^m(r) = mean_i ln C_i^m(r)
    ApEn(m, r) = Phi^m(r) - Phi^{m+1}(r)

Defaults follow `[PL]` `ApEN_count.py` (METHODS.md §8.2): the raw integer item ids of each user's
last ``last_n`` items (the script sweeps 25 and 50; the backbone uses L = 50, so 50 here), m = 2
(script header / README). `[PL]` sets r = 0.2; on integer ids every r in [0, 1) is an exact
m-gram match, so the default r = 0 gives the same numbers and says what it means. Which (m, r)
the paper reports is not verified. Note: a user whose last n items hold no repeated m-gram has
ApEn = ln((n-m)/(n-m+1)) exactly, a function of n alone; with r < 1 this is every user of a
dataset without repeat consumption (MovieLens, the S3Rec/SASRec Amazon and LastFM files). An r >= 1 compares id *differences*, which depend on how ids
were numbered (ours are 1..N in sorted original-id order, `[PL]` read generative-recommenders'
ids), so such values are not comparable across pipelines.

Differences from `[PL]`'s code, on purpose: users with fewer than m + 1 items are skipped and
counted (the script averages them in as 0), and the signed value is returned unless
``absolute=True`` (the script returns |Phi^{m+1} - Phi^m|; the signed value can be slightly
negative for short, regular sequences).

Vectorised: users are grouped by their (truncated) length n, and a group is one batched boolean
[G, rows, n - m + 1] match computation (rows = templates; split into row blocks when one sequence
alone exceeds the element budget), so memory stays bounded by ``max_elements``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from seqrec.errors import SeqrecError

DEFAULT_M = 2
DEFAULT_R = 0.0
DEFAULT_LAST_N = 50
MAX_ELEMENTS = 1 << 23  # pairwise comparisons held at once (~8 M: ~70 MB with float temporaries)


@dataclass(frozen=True)
class ApEnResult:
    """Per-user ApEn values (row indices ``users`` into the CSR arrays) and their summary."""

    values: np.ndarray
    users: np.ndarray
    n_skipped: int
    params: dict[str, Any]
    seconds: float = 0.0
    dataset: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def n_users(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return float(self.values.mean()) if len(self.values) else math.nan

    @property
    def std(self) -> float:
        """Population standard deviation across users (ddof = 0)."""
        return float(self.values.std()) if len(self.values) else math.nan

    def summary(self) -> dict[str, Any]:
        """JSON-friendly summary (no per-user arrays)."""
        return {
            "dataset": self.dataset,
            "users_used": self.n_users,
            "users_skipped": self.n_skipped,
            "mean": self.mean,
            "std": self.std,
            "negative_users": int((self.values < 0).sum()),
            "params": dict(self.params),
            "seconds": self.seconds,
            **self.extra,
        }


def _check_params(m: int, r: float, last_n: int | None) -> None:
    if isinstance(m, bool) or not isinstance(m, (int, np.integer)) or m < 1:
        raise SeqrecError(f"ApEn template length m must be an integer >= 1, got {m!r}")
    if not isinstance(r, (int, float, np.number)) or not math.isfinite(r) or r < 0:
        raise SeqrecError(
            f"ApEn tolerance r must be a finite number >= 0, got {r!r} "
            "(r < 0 matches nothing, not even a template with itself)"
        )
    if last_n is not None and (isinstance(last_n, bool) or last_n < m + 1):
        raise SeqrecError(
            f"last_n={last_n!r} keeps too few items for m={m}: use last_n >= m + 1 = {m + 1}, "
            "or None / 0 for whole sequences"
        )


def _match_fn(dtype: np.dtype, r: float):
    """Elementwise |a - b| <= r as a broadcasting function; exact equality when it is the same."""
    if np.issubdtype(dtype, np.integer):
        thr = math.floor(r)
        if thr == 0:
            return np.equal
        return lambda a, b: np.abs(a.astype(np.int64) - b.astype(np.int64)) <= thr
    return lambda a, b: np.abs(a - b) <= r


def _log_mean(counts: np.ndarray, denom: int) -> np.ndarray:
    """Phi = mean_i ln(count_i / denom) for counts [G, rows]."""
    return np.log(counts / denom).mean(axis=1)


def _apen_equal_length(
    x: np.ndarray, m: int, r: float, max_elements: int = MAX_ELEMENTS
) -> np.ndarray:
    """ApEn of every row of x [G, n] (n >= m + 1), batched; returns [G] float64."""
    g, n = x.shape
    lm = n - m + 1  # number of m-templates
    l1 = n - m  # number of (m+1)-templates
    match = _match_fn(x.dtype, r)
    counts_m = np.empty((g, lm), dtype=np.int64)
    counts_1 = np.empty((g, l1), dtype=np.int64)
    # rows per block for one sequence, then sequences per block
    rows = max(1, min(lm, max_elements // lm))
    per = max(1, max_elements // (rows * lm)) if rows == lm else 1
    for g0 in range(0, g, per):
        xs = x[g0 : g0 + per]
        for a in range(0, lm, rows):
            b = min(lm, a + rows)
            # m-template matches of rows a..b-1 against all lm templates: AND over offsets k
            mm = match(xs[:, a:b, None], xs[:, None, 0:lm])
            for k in range(1, m):
                mm &= match(xs[:, a + k : b + k, None], xs[:, None, k : k + lm])
            counts_m[g0 : g0 + per, a:b] = mm.sum(axis=2)
            # (m+1)-templates: rows < l1, columns < l1, one more offset (k = m)
            b1 = min(b, l1)
            if b1 > a:
                m1 = mm[:, : b1 - a, :l1]
                m1 &= match(xs[:, a + m : b1 + m, None], xs[:, None, m : m + l1])
                counts_1[g0 : g0 + per, a:b1] = m1.sum(axis=2)
    return _log_mean(counts_m, lm) - _log_mean(counts_1, l1)


def approximate_entropy(
    x, m: int = DEFAULT_M, r: float = DEFAULT_R, *, absolute: bool = False
) -> float:
    """ApEn(m, r) of one sequence (Chebyshev distance, self-matches counted, natural log)."""
    _check_params(m, r, None)
    arr = np.asarray(x)
    if arr.ndim != 1:
        raise SeqrecError(f"ApEn needs a 1-D sequence, got shape {arr.shape}")
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise SeqrecError(f"ApEn needs numbers, got dtype {arr.dtype}")
    if len(arr) < m + 1:
        raise SeqrecError(f"ApEn with m={m} needs at least {m + 1} values, got {len(arr)}")
    value = float(_apen_equal_length(arr[None, :], m, r)[0])
    return abs(value) if absolute else value


def apen_csr(
    offsets: np.ndarray,
    items: np.ndarray,
    *,
    m: int = DEFAULT_M,
    r: float = DEFAULT_R,
    last_n: int | None = DEFAULT_LAST_N,
    absolute: bool = False,
    max_elements: int = MAX_ELEMENTS,
) -> ApEnResult:
    """ApEn of every CSR row's last ``last_n`` items (None or 0: whole rows), grouped by length.

    Rows with fewer than m + 1 items are skipped and counted in ``n_skipped``.
    """
    if last_n == 0:
        last_n = None
    _check_params(m, r, last_n)
    t0 = time.perf_counter()
    offsets = np.asarray(offsets, dtype=np.int64)
    lengths = np.diff(offsets)
    used_len = lengths if last_n is None else np.minimum(lengths, last_n)
    keep = np.flatnonzero(used_len >= m + 1)
    values = np.empty(len(keep), dtype=np.float64)
    lens = used_len[keep]
    order = np.argsort(lens, kind="stable")
    keep, lens = keep[order], lens[order]
    bounds = np.flatnonzero(np.diff(lens)) + 1
    for lo, hi in zip(np.r_[0, bounds], np.r_[bounds, len(lens)], strict=True):
        if lo == hi:
            continue
        n = int(lens[lo])
        users = keep[lo:hi]
        per = max(1, max_elements // (n * n))  # gather at most ~max_elements ids at a time
        for c0 in range(0, len(users), per):
            chunk = users[c0 : c0 + per]
            start = offsets[chunk + 1] - n
            x = np.asarray(items[start[:, None] + np.arange(n)])
            values[lo + c0 : lo + c0 + len(chunk)] = _apen_equal_length(x, m, r, max_elements)
    back = np.argsort(keep, kind="stable")  # report users in row order
    keep, values = keep[back], values[back]
    if absolute:
        values = np.abs(values)
    params = {"m": int(m), "r": float(r), "last_n": last_n, "absolute": bool(absolute)}
    return ApEnResult(
        values=values,
        users=keep,
        n_skipped=int(len(lengths) - len(keep)),
        params=params,
        seconds=time.perf_counter() - t0,
    )


def apen_store(store, **params) -> ApEnResult:
    """ApEn of a `SequenceStore`'s full chronological sequences (internal ids 1..N)."""
    res = apen_csr(store.offsets, store.items, **params)
    return replace(
        res,
        dataset=store.name,
        extra={"ids": "seqrec internal ids (1..N)", "sequences": "full (all splits)"},
    )


def dataset_apen(
    dataset: str,
    overrides: list[str] | None = None,
    *,
    m: int = DEFAULT_M,
    r: float = DEFAULT_R,
    last_n: int | None = DEFAULT_LAST_N,
    absolute: bool = False,
) -> ApEnResult:
    """ApEn of a catalogue dataset or path, prepared by `seqrec.data.prepare` (with ``-o data.*``
    overrides). The timing covers the ApEn computation only, not loading."""
    # imported here: `seqrec.scaling` imports this module and stays numpy-only at import time,
    # while the config (seqrec.recipe) loads every model's options and with them torch
    from seqrec.data import prepare
    from seqrec.recipe import load_config

    cfg = load_config(None, [f"data.dataset={dataset}", *(overrides or [])]).data
    store, _ = prepare(cfg)
    res = apen_store(store, m=m, r=r, last_n=last_n, absolute=absolute)
    return replace(
        res,
        dataset=dataset,
        extra={**res.extra, "n_items": int(store.n_items), "n_users_total": store.n_users},
    )
