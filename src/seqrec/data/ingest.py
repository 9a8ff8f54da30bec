"""Readers: any supported interaction log -> one polars frame ``user, item, ts, order``.

Every reader funnels into the same four columns so that preprocessing never needs to know where
the data came from. ``order`` is the position in the source, kept because many public files
(SASRec, S3-Rec) carry their chronology only in line order, and it is the stable tie-break when
several interactions share a timestamp. Files are decoded as UTF-8 when they are valid UTF-8 and
as latin-1 otherwise (old MovieLens files are latin-1), so no input ever fails on encoding.
"""

from __future__ import annotations

import gzip
import io
import logging
from pathlib import Path
from typing import NamedTuple

import polars as pl

from seqrec.errors import SeqrecError
from seqrec.options import DataConfig

log = logging.getLogger(__name__)

FORMATS = ("ml-dat", "csv", "parquet", "seq", "pairs")
_MOVIELENS_CSV = ("userId", "movieId", "timestamp")
_NON_CANONICAL_INT = r"^(?:\+|-?0\d)"  # "007" or "+7" would not survive an int round trip


class Interactions(NamedTuple):
    """The parsed log plus whether ``ts`` holds real times (False: positions within the user)."""

    frame: pl.DataFrame
    has_timestamps: bool
    format: str
    behavior_values: list[str] | None = None
    """Original behaviour values of codes 1..K when they were recoded (else None)."""


def read_bytes(path: Path) -> bytes:
    """Whole file, gunzipped when it starts with the gzip magic (the suffix is not trusted)."""
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise SeqrecError(f"data file {path} does not exist; check data.dataset") from None
    except OSError as err:
        raise SeqrecError(f"cannot read {path} ({err.strerror}); check its permissions") from None
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as err:
            raise SeqrecError(f"{path} is a corrupt gzip file ({err}); download it again") from None
    if not raw.strip():
        raise SeqrecError(
            f"data file {path} is empty; point data.dataset at a file with interactions"
        )
    return raw


def _as_utf8(raw: bytes) -> bytes:
    if raw.isascii():
        return raw
    try:
        raw.decode("utf-8")
        return raw
    except UnicodeDecodeError:
        return raw.decode("latin-1").encode("utf-8")


def detect_format(path: Path, head: bytes | None = None) -> str:
    """Guess the format from the name, then from the first lines; explicit data.format wins."""
    name = Path(path).name.lower().removesuffix(".gz")
    if name.endswith((".parquet", ".pq")):
        return "parquet"
    if name.endswith(".dat") and "ratings" in name:
        return "ml-dat"
    if head is None:
        with gzip.open(path, "rb") if _is_gzip(path) else open(path, "rb") as fh:
            head = fh.read(1 << 16)
    if head[:4] == b"PAR1":
        return "parquet"
    lines = [ln for ln in head.decode("latin-1").splitlines()[:200] if ln.strip()]
    if not lines:
        return "seq"
    if name.endswith((".csv", ".tsv")):
        return "csv"
    if "::" in lines[0]:
        return "ml-dat"
    if any(c in lines[0] for c in ",;|") or not lines[0].split()[-1].lstrip("-").isdigit():
        return "csv"
    rows = [ln.split() for ln in lines[:-1] or lines]  # the last line may be cut by the read
    widths = {len(r) for r in rows}
    if len(widths) > 1 or max(widths) > 4:
        return "seq"
    users = [r[0] for r in rows]
    if len(set(users)) < len(users) or widths == {2}:
        return "pairs"
    # Constant 3 or 4 fields and one line per user: a last column of epoch-like numbers is a time.
    last = [r[-1] for r in rows]
    return "pairs" if all(v.isdigit() and int(v) > 10**8 for v in last) else "seq"


def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(2) == b"\x1f\x8b"


def _lines(raw: bytes) -> pl.Series:
    """Non-empty lines, whitespace normalised to single spaces (regex only when really needed)."""
    frame = pl.read_csv(
        io.BytesIO(_as_utf8(raw)),
        has_header=False,
        separator="\x1f",
        quote_char=None,
        new_columns=["line"],
        schema={"line": pl.Utf8},
        truncate_ragged_lines=True,
    )
    line = pl.col("line")
    if b"\t" in raw or b"  " in raw or b"\r" in raw or b"\x1f" in raw:
        line = line.str.replace_all(r"\s+", " ")
    return frame.select(line.str.strip_chars()).filter(pl.col("line").str.len_bytes() > 0)["line"]


def normalise_ids(col: pl.Series, what: str, require_int: bool = False) -> pl.Series:
    """Int64 when every id is a canonical integer (so they sort numerically), else Utf8."""
    if col.null_count():
        raise SeqrecError(f"{col.null_count()} rows have an empty {what} id; remove those rows")
    if col.dtype.is_integer():
        return col.cast(pl.Int64)
    if col.dtype.is_float():
        if (col != col.floor()).any() or col.is_nan().any():
            raise SeqrecError(
                f"{what} ids are fractional numbers; store them as integers or strings"
            )
        return col.cast(pl.Int64)
    text = col.cast(pl.Utf8).str.strip_chars()
    as_int = text.cast(pl.Int64, strict=False)
    if not as_int.null_count() and not text.str.contains(_NON_CANONICAL_INT).any():
        return as_int
    if require_int:
        bad = text.filter(as_int.is_null()).head(3).to_list()
        raise SeqrecError(
            f"{what} ids must be integers in this format but found {bad}; "
            "use format=csv/pairs for string ids"
        )
    return text


def normalise_ts(col: pl.Series) -> pl.Series:
    """Integer times; datetimes become epoch seconds and fractional times are floored."""
    if col.dtype in (pl.Date, pl.Datetime) or isinstance(col.dtype, pl.Datetime):
        return col.cast(pl.Datetime("us")).dt.epoch("s").cast(pl.Int64)
    if col.dtype.is_integer():
        return col.cast(pl.Int64)
    if col.dtype.is_float():
        return col.floor().cast(pl.Int64)
    text = col.cast(pl.Utf8).str.strip_chars()
    as_num = text.cast(pl.Float64, strict=False)
    if as_num.null_count() == text.null_count():
        return normalise_ts(as_num)
    try:
        as_dt = text.str.to_datetime(strict=False)
    except pl.exceptions.ComputeError:  # no date format fits the first values
        as_dt = None
    if as_dt is not None and as_dt.null_count() == text.null_count():
        return normalise_ts(as_dt)
    bad = text.filter(as_num.is_null() & text.is_not_null()).head(3).to_list()
    raise SeqrecError(
        f"timestamps must be numbers or dates but found {bad}; "
        "convert them to epoch seconds or set data.time_col=null to use file order"
    )


def normalise_behavior(col: pl.Series) -> tuple[pl.Series, list[str] | None]:
    """Behaviour codes as Int16, 0 reserved for "none" (PAD). Integers in 1..32767 are kept
    (MovieLens ratings 1-5); anything else (4.5-star ratings, "click"/"buy") is coded 1..K in
    sorted order and the values are returned so the codes can be read back."""
    if col.null_count():
        raise SeqrecError(f"{col.null_count()} rows have no behaviour value; fill them")
    text = col.cast(pl.Utf8).str.strip_chars()
    as_int = text.cast(pl.Int64, strict=False)
    if not as_int.null_count() and as_int.min() >= 1 and as_int.max() <= 32767:
        return as_int.cast(pl.Int16), None
    as_num = text.cast(pl.Float64, strict=False)
    values = (as_num if not as_num.null_count() else text).unique().sort()
    if len(values) > 32767:
        raise SeqrecError(f"behaviour column has {len(values)} distinct values; at most 32767")
    codes = (as_num if not as_num.null_count() else text).rank("dense").cast(pl.Int16)
    return codes, [str(v) for v in values.to_list()]


def _finish(
    users: pl.Series,
    items: pl.Series,
    ts: pl.Series | None,
    fmt: str,
    require_int: bool = False,
    behavior: pl.Series | None = None,
) -> Interactions:
    frame = pl.DataFrame(
        {
            "user": normalise_ids(users, "user", require_int),
            "item": normalise_ids(items, "item", require_int),
        }
    ).with_row_index("order")
    values = None
    if behavior is not None:
        codes, values = normalise_behavior(behavior)
        frame = frame.with_columns(behavior=codes)
    frame = frame.with_columns(pl.col("order").cast(pl.Int64))
    if ts is not None and ts.null_count() == len(ts):
        ts = None
    if ts is None:
        frame = frame.with_columns(ts=pl.int_range(pl.len(), dtype=pl.Int64).over("user"))
    else:
        if ts.null_count():
            raise SeqrecError(
                f"{ts.null_count()} of {len(ts)} rows have no timestamp; "
                "fill them or set data.time_col=null to order by file position"
            )
        frame = frame.with_columns(ts=normalise_ts(ts).alias("ts"))
    if frame.is_empty():
        raise SeqrecError("the data file holds no interactions; check data.dataset and data.format")
    cols = ["user", "item", "ts", "order"] + (["behavior"] if behavior is not None else [])
    return Interactions(frame.select(cols), ts is not None, fmt, values)


def read_seq(raw: bytes) -> Interactions:
    """``user item1 item2 ...`` per line, items already in chronological order."""
    tokens = _lines(raw).str.split(" ")
    frame = (
        pl.DataFrame({"t": tokens})
        .select(pl.col("t").list.first().alias("user"), pl.col("t").list.slice(1).alias("item"))
        .explode("item")
        .drop_nulls("item")
    )
    return _finish(frame["user"], frame["item"], None, "seq")


def read_pairs(raw: bytes, use_time: bool = True, behavior: bool = False) -> Interactions:
    """``user item``, ``user item ts`` or MovieLens ``user item rating ts`` (u.data) per line."""
    tokens = _lines(raw).str.split(" ")
    width = tokens.list.len()
    first = int(width[0])
    if first not in (2, 3, 4) or (width != first).any():
        line = int((width != first).arg_max()) + 1 if first in (2, 3, 4) else 1
        raise SeqrecError(
            f"pairs format expects 'user item [timestamp]' on every line, but data line {line} has "
            f"{int(width[line - 1])} fields; use data.format=seq for one user per line"
        )
    ts = tokens.list.get(first - 1) if first > 2 and use_time else None
    rating = None
    if behavior:
        if first != 4:
            raise SeqrecError(
                "data.behavior_col with the pairs format needs 'user item rating ts' lines "
                f"(u.data), but lines have {first} fields; set data.behavior_col=null"
            )
        rating = tokens.list.get(2)
    return _finish(tokens.list.get(0), tokens.list.get(1), ts, "pairs", behavior=rating)


def read_ml_dat(raw: bytes, use_time: bool = True, behavior: bool = False) -> Interactions:
    """MovieLens ``user::item::rating::ts``; read with ':' so fields 0, 2, 4, 6 hold the values."""
    first = raw[:4096].lstrip().split(b"\n", 1)[0].strip()
    if first.count(b"::") != 3 or first.count(b":") != 6:
        raise SeqrecError(
            "not a MovieLens ratings.dat (user::item::rating::timestamp per line); "
            "set data.format to the file's real format"
        )
    frame = pl.read_csv(
        io.BytesIO(_as_utf8(raw)),
        has_header=False,
        separator=":",
        quote_char=None,
        infer_schema=False,
        columns=[0, 2, 4, 6],
        truncate_ragged_lines=True,
    )
    ts = frame[:, 3] if use_time else None
    rating = frame[:, 2] if behavior else None
    return _finish(frame[:, 0], frame[:, 1], ts, "ml-dat", require_int=True, behavior=rating)


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


def _behavior_column(found: list[str], cfg: DataConfig, path: Path) -> str | None:
    beh = cfg.behavior_col
    if beh is not None and beh not in found:
        raise SeqrecError(
            f"{path.name}: behaviour column '{beh}' (data.behavior_col) not found; columns "
            f"found: {found}. Set data.behavior_col to one of them or to null"
        )
    return beh


def _named_columns(found: list[str], cfg: DataConfig, path: Path) -> tuple[str | None, ...]:
    """(user, item, time, behaviour) column names of a named-column file; time and behaviour
    may be None."""
    return (*_pick_columns(found, cfg, path), _behavior_column(found, cfg, path))


def _finish_frame(frame: pl.DataFrame, names: tuple[str | None, ...], fmt: str) -> Interactions:
    user, item, time, beh = names
    return _finish(
        frame[user],
        frame[item],
        frame[time] if time else None,
        fmt,
        behavior=frame[beh] if beh else None,
    )


def _sniff_sep(raw: bytes) -> str:
    header = raw.split(b"\n", 1)[0].decode("latin-1")
    counts = {s: header.count(s) for s in (",", "\t", ";", "|")}
    best = max(counts, key=counts.__getitem__)
    return best if counts[best] else " "


def read_csv(raw: bytes, cfg: DataConfig, path: Path) -> Interactions:
    """Delimited file with a header; every column read as text, then typed by our own rules."""
    sep = cfg.sep or _sniff_sep(raw)
    if len(sep) != 1:
        raise SeqrecError(f"data.sep must be one character for csv, got {sep!r}; fix data.sep")
    src = io.BytesIO(_as_utf8(raw))
    found = pl.read_csv(src, separator=sep, n_rows=0).columns
    names = _named_columns(found, cfg, path)
    src.seek(0)
    cols = [c for c in names if c]
    return _finish_frame(
        pl.read_csv(src, separator=sep, columns=cols, infer_schema=False), names, "csv"
    )


def read_parquet(raw: bytes, cfg: DataConfig, path: Path) -> Interactions:
    try:
        schema = pl.read_parquet_schema(io.BytesIO(raw))
    except Exception as err:  # polars raises several internal error types for non-parquet bytes
        raise SeqrecError(
            f"{path.name} is not a readable parquet file ({err}); fix data.format"
        ) from None
    names = _named_columns(list(schema), cfg, path)
    cols = [c for c in names if c]
    return _finish_frame(pl.read_parquet(io.BytesIO(raw), columns=cols), names, "parquet")


def read_interactions(
    path: str | Path, fmt: str = "auto", cfg: DataConfig | None = None
) -> Interactions:
    """Parse ``path`` in format ``fmt`` ("auto" detects) into the common four-column frame."""
    path = Path(path)
    cfg = cfg or DataConfig()
    raw = read_bytes(path)
    if fmt == "auto":
        fmt = detect_format(path, raw[: 1 << 16])
    if fmt not in FORMATS:
        raise SeqrecError(f"unknown data format '{fmt}'; use one of {', '.join(FORMATS)}")
    if fmt == "seq":
        if cfg.behavior_col is not None:
            raise SeqrecError(
                "data.behavior_col is set but the seq format (one user per line) has no "
                "behaviour field; use a ratings file or set data.behavior_col=null"
            )
        return read_seq(raw)
    # time_col=None means "order by file position" for the headerless formats too.
    if fmt == "pairs":
        return read_pairs(raw, cfg.time_col is not None, cfg.behavior_col is not None)
    if fmt == "ml-dat":
        return read_ml_dat(raw, cfg.time_col is not None, cfg.behavior_col is not None)
    if fmt == "csv":
        return read_csv(raw, cfg, path)
    return read_parquet(raw, cfg, path)
