"""The output table of `seqrec recommend`, written through a temporary file.

Long format, ``user, rank, item, score, returned``: one row per recommended item, where
``returned`` is how many items that user got. It is below ``k`` when the history (seen items
are excluded) leaves fewer than ``k`` items to choose from, and a user who gets none (a history
covering the whole catalogue) still has one row, with empty rank, item and score and
``returned`` 0, so that every user asked for appears in the file. `Written` counts such users
for the command's summary line.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from seqrec.errors import SeqrecError

if TYPE_CHECKING:
    from seqrec.run import Recommender

_FILE_MODE = 0o644


def recommendation_frame(
    rec: Recommender, ids: list[str], items: np.ndarray, scores: np.ndarray, k: int
) -> pl.DataFrame:
    """Long format: user, rank, item (original id), score, returned (the user's item count).

    Unfillable slots (PAD, always after the real items) are dropped; a user with no item at all
    keeps one row with null rank, item and score, so no user silently disappears."""
    n = len(ids)
    real = items != 0
    returned = real.sum(1)
    keep = real.copy()
    keep[returned == 0, 0] = True  # the placeholder row of a user who got nothing
    keep, real = keep.reshape(-1), real.reshape(-1)
    filled = pl.Series(real[keep])
    df = pl.DataFrame(
        {
            "user": np.repeat(np.asarray(ids, dtype=str), k)[keep],
            "rank": np.tile(np.arange(1, k + 1), n)[keep],
            "item": rec.decode(items).reshape(-1).astype(str)[keep],
            "score": scores.reshape(-1)[keep],
            "returned": np.repeat(returned.astype(np.int64), k)[keep],
        }
    )
    return df.with_columns(
        pl.when(filled).then(pl.col(c)).otherwise(None).alias(c) for c in ("rank", "item", "score")
    )


@dataclass
class Written:
    """What `recommend_to_file` wrote: rows, users, and the users who got fewer than k."""

    rows: int = 0
    users: int = 0
    short: int = 0  # users with fewer than k items
    empty: int = 0  # of which with none (their history covers every allowed item)
    k: int = 0

    def add(self, items: np.ndarray) -> None:
        """Count one chunk's top-k internal ids [users, k] (0 = a slot left empty)."""
        returned = (items != 0).sum(1)
        self.rows += int(returned.sum())
        self.users += len(items)
        self.short += int((returned < self.k).sum())
        self.empty += int((returned == 0).sum())

    def summary(self, path: Path) -> str:
        """One line for the terminal: the counts, and the short answers if any."""
        users = f"{self.users} user" + ("s" if self.users != 1 else "")
        line = f"wrote {self.rows} recommendation rows for {users} to {path}"
        if self.short:
            who = f"{self.short} user" + (" got" if self.short == 1 else "s got")
            line += (
                f"; {who} fewer than {self.k} (the history leaves fewer unseen items; see "
                f"the `returned` column), {self.empty} of them none"
            )
        return line


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
                ("returned", pa.int64()),
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
                    schema={
                        "user": pl.Utf8,
                        "rank": pl.Int64,
                        "item": pl.Utf8,
                        "score": pl.Float32,
                        "returned": pl.Int64,
                    }
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
