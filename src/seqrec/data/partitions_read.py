"""Reading a partitioned log with polars' streaming engine, typed exactly as one file would be.

Why a survey pass first: the in-memory readers type a column from all of its values at once
(ids are integers only when every id is one; behaviours are coded over the sorted set of values),
and a batch sees only some of them. So one streaming pass collects what those decisions depend
on, the distinct ids (with each user's count) and behaviour values, the rows and missing
timestamps, and the decisions are taken on those sets with the very functions of ``values.py``;
the batches are then typed to match. Every batch keeps its file and row numbers until it is
checked, so a bad value is reported as ``part-00003.parquet row 17: ...``, the message the
in-memory reader gives for the same file. Memory: the distinct ids and one batch, never the log.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import numpy as np
import polars as pl

from seqrec.data.ingest import _named_columns, _sniff_sep
from seqrec.data.partitions import Partitions
from seqrec.data.source import read_head
from seqrec.data.values import (
    Where,
    check_no_missing_times,
    normalise_behavior,
    normalise_ids,
    normalise_ts,
)
from seqrec.errors import SeqrecError
from seqrec.options import DataConfig

BATCH_ROWS = 1_000_000


class Survey(NamedTuple):
    """What typing the batches needs, from one pass over every part."""

    users: pl.Series
    """Distinct user ids, typed and sorted: row u of the store before k-core."""
    user_counts: np.ndarray
    items: pl.Series
    """Distinct item ids, typed and sorted (item i + 1 before k-core)."""
    rows: int
    has_timestamps: bool
    behavior_codes: pl.DataFrame | None
    """``raw`` (stripped text) -> ``code`` when data.behavior_col is set."""
    behavior_values: list[str] | None


class Batch(NamedTuple):
    """One typed batch: indices into the survey's sorted ids, times, behaviour codes."""

    user: np.ndarray
    item: np.ndarray
    ts: np.ndarray | None
    behavior: np.ndarray | None


def _failure(parts: Partitions, path: Path, err: Exception) -> SeqrecError:
    kind = "Parquet" if parts.format == "parquet" else "CSV"
    first = (str(err).strip().splitlines() or [type(err).__name__])[0]
    return SeqrecError(
        f"{parts.label(path)} is not a readable {kind} part ({first}); replace it or move it "
        f"out of {parts.source}"
    )


class PartLog:
    """The parts of one log, with their column names and separator fixed from the first part
    (every part must have those columns)."""

    def __init__(self, parts: Partitions, cfg: DataConfig) -> None:
        self.parts, self.cfg = parts, cfg
        if cfg.domain_col is not None or cfg.domain_map is not None:
            raise SeqrecError(
                f"{parts.source} is read out of core, which does not attach domains; set "
                "data.domain_col / data.domain_map to null, or give the log as one file"
            )
        self.sep = None
        if parts.format == "csv":
            self.sep = cfg.sep or _sniff_sep(read_head(parts.files[0], 1 << 16))
            if len(self.sep) != 1:
                raise SeqrecError(f"data.sep must be one character for csv, got {self.sep!r}")
        first = parts.files[0]
        self.names = _named_columns(self._columns(first), cfg, first)
        self.cols = [c for c in self.names if c]
        for path in parts.files[1:]:
            missing = [c for c in self.cols if c not in self._columns(path)]
            if missing:
                raise SeqrecError(
                    f"{parts.label(path)} has no column(s) {missing}, which "
                    f"{parts.label(first)} has; every part needs the same columns"
                )

    def _scan(self, path: Path, row: int | None = None) -> pl.LazyFrame:
        index = {"row_index_name": "row", "row_index_offset": row} if row is not None else {}
        if self.parts.format == "parquet":
            return pl.scan_parquet(path, **index)
        return pl.scan_csv(path, separator=self.sep, infer_schema=False, **index)

    def _columns(self, path: Path) -> list[str]:
        try:
            return self._scan(path).collect_schema().names()
        except (pl.exceptions.PolarsError, OSError) as err:
            raise _failure(self.parts, path, err) from None

    def _all(self) -> pl.LazyFrame:
        return pl.concat([self._scan(p).select(self.cols) for p in self.parts.files])

    def raw_batches(self) -> Iterator[tuple[pl.DataFrame, Where]]:
        """Every part's rows in file order, ``BATCH_ROWS`` at a time, with where they are."""
        first, unit = (1, "row") if self.parts.format == "parquet" else (2, "line")
        for path in self.parts.files:
            query = self._scan(path, first).select(["row", *self.cols])
            try:
                for batch in query.collect_batches(chunk_size=BATCH_ROWS):
                    yield batch, Where(self.parts.label(path), batch["row"], unit)
            except pl.exceptions.PolarsError as err:
                raise _failure(self.parts, path, err) from None

    def survey(self) -> Survey:
        """One streaming pass over every part: distinct ids and behaviours, row counts."""
        user, item, time, beh, _ = self.names
        data = self._all()
        queries = [
            data.group_by(user).agg(n=pl.len()),
            data.select(pl.col(item).unique()),
            data.select(rows=pl.len(), missing=pl.col(time).null_count() if time else pl.lit(0)),
        ]
        if beh:
            queries.append(data.select(pl.col(beh).cast(pl.Utf8).str.strip_chars().unique()))
        try:  # one at a time: collect_all runs them side by side, at 3x the memory
            users, items, counts, *behs = [q.collect(engine="streaming") for q in queries]
        except pl.exceptions.PolarsError as err:
            raise SeqrecError(
                f"the parts of {self.parts.source} could not be read as one log "
                f"({(str(err).strip().splitlines() or ['?'])[0]}); write every part with the "
                "same columns and column types (CSV parts as UTF-8 text)"
            ) from None
        rows, missing = int(counts["rows"][0]), int(counts["missing"][0])
        if rows == 0:
            raise SeqrecError(
                f"{self.parts.source} holds no interactions (only headers?); point "
                "data.dataset at parts with interactions"
            )
        typed_users = self._typed_distinct(users[user], "user")
        per_user = (
            pl.DataFrame({"user": typed_users, "n": users["n"]})
            .group_by("user")
            .agg(pl.col("n").sum())
            .sort("user")
        )
        codes, values = self._behavior_codes(behs[0][beh]) if beh else (None, None)
        return Survey(
            per_user["user"],
            per_user["n"].to_numpy().astype(np.int64),
            self._typed_distinct(items[item], "item").unique().sort(),
            rows,
            time is not None and missing < rows,
            codes,
            values,
        )

    def _typed_distinct(self, values: pl.Series, what: str) -> pl.Series:
        """The typing normalise_ids gives the whole column, taken on its distinct values;
        text ids stay text exactly as the in-memory reader keeps them (stripped)."""
        try:
            typed = normalise_ids(values, what, Where(str(self.parts.source), unit="value"))
        except SeqrecError as err:
            raise self._located(err) from None
        return typed if typed.dtype == pl.Int64 else values.cast(pl.Utf8).str.strip_chars()

    def _behavior_codes(self, raw: pl.Series) -> tuple[pl.DataFrame, list[str] | None]:
        if raw.null_count():
            raise self._located(SeqrecError("a behaviour value is missing"))
        codes, values = normalise_behavior(raw, Where(str(self.parts.source)))
        return pl.DataFrame({"raw": raw, "code": codes}), values

    def _located(self, err: SeqrecError) -> SeqrecError:
        """The same problem found again batch by batch, so it names the part and row."""
        _, item, _, beh, _ = self.names
        for batch, where in self.raw_batches():
            normalise_ids(batch[self.names[0]], "user", where)
            normalise_ids(batch[item], "item", where)
            if beh and batch[beh].null_count():
                normalise_behavior(batch[beh], where)
        return err

    def batches(self, survey: Survey) -> Iterator[Batch]:
        """Every row, in file order, typed like the survey and checked like ingest.py."""
        user, item, time, beh, _ = self.names
        for raw, where in self.raw_batches():
            ts = None
            if survey.has_timestamps:
                check_no_missing_times(raw[time], where)
                ts = normalise_ts(raw[time], where).to_numpy().astype(np.int64, copy=False)
            code = None
            if beh:
                if raw[beh].null_count():
                    normalise_behavior(raw[beh], where)  # raises, naming the row
                text = raw.select(raw=pl.col(beh).cast(pl.Utf8).str.strip_chars())
                joined = text.join(
                    survey.behavior_codes, on="raw", how="left", maintain_order="left"
                )
                code = joined["code"].to_numpy().astype(np.int16, copy=False)
            yield Batch(
                _index(survey.users, self._typed(raw[user], survey.users.dtype, "user", where)),
                _index(survey.items, self._typed(raw[item], survey.items.dtype, "item", where)),
                ts,
                code,
            )

    @staticmethod
    def _typed(col: pl.Series, dtype: pl.DataType, what: str, where: Where) -> pl.Series:
        ids = normalise_ids(col, what, where)  # the checks, with this batch's rows
        return ids if dtype == pl.Int64 else col.cast(pl.Utf8).str.strip_chars()


def _index(sorted_ids: pl.Series, ids: pl.Series) -> np.ndarray:
    """Positions of ``ids`` in ``sorted_ids`` (every id is there: the survey saw them all)."""
    return sorted_ids.search_sorted(ids).to_numpy().astype(np.int64, copy=False)
