"""Fetching a catalogue file: download, verify the sha256, extract, all or nothing.

Apart from the catalogue (``catalog.py``, which says what the files are and where they live)
because nothing but a missing local copy ever needs it.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path
from typing import Any

from seqrec.errors import SeqrecError

# the catalogue's logger: a download is the catalogue's doing, wherever the code lives
log = logging.getLogger("seqrec.data.catalog")


def download(spec: Any, target: Path, roots: list[Path]) -> None:
    """Fetch, verify and extract into ``target`` atomically; any failure leaves nothing behind."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=".download-", dir=target.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            digest = _fetch(spec, out)
        if spec.sha256 is None:
            log.warning(
                "%s: no published sha256, skipping verification (sha256 %s)", spec.name, digest
            )
        elif digest != spec.sha256:
            raise SeqrecError(
                f"download of {spec.url} is corrupt: sha256 {digest} != expected {spec.sha256}; "
                "the file was deleted, retry or download it by hand"
            )
        if zipfile.is_zipfile(tmp):
            _extract(tmp, spec, target)
        else:
            os.replace(tmp, target)
    except (urllib.error.URLError, http.client.HTTPException, OSError) as err:
        reason = getattr(err, "reason", None) or err
        where = roots[0] if roots else Path("$SEQREC_DATA_DIR")
        raise SeqrecError(
            f"dataset '{spec.name}' not found locally and could not be downloaded ({reason}); "
            f"download {spec.url} and put {Path(spec.member).name} at "
            f"{where / spec.local_candidates[0][0]} or set SEQREC_DATA_DIR{spec.offline_hint}"
        ) from None
    finally:
        tmp.unlink(missing_ok=True)


def _fetch(spec: Any, out) -> str:
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    digest = hashlib.sha256()
    with urllib.request.urlopen(spec.url, timeout=60) as resp:
        total = int(resp.headers.get("Content-Length") or 0) or None
        columns = (
            TextColumn(f"downloading {spec.name}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
        )
        with Progress(*columns, transient=True) as bar:
            task = bar.add_task("download", total=total)
            while chunk := resp.read(1 << 20):
                digest.update(chunk)
                out.write(chunk)
                bar.update(task, advance=len(chunk))
    return digest.hexdigest()


def _extract(archive: Path, spec: Any, target: Path) -> None:
    with zipfile.ZipFile(archive) as zf:
        if spec.member not in zf.namelist():
            raise SeqrecError(
                f"{spec.url} has no member {spec.member}; download it by hand and pass the path"
            )
        fd, part = tempfile.mkstemp(prefix=".extract-", dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as out, zf.open(spec.member) as src:
                shutil.copyfileobj(src, out, 1 << 20)
            os.replace(part, target)
        finally:
            Path(part).unlink(missing_ok=True)
