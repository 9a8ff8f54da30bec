"""Readers: any supported interaction log -> one polars frame ``user, item, ts, order``.

Every reader funnels into the same four columns so that preprocessing never needs to know where
the data came from. ``order`` is the position in the source, kept because many public files
(SASRec, S3-Rec) carry their chronology only in line order, and it is the stable tie-break when
several interactions share a timestamp. Files are decoded as UTF-8 when they are valid UTF-8 and
as latin-1 otherwise (old MovieLens files are latin-1), so no input ever fails on encoding.
Every row keeps the number of the line it came from until it is checked, so a value that cannot
be used is reported as ``<file> line <n>: ...`` (``source.py`` reads the bytes, ``evidence.py``
picks the format, ``values.py`` types and checks the columns).
"""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import NamedTuple

import polars as pl

from seqrec.data.evidence import SAMPLE_BYTES, detect, detect_format
from seqrec.data.formats import FORMATS, FormatChoice, given
from seqrec.data.source import as_utf8, read_bytes
from seqrec.data.values import (
    Where,
    check_no_missing_times,
    normalise_behavior,
    normalise_ids,
    normalise_ts,
)
from seqrec.errors import SeqrecError
from seqrec.options import DataConfig

log = logging.getLogger(__name__)

_MOVIELENS_CSV = ("userId", "movieId", "timestamp")
_PAIRS = "'user item [timestamp]' (or u.data's 'user item rating timestamp')"
__all__ = ["FORMATS", "Interactions", "detect", "detect_format", "read_bytes", "read_interactions"]


class Interactions(NamedTuple):
    """The parsed log plus whether ``ts`` holds real times (False: positions within the user)."""

    frame: pl.DataFrame
    has_timestamps: bool
    format: str
    behavior_values: list[str] | None = None
    """Original behaviour values of codes 1..K when they were recoded (else None)."""
    evidence: str = ""
    """Why ``format`` was used (``detected: ...`` or ``given: ...``)."""
    skipped: dict[str, int] | None = None
    """Lines that held no interaction, by reason (seq lines with a user and no items)."""
    domain_values: list[str] | None = None
    """Names of domain codes 1..K when the frame has a ``domain`` column (data/domains.py)."""


def _raw_lines(raw: bytes) -> pl.DataFrame:
    """Every line of ``raw`` as text (``line``) with its 1-based number (``lineno``): one
    column, split on nothing, so a malformed line is still a line to point at."""
    return pl.read_csv(
        io.BytesIO(as_utf8(raw)),
        has_header=False,
        separator="\x1f",
        quote_char=None,
        new_columns=["line"],
        schema={"line": pl.Utf8},
        truncate_ragged_lines=True,
    ).with_row_index("lineno", offset=1)


def _lines(raw: bytes) -> pl.DataFrame:
    """``lineno`` (1-based, in the file) and ``line`` of the non-blank lines, whitespace
    normalised to single spaces (the regex runs only when really needed)."""
    frame = _raw_lines(raw)
    line = pl.col("line")
    if b"\t" in raw or b"  " in raw or b"\r" in raw or b"\x1f" in raw:
        line = line.str.replace_all(r"\s+", " ")
    return frame.select("lineno", line.str.strip_chars()).filter(pl.col("line").str.len_bytes() > 0)


def _differ(count: int) -> str:
    return f" ({count:,} lines differ)" if count > 1 else ""


def _finish(
    users: pl.Series,
    items: pl.Series,
    ts: pl.Series | None,
    fmt: str,
    where: Where,
    int_format: str | None = None,
    behavior: pl.Series | None = None,
    domain: pl.Series | None = None,
) -> Interactions:
    frame = pl.DataFrame(
        {
            "user": normalise_ids(users, "user", where, int_format),
            "item": normalise_ids(items, "item", where, int_format),
        }
    ).with_row_index("order")
    values = None
    if behavior is not None:
        codes, values = normalise_behavior(behavior, where)
        frame = frame.with_columns(behavior=codes)
    if domain is not None:  # raw text, coded (and checked) by data/domains.py
        frame = frame.with_columns(domain=domain.cast(pl.Utf8))
    frame = frame.with_columns(pl.col("order").cast(pl.Int64))
    if ts is not None and ts.null_count() == len(ts):
        ts = None
    if ts is None:
        frame = frame.with_columns(ts=pl.int_range(pl.len(), dtype=pl.Int64).over("user"))
    else:
        check_no_missing_times(ts, where)
        frame = frame.with_columns(ts=normalise_ts(ts, where).alias("ts"))
    if frame.is_empty():
        raise SeqrecError(
            f"{where.name} holds no interactions (only a header?); point data.dataset at a "
            "file with interactions, or fix data.format"
        )
    cols = ["user", "item", "ts", "order"] + (["behavior"] if behavior is not None else [])
    cols += ["domain"] if domain is not None else []
    return Interactions(frame.select(cols), ts is not None, fmt, values)


def read_seq(
    raw: bytes, name: str = "data file", detected: bool = False, timed: bool = False
) -> Interactions:
    """``user item1 item2 ...`` per line, items already in chronological order; ``timed``
    (format seq-ts): ``user item1|ts1 item2|ts2 ...``, each item with its time.

    A line that repeats an earlier line's user contradicts the format: when the format was
    detected (from the first lines only) that is an error, when it was given the items are
    appended to the user's sequence, with a warning that says where.
    """
    lines = _lines(raw)
    tokens = lines["line"].str.split(" ")
    users = tokens.list.first()
    repeat = ~users.is_first_distinct()
    if repeat.any():
        count, i, at = Where(name, lines["lineno"]).locate(repeat)
        others = f" ({count:,} lines do)" if count > 1 else ""
        said = f"{at} repeats the user id {users[i]!r} of an earlier line{others}"
        if detected:
            raise SeqrecError(
                f"{said}, so the file is not one user per line as its first lines suggested; "
                "fix it, or set data.format=seq to append such lines to that user's sequence"
            )
        log.warning("%s; data.format=seq appends their items to that user's sequence", said)
    frame = (
        pl.DataFrame({"lineno": lines["lineno"], "user": users, "item": tokens.list.slice(1)})
        .explode("item")
        .drop_nulls("item")
    )
    where, ts, fmt = Where(name, frame["lineno"]), None, "seq"
    if timed:
        parts, fmt = frame["item"].str.split("|"), "seq-ts"
        off = parts.list.len() != 2
        if off.any():
            count, i, at = where.locate(off)
            raise SeqrecError(
                f"{at}: {frame['item'][i]!r} is not 'item|timestamp'{_differ(count)}; the "
                "seq-ts format reads 'user item|ts item|ts ...' lines: fix the file, or set "
                "data.format=seq if its lines hold items alone"
            )
        frame = frame.with_columns(item=parts.list.get(0))
        ts = parts.list.get(1)
    inter = _finish(frame["user"], frame["item"], ts, fmt, where)
    return inter._replace(skipped={"users_without_items": int((tokens.list.len() == 1).sum())})


def read_pairs(
    raw: bytes, use_time: bool = True, behavior: bool = False, name: str = "data file"
) -> Interactions:
    """``user item``, ``user item ts`` or MovieLens ``user item rating ts`` (u.data) per line."""
    lines = _lines(raw)
    tokens = lines["line"].str.split(" ")
    width = tokens.list.len()
    first = int(width[0])
    where = Where(name, lines["lineno"])
    if first not in (2, 3, 4):
        raise SeqrecError(
            f"{name} line {lines['lineno'][0]}: {first} fields, but the pairs format reads "
            f"{_PAIRS} lines; use data.format=seq if each line is one user's sequence"
        )
    off = width != first
    if off.any():
        count, i, at = where.locate(off)
        raise SeqrecError(
            f"{at}: {int(width[i])} fields where line {lines['lineno'][0]} has {first}"
            f"{_differ(count)}; the pairs format needs the same fields, {_PAIRS}, on every "
            "line: fix those lines, or use data.format=seq if each line is one user's sequence"
        )
    ts = tokens.list.get(first - 1) if first > 2 and use_time else None
    rating = None
    if behavior:
        if first != 4:
            raise SeqrecError(
                f"data.behavior_col with the pairs format needs 'user item rating ts' lines "
                f"(u.data), but {name} has {first} fields per line; set data.behavior_col=null"
            )
        rating = tokens.list.get(2)
    return _finish(tokens.list.get(0), tokens.list.get(1), ts, "pairs", where, behavior=rating)


def read_ml_dat(
    raw: bytes, use_time: bool = True, behavior: bool = False, name: str = "data file"
) -> Interactions:
    """MovieLens ``user::item::rating::ts``; ids must be integers, as in every MovieLens file."""
    lines = _lines(raw)
    fields = lines["line"].str.split("::")
    width = fields.list.len()
    off = width != 4
    if off.any():
        count, i, at = Where(name, lines["lineno"]).locate(off)
        if i == 0:
            raise SeqrecError(
                f"{name} is not a MovieLens ratings.dat (user::item::rating::timestamp per "
                f"line; line {lines['lineno'][0]} has {int(width[0])} '::' fields); "
                "set data.format to the file's real format"
            )
        raise SeqrecError(
            f"{at}: {int(width[i])} '::'-separated fields where ratings.dat has 4"
            f"{_differ(count)}; fix {'those lines' if count > 1 else 'it'}"
        )
    ts = fields.list.get(3) if use_time else None
    rating = fields.list.get(2) if behavior else None
    where = Where(name, lines["lineno"])
    user, item = fields.list.get(0), fields.list.get(1)
    return _finish(user, item, ts, "ml-dat", where, int_format="ml-dat", behavior=rating)


def _pick_columns(found: list[str], cfg: DataConfig, path: Path) -> tuple[str, str, str | None]:
    user, item, time = cfg.user_col, cfg.item_col, cfg.time_col
    if (user not in found or item not in found) and all(c in found for c in _MOVIELENS_CSV[:2]):
        user, item, time = _MOVIELENS_CSV  # MovieLens ratings.csv (ml-20m, ml-latest)
    missing = [c for c in (user, item) if c not in found]
    if missing:
        raise SeqrecError(
            f"{path.name}: column(s) {missing} not found; columns found: {found}. "
            "Set data.user_col / data.item_col (or data.sep if the separator is wrong)"
        )
    if time is not None and time not in found:
        if time != DataConfig.model_fields["time_col"].default:
            raise SeqrecError(
                f"{path.name}: time column '{time}' not found; columns found: {found}. "
                "Set data.time_col to one of them or to null"
            )
        log.info("%s has no '%s' column: ordering interactions by file position", path.name, time)
        time = None
    return user, item, time


def _named_columns(found: list[str], cfg: DataConfig, path: Path) -> tuple[str | None, ...]:
    """(user, item, time, behaviour, domain) column names; the last three may be None."""
    for what, option, col in (
        ("behaviour", "behavior_col", cfg.behavior_col),
        ("domain", "domain_col", cfg.domain_col),
    ):
        if col is not None and col not in found:
            raise SeqrecError(
                f"{path.name}: {what} column '{col}' (data.{option}) not found; columns "
                f"found: {found}. Set data.{option} to one of them or to null"
            )
    return (*_pick_columns(found, cfg, path), cfg.behavior_col, cfg.domain_col)


def _finish_frame(
    frame: pl.DataFrame, names: tuple[str | None, ...], fmt: str, where: Where
) -> Interactions:
    user, item, time, beh, dom = names
    return _finish(
        frame[user],
        frame[item],
        frame[time] if time else None,
        fmt,
        where,
        behavior=frame[beh] if beh else None,
        domain=frame[dom] if dom else None,
    )


def _sniff_sep(raw: bytes) -> str:
    header = raw.split(b"\n", 1)[0].decode("latin-1")
    counts = {s: header.count(s) for s in (",", "\t", ";", "|")}
    best = max(counts, key=counts.__getitem__)
    return best if counts[best] else " "


def _first_line(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0]


def _csv_failure(raw: bytes, sep: str, path: Path, err: Exception) -> SeqrecError:
    """The line whose field count differs from the header's, else polars's first line."""
    lines = _raw_lines(raw)
    seps = lines["line"].fill_null("").str.count_matches(sep, literal=True)
    off = (seps != seps[0]) & lines["line"].fill_null("").str.strip_chars().str.len_bytes().gt(0)
    if b'"' not in raw and off.any():
        count, i, at = Where(path.name, lines["lineno"]).locate(off)
        return SeqrecError(
            f"{at}: {int(seps[i]) + 1} fields where the header has {int(seps[0]) + 1}"
            f"{_differ(count)}; fix {'those lines' if count > 1 else 'it'}, or set data.sep if {sep!r} is not the "
            "separator"
        )
    return SeqrecError(
        f"{path.name} could not be read as CSV ({_first_line(err)}); check data.sep and the "
        "file's quoting"
    )


def read_csv(raw: bytes, cfg: DataConfig, path: Path) -> Interactions:
    """Delimited file with a header; every column read as text, then typed by our own rules."""
    sep = cfg.sep or _sniff_sep(raw)
    if len(sep) != 1:
        raise SeqrecError(f"data.sep must be one character for csv, got {sep!r}; fix data.sep")
    src = io.BytesIO(as_utf8(raw))
    try:
        found = pl.read_csv(src, separator=sep, n_rows=0).columns
        names = _named_columns(found, cfg, path)
        src.seek(0)
        cols = [c for c in names if c]
        frame = pl.read_csv(src, separator=sep, columns=cols, infer_schema=False)
    except pl.exceptions.PolarsError as err:
        raise _csv_failure(raw, sep, path, err) from None
    return _finish_frame(frame, names, "csv", Where(path.name, first=2))


def read_parquet(raw: bytes, cfg: DataConfig, path: Path) -> Interactions:
    try:
        schema = pl.read_parquet_schema(io.BytesIO(raw))
        names = _named_columns(list(schema), cfg, path)
        frame = pl.read_parquet(io.BytesIO(raw), columns=[c for c in names if c])
    except (pl.exceptions.PolarsError, OSError, ValueError) as err:
        raise SeqrecError(
            f"{path.name} is not a readable Parquet file ({_first_line(err)}); replace it, or "
            "set data.format if it is not Parquet"
        ) from None
    return _finish_frame(frame, names, "parquet", Where(path.name, unit="row"))


def read_interactions(
    path: str | Path,
    fmt: str = "auto",
    cfg: DataConfig | None = None,
    choice: FormatChoice | None = None,
) -> Interactions:
    """Parse ``path`` in format ``fmt`` ("auto" detects) into the common four-column frame.

    ``choice`` is a format already chosen (build_store detects before its cache lookup); its
    evidence is carried into the result and logged with the row count.
    """
    path = Path(path)
    cfg = cfg or DataConfig()
    raw = read_bytes(path)
    if choice is None:
        auto = fmt == "auto"
        choice = detect(path, cfg, raw[:SAMPLE_BYTES]) if auto else given(fmt, f"format={fmt}")
    fmt = choice.format
    if fmt not in FORMATS:
        raise SeqrecError(f"unknown data format '{fmt}'; use one of {', '.join(FORMATS)}")
    timed, rated = cfg.time_col is not None, cfg.behavior_col is not None
    if cfg.domain_col is not None and fmt not in ("csv", "parquet"):
        raise SeqrecError(
            f"data.domain_col names a column, but {path.name} is read as {fmt}, which has "
            "none; give each item's domain with data.domain_map instead"
        )
    if fmt in ("seq", "seq-ts"):
        if rated:
            raise SeqrecError(
                f"data.behavior_col is set but the {fmt} format (one user per line) has no "
                "behaviour field; use a ratings file or set data.behavior_col=null"
            )
        inter = read_seq(raw, path.name, choice.detected, fmt == "seq-ts")
    elif fmt == "pairs":  # time_col=None: "order by file position" for headerless files too
        inter = read_pairs(raw, timed, rated, path.name)
    elif fmt == "ml-dat":
        inter = read_ml_dat(raw, timed, rated, path.name)
    elif fmt == "csv":
        inter = read_csv(raw, cfg, path)
    else:
        inter = read_parquet(raw, cfg, path)
    log.info(
        "%s: %s interactions read as %s (%s)",
        path.name,
        f"{inter.frame.height:,}",
        fmt,
        choice.evidence,
    )
    return inter._replace(evidence=choice.evidence)
