"""Format detection that decides only on evidence, and says what the evidence was.

Why: a wrong guess does not fail, it trains on another dataset (a time-sorted ``user item
timestamp`` log read as one user per line turned 500 items into 6,000). So detection reads a
sample (the first ``SAMPLE_LINES`` lines within the first ``SAMPLE_BYTES`` bytes), tries every
reading on every sampled line, and picks one only when the sample singles it out:

- Parquet: the ``.parquet``/``.pq`` name or the ``PAR1`` magic bytes;
- ml-dat: every sampled line has 4 ``::``-separated fields;
- csv: line 1 is a header (it names ``data.user_col`` and ``data.item_col``, or MovieLens's
  ``userId``/``movieId``, or holds text where every other line holds numbers), or the name ends
  in ``.csv``/``.tsv`` and line 1 is not all numbers;
- pairs: every line has the same 2, 3 or 4 whitespace-separated fields, and with 3 or 4 the last
  one looks like time: epoch seconds or milliseconds (1973 to 3000), or values that never
  decrease within a user and increase for at least one (``data.time_col=null`` skips this);
- seq: no two lines start with the same user id, and the lines do not all have the 2-4 fields
  of a pairs file;
- seq-ts: as seq, with every item written ``item|timestamp`` (the C2DSR / ABXI files).

Anything else is refused with the readings that were left and the ``data.format`` that selects
each. The evidence string travels into the store's metadata and ``results.json``.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import polars as pl

from seqrec.data.formats import FormatChoice
from seqrec.data.formats import found as _found
from seqrec.data.source import read_head
from seqrec.errors import SeqrecError
from seqrec.options import DataConfig

SAMPLE_BYTES = 1 << 20
SAMPLE_LINES = 5000
_EPOCHS = (
    (1e8, 32_503_680_000.0, 1, "epoch seconds"),
    (1e11, 32_503_680_000_000.0, 1e3, "epoch ms"),
)
_NUMBER = r"^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$"
_SEPARATORS = (",", "\t", ";", "|")
_NO_TIME = "data.format=pairs data.time_col=null"


def sample_lines(head: bytes) -> pl.DataFrame:
    """``lineno`` (1-based) and stripped ``line`` of the first non-blank complete lines."""
    limit = 4 * SAMPLE_LINES
    parts = head.decode("latin-1").split("\n", limit)
    if (len(parts) > limit or len(head) >= SAMPLE_BYTES) and len(parts) > 1:
        parts = parts[:-1]  # the remainder, or a line the byte limit cut
    frame = pl.DataFrame({"line": parts}).with_row_index("lineno", offset=1)
    line = pl.col("line").str.strip_chars()
    return frame.select("lineno", line).filter(line.str.len_bytes() > 0).head(SAMPLE_LINES)


def _fields(lines: pl.Series, sep: str | None) -> pl.Series:
    if sep is None or sep == "\t":
        return lines.str.replace_all(r"\s+", " ").str.split(" ")
    return lines.str.split(sep).list.eval(pl.element().str.strip_chars().str.strip_chars('"'))


def _sniff(first: str) -> str | None:
    counts = {s: first.count(s) for s in _SEPARATORS}
    best = max(counts, key=counts.__getitem__)
    return best if counts[best] else None


def _header(sample: pl.DataFrame, sep: str | None, cfg: DataConfig) -> str | None:
    """Why line 1 is a header, or None when nothing shows it is one."""
    names = _fields(sample["line"].head(1), sep)[0].to_list()
    if cfg.user_col in names and cfg.item_col in names:
        return f"line 1 is a header naming data.user_col={cfg.user_col} and data.item_col"
    if "userId" in names and "movieId" in names:
        return "line 1 is a MovieLens header (userId, movieId)"
    rest = _fields(sample["line"].slice(1), sep)
    if rest.is_empty():
        return None
    text = (~pl.Series(names, dtype=pl.Utf8).str.contains(_NUMBER)).arg_true().to_list()
    for j in text:
        name, column = names[j], rest.list.get(j, null_on_oob=True)
        if column.str.contains(_NUMBER).fill_null(False).all():
            return (
                f"line 1 is a header: its field {j + 1} ({name!r}) is text where the other "
                f"{len(rest):,} sampled lines hold numbers"
            )
    return None


def _year(value: float, scale: float) -> int:
    return datetime.fromtimestamp(value / scale, timezone.utc).year


def _time_evidence(
    users: pl.Series, field: pl.Series, lineno: pl.Series, pos: int
) -> tuple[bool, str]:
    """(field ``pos`` looks like time, why / why not)."""
    values = field.cast(pl.Float64, strict=False)
    bad = values.is_null() | ~values.is_finite().fill_null(False)
    if bad.any():
        i = int(bad.arg_max() or 0)
        return False, f"{field[i]!r} on line {lineno[i]} is not a number"
    lo, hi = float(values.min()), float(values.max())
    for low, high, scale, unit in _EPOCHS:
        if lo >= low and hi <= high:
            span = f"{_year(lo, scale)} to {_year(hi, scale)}"
            return True, f"field {pos} holds {unit} ({span})"
    step = (
        pl.DataFrame({"user": users, "v": values, "lineno": lineno})
        .with_columns(d=pl.col("v").diff().over("user"), prev=pl.col("v").shift().over("user"))
        .drop_nulls("d")
    )
    span = f"only {lo:g}" if lo == hi else f"{lo:g} to {hi:g}"
    not_epoch = f"field {pos} holds {span}, not epoch seconds or ms, and"
    back = step.filter(pl.col("d") < 0)
    if not back.is_empty():
        row = back.row(0, named=True)
        return False, (
            f"{not_epoch} user {row['user']!r} goes back from {row['prev']:g} to {row['v']:g} "
            f"on line {row['lineno']}"
        )
    rising = step.filter(pl.col("d") > 0)["user"].n_unique()
    if rising:
        return True, (
            f"field {pos} never decreases within a user and increases for {rising:,} users "
            f"({span}, not epoch times)"
        )
    if step.is_empty():
        return False, f"{not_epoch} no user has two rows among the sampled lines to order"
    return False, f"{not_epoch} it never changes within a user"


def _whitespace(path: Path, sample: pl.DataFrame, cfg: DataConfig) -> FormatChoice:
    n = f"{len(sample):,}"
    tokens = _fields(sample["line"], None)
    widths = tokens.list.len()
    lineno = sample["lineno"]
    users = tokens.list.first()
    w, lo, hi = int(widths[0]), int(widths.min()), int(widths.max())
    if hi == 1:
        raise SeqrecError(
            f"{path.name}: every sampled line has one field, but an interaction needs a user and "
            "an item; point data.dataset at the interactions file"
        )
    repeat = ~users.is_first_distinct()
    if repeat.any():
        i = int(repeat.arg_max() or 0)
        j = int((users == users[i]).arg_max() or 0)
        not_seq = f"line {lineno[i]} repeats the first field {users[i]!r} of line {lineno[j]}"
    else:
        not_seq = None
    seq = "one user per line, 'user item item ...' (data.format=seq)"
    if lo == hi and 2 <= w <= 4:
        shape = f"every one of the first {n} lines has {w} fields"
        if w == 2:
            return _found("pairs", f"{shape} (user item)")
        if cfg.time_col is None:
            return _found("pairs", f"{shape}; data.time_col=null, so field {w} is not read")
        timed, why = _time_evidence(users, tokens.list.get(w - 1), lineno, w)
        if timed:
            return _found("pairs", f"{shape} and {why}")
        rows = f"'user item{' rating' if w == 4 else ''} timestamp' rows (data.format=pairs)"
        if not_seq is None:
            raise SeqrecError(
                f"{path.name}: cannot tell the format from the first {n} lines: {rows} and {seq} "
                f"both fit, and nothing shows which ({why}); set data.format to the right one"
            )
        raise SeqrecError(
            f"{path.name}: {w} fields per line, but {why}; if field {w} is a time set "
            f"data.format=pairs, if it is not (a rating, a count) set {_NO_TIME} to order each "
            "user's rows by file position"
        )
    if not_seq is None:
        fields = f"{lo} to {hi}" if lo != hi else f"{w}"
        why = f"the first {n} lines have {fields} fields and no two start with the same user id"
        return _found("seq", why)
    k = int((widths != w).arg_max() or 0) if lo != hi else 0
    not_pairs = (
        f"line {lineno[k]} has {int(widths[k])} fields where line {lineno[0]} has {w}"
        if lo != hi
        else f"every line has {w} fields, more than 'user item rating timestamp'"
    )
    raise SeqrecError(
        f"{path.name}: no format fits the first {n} lines: not 'user item [timestamp]' rows "
        f"({not_pairs}) and not one user per line ({not_seq}); fix the file, or set "
        "data.format=pairs or data.format=seq to read it that way regardless"
    )


def _ml_dat(path: Path, sample: pl.DataFrame) -> FormatChoice:
    widths = sample["line"].str.split("::").list.len()
    off = widths != 4
    if off.any():
        i = int(off.arg_max() or 0)
        raise SeqrecError(
            f"{path.name} line {sample['lineno'][i]}: {int(widths[i])} '::'-separated fields "
            "where MovieLens ratings.dat has 4 (user::item::rating::timestamp); fix that line, "
            "or set data.format to the file's real format"
        )
    return _found("ml-dat", f"every one of the first {len(sample):,} lines has 4 '::' fields")


def _timed_tokens(sample: pl.DataFrame) -> str | None:
    """Why the sample is ``user item|ts item|ts ...`` lines (seq-ts), or None."""
    tokens = _fields(sample["line"], None).list.slice(1).explode().drop_nulls()
    if tokens.is_empty() or not tokens.str.contains(r"^[^|]+\|\d+$").all():
        return None
    users = _fields(sample["line"], None).list.first()
    if not users.is_unique().all():
        return None
    return (
        f"every field after the first of the first {len(sample):,} lines is 'item|timestamp' "
        "and no two lines start with the same user id"
    )


def _no_header(path: Path, sep: str | None) -> SeqrecError:
    shown = {None: "whitespace", "\t": "tab"}.get(sep, repr(sep))
    names = (sep or ",").join(("user_id", "item_id", "timestamp"))
    return SeqrecError(
        f"{path.name}: line 1 is {shown}-separated data, not a header naming the columns; add a "
        f"header line such as {names!r} and read it with data.format=csv"
    )


def detect(
    path: str | Path, cfg: DataConfig | None = None, head: bytes | None = None
) -> FormatChoice:
    """The format of ``path`` from its name and sample, with the evidence, or a refusal."""
    path, cfg = Path(path), cfg or DataConfig()
    name = path.name.lower().removesuffix(".gz")
    if name.endswith((".parquet", ".pq")):
        return _found("parquet", f"the file name ends in .{name.rsplit('.', 1)[1]}")
    head = read_head(path, SAMPLE_BYTES) if head is None else head[:SAMPLE_BYTES]
    if head[:4] == b"PAR1":
        return _found("parquet", "the file starts with Parquet's magic bytes PAR1")
    sample = sample_lines(head)
    if sample.is_empty():
        raise SeqrecError(
            f"{path.name} has no complete line in its first {SAMPLE_BYTES:,} bytes; "
            "set data.format to the file's format"
        )
    first = sample["line"][0]
    if "::" in first:
        return _ml_dat(path, sample)
    if "|" in first and (why := _timed_tokens(sample)):
        return _found("seq-ts", why)
    sep = _sniff(first)
    header = _header(sample, sep, cfg)
    if header:
        return _found("csv", header)
    if name.endswith((".csv", ".tsv")):
        if _fields(sample["line"].head(1), sep)[0].str.contains(_NUMBER).all():
            raise _no_header(path, sep)
        return _found("csv", f"the file name ends in .{name.rsplit('.', 1)[1]}")
    if sep not in (None, "\t"):
        raise _no_header(path, sep)
    return _whitespace(path, sample, cfg)


def detect_format(
    path: str | Path, head: bytes | None = None, cfg: DataConfig | None = None
) -> str:
    """Only the format name of :func:`detect`."""
    return detect(path, cfg, head).format
