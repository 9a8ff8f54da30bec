"""Batch inference to a file: `seqrec recommend`.

Users are streamed in chunks of ``chunk``: read (a histories file line by line, or slices of the
memory-mapped store), scored with `Recommender.recommend` (the evaluator's `score_chunks`),
turned into at most ``chunk * k`` rows and appended to a temporary file next to the output,
which is renamed into place only once every user is written. Memory is bounded by the chunk,
not by the number of users; an interrupted run leaves no partial output behind.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import polars as pl

from seqrec.data import prepare
from seqrec.errors import SeqrecError
from seqrec.fsutil import unwritable
from seqrec.run import Recommender, Run

_FILE_MODE = 0o644


def open_recommender(path: Path | Run, device: str = "cpu") -> Recommender:
    """A model package (verified) or a training run folder, for recommend: loaded by `Run`,
    after refusing a model that reads timestamps (before its weights load)."""
    run = path if isinstance(path, Run) else Run(path)
    _refuse_timestamps(run.config.model.needs().timestamps, run.path)
    return run.recommender(device)


def refuse_timestamp_models(rec: Recommender, path: Path) -> Recommender:
    """``rec`` unless its model reads timestamps: recommend and the server take histories
    without them, so such a model is refused when it is opened, not at its first request."""
    _refuse_timestamps(rec.model.needs.timestamps, path)
    return rec


def _refuse_timestamps(needs_timestamps: bool, path: Path) -> None:
    if needs_timestamps:
        raise SeqrecError(
            f"{path} was trained with model.time_bias=true, so its scores need event "
            "timestamps, which recommend and the server do not take; score it with "
            "`seqrec evaluate`, or train with model.time_bias=false to serve it"
        )


def _decode_line(raw: bytes) -> str:
    try:  # the data readers' rule (UTF-8 when valid, latin-1 otherwise), line by line
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def iter_history_file(path: Path, chunk: int) -> Iterator[tuple[list[str], list[list[str]], int]]:
    """(ids, histories, bytes read) for at most ``chunk`` users at a time.

    The file holds one `id item item ...` line per user (whitespace or comma separated);
    blank lines are skipped.
    """
    path = Path(path)
    if not path.is_file():
        raise SeqrecError(
            f"histories file {path} does not exist; pass a file with one `id item ...` line per user"
        )
    ids: list[str] = []
    hists: list[list[str]] = []
    consumed = 0
    seen_any = False
    with open(path, "rb") as fh:
        for n, raw in enumerate(fh, 1):
            consumed += len(raw)
            line = _decode_line(raw)
            parts = line.replace(",", " ").split()
            if not parts:
                continue
            if len(parts) < 2:
                raise SeqrecError(
                    f"{path}:{n}: a line needs an id and at least one item, got '{line.strip()}'"
                )
            ids.append(parts[0])
            hists.append(parts[1:])
            seen_any = True
            if len(ids) >= chunk:
                yield ids, hists, consumed
                ids, hists, consumed = [], [], 0
    if not seen_any:
        raise SeqrecError(
            f"histories file {path} is empty; write one `id item item ...` line per user"
        )
    if ids:
        yield ids, hists, consumed


def read_histories(path: Path) -> tuple[list[str], list[list[str]]]:
    """The whole histories file at once (small files; `recommend_to_file` streams instead)."""
    ids, hists = [], []
    for i, h, _ in iter_history_file(path, 1 << 62):
        ids += i
        hists += h
    return ids, hists


def _check_store(run: Path | Run, item_ids: np.ndarray | None):
    """The dataset the run (folder or package) was trained on, checked against its ids."""
    run = run if isinstance(run, Run) else Run(run)
    run_dir = run.path
    store, _ = prepare(run.config.data)
    if item_ids is not None and not np.array_equal(
        np.asarray(store.item_ids).astype(str), item_ids
    ):
        raise SeqrecError(
            f"the dataset's items changed since the run in {run_dir} was trained "
            f"({store.n_items} now, {len(item_ids) - 1} then); recommend with the data the run "
            "used, or pass --histories"
        )
    return store


def user_histories(
    run_dir: Path | Run, users: str, item_ids: np.ndarray | None = None
) -> tuple[list[str], list[np.ndarray]]:
    """Whole sequences (train + valid + test) of dataset users, by original user id.

    ``item_ids`` (the run's id map) guards against data that changed since training: the
    store's internal ids must mean the same items as the model's.
    """
    store = _check_store(run_dir, item_ids)
    wanted = [u.strip() for u in users.split(",") if u.strip()]
    index = {u: i for i, u in enumerate(np.asarray(store.user_ids).astype(str))}
    missing = [u for u in wanted if u not in index]
    if missing:
        raise SeqrecError(
            f"unknown user ids: {', '.join(missing[:5])}; use ids from the training data"
        )
    rows = [index[u] for u in wanted]
    return wanted, [np.asarray(store.sequence(r), dtype=np.int64) for r in rows]


def iter_store_users(store, chunk: int) -> Iterator[tuple[list[str], list[np.ndarray], int]]:
    """Every dataset user's whole sequence, ``chunk`` users at a time (store stays mmapped)."""
    offsets = np.asarray(store.offsets)
    for s in range(0, store.n_users, chunk):
        e = min(s + chunk, store.n_users)
        ids = np.asarray(store.user_ids[s:e]).astype(str).tolist()
        hists = [
            np.asarray(store.items[offsets[u] : offsets[u + 1]], dtype=np.int64)
            for u in range(s, e)
        ]
        yield ids, hists, e - s


def recommendation_frame(
    rec: Recommender, ids: list[str], items: np.ndarray, scores: np.ndarray, k: int
) -> pl.DataFrame:
    """Long format: user, rank, item (original id), score; unfillable slots (PAD) dropped."""
    n = len(ids)
    real = items.reshape(-1) != 0  # users who have seen almost everything get fewer than k rows
    return pl.DataFrame(
        {
            "user": np.repeat(np.asarray(ids, dtype=str), k)[real],
            "rank": np.tile(np.arange(1, k + 1), n)[real],
            "item": rec.decode(items).reshape(-1).astype(str)[real],
            "score": scores.reshape(-1)[real],
        }
    )


class TableWriter:
    """Appends frames to a temporary .csv / .parquet next to ``path``; `commit` renames it."""

    def __init__(self, path: Path):
        import pyarrow as pa

        if path.suffix not in {".csv", ".parquet"}:
            raise SeqrecError(f"output {path} must end in .csv or .parquet")
        self.path = path
        self.schema = pa.schema(
            [
                ("user", pa.string()),
                ("rank", pa.int64()),
                ("item", pa.string()),
                ("score", pa.float32()),
            ]
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        self.tmp = Path(tmp)
        self.rows = 0
        self.max_rows = 0  # largest frame written at once (the memory bound, tested)
        self._csv = None
        self._parquet = None

    def write(self, df: pl.DataFrame) -> None:
        self.rows += df.height
        self.max_rows = max(self.max_rows, df.height)
        if self.path.suffix == ".csv":
            if self._csv is None:
                self._csv = open(self.tmp, "wb")  # noqa: SIM115 - closed in commit/abort
                df.write_csv(self._csv, include_header=True)
            else:
                df.write_csv(self._csv, include_header=False)
        else:
            import pyarrow.parquet as pq

            if self._parquet is None:
                self._parquet = pq.ParquetWriter(self.tmp, self.schema)
            self._parquet.write_table(df.to_arrow().cast(self.schema))

    def _close(self) -> None:
        if self._csv is not None:
            self._csv.flush()
            os.fsync(self._csv.fileno())
            self._csv.close()
        if self._parquet is not None:
            self._parquet.close()
        self._csv = self._parquet = None

    def commit(self) -> None:
        if self.path.suffix == ".csv" and self._csv is None:
            self.write(
                pl.DataFrame(
                    schema={"user": pl.Utf8, "rank": pl.Int64, "item": pl.Utf8, "score": pl.Float32}
                )
            )
        if self.path.suffix == ".parquet" and self._parquet is None:
            import pyarrow.parquet as pq

            self._parquet = pq.ParquetWriter(self.tmp, self.schema)
        self._close()
        os.chmod(self.tmp, _FILE_MODE)
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        try:
            self._close()
        finally:
            self.tmp.unlink(missing_ok=True)


def write_table(df: pl.DataFrame, path: Path, overwrite: bool) -> None:
    if path.suffix not in {".csv", ".parquet"}:
        raise SeqrecError(f"output {path} must end in .csv or .parquet")
    if path.exists() and not overwrite:
        raise SeqrecError(f"{path} already exists; pass --overwrite or choose another --out")
    writer = TableWriter(path)
    try:
        writer.write(df)
        writer.commit()
    except BaseException:
        writer.abort()
        raise


def _progress(enabled: bool, total: int | None, what: str):
    if not enabled:
        return nullcontext(None)
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    console = Console(stderr=True)
    if not console.is_terminal:
        return nullcontext(None)
    return Progress(
        TextColumn(f"recommending ({what})"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )


def recommend_to_file(
    model_dir: Path,
    output: Path,
    users: str | None,
    histories: Path | None,
    k: int,
    skip_unknown: bool,
    overwrite: bool,
    all_users: bool = False,
    chunk: int = 1024,
    exclude_seen: bool = True,
    progress: bool = False,
    recommender: Recommender | None = None,
    writer_out: list | None = None,
) -> int:
    """Top-k for users or histories, streamed to ``output``; returns the number of rows.

    ``model_dir`` is a model package or a training run folder. ``writer_out`` (tests) receives
    the `TableWriter` so its ``max_rows`` can be checked.
    """
    if sum(x is not None and x is not False for x in (users, histories, all_users)) != 1:
        raise SeqrecError("pass exactly one of --users or --histories (or --all-users)")
    if chunk < 1:
        raise SeqrecError(f"--chunk must be at least 1, got {chunk}")
    output = Path(output)
    if output.suffix not in {".csv", ".parquet"}:
        raise SeqrecError(f"output {output} must end in .csv or .parquet")
    if output.is_dir():
        raise SeqrecError(f"output {output} is a folder; choose a file path for --out")
    if output.exists() and not overwrite:
        raise SeqrecError(f"{output} already exists; pass --overwrite or choose another --out")
    if (why := unwritable(output, "--out")) is not None:
        raise SeqrecError(why)
    run = Run(model_dir) if recommender is None or histories is None else None
    rec = recommender or open_recommender(run)
    rec.check_k(k)

    if histories is not None:
        source = iter_history_file(Path(histories), chunk)
        size = Path(histories).stat().st_size if Path(histories).is_file() else None
        total, unit, encode = size, "bytes", True
    elif users is not None:
        ids, encoded = user_histories(run, users, rec.item_ids)
        source = (
            (ids[s : s + chunk], encoded[s : s + chunk], len(ids[s : s + chunk]))
            for s in range(0, len(ids), chunk)
        )
        total, unit, encode = len(ids), "users", False
    else:
        store = _check_store(run, rec.item_ids)
        source = iter_store_users(store, chunk)
        total, unit, encode = store.n_users, "users", False

    writer = TableWriter(output)
    if writer_out is not None:
        writer_out.append(writer)
    try:
        with _progress(progress, total, unit) as bar:
            task = bar.add_task("recommend", total=total) if bar is not None else None
            for ids, hists, done in source:
                if encode:
                    hists = rec.encode(hists, skip_unknown=skip_unknown)
                items, scores = rec.top_k(hists, k, exclude_seen, chunk=chunk)
                writer.write(recommendation_frame(rec, ids, items, scores, k))
                if bar is not None:
                    bar.advance(task, done)
        writer.commit()
    except BaseException:
        writer.abort()
        raise
    return writer.rows
