"""Out-of-core store build: a partitioned log -> the SequenceStore's arrays, in bounded memory.

Why buckets of user ranges: a store row is a user's events in time order, and users are
numbered in sorted-id order. So once the survey (``partitions_read.py``) has every distinct
user and its event count, users are cut into contiguous id ranges of about ``bucket_events``
events; one streaming pass appends each batch's events to its range's scratch files, and then
each bucket alone is sorted, deduplicated, filtered and copied to its place in the output,
which is simply after the previous bucket. Nothing but the id maps, per-user / per-item counts
and one bucket is ever in memory, so peak memory follows ``bucket_events`` and the number of
distinct ids, not the log; it is measured and written into the store's metadata.

Every step is the in-memory one (``preprocess.py``) applied per bucket, which is exact because
each is per user or needs only global counts: the stable sort by (user, time) keeps rows of equal
time in file position (the scratch files are appended in file order, so no ``order`` column is
needed), dedupe keeps the first / last of a (user, item) pair in that order, and k-core filters
on user and item counts summed over buckets, repeated until nothing changes. Remapping is the
rank among surviving ids, as ``remap`` computes it. ``tests/data/test_outofcore.py`` checks the
result equals the in-memory store array for array.
"""

from __future__ import annotations

import itertools
import logging
import resource
import shutil
import time
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import polars as pl

from seqrec.data.partitions import Partitions
from seqrec.data.partitions_read import PartLog, Survey
from seqrec.data.preprocess import _id_text
from seqrec.data.store_dir import record, write_store_dir
from seqrec.errors import SeqrecError
from seqrec.options import DataConfig

log = logging.getLogger(__name__)

BUCKET_EVENTS = 4_000_000
"""Events per bucket (read at call time, so a benchmark or test may set it): the bucket is what
is sorted in memory, about 80 bytes an event with its sort's temporaries."""
_COLUMNS = {"user": np.int64, "item": np.int64, "ts": np.int64, "behavior": np.int16}


class Built(NamedTuple):
    """What the store's meta.json needs besides the arrays written into the folder."""

    n_items: int
    has_timestamps: bool
    has_behaviors: bool
    meta: dict[str, Any]


def peak_rss_mib() -> float:
    """This process's peak resident set so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Buckets:
    """Scratch column files, one set per user range; appended to, then read back whole."""

    def __init__(self, folder: Path, user_bucket: np.ndarray, columns: list[str]) -> None:
        self.folder, self.user_bucket, self.columns = folder, user_bucket, columns
        self.count = int(user_bucket[-1]) + 1 if len(user_bucket) else 0
        folder.mkdir(parents=True)

    def _path(self, b: int, col: str) -> Path:
        return self.folder / f"{b:05d}.{col}"

    def append(self, cols: dict[str, np.ndarray]) -> None:
        """Route one batch's rows to their users' buckets, keeping their order."""
        bucket = self.user_bucket[cols["user"]]
        order = np.argsort(bucket, kind="stable")
        cuts = np.searchsorted(bucket[order], np.arange(self.count + 1))
        for b in np.flatnonzero(np.diff(cuts)):
            rows = order[cuts[b] : cuts[b + 1]]
            for col in self.columns:
                with open(self._path(int(b), col), "ab") as fh:
                    cols[col][rows].astype(_COLUMNS[col], copy=False).tofile(fh)

    def load(self, b: int, columns: list[str] | None = None) -> dict[str, np.ndarray]:
        out = {}
        for col in columns or self.columns:
            path = self._path(b, col)
            out[col] = (
                np.fromfile(path, _COLUMNS[col]) if path.exists() else np.empty(0, _COLUMNS[col])
            )
        return out

    def store(self, b: int, cols: dict[str, np.ndarray]) -> None:
        for col in self.columns:
            cols[col].astype(_COLUMNS[col], copy=False).tofile(self._path(b, col))


def plan_buckets(user_counts: np.ndarray, bucket_events: int) -> np.ndarray:
    """Each user's bucket: contiguous user ranges of about ``bucket_events`` events (a user
    longer than that gets a bucket of its own; no user is ever split)."""
    start = np.cumsum(user_counts) - user_counts
    raw = start // max(bucket_events, 1)
    return np.unique(raw, return_inverse=True)[1].astype(np.int32)


def chronological(cols: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Stable sort by (user, ts): equal times keep file order, as preprocess.to_csr does."""
    order = np.lexsort((cols["ts"], cols["user"]))
    return {k: v[order] for k, v in cols.items()}


def dedupe_sorted(cols: dict[str, np.ndarray], policy: str) -> dict[str, np.ndarray]:
    """preprocess.dedupe on chronological rows: the first / last of each (user, item)."""
    frame = pl.DataFrame({"user": cols["user"], "item": cols["item"]}).with_row_index("i")
    keep = frame.unique(subset=["user", "item"], keep=policy, maintain_order=True)["i"]
    rows = keep.to_numpy()
    return {k: v[rows] for k, v in cols.items()}


def _scatter(part_log: PartLog, survey: Survey, buckets: Buckets) -> np.ndarray:
    """The streaming pass: every batch's events to their buckets; returns each item's count.
    Without timestamps the global row number stands in for the time, so sorts keep file
    order."""
    seen, items = 0, np.zeros(len(survey.items), np.int64)
    for batch in part_log.batches(survey):
        n = len(batch.user)
        ts = batch.ts if batch.ts is not None else np.arange(seen, seen + n, dtype=np.int64)
        cols = {"user": batch.user, "item": batch.item, "ts": ts}
        if batch.behavior is not None:
            cols["behavior"] = batch.behavior
        buckets.append(cols)
        items += np.bincount(batch.item, minlength=len(items))
        seen += n
    return items


def _dedupe(buckets: Buckets, policy: str, n_users: int, n_items: int) -> tuple[np.ndarray, ...]:
    """Sort and deduplicate every bucket in place; the per-user and per-item counts after it."""
    users, items = np.zeros(n_users, np.int64), np.zeros(n_items, np.int64)
    for b in range(buckets.count):
        cols = dedupe_sorted(chronological(buckets.load(b)), policy)
        buckets.store(b, cols)
        users += np.bincount(cols["user"], minlength=n_users)
        items += np.bincount(cols["item"], minlength=n_items)
    return users, items


def kcore_masks(
    buckets: Buckets, counts: tuple[np.ndarray, np.ndarray], cfg: DataConfig
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """preprocess.kcore over buckets: (users kept, items kept, each user's rows kept). A row
    survives a round when its user and item counts in the previous round's rows are high
    enough, so the kept rows are always those of kept users and kept items."""
    users, items = counts
    keep_u, keep_i = users > 0, items > 0
    if cfg.min_user_count <= 1 and cfg.min_item_count <= 1:
        return keep_u, keep_i, users
    rows = int(users.sum())
    while True:
        keep_u &= users >= cfg.min_user_count
        keep_i &= items >= cfg.min_item_count
        users, items = np.zeros_like(users), np.zeros_like(items)
        for b in range(buckets.count):
            cols = buckets.load(b, ["user", "item"])
            alive = keep_u[cols["user"]] & keep_i[cols["item"]]
            users += np.bincount(cols["user"][alive], minlength=len(users))
            items += np.bincount(cols["item"][alive], minlength=len(items))
        done, rows = cfg.kcore == "once" or int(users.sum()) == rows, int(users.sum())
        if done or rows == 0:
            return keep_u & (users > 0), keep_i & (items > 0), users


def _npy_file(path: Path, dtype, length: int):
    """An open ``.npy`` file of ``length`` values whose data is appended with ``tofile``:
    written through the page cache, so unlike a writable memmap the output never counts in
    this process's resident set."""
    fh = open(path, "wb")  # noqa: SIM115 (closed by the caller, after every bucket)
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False}
    np.lib.format.write_array_header_1_0(fh, {**header, "shape": (length,)})
    return fh


def _write(
    out: Path, buckets: Buckets, keep: tuple[np.ndarray, ...], survey: Survey
) -> tuple[int, int]:
    """Append every bucket's surviving rows, renumbered, to the store's array files; returns
    the number of rows and the largest behaviour code (0 without behaviours)."""
    keep_u, keep_i, per_user = keep
    lengths = per_user[keep_u]
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    np.save(out / "offsets.npy", offsets)
    total = int(offsets[-1])
    new_item = np.cumsum(keep_i).astype(np.int32)  # old index -> 1..n_items
    arrays = {"items": ("item", np.int32)}
    if survey.has_timestamps:
        arrays["timestamps"] = ("ts", np.int64)
    if "behavior" in buckets.columns:
        arrays["behaviors"] = ("behavior", np.int16)
    files = {
        name: _npy_file(out / f"{name}.npy", dtype, total) for name, (_, dtype) in arrays.items()
    }
    top = 0
    try:
        for b in range(buckets.count):  # (a deduplicated bucket is sorted already: cheap)
            cols = buckets.load(b)
            alive = keep_u[cols["user"]] & keep_i[cols["item"]]
            cols = chronological({k: v[alive] for k, v in cols.items()})
            cols["item"] = new_item[cols["item"]]
            for name, (col, dtype) in arrays.items():
                cols[col].astype(dtype, copy=False).tofile(files[name])
            if "behavior" in cols and len(cols["behavior"]):
                top = max(top, int(cols["behavior"].max()))
    finally:
        for fh in files.values():
            fh.close()
    np.save(out / "user_ids.npy", _id_text(survey.users.filter(pl.Series(keep_u))))
    items = _id_text(survey.items.filter(pl.Series(keep_i)))
    np.save(out / "item_ids.npy", np.concatenate([np.array(["<pad>"]), items]))
    return total, top


def _kcore_error(cfg: DataConfig, before: int) -> SeqrecError:
    return SeqrecError(
        f"k-core ({cfg.kcore}) with min_user_count={cfg.min_user_count}, min_item_count="
        f"{cfg.min_item_count} left no interactions out of {before}; lower "
        "data.min_user_count / data.min_item_count"
    )


def build_arrays(
    parts: Partitions, cfg: DataConfig, out: Path, bucket_events: int | None = None
) -> Built:
    """Write the store's ``.npy`` arrays for ``parts`` into the folder ``out`` (scratch files
    go in ``out/.buckets`` and are removed); the caller adds meta.json and swaps it in."""
    clock = {"start": time.perf_counter()}
    bucket_events = bucket_events or BUCKET_EVENTS
    part_log = PartLog(parts, cfg)
    survey = part_log.survey()
    clock["survey"] = time.perf_counter()
    columns = ["user", "item", "ts"] + (["behavior"] if survey.behavior_codes is not None else [])
    buckets = Buckets(out / ".buckets", plan_buckets(survey.user_counts, bucket_events), columns)
    try:
        counts = survey.user_counts, _scatter(part_log, survey, buckets)
        clock["scatter"] = time.perf_counter()
        if cfg.dedupe != "keep":
            counts = _dedupe(buckets, cfg.dedupe, len(survey.users), len(survey.items))
            clock["dedupe"] = time.perf_counter()
        deduped = int(counts[0].sum())
        keep = kcore_masks(buckets, counts, cfg)
        if not keep[2].sum():
            raise _kcore_error(cfg, deduped)
        clock["kcore"] = time.perf_counter()
        total, top = _write(out, buckets, keep, survey)
        clock["sort+write"] = time.perf_counter()
    finally:
        shutil.rmtree(out / ".buckets", ignore_errors=True)
    dropped = {"duplicates": survey.rows - deduped, "kcore": deduped - total}
    if dropped["kcore"]:
        dropped["kcore_users"] = int((counts[0] > 0).sum() - keep[0].sum())
        dropped["kcore_items"] = int((counts[1] > 0).sum() - keep[1].sum())
    stages = list(clock)
    report = {
        "mode": "out-of-core",
        "parts": len(parts.files),
        "bytes": parts.nbytes(),
        "buckets": buckets.count,
        "bucket_events": bucket_events,
        "seconds": {b: round(clock[b] - clock[a], 3) for a, b in itertools.pairwise(stages)},
        "peak_rss_mib": round(peak_rss_mib(), 1),
    }
    log.info(
        "%s: %s rows from %d part(s) -> %s interactions in %d bucket(s), %.1fs, peak RSS %.0f MiB",
        parts.source,
        f"{survey.rows:,}",
        len(parts.files),
        f"{total:,}",
        buckets.count,
        clock["sort+write"] - clock["start"],
        report["peak_rss_mib"],
    )
    meta = {"raw_interactions": survey.rows, "rows_read": survey.rows, "dropped": dropped}
    meta["ingest"] = report
    if survey.behavior_codes is not None:
        meta["n_behaviors"] = top
        meta["behavior_values"] = survey.behavior_values
    return Built(int(keep[1].sum()), survey.has_timestamps, "behavior" in columns, meta)


def write_store(
    parts: Partitions, cfg: DataConfig, target: Path, name: str, head: dict, tail: dict
) -> None:
    """The whole store folder at ``target`` (store_dir's layout, swapped in atomically);
    its metadata is ``head``, what the build measured, then ``tail``."""

    def fill(tmp: Path) -> dict[str, Any]:
        built = build_arrays(parts, cfg, tmp)
        flags = (built.has_timestamps, built.has_behaviors, False)
        return record(name, built.n_items, flags, {**head, **built.meta, **tail})

    try:
        write_store_dir(target, fill)
    except OSError as err:
        raise SeqrecError(
            f"could not write the store of {name} at {target} ({err}); an out-of-core store "
            "lives on disk: set data.cache_dir (or $SEQREC_CACHE_DIR) to a writable folder "
            "with room for it"
        ) from None
