"""Filesystem moves that never leave a half-written result where a good one was.

Imports nothing from seqrec, so the data layer and the serving layer can both use it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path


def swap_dir(tmp: Path, target: Path) -> None:
    """Move the finished folder ``tmp`` to ``target``, replacing an existing one.

    The old folder is first renamed aside (same filesystem, so both renames are atomic) and only
    deleted once the new one is in place: at every instant ``target`` is either the complete old
    folder or the complete new one.
    """
    if not target.exists():
        os.replace(tmp, target)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
    os.replace(target, old / target.name)
    os.replace(tmp, target)
    shutil.rmtree(old, ignore_errors=True)
