"""Which reader parses a metadata file, chosen by its name (``.gz`` allowed), and the bytes
to text step they share (gzip, UTF-8 with a latin-1 fallback for old MovieLens files)."""

from __future__ import annotations

import gzip
from pathlib import Path

from seqrec.data.features.movielens import (
    read_movies_csv,
    read_movies_dat,
    read_u_item,
    read_u_user,
    read_users_dat,
)
from seqrec.data.features.npz import read_vectors_npz
from seqrec.data.features.records import RawRecords
from seqrec.data.features.s3rec import read_item2attributes
from seqrec.errors import SeqrecError


def read_text(path: Path) -> str:
    """A metadata file as text: gunzipped when it is gzip, UTF-8 else latin-1."""
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


READERS = {
    "movies.dat": read_movies_dat,
    "u.item": read_u_item,
    "movies.csv": read_movies_csv,
    "item2attributes.json": read_item2attributes,
    "users.dat": read_users_dat,
    "u.user": read_u_user,
}


def reader_for(path: Path):
    """The text reader for a file name (``*item2attributes.json`` matches by suffix)."""
    name = path.name.lower().removesuffix(".gz")
    for key, fn in READERS.items():
        if name == key or name.endswith(key):
            return fn
    raise SeqrecError(
        f"no feature reader for {path.name}; known files: {', '.join(READERS)} "
        "(or an .npz with 'ids' and 'vectors')"
    )


def parse_file(path: Path) -> RawRecords:
    """Any supported metadata file -> its records (``.npz`` vectors are read as arrays)."""
    if path.name.lower().endswith(".npz"):
        return read_vectors_npz(path)
    return reader_for(path)(read_text(path))
