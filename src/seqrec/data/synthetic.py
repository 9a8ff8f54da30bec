"""Synthetic interaction logs of any size, written chunk by chunk into partitioned files.

Why: out-of-core ingest and large-catalogue training need logs larger than memory, and no
public log is both that large and free to ship. The shape follows what public logs show, so a
benchmark on it stresses what real data does: item popularity is Zipf (rank r drawn with
probability proportional to r^-a; a = 1.05 by default, as in large_catalog.py), user lengths are
log-normal (median 15, heavy right tail), and each user's timestamps increase with gaps that mix
in-session minutes and between-session hours, plus a share of exact same-second repeats (batched
client logging), the ties that ingest must order by file position.

Memory is bounded by one chunk of users (``chunk_events`` events), never by the log: every chunk
is drawn from one seeded generator, sorted by time and appended to the part file of its time
window (``part-00000`` holds the first 1/``parts`` of the period), as a day-partitioned export
would be. The same spec gives the same files, and ids are not in generation order (user ids are
an odd-multiplier bijection, item ids a permutation of popularity ranks), so nothing downstream
can lean on a convenient order. The folder is written beside its target and swapped in, with a
manifest (``seqrec-log.json``) that marks it as generated.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Literal, NamedTuple

import numpy as np
from pydantic import Field

from seqrec.errors import SeqrecError
from seqrec.fsutil import describe, foreign_entries, read_format, swap_dir, unwritable
from seqrec.options import Strict

MANIFEST = "seqrec-log.json"
MANIFEST_FORMAT = "seqrec-synthetic-log"
DAY = 86_400
_USER_MIX = 2_654_435_761  # odd, so u -> u * _USER_MIX mod 2^32 is a bijection


class LogSpec(Strict):
    """What to generate. Column names are DataConfig's defaults, so the folder trains as is."""

    events: int = Field(1_000_000, ge=1)
    items: int = Field(100_000, ge=1)
    zipf: float = Field(1.05, gt=0)
    """Item popularity exponent a: rank r is drawn with probability proportional to r^-a."""
    median_length: float = Field(15.0, gt=0)
    length_sigma: float = Field(0.8, ge=0)
    """Log-normal sigma of user lengths (0.8: the mean is 1.4x the median, a few users 50x)."""
    min_length: int = Field(3, ge=1)
    max_length: int = Field(10_000, ge=1)
    start: int = Field(1_704_067_200, ge=0)
    """Epoch seconds of the first possible event (2024-01-01 UTC)."""
    days: int = Field(90, ge=1)
    session_break: float = Field(0.2, ge=0, le=1)
    """Share of gaps that end a session (median 6 hours; the rest median 1 minute)."""
    tie_rate: float = Field(0.02, ge=0, le=1)
    """Share of events logged in the same second as the user's previous one."""
    parts: int = Field(16, ge=1, le=10_000)
    format: Literal["parquet", "csv"] = "parquet"
    chunk_events: int = Field(1_000_000, ge=1_000)
    seed: int = Field(0, ge=0)


class Chunk(NamedTuple):
    """One chunk of whole users' events, in time order."""

    user: np.ndarray
    item: np.ndarray
    ts: np.ndarray
    users: int


def zipf_cdf(n_items: int, a: float) -> np.ndarray:
    """Cumulative popularity of ranks 1..n (float64, ends at 1): inverse-CDF sampling."""
    cdf = np.cumsum(np.arange(1, n_items + 1, dtype=np.float64) ** -a)
    return cdf / cdf[-1]


def user_lengths(rng: np.random.Generator, spec: LogSpec, want: int) -> np.ndarray:
    """Log-normal lengths of whole users until ``want`` events are covered (the last user is
    cut to fit, so a log has exactly ``spec.events`` events)."""
    mean = spec.median_length * np.exp(spec.length_sigma**2 / 2)
    lengths = np.empty(0, dtype=np.int64)
    while lengths.sum() < want:
        n = int(want / max(mean, 1) * 1.1) + 8
        draw = rng.lognormal(np.log(spec.median_length), spec.length_sigma, n)
        lengths = np.concatenate([lengths, np.clip(draw, spec.min_length, spec.max_length)])
        lengths = lengths.astype(np.int64)
    total = np.cumsum(lengths)
    n_users = int(np.searchsorted(total, want)) + 1
    lengths = lengths[:n_users]
    lengths[-1] -= int(total[n_users - 1]) - want
    return lengths


def user_times(rng: np.random.Generator, spec: LogSpec, lengths: np.ndarray) -> np.ndarray:
    """Increasing epoch seconds per user, every user inside [start, start + days).

    Gaps mix sessions (log-normal, median 60 s) and breaks (median 6 h); a user whose gaps
    would run past the period's end is compressed into what is left of it after its start."""
    n, users = int(lengths.sum()), len(lengths)
    breaks = rng.random(n) < spec.session_break
    gaps = np.where(
        breaks, rng.lognormal(np.log(6 * 3600), 1.5, n), rng.lognormal(np.log(60), 1.0, n)
    )
    gaps[rng.random(n) < spec.tie_rate] = 0.0
    first = np.cumsum(lengths) - lengths
    gaps[first] = 0.0  # a user's first event is at its start
    span = spec.days * DAY
    begin = rng.random(users) * span * 0.9
    elapsed = np.add.reduceat(gaps, first)
    squeeze = np.minimum(1.0, (span - 1 - begin) / np.maximum(elapsed, 1e-9))
    steps = np.cumsum(gaps * np.repeat(squeeze, lengths))
    within = steps - np.repeat(steps[first], lengths)
    return spec.start + np.floor(np.repeat(begin, lengths) + within).astype(np.int64)


def event_chunks(spec: LogSpec) -> Iterator[Chunk]:
    """The whole log, ``spec.chunk_events`` events at a time, from one seeded generator."""
    rng = np.random.default_rng(spec.seed)
    cdf = zipf_cdf(spec.items, spec.zipf)
    item_of_rank = rng.permutation(spec.items).astype(np.int64) + 1
    done, next_user = 0, 0
    while done < spec.events:
        lengths = user_lengths(rng, spec, min(spec.chunk_events, spec.events - done))
        n = int(lengths.sum())
        ranks = np.minimum(np.searchsorted(cdf, rng.random(n), side="right"), spec.items - 1)
        users = np.arange(next_user, next_user + len(lengths), dtype=np.int64)
        user = np.repeat(users * _USER_MIX % 2**32, lengths)
        ts = user_times(rng, spec, lengths)
        order = np.argsort(ts, kind="stable")
        yield Chunk(user[order], item_of_rank[ranks][order], ts[order], len(lengths))
        done, next_user = done + n, next_user + len(lengths)


class _Parts:
    """One open part file per time window; each chunk appends a row group (Parquet) or rows
    (CSV) to the windows it touches, so no part is ever held in memory."""

    def __init__(self, folder: Path, spec: LogSpec) -> None:
        self.folder, self.spec = folder, spec
        self.writers: dict[int, object] = {}
        self.names = [f"part-{p:05d}.{spec.format}" for p in range(spec.parts)]

    def write(self, chunk: Chunk) -> None:
        import pyarrow as pa

        spec = self.spec
        window = (chunk.ts - spec.start) * spec.parts // (spec.days * DAY)
        part = np.clip(window, 0, spec.parts - 1)
        cuts = np.searchsorted(part, np.arange(spec.parts + 1))  # chunk is in time order
        for p in np.flatnonzero(np.diff(cuts)):
            rows = slice(cuts[p], cuts[p + 1])
            table = pa.table(
                {
                    "user_id": chunk.user[rows],
                    "item_id": chunk.item[rows],
                    "timestamp": chunk.ts[rows],
                }
            )
            self._append(int(p), table)

    def _append(self, p: int, table) -> None:
        import pyarrow.csv as pcsv
        import pyarrow.parquet as pq

        path = self.folder / self.names[p]
        if p not in self.writers:
            if self.spec.format == "parquet":
                self.writers[p] = pq.ParquetWriter(path, table.schema, compression="zstd")
            else:
                self.writers[p] = pcsv.CSVWriter(path, table.schema)
        self.writers[p].write_table(table)

    def close(self) -> list[str]:
        for writer in self.writers.values():
            writer.close()
        return [self.names[p] for p in sorted(self.writers)]


def _owned(name: str) -> bool:
    return name == MANIFEST or (name.startswith("part-") and name.endswith((".parquet", ".csv")))


def check_target(out: Path, overwrite: bool) -> None:
    """Refuse before any work: an unwritable place, or a folder seqrec did not generate."""
    problem = unwritable(out, "output folder")
    if problem:
        raise SeqrecError(problem)
    if not out.exists():
        return
    if not out.is_dir():
        raise SeqrecError(f"{out} is a file; choose a new folder for the generated log")
    if not any(out.iterdir()):
        return
    if not overwrite:
        raise SeqrecError(f"{out} already exists; choose a new folder, or pass --overwrite")
    foreign = foreign_entries(out, _owned)
    if foreign or read_format(out / MANIFEST, MANIFEST_FORMAT) is None:
        shown = describe(foreign) if foreign else f"no {MANIFEST}"
        raise SeqrecError(
            f"{out} is not a log seqrec generated ({shown}); --overwrite replaces only those, "
            "so choose a new folder"
        )


def generate_log(spec: LogSpec, out: str | Path, overwrite: bool = False) -> dict:
    """Write the log ``spec`` describes into the folder ``out``; returns its manifest."""
    out = Path(out).expanduser()
    check_target(out, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    t0 = time.perf_counter()
    try:
        tmp.chmod(0o755)
        parts, users = _Parts(tmp, spec), 0
        for chunk in event_chunks(spec):
            parts.write(chunk)
            users += chunk.users
        files = parts.close()
        manifest = {
            "format": MANIFEST_FORMAT,
            "spec": spec.model_dump(),
            "events": spec.events,
            "users": users,
            "files": files,
            "bytes": sum((tmp / f).stat().st_size for f in files),
            "seconds": round(time.perf_counter() - t0, 3),
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
        swap_dir(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return manifest
