"""A data file's bytes: every way reading them can fail ends as one line naming the file.

Why a module of its own: a missing file, a directory, a file without read permission, a
truncated or corrupt gzip stream, another compression and an empty file must each give one
``SeqrecError`` line with the fix before any parser sees the bytes. Format detection (which reads
only the head) and the readers (which read everything) both come through here, so the same
damage gets the same message whichever touches the file first. (A truncated ``.gz`` used to end
as a bare ``Aborted.``: detection read the head with ``gzip.open(...).read``, which raises
``EOFError`` at the cut, and click reports an uncaught ``EOFError`` as an abort.)
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

from seqrec.errors import SeqrecError

GZIP_MAGIC = b"\x1f\x8b"
_OTHER_COMPRESSION = {
    b"BZh": "bzip2",
    b"\xfd7zXZ\x00": "xz",
    b"PK\x03\x04": "zip",
    b"\x28\xb5\x2f\xfd": "zstd",
}
_GZIP_ERRORS = (OSError, EOFError, zlib.error)


def _open_failure(path: Path, err: OSError) -> SeqrecError:
    if isinstance(err, FileNotFoundError):
        return SeqrecError(f"data file {path} does not exist; check data.dataset")
    if isinstance(err, IsADirectoryError) or path.is_dir():
        return SeqrecError(f"data file {path} is a directory; pass the interactions file inside it")
    if isinstance(err, PermissionError):
        return SeqrecError(
            f"cannot read {path}: permission denied; make it readable (chmod +r) or copy it "
            "somewhere readable"
        )
    return SeqrecError(f"cannot read {path} ({err.strerror or err}); check the file and its disk")


def _gzip_failure(path: Path, err: BaseException) -> SeqrecError:
    if isinstance(err, EOFError):
        return SeqrecError(
            f"{path} is a truncated gzip file (it ends before the end of its compressed "
            "stream); download or copy it again"
        )
    reason = str(err).splitlines()[0] if str(err) else type(err).__name__
    return SeqrecError(f"{path} is a corrupt gzip file ({reason}); download or copy it again")


def _check_compression(path: Path, start: bytes) -> None:
    for magic, kind in _OTHER_COMPRESSION.items():
        if start.startswith(magic):
            raise SeqrecError(
                f"{path} is {kind}-compressed, which seqrec does not read; decompress it (or "
                "recompress it with gzip) and point data.dataset at the result"
            )


def check_readable(path: str | Path) -> None:
    """Open the file and read one byte, so a directory or a permission problem is reported
    as one line before the file is hashed or parsed."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            fh.read(1)
    except OSError as err:
        raise _open_failure(path, err) from None


def read_bytes(path: str | Path) -> bytes:
    """Whole file, gunzipped when it starts with the gzip magic (the suffix is not trusted)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise _open_failure(path, err) from None
    if raw[:2] == GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except _GZIP_ERRORS as err:
            raise _gzip_failure(path, err) from None
        where = " once decompressed"
    else:
        _check_compression(path, raw[:8])
        where = ""
    if not raw.strip():
        raise SeqrecError(
            f"data file {path} is empty{where}; point data.dataset at a file with interactions"
        )
    return raw


def read_head(path: str | Path, size: int) -> bytes:
    """The first ``size`` bytes of the (decompressed) file, for format detection."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            start = fh.read(size)
    except OSError as err:
        raise _open_failure(path, err) from None
    where = ""
    if start[:2] == GZIP_MAGIC:
        try:
            with gzip.open(path, "rb") as fh:
                start = fh.read(size)
        except _GZIP_ERRORS as err:
            raise _gzip_failure(path, err) from None
        where = " once decompressed"
    else:
        _check_compression(path, start[:8])
    if not start.strip():
        raise SeqrecError(
            f"data file {path} is empty{where}; point data.dataset at a file with interactions"
        )
    return start


def as_utf8(raw: bytes) -> bytes:
    """UTF-8 bytes as they are, anything else decoded as latin-1 (old MovieLens files)."""
    if raw.isascii():
        return raw
    try:
        raw.decode("utf-8")
        return raw
    except UnicodeDecodeError:
        return raw.decode("latin-1").encode("utf-8")
