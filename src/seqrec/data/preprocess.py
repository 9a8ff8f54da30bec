"""Interactions frame -> CSR arrays: dedupe, k-core, chronological sort, contiguous ids.

The order of the steps is fixed on purpose. Dedupe runs first so that a repeated pair cannot keep
a user or item alive through k-core; sorting happens before remapping so that the CSR rows come out
already chronological and the split can slice them without copying. Id assignment depends only on
the set of original ids (numeric order when every id is an integer, lexicographic otherwise), so
the same data always yields the same ids, whatever the file order.
"""

from __future__ import annotations

import logging
from typing import NamedTuple

import numpy as np
import polars as pl

from seqrec.errors import SeqrecError

log = logging.getLogger(__name__)

_CHRONO = ["ts", "order"]


class Prepared(NamedTuple):
    """Arrays for a SequenceStore; ``user_ids``/``item_ids`` are the original ids as text."""

    offsets: np.ndarray
    items: np.ndarray
    timestamps: np.ndarray
    user_ids: np.ndarray
    item_ids: np.ndarray
    behaviors: np.ndarray | None = None  # int16 aligned with items, when the frame has them
    dropped: dict[str, int] | None = None
    """Rows removed and why: ``duplicates`` (data.dedupe), ``kcore`` (rows), and the users
    and items k-core removed (``kcore_users``, ``kcore_items``)."""
    domains: np.ndarray | None = None  # int16 domain codes aligned with items (data/domains.py)


def dedupe(frame: pl.DataFrame, policy: str) -> pl.DataFrame:
    """Keep every repeat, or only the chronologically first / last one of each (user, item)."""
    if policy == "keep":
        return frame
    if policy not in ("first", "last"):
        raise SeqrecError(f"unknown dedupe policy '{policy}'; use keep, first or last")
    ordered = frame.sort(["user", *_CHRONO])
    return ordered.unique(subset=["user", "item"], keep=policy, maintain_order=True)


def kcore(
    frame: pl.DataFrame, min_user: int, min_item: int, mode: str = "iterative"
) -> pl.DataFrame:
    """Drop rare users and items.

    ``once`` counts both on the input and filters a single time (SASRec / BERT4Rec ML-1M
    preprocessing, so a user may end below ``min_user``); ``iterative`` repeats until nothing
    changes, which guarantees the thresholds hold in the output (a true k-core).
    """
    if min_user <= 1 and min_item <= 1:
        return frame
    if mode not in ("iterative", "once"):
        raise SeqrecError(f"unknown kcore mode '{mode}'; use iterative or once")
    before = frame.height
    keep = (pl.len().over("user") >= min_user) & (pl.len().over("item") >= min_item)
    while True:
        filtered = frame.filter(keep)
        done = mode == "once" or filtered.height == frame.height
        frame = filtered
        if done or frame.is_empty():
            break
    if frame.is_empty():
        raise SeqrecError(
            f"k-core ({mode}) with min_user_count={min_user}, min_item_count={min_item} left no "
            f"interactions out of {before}; lower data.min_user_count / data.min_item_count"
        )
    return frame


def _id_text(values: pl.Series) -> np.ndarray:
    return values.cast(pl.Utf8).to_numpy().astype(str)


def remap(frame: pl.DataFrame) -> tuple[pl.DataFrame, np.ndarray, np.ndarray]:
    """Users -> 0..U-1 and items -> 1..N (0 stays PAD), both in sorted original-id order."""
    frame = frame.with_columns(
        uid=(pl.col("user").rank("dense") - 1).cast(pl.Int64),
        iid=pl.col("item").rank("dense").cast(pl.Int32),
    )
    user_ids = _id_text(frame["user"].unique().sort())
    item_ids = np.concatenate([np.array(["<pad>"]), _id_text(frame["item"].unique().sort())])
    return frame, user_ids, item_ids


def to_csr(
    frame: pl.DataFrame, n_users: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Rows sorted by (user, ts, order): the stable tie-break keeps source order among equal ts.
    The behaviour and domain columns, when present, are sorted with their events."""
    frame = frame.sort(["uid", *_CHRONO])
    uid = frame["uid"].to_numpy()
    counts = np.bincount(uid, minlength=n_users)
    offsets = np.zeros(n_users + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    items = frame["iid"].to_numpy().astype(np.int32, copy=False)
    timestamps = frame["ts"].to_numpy().astype(np.int64, copy=False)
    behaviors, domains = (
        frame[c].to_numpy().astype(np.int16, copy=False) if c in frame.columns else None
        for c in ("behavior", "domain")
    )
    return offsets, items, timestamps, behaviors, domains


def preprocess(
    frame: pl.DataFrame,
    dedupe_policy: str = "keep",
    min_user_count: int = 0,
    min_item_count: int = 0,
    kcore_mode: str = "iterative",
) -> Prepared:
    """The whole chain; ``frame`` has the ``user, item, ts, order`` columns from ingest."""
    read = frame.height
    frame = dedupe(frame, dedupe_policy)
    deduped = frame.height
    users, items_before = frame["user"].n_unique(), frame["item"].n_unique()
    frame = kcore(frame, min_user_count, min_item_count, kcore_mode)
    dropped = {"duplicates": read - deduped, "kcore": deduped - frame.height}
    if dropped["kcore"]:
        dropped["kcore_users"] = users - frame["user"].n_unique()
        dropped["kcore_items"] = items_before - frame["item"].n_unique()
    frame, user_ids, item_ids = remap(frame)
    offsets, items, timestamps, behaviors, domains = to_csr(frame, len(user_ids))
    log.info(
        "prepared %d users, %d items, %d interactions from %d rows (dropped: %s)",
        len(user_ids),
        len(item_ids) - 1,
        len(items),
        read,
        ", ".join(f"{k} {v:,}" for k, v in dropped.items()),
    )
    return Prepared(offsets, items, timestamps, user_ids, item_ids, behaviors, dropped, domains)
