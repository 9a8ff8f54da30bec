"""Batch inference to a file: `seqrec recommend`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from seqrec.errors import SeqrecError
from seqrec.serve.recommender import Recommender
from seqrec.train.checkpoint import atomic_write_with


def read_histories(path: Path) -> tuple[list[str], list[list[str]]]:
    """`id item item ...` per line (whitespace or comma separated); blank lines are skipped."""
    if not path.is_file():
        raise SeqrecError(
            f"histories file {path} does not exist; pass a file with one `id item ...` line per user"
        )
    raw = path.read_bytes()
    try:  # same rule as the data readers: UTF-8 when valid, latin-1 otherwise
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    ids, hists = [], []
    for n, line in enumerate(text.splitlines(), 1):
        parts = line.replace(",", " ").split()
        if not parts:
            continue
        if len(parts) < 2:
            raise SeqrecError(
                f"{path}:{n}: a line needs an id and at least one item, got '{line.strip()}'"
            )
        ids.append(parts[0])
        hists.append(parts[1:])
    if not ids:
        raise SeqrecError(
            f"histories file {path} is empty; write one `id item item ...` line per user"
        )
    return ids, hists


def user_histories(
    run_dir: Path, users: str, item_ids: np.ndarray | None = None
) -> tuple[list[str], list[np.ndarray]]:
    """Whole sequences (train + valid + test) of dataset users, by original user id.

    ``item_ids`` (the run's id map) guards against data that changed since training: the
    store's internal ids must mean the same items as the model's.
    """
    from seqrec.data import prepare
    from seqrec.train.run import load_run_config

    store, _ = prepare(load_run_config(run_dir).data)
    if item_ids is not None and not np.array_equal(
        np.asarray(store.item_ids).astype(str), item_ids
    ):
        raise SeqrecError(
            f"the dataset's items changed since the run in {run_dir} was trained "
            f"({store.n_items} now, {len(item_ids) - 1} then); recommend with the data the run "
            "used, or pass --histories"
        )
    wanted = [u.strip() for u in users.split(",") if u.strip()]
    index = {u: i for i, u in enumerate(np.asarray(store.user_ids).astype(str))}
    missing = [u for u in wanted if u not in index]
    if missing:
        raise SeqrecError(
            f"unknown user ids: {', '.join(missing[:5])}; use ids from the training data"
        )
    rows = [index[u] for u in wanted]
    return wanted, [np.asarray(store.sequence(r), dtype=np.int64) for r in rows]


def write_table(df: pl.DataFrame, path: Path, overwrite: bool) -> None:
    if path.suffix not in {".csv", ".parquet"}:
        raise SeqrecError(f"output {path} must end in .csv or .parquet")
    if path.exists() and not overwrite:
        raise SeqrecError(f"{path} already exists; pass --overwrite or choose another --out")
    atomic_write_with(path, df.write_csv if path.suffix == ".csv" else df.write_parquet)


def recommend_to_file(
    run_dir: Path,
    output: Path,
    users: str | None,
    histories: Path | None,
    k: int,
    skip_unknown: bool,
    overwrite: bool,
) -> int:
    if (users is None) == (histories is None):
        raise SeqrecError("pass exactly one of --users or --histories")
    if output.exists() and not overwrite:
        raise SeqrecError(f"{output} already exists; pass --overwrite or choose another --out")
    rec = Recommender.from_run(Path(run_dir))
    if users is not None:
        ids, encoded = user_histories(Path(run_dir), users, rec.item_ids)
    else:
        ids, raw = read_histories(histories)
        encoded = rec.encode(raw, skip_unknown=skip_unknown)
    items, scores = rec.recommend(encoded, k)
    n = len(ids)
    real = items.reshape(-1) != 0  # users who have seen almost everything get fewer than k rows
    df = pl.DataFrame(
        {
            "user": np.repeat(np.asarray(ids, dtype=str), k)[real],
            "rank": np.tile(np.arange(1, k + 1), n)[real],
            "item": rec.decode(items).reshape(-1).astype(str)[real],
            "score": scores.reshape(-1)[real],
        }
    )
    write_table(df, output, overwrite)
    return df.height
