"""MovieLens metadata: ML-1M ``movies.dat`` / ``users.dat``, ML-100K ``u.item`` / ``u.user``
and ml-latest ``movies.csv``. Items get genres, the year (from the title or release date) and
crc32-hashed title words; users get gender, age, occupation and the zip code's first digit."""

from __future__ import annotations

import csv
import io
import re
import zlib

from seqrec.data.features.records import TITLE_BUCKETS, RawRecords, canon_id
from seqrec.errors import SeqrecError

TITLE_MAX_TOKENS = 12
_YEAR = re.compile(r"\((\d{4})\)\s*$")
_WORD = re.compile(r"[a-z0-9]+")
_STOP = frozenset(
    ["the", "a", "an", "of", "and", "in", "on", "to", "for", "with", "at", "by", "from"]
)


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


def _movie_record(raw: RawRecords, movie_id: str, title: str, genres: list[str]) -> None:
    name, year = _title_year(title)
    raw.ids.append(canon_id(movie_id))
    raw.multi["genres"].append([g for g in genres if g and g != "(no genres listed)"])
    raw.numeric["year"].append(year)
    raw.hashed["title_tokens"].append(title_tokens(name))


def _movie_raw() -> RawRecords:
    return RawRecords([], multi={"genres": []}, numeric={"year": []}, hashed={"title_tokens": []})


def read_movies_dat(text: str) -> RawRecords:
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


def read_u_item(text: str) -> RawRecords:
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


def read_movies_csv(text: str) -> RawRecords:
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


def read_users_dat(text: str) -> RawRecords:
    """ML-1M ``UserID::Gender::Age::Occupation::Zip`` (age is already a bucket code)."""
    raw = RawRecords([], categorical={"gender": [], "age": [], "occupation": [], "zip1": []})
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split("::")
        if len(parts) != 5:
            raise SeqrecError(f"users.dat line {n}: expected 5 '::' fields, got {line!r}")
        raw.ids.append(canon_id(parts[0]))
        for name, value in zip(("gender", "age", "occupation"), parts[1:4], strict=True):
            raw.categorical[name].append(value.strip() or None)
        raw.categorical["zip1"].append(parts[4].strip()[:1] or None)
    return raw


def read_u_user(text: str) -> RawRecords:
    """ML-100K ``id|age|gender|occupation|zip``; age numeric (years)."""
    raw = RawRecords(
        [], categorical={"gender": [], "occupation": [], "zip1": []}, numeric={"age": []}
    )
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split("|")
        if len(parts) != 5:
            raise SeqrecError(f"u.user line {n}: expected 5 '|' fields, got {line!r}")
        raw.ids.append(canon_id(parts[0]))
        raw.numeric["age"].append(float(parts[1]) if parts[1].strip().isdigit() else None)
        raw.categorical["gender"].append(parts[2].strip() or None)
        raw.categorical["occupation"].append(parts[3].strip() or None)
        raw.categorical["zip1"].append(parts[4].strip()[:1] or None)
    return raw
