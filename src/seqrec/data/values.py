"""One parsed column (ids, times, behaviours) -> its typed form, or one line naming the bad row.

Why: the readers know where each row came from and these checks know what is wrong with a
value; together they give ``ratings.csv line 5: timestamp nan is not a finite number (...); fix``
instead of a polars traceback, or worse, a silent cast. The typing rules are the ones seqrec has
always applied to valid data (integer ids sort numerically, datetimes become epoch seconds,
fractional times are floored), so a valid file parses exactly as before; only values that could
not be used (NaN, infinities, negatives, times past the year 3000 even as milliseconds, ids a
format requires to be integers) are refused.
"""

from __future__ import annotations

from typing import NamedTuple

import polars as pl

from seqrec.errors import SeqrecError

MAX_TIMESTAMP = 32_503_680_000_000
"""3000-01-01T00:00Z in epoch milliseconds: a larger value is not a time in seconds or ms."""
_INT64_MAX = 2**63 - 1
_NON_CANONICAL_INT = r"^(?:\+|-?0\d)"  # "007" or "+7" would not survive an int round trip
_NO_TIME = "or set data.time_col=null to order each user's rows by file position"


class Where(NamedTuple):
    """Where a column's rows came from, so a message can point at the first bad one."""

    name: str = ""
    numbers: pl.Series | None = None
    """1-based line (or row) number of every row; None: row ``i`` is number ``i + first``."""
    unit: str = "line"
    first: int = 1

    def locate(self, mask: pl.Series) -> tuple[int, int, str]:
        """(rows flagged, index of the first, ``"<file> line <n>"``)."""
        mask = mask.fill_null(False)
        index = int(mask.arg_max() or 0)
        number = int(self.numbers[index]) if self.numbers is not None else index + self.first
        at = f"{self.unit} {number}"
        return int(mask.sum()), index, f"{self.name} {at}" if self.name else at


def _shown(value: object) -> object:
    """Whole floats without their ``.0`` (a timestamp read as text is parsed as a float)."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e18:
        return int(value)
    return value


def refuse(where: Where, mask: pl.Series, col: pl.Series, problem: str, fix: str) -> SeqrecError:
    """The error for the first flagged row: ``problem`` may use ``{value}``."""
    count, index, at = where.locate(mask)
    more = f" ({count:,} rows like it)" if count > 1 else ""
    return SeqrecError(f"{at}: {problem.format(value=_shown(col[index]))}{more}; {fix}")


def normalise_ids(
    col: pl.Series, what: str, where: Where | None = None, int_format: str | None = None
) -> pl.Series:
    """Int64 when every id is a canonical integer (so they sort numerically), else Utf8.
    ``int_format`` names a format whose ids must be integers (ml-dat)."""
    where = where or Where(unit="row")
    if col.null_count():
        raise refuse(where, col.is_null(), col, f"no {what} id", "fill or remove those rows")
    if col.dtype.is_integer():
        if col.dtype.is_unsigned_integer() and col.max() > _INT64_MAX:
            return col.cast(pl.Utf8)  # beyond int64: kept as text ids, still exact
        return col.cast(pl.Int64)
    if col.dtype.is_float():
        bad = ~col.is_finite() | (col != col.floor()) | (col.abs() > _INT64_MAX)
        if bad.any():
            raise refuse(
                where,
                bad,
                col,
                f"{what} id {{value}} is not a whole number",
                "store ids as integers or text",
            )
        return col.cast(pl.Int64)
    text = col.cast(pl.Utf8).str.strip_chars()
    as_int = text.cast(pl.Int64, strict=False)
    if int_format is not None and as_int.null_count():
        raise refuse(
            where,
            as_int.is_null(),
            text,
            f"{what} id {{value!r}} is not an integer, which the {int_format} format requires",
            "fix those lines, or convert the file to CSV with a header (data.format=csv "
            "reads text ids)",
        )
    if not as_int.null_count() and (
        int_format is not None or not text.str.contains(_NON_CANONICAL_INT).any()
    ):
        return as_int
    return text


def _check_time_range(col: pl.Series, where: Where) -> None:
    negative = col < 0
    if negative.any():
        raise refuse(
            where,
            negative,
            col,
            "timestamp {value} is negative (before 1970)",
            f"timestamps are epoch times: fix those rows, {_NO_TIME}",
        )
    late = col > MAX_TIMESTAMP
    if late.any():
        raise refuse(
            where,
            late,
            col,
            "timestamp {value} is past the year 3000 even read as milliseconds",
            f"store epoch seconds or milliseconds, {_NO_TIME}",
        )


def normalise_ts(col: pl.Series, where: Where | None = None) -> pl.Series:
    """Integer times; datetimes become epoch seconds and fractional times are floored."""
    where = where or Where(unit="row")
    if col.dtype == pl.Date or isinstance(col.dtype, pl.Datetime):
        col = col.cast(pl.Datetime("us")).dt.epoch("s")
    if col.dtype.is_integer():
        _check_time_range(col, where)
        return col.cast(pl.Int64)
    if col.dtype.is_float():
        infinite = ~col.is_finite()
        if infinite.any():
            raise refuse(
                where,
                infinite,
                col,
                "timestamp {value} is not a finite number",
                f"fix or drop those rows, {_NO_TIME}",
            )
        _check_time_range(col, where)
        return col.floor().cast(pl.Int64)
    text = col.cast(pl.Utf8).str.strip_chars()
    as_num = text.cast(pl.Float64, strict=False)
    if as_num.null_count() == text.null_count():
        return normalise_ts(as_num, where)
    try:
        as_dt = text.str.to_datetime(strict=False)
    except pl.exceptions.PolarsError:  # no date format fits the first values
        as_dt = None
    if as_dt is not None and as_dt.null_count() == text.null_count():
        return normalise_ts(as_dt, where)
    raise refuse(
        where,
        as_num.is_null() & text.is_not_null(),
        text,
        "timestamp {value!r} is neither a number nor a date",
        f"convert the times to epoch seconds, {_NO_TIME}",
    )


def check_no_missing_times(ts: pl.Series, where: Where) -> None:
    if ts.null_count():
        raise refuse(
            where,
            ts.is_null(),
            ts,
            f"no timestamp ({ts.null_count():,} of {len(ts):,} rows)",
            f"fill them, {_NO_TIME}",
        )


def normalise_behavior(col: pl.Series, where: Where) -> tuple[pl.Series, list[str] | None]:
    """Behaviour codes as Int16, 0 reserved for "none" (PAD). Integers in 1..32767 are kept
    (MovieLens ratings 1-5); anything else (4.5-star ratings, "click"/"buy") is coded 1..K in
    sorted order and the values are returned so the codes can be read back."""
    if col.null_count():
        raise refuse(where, col.is_null(), col, "no behaviour value", "fill those rows")
    text = col.cast(pl.Utf8).str.strip_chars()
    as_int = text.cast(pl.Int64, strict=False)
    if not as_int.null_count() and as_int.min() >= 1 and as_int.max() <= 32767:
        return as_int.cast(pl.Int16), None
    as_num = text.cast(pl.Float64, strict=False)
    values = (as_num if not as_num.null_count() else text).unique().sort()
    if len(values) > 32767:
        raise SeqrecError(
            f"{where.name}: the behaviour column has {len(values):,} distinct values, at most "
            "32767 are supported; set data.behavior_col to a coarser column or to null"
        )
    codes = (as_num if not as_num.null_count() else text).rank("dense").cast(pl.Int16)
    return codes, [str(v) for v in values.to_list()]
