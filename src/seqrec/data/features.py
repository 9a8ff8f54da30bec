"""Item and user side information, parsed with the stdlib + numpy and aligned to a store's ids.

Metadata files are small (thousands of rows), so they are parsed on every load instead of being
cached; that keeps polars (absent on some training machines) out of this path entirely.

Conventions every consumer relies on:

* An item table has ``n_items + 1`` rows indexed by the store's internal item id; row 0 is PAD.
  A user table has ``n_users`` rows indexed by store row (no PAD row).
* ``categorical``: int64 [R], id 0 = unknown (PAD, an item without metadata, or a value not in
  the vocabulary, e.g. a category first seen at inference). Real values are 1..vocab-1.
* ``multi``: int64 [R, K], right-padded with 0 = none (genres, Amazon attributes, hashed title
  words). Same id space as categorical.
* ``numeric``: float32 [R], standardised over the rows that have a value; unknown = 0 (the mean).
* ``vector``: float32 [R, d] (precomputed text embeddings); unknown = zeros.

Vocabularies come from the *sorted* set of values in the file, never from file order, so a
shuffled metadata file gives identical arrays (tested).
"""

from __future__ import annotations

import csv
import io
import json
import re
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from seqrec.errors import SeqrecError
from seqrec.options import DataConfig

Kind = Literal["categorical", "multi", "numeric", "vector"]
TITLE_BUCKETS = 4096
"""Hashed title-word vocabulary (ids 1..4096); crc32 is stable across processes and machines."""
TITLE_MAX_TOKENS = 12
_YEAR = re.compile(r"\((\d{4})\)\s*$")
_WORD = re.compile(r"[a-z0-9]+")
_STOP = frozenset(
    ["the", "a", "an", "of", "and", "in", "on", "to", "for", "with", "at", "by", "from"]
)

ITEM_FILES = (
    "movies.dat",
    "u.item",
    "movies.csv",
    "*_item2attributes.json",
    "*item2attributes.json",
)
USER_FILES = ("users.dat", "u.user")


@dataclass(frozen=True)
class FeatureField:
    """One aligned feature column. ``vocab`` = number of ids including 0 (categorical, multi),
    or the vector width (numeric: 1)."""

    name: str
    kind: Kind
    values: np.ndarray
    vocab: int
    labels: tuple[str, ...] | None = None
    """Value name of each id (``labels[i]``; ``labels[0]`` is the unknown placeholder) for
    vocabulary fields; None for hashed and numeric fields. Lets a model map values across
    datasets by name (SRT)."""
    raw: np.ndarray | None = None
    """Numeric fields: the un-standardised values (NaN = unknown), e.g. the year itself."""


@dataclass(frozen=True)
class Features:
    """Named aligned fields of one entity (items or users) plus where they came from."""

    fields: dict[str, FeatureField]
    n_rows: int
    source: str
    coverage: float
    """Fraction of real rows (items 1..N or all users) that had a metadata record."""
    meta: dict = field(default_factory=dict)

    def __getitem__(self, name: str) -> FeatureField:
        return self.fields[name]

    def names(self) -> list[str]:
        return list(self.fields)

    def select(self, names: list[str] | None) -> Features:
        """Keep ``names`` (None = all); a name the file does not provide is a one-line error."""
        if names is None:
            return self
        missing = [n for n in names if n not in self.fields]
        if missing:
            raise SeqrecError(
                f"feature(s) {missing} not found in {self.source}; it provides {self.names()}"
            )
        return Features({n: self.fields[n] for n in names}, self.n_rows, self.source, self.coverage)

    def merge(self, other: Features) -> Features:
        clash = set(self.fields) & set(other.fields)
        if clash:
            raise SeqrecError(f"feature name(s) {sorted(clash)} come from two files; rename one")
        return Features(
            {**self.fields, **other.fields},
            self.n_rows,
            f"{self.source} + {other.source}",
            min(self.coverage, other.coverage),
        )


ItemFeatures = Features
UserFeatures = Features


# --------------------------------------------------------------------------- raw records
@dataclass
class _Raw:
    """Parsed file before alignment: original ids (text) and per-field per-record values."""

    ids: list[str]
    categorical: dict[str, list[str | None]] = field(default_factory=dict)
    multi: dict[str, list[list[str]]] = field(default_factory=dict)
    hashed: dict[str, list[list[int]]] = field(default_factory=dict)  # ids already 1..vocab-1
    numeric: dict[str, list[float | None]] = field(default_factory=dict)
    vectors: dict[str, np.ndarray] = field(default_factory=dict)


def _read_text(path: Path) -> str:
    import gzip

    try:
        raw = path.read_bytes()
    except OSError as err:
        raise SeqrecError(f"cannot read feature file {path} ({err.strerror})") from None
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")  # old MovieLens files


def _canon(item_id: str) -> str:
    """Ids as the interaction readers write them: canonical integers lose leading zeros/space."""
    s = item_id.strip()
    return str(int(s)) if s.isdigit() and not (len(s) > 1 and s[0] == "0") else s


def _title_year(title: str) -> tuple[str, float | None]:
    m = _YEAR.search(title)
    if not m:
        return title, None
    return title[: m.start()].strip(), float(m.group(1))


def title_tokens(title: str) -> list[int]:
    """Lower-cased words (stop words dropped) hashed to 1..TITLE_BUCKETS, first occurrences only."""
    out: list[int] = []
    for w in _WORD.findall(title.lower()):
        if w in _STOP:
            continue
        h = zlib.crc32(w.encode()) % TITLE_BUCKETS + 1
        if h not in out:
            out.append(h)
    return out[:TITLE_MAX_TOKENS]


def _movie_record(raw: _Raw, movie_id: str, title: str, genres: list[str]) -> None:
    name, year = _title_year(title)
    raw.ids.append(_canon(movie_id))
    raw.multi["genres"].append([g for g in genres if g and g != "(no genres listed)"])
    raw.numeric["year"].append(year)
    raw.hashed["title_tokens"].append(title_tokens(name))


def _movie_raw() -> _Raw:
    return _Raw([], multi={"genres": []}, numeric={"year": []}, hashed={"title_tokens": []})


def read_movies_dat(text: str) -> _Raw:
    """ML-1M ``MovieID::Title::Genres`` (latin-1); year from the title, genres split on '|'."""
    raw = _movie_raw()
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split("::")
        if len(parts) != 3:
            raise SeqrecError(f"movies.dat line {n}: expected MovieID::Title::Genres, got {line!r}")
        _movie_record(raw, parts[0], parts[1], parts[2].strip().split("|"))
    return raw


ML100K_GENRES = [
    "unknown",
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
]


def read_u_item(text: str) -> _Raw:
    """ML-100K ``id|title|release date|video date|url|19 genre flags``; year from the release
    date (dd-Mon-yyyy), else from the title."""
    raw = _movie_raw()
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split("|")
        if len(parts) != 5 + len(ML100K_GENRES):
            raise SeqrecError(f"u.item line {n}: expected 24 '|'-separated fields, got {line!r}")
        flags = parts[5:]
        genres = [g for g, f in zip(ML100K_GENRES, flags, strict=True) if f.strip() == "1"]
        _movie_record(raw, parts[0], parts[1], [g for g in genres if g != "unknown"])
        date = parts[2].strip()
        if date[-4:].isdigit():
            raw.numeric["year"][-1] = float(date[-4:])
    return raw


def read_movies_csv(text: str) -> _Raw:
    """ml-latest(-small) ``movieId,title,genres`` with a header (titles may be quoted)."""
    rows = csv.reader(io.StringIO(text))
    header = next(rows, None)
    if not header or [h.strip() for h in header[:3]] != ["movieId", "title", "genres"]:
        raise SeqrecError(f"movies.csv must start with 'movieId,title,genres', got {header}")
    raw = _movie_raw()
    for row in rows:
        if row:
            _movie_record(raw, row[0], row[1], row[2].split("|"))
    return raw


def read_item2attributes(text: str) -> _Raw:
    """S3-Rec ``{"item id": [attribute ids]}`` (Amazon brand + categories as one id space)."""
    try:
        table = json.loads(text)
    except ValueError as err:
        raise SeqrecError(f"item2attributes file is not valid JSON ({err})") from None
    if not isinstance(table, dict):
        raise SeqrecError("item2attributes must map item ids to lists of attribute ids")
    raw = _Raw([], multi={"attributes": []})
    for key, attrs in table.items():
        raw.ids.append(_canon(str(key)))
        raw.multi["attributes"].append([str(a) for a in attrs])
    return raw


def read_users_dat(text: str) -> _Raw:
    """ML-1M ``UserID::Gender::Age::Occupation::Zip`` (age is already a bucket code)."""
    raw = _Raw([], categorical={"gender": [], "age": [], "occupation": [], "zip1": []})
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split("::")
        if len(parts) != 5:
            raise SeqrecError(f"users.dat line {n}: expected 5 '::' fields, got {line!r}")
        raw.ids.append(_canon(parts[0]))
        for name, value in zip(("gender", "age", "occupation"), parts[1:4], strict=True):
            raw.categorical[name].append(value.strip() or None)
        raw.categorical["zip1"].append(parts[4].strip()[:1] or None)
    return raw


def read_u_user(text: str) -> _Raw:
    """ML-100K ``id|age|gender|occupation|zip``; age numeric (years)."""
    raw = _Raw([], categorical={"gender": [], "occupation": [], "zip1": []}, numeric={"age": []})
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split("|")
        if len(parts) != 5:
            raise SeqrecError(f"u.user line {n}: expected 5 '|' fields, got {line!r}")
        raw.ids.append(_canon(parts[0]))
        raw.numeric["age"].append(float(parts[1]) if parts[1].strip().isdigit() else None)
        raw.categorical["gender"].append(parts[2].strip() or None)
        raw.categorical["occupation"].append(parts[3].strip() or None)
        raw.categorical["zip1"].append(parts[4].strip()[:1] or None)
    return raw


def read_vectors_npz(path: Path) -> _Raw:
    """Precomputed text vectors: an ``.npz`` with ``ids`` (original ids) and ``vectors`` [n, d]."""
    try:
        with np.load(path, allow_pickle=False) as z:
            ids, vectors = z["ids"], np.asarray(z["vectors"], dtype=np.float32)
    except (OSError, KeyError, ValueError) as err:
        raise SeqrecError(
            f"{path} must be an .npz with arrays 'ids' and 'vectors' [n, d] ({err})"
        ) from None
    if vectors.ndim != 2 or len(vectors) != len(ids):
        raise SeqrecError(f"{path}: 'vectors' must be [len(ids), d], got {vectors.shape}")
    return _Raw([_canon(str(i)) for i in ids], vectors={"text": vectors})


READERS = {
    "movies.dat": read_movies_dat,
    "u.item": read_u_item,
    "movies.csv": read_movies_csv,
    "item2attributes.json": read_item2attributes,
    "users.dat": read_users_dat,
    "u.user": read_u_user,
}


def reader_for(path: Path):
    name = path.name.lower().removesuffix(".gz")
    for key, fn in READERS.items():
        if name == key or name.endswith(key):
            return fn
    raise SeqrecError(
        f"no feature reader for {path.name}; known files: {', '.join(READERS)} "
        "(or an .npz with 'ids' and 'vectors')"
    )


def parse_file(path: Path) -> _Raw:
    if path.name.lower().endswith(".npz"):
        return read_vectors_npz(path)
    return reader_for(path)(_read_text(path))


# --------------------------------------------------------------------------- alignment
def _align_rows(file_ids: list[str], target_ids: np.ndarray) -> np.ndarray:
    """For every target id, its record index in the file, or -1. Duplicate ids: last wins."""
    ids = np.asarray(file_ids, dtype=str)
    if not len(ids):
        return np.full(len(target_ids), -1, dtype=np.int64)
    order = np.argsort(ids, kind="stable")
    keys = ids[order]
    # last occurrence of each key in sorted-stable order = the file's last record of that id
    last = np.r_[keys[1:] != keys[:-1], True]
    keys, order = keys[last], order[last]
    q = np.asarray(target_ids, dtype=str)
    pos = np.minimum(np.searchsorted(keys, q), len(keys) - 1)
    return np.where(keys[pos] == q, order[pos], -1).astype(np.int64)


def _vocab(values: list) -> dict[str, int]:
    """Sorted distinct values -> 1..n (0 stays unknown), independent of file order."""
    return {v: i + 1 for i, v in enumerate(sorted(set(values)))}


def _pad_lists(lists: list[list[int]]) -> np.ndarray:
    width = max((len(x) for x in lists), default=0) or 1
    out = np.zeros((len(lists), width), dtype=np.int64)
    lens = np.fromiter((len(x) for x in lists), dtype=np.int64, count=len(lists))
    mask = np.arange(width)[None, :] < lens[:, None]
    out[mask] = np.fromiter((v for x in lists for v in x), dtype=np.int64, count=int(lens.sum()))
    return out


def align(raw: _Raw, target_ids: np.ndarray, pad_row: bool, source: str) -> Features:
    """Raw records -> fields aligned to ``target_ids`` (the store's original ids as text; for
    items ``store.item_ids`` whose row 0 is the PAD placeholder)."""
    rows = _align_rows(raw.ids, target_ids)
    if pad_row:
        rows[0] = -1
    have = rows >= 0
    n = len(target_ids)
    real = have[1:] if pad_row else have
    coverage = float(real.mean()) if len(real) else 0.0
    fields: dict[str, FeatureField] = {}
    for name, vals in raw.categorical.items():
        voc = _vocab([v for v in vals if v is not None])
        codes = np.array([voc.get(v, 0) if v is not None else 0 for v in vals] + [0], np.int64)
        fields[name] = FeatureField(
            name, "categorical", codes[rows], len(voc) + 1, ("<unknown>", *voc)
        )
    for name, lists in raw.multi.items():
        voc = _vocab([v for x in lists for v in x])
        coded = _pad_lists([sorted({voc[v] for v in x}) for x in lists] + [[]])
        fields[name] = FeatureField(name, "multi", coded[rows], len(voc) + 1, ("<unknown>", *voc))
    for name, lists in raw.hashed.items():
        coded = _pad_lists([*lists, []])
        fields[name] = FeatureField(name, "multi", coded[rows], TITLE_BUCKETS + 1)
    for name, vals in raw.numeric.items():
        x = np.array([np.nan if v is None else v for v in vals] + [np.nan], dtype=np.float64)[rows]
        known = ~np.isnan(x)
        mean = x[known].mean() if known.any() else 0.0
        std = x[known].std() if known.sum() > 1 else 1.0
        z = np.where(known, (x - mean) / (std or 1.0), 0.0).astype(np.float32)
        fields[name] = FeatureField(name, "numeric", z, 1, raw=x.astype(np.float32))
    for name, mat in raw.vectors.items():
        padded = np.concatenate([mat, np.zeros((1, mat.shape[1]), np.float32)])
        fields[name] = FeatureField(name, "vector", padded[rows], mat.shape[1])
    return Features(fields, n, source, coverage, {"matched": int(real.sum())})


# --------------------------------------------------------------------------- config entry points
def _sibling_candidates(folder: Path, patterns: tuple[str, ...]) -> list[Path]:
    found: list[Path] = []
    for pat in patterns:
        for suffix in ("", ".gz"):
            found.extend(sorted(folder.glob(pat + suffix)))
    return found


def _find(spec_value: str, cfg: DataConfig, which: str) -> list[Path]:
    """Paths behind a config value: "auto" (catalogue metadata, else a known file next to the
    interactions), or a path (absolute, relative to the working dir, or under $SEQREC_DATA_DIR)."""
    from seqrec.data.catalog import CATALOG, _search_roots, resolve

    roots = _search_roots(None)
    if spec_value != "auto":
        out = []
        for part in spec_value.split(","):
            p = Path(part.strip()).expanduser()
            cands = [p] + [r / p for r in roots if not p.is_absolute()]
            hit = next((c for c in cands if c.is_file()), None)
            if hit is None:
                raise SeqrecError(
                    f"data.{which} file {part.strip()} does not exist (looked in the working "
                    "directory and $SEQREC_DATA_DIR); fix the path or set it to null"
                )
            out.append(hit)
        return out
    spec = CATALOG.get(cfg.dataset)
    rels = getattr(spec, "item_metadata" if which == "item_features" else "user_metadata", ())
    for rel in rels or ():
        for root in roots:
            if (root / rel).is_file():
                return [root / rel]
    path, _, _ = resolve(cfg.dataset, cache_dir=cfg.cache_dir)
    found = _sibling_candidates(path.parent, ITEM_FILES if which == "item_features" else USER_FILES)
    if not found:
        raise SeqrecError(
            f"data.{which}=auto found no metadata file for '{cfg.dataset}' (looked for "
            f"{', '.join(ITEM_FILES if which == 'item_features' else USER_FILES)} next to "
            f"{path}); give the file's path instead"
        )
    return found[:1]


def _load(
    spec_value: str, cfg: DataConfig, target: np.ndarray, pad_row: bool, which: str
) -> Features:
    feats = None
    for path in _find(spec_value, cfg, which):
        part = align(parse_file(path), target, pad_row, str(path))
        if part.coverage == 0.0:
            raise SeqrecError(
                f"{path} matches none of the dataset's {'item' if pad_row else 'user'} ids "
                f"(e.g. {target[1 if pad_row else 0]!r}); it belongs to another dataset"
            )
        feats = part if feats is None else feats.merge(part)
    assert feats is not None
    return feats


def load_item_features(cfg: DataConfig, store) -> Features | None:
    """``cfg.item_features`` aligned to ``store.item_ids`` ([n_items + 1] rows, 0 = PAD), with
    ``cfg.item_feature_fields`` selected (None = all); None when no features are configured."""
    if not cfg.item_features:
        return None
    feats = _load(
        cfg.item_features, cfg, np.asarray(store.item_ids).astype(str), True, "item_features"
    )
    return feats.select(cfg.item_feature_fields)


def load_user_features(cfg: DataConfig, store) -> Features | None:
    """``cfg.user_features`` aligned to store rows ``store.user_ids`` ([n_users] rows)."""
    if not cfg.user_features:
        return None
    feats = _load(
        cfg.user_features, cfg, np.asarray(store.user_ids).astype(str), False, "user_features"
    )
    return feats.select(cfg.user_feature_fields)
