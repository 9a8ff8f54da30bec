"""Batch inference to a file: `seqrec recommend`."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import polars as pl

from seqrec.errors import SeqrecError
from seqrec.serve.recommender import Recommender


def read_histories(path: Path) -> tuple[list[str], list[list[str]]]:
    """`id item item ...` per line (whitespace or comma separated); blank lines are skipped."""
    if not path.is_file():
        raise SeqrecError(
            f"histories file {path} does not exist; pass a file with one `id item ...` line per user"
        )
    ids, hists = [], []
    for n, line in enumerate(path.read_text(encoding="latin-1").splitlines(), 1):
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


def user_histories(run_dir: Path, users: str) -> tuple[list[str], list[np.ndarray]]:
    """Whole sequences (train + valid + test) of dataset users, by original user id."""
    from seqrec.data import prepare
    from seqrec.train.run import load_run_config

    store, _ = prepare(load_run_config(run_dir).data)
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
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        (df.write_csv if path.suffix == ".csv" else df.write_parquet)(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
        ids, encoded = user_histories(Path(run_dir), users)
    else:
        ids, raw = read_histories(histories)
        encoded = rec.encode(raw, skip_unknown=skip_unknown)
    items, scores = rec.recommend(encoded, k)
    n = len(ids)
    df = pl.DataFrame(
        {
            "user": np.repeat(np.asarray(ids, dtype=str), k),
            "rank": np.tile(np.arange(1, k + 1), n),
            "item": rec.decode(items).reshape(-1).astype(str),
            "score": scores.reshape(-1),
        }
    )
    write_table(df, output, overwrite)
    return df.height
