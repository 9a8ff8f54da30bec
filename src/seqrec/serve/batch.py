"""Batch inference to a file: `seqrec recommend`.

Users are streamed in chunks of ``chunk``: read (a histories file line by line, or slices of the
memory-mapped store), scored with `Recommender.top_k` (the evaluator's `score_chunks`),
turned into at most ``chunk * k`` rows and appended to a temporary file next to the output,
which is renamed into place only once every user is written. Memory is bounded by the chunk,
not by the number of users; an interrupted run leaves no partial output behind.

Users who get fewer than ``k`` items are visible in the file (its ``returned`` column, and one
row even for a user who gets none: `serve.table`) and counted in the returned `Written`. A
histories file is read once before the model loads (`serve.histories`): a bad line or an id
given twice is refused before any scoring.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import nullcontext
from pathlib import Path

import numpy as np

from seqrec.data import prepare
from seqrec.errors import SeqrecError
from seqrec.fsutil import unwritable
from seqrec.run import Recommender, Run
from seqrec.serve.histories import check_history_file, iter_history_file, read_histories
from seqrec.serve.table import TableWriter, Written, recommendation_frame

__all__ = ["iter_history_file", "read_histories", "recommend_to_file"]


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


def _user_list(users: str) -> list[str]:
    """The ``--users`` ids in order; one listed twice is refused (two blocks under one id)."""
    wanted = [u.strip() for u in users.split(",") if u.strip()]
    twice = sorted(u for u, n in Counter(wanted).items() if n > 1)
    if twice:
        raise SeqrecError(f"--users lists {', '.join(twice[:5])} more than once; list each once")
    return wanted


def user_histories(
    run_dir: Path | Run, users: str, item_ids: np.ndarray | None = None
) -> tuple[list[str], list[np.ndarray]]:
    """Whole sequences (train + valid + test) of dataset users, by original user id.

    ``item_ids`` (the run's id map) guards against data that changed since training: the
    store's internal ids must mean the same items as the model's.
    """
    wanted = _user_list(users)
    store = _check_store(run_dir, item_ids)
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


def _check_output(output: Path, overwrite: bool) -> None:
    """Refuse an output path that cannot be written, before any work."""
    if output.suffix not in {".csv", ".parquet"}:
        raise SeqrecError(f"output {output} must end in .csv or .parquet; rename it, e.g. recs.csv")
    if output.is_dir():
        raise SeqrecError(f"output {output} is a folder; choose a file path for --out")
    if output.exists() and not overwrite:
        raise SeqrecError(f"{output} already exists; pass --overwrite or choose another --out")
    if (why := unwritable(output, "--out")) is not None:
        raise SeqrecError(why)


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
) -> Written:
    """Top-k for users or histories, streamed to ``output``; returns what was written (rows,
    users, and how many users got fewer than ``k``).

    ``model_dir`` is a model package or a training run folder. ``writer_out`` (tests) receives
    the `TableWriter` so its ``max_rows`` can be checked.
    """
    if sum(x is not None and x is not False for x in (users, histories, all_users)) != 1:
        raise SeqrecError("pass exactly one of --users or --histories (or --all-users)")
    if chunk < 1:
        raise SeqrecError(f"--chunk must be at least 1, got {chunk}")
    output = Path(output)
    _check_output(output, overwrite)
    if histories is not None:
        check_history_file(Path(histories))  # every line, before the model loads
    if users is not None:
        _user_list(users)
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
    written = Written(k=k)
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
                written.add(items)
                if bar is not None:
                    bar.advance(task, done)
        writer.commit()
    except BaseException:
        writer.abort()
        raise
    return written
