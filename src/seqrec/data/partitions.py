"""A log split into part files: a folder of Parquet / CSV parts, or a glob pattern, as one log.

Why: logs larger than memory arrive as many files (a Spark or Hive export, one file per day),
and a single file above ``STREAM_BYTES`` is better read the same way than held in memory. This
module only finds and fingerprints the parts (no polars, so a cached store still opens without
it); ``partitions_read.py`` reads them and ``outofcore.py`` builds the store from them.

The parts' order is part of the data: files are taken in sorted relative-path order
(``part-00009`` before ``part-00010``, ``day=2024-01-01/`` before ``day=2024-01-02/``) and rows in
file order, and that concatenation is the "file position" that breaks timestamp ties, exactly as
the line number does for one file. A folder that holds one of the single files the catalogue
knows (``ratings.dat``, ``interactions.parquet``, ...) is read as that file, as before.
"""

from __future__ import annotations

import glob
import hashlib
import os
from pathlib import Path
from typing import NamedTuple

from seqrec.data.catalog import sha256_file
from seqrec.data.formats import FormatChoice, found, given
from seqrec.errors import SeqrecError
from seqrec.options import DataConfig

PART_FORMATS = {".parquet": "parquet", ".csv": "csv", ".tsv": "csv"}
STREAM_BYTES = 1 << 30
"""A single csv / parquet file larger than this goes through the out-of-core path too."""
_GLOB = "*?["
_SINGLE_FILES = ("ratings.dat", "ratings.csv", "u.data", "interactions.parquet")


class Partitions(NamedTuple):
    """The part files of one log, in the order that defines file position."""

    files: tuple[Path, ...]
    format: str
    """csv or parquet: every part has the same one."""
    source: Path
    """The folder (or the pattern) the user named: the store's name and its messages."""

    def label(self, path: Path) -> str:
        """How messages name a part: its path below the folder, else its file name."""
        try:
            return str(path.relative_to(self.source))
        except ValueError:
            return path.name

    def digest(self) -> str:
        """sha256 over every part's name and bytes: an edited, added or renamed part is a new
        log, so its store can never be served from the cache of the old one."""
        digest = hashlib.sha256()
        for path in self.files:
            digest.update(f"{self.label(path)}\0{sha256_file(path)}\n".encode())
        return digest.hexdigest()

    def nbytes(self) -> int:
        return sum(p.stat().st_size for p in self.files)


def _visible(path: Path, root: Path) -> bool:
    """Skip hidden and underscore entries (``_SUCCESS``, ``.crc``, ``_temporary/``), as Spark
    and Hive readers do."""
    return not any(part.startswith((".", "_")) for part in path.relative_to(root).parts)


def _parts_of(files: list[Path], source: Path) -> Partitions:
    kinds = {PART_FORMATS[p.suffix.lower()] for p in files}
    if len(kinds) > 1:
        raise SeqrecError(
            f"{source} mixes Parquet and CSV part files; keep one format in a partitioned log "
            f"(or point data.dataset at a glob such as '{source}/*.parquet')"
        )
    return Partitions(tuple(files), kinds.pop(), source)


def _in_folder(folder: Path) -> Partitions | None:
    if any((folder / n).is_file() or (folder / f"{n}.gz").is_file() for n in _SINGLE_FILES):
        return None
    files = sorted(
        (p for p in folder.rglob("*") if p.suffix.lower() in PART_FORMATS and p.is_file()),
        key=lambda p: p.relative_to(folder).as_posix(),
    )
    files = [p for p in files if _visible(p, folder)]
    return _parts_of(files, folder) if files else None


def _candidates(dataset: str) -> list[Path]:
    """Where a relative name is looked for: the working directory, then $SEQREC_DATA_DIR when
    it looks like a path (as catalog.resolve does, so a catalogue name never matches there)."""
    path = Path(dataset).expanduser()
    if path.is_absolute():
        return [path]
    env = os.environ.get("SEQREC_DATA_DIR")
    looks_like_path = bool(path.suffix) or os.sep in dataset
    return [path, *([Path(env).expanduser() / path] if env and looks_like_path else [])]


def _matching(pattern: str) -> tuple[Path, list[Path]]:
    """(the folder before the first wildcard, the files matching)."""
    for full in _candidates(pattern):
        found = [Path(p) for p in glob.glob(str(full), recursive=True) if Path(p).is_file()]
        if found:
            wild = next(k for k, s in enumerate(full.parts) if any(c in s for c in _GLOB))
            return Path(*full.parts[:wild]) if wild else Path("."), found
    raise SeqrecError(
        f"no file matches data.dataset={pattern!r} (nor under $SEQREC_DATA_DIR); check the pattern"
    )


def find_partitions(dataset: str) -> Partitions | None:
    """The parts ``dataset`` names when it is a glob or a folder of part files, else None (a
    file, a catalogue name, or a folder holding one of the known single files)."""
    if any(c in dataset for c in _GLOB):
        stem, found = _matching(dataset)
        files = [p for p in found if p.suffix.lower() in PART_FORMATS]
        if not files:
            shown = ", ".join(sorted(p.name for p in found)[:4])
            raise SeqrecError(
                f"data.dataset={dataset!r} matches no .parquet, .csv or .tsv file (found: "
                f"{shown}); out-of-core ingest reads Parquet or CSV parts"
            )
        return _parts_of(sorted(files, key=lambda p: p.as_posix()), stem)
    folder = next((c for c in _candidates(dataset) if c.is_dir()), None)
    return _in_folder(folder) if folder is not None else None


def choose(parts: Partitions, cfg: DataConfig) -> FormatChoice:
    """The parts' format from their names; data.format, when given, must agree."""
    what = f"{len(parts.files)} .{parts.format} part file(s) in {parts.source}"
    if cfg.format == "auto":
        return found(parts.format, what)
    if cfg.format != parts.format:
        raise SeqrecError(
            f"data.format={cfg.format}, but {parts.source} holds {what.split(' in ')[0]}; "
            f"out-of-core ingest reads csv or parquet parts: set data.format={parts.format} or auto"
        )
    return given(parts.format, f"data.format={cfg.format} ({what})")


def single_part(path: Path, fmt: str) -> Partitions:
    """A single large file read out of core: one part."""
    return Partitions((path,), fmt, path.parent)


def streams(path: Path, fmt: str, in_memory_only: bool) -> bool:
    """Whether a single file goes out of core: a plain (not gzipped) csv or parquet file larger
    than ``STREAM_BYTES``, unless only the in-memory path handles it (per-event domains, a
    catalogue file whose row count is checked before it is cached)."""
    if fmt not in ("csv", "parquet") or in_memory_only or path.stat().st_size <= STREAM_BYTES:
        return False
    with open(path, "rb") as fh:
        return fh.read(2) != b"\x1f\x8b"
