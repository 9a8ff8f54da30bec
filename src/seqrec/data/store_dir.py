"""A store's folder on disk: its array files, meta.json, and the atomic way it is written.

Why apart from store.py: two writers produce the same folder, ``SequenceStore.save`` from
arrays in memory and ``outofcore.py`` bucket by bucket into memory-mapped files, and the one
reader (``SequenceStore.load``) must not care which wrote it. numpy only, so a cached store
opens without polars.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from seqrec.fsutil import swap_dir

STORE_VERSION = 2
"""2: optional ``behaviors.npy`` (data.behavior_col) and its flag in meta.json; optional
``domains.npy`` (flag ``has_domains``, absent from older stores, which have no domains)."""
ARRAYS = ("offsets", "items", "timestamps", "user_ids", "item_ids", "behaviors", "domains")
OPTIONAL = {"timestamps": "has_timestamps", "behaviors": "has_behaviors", "domains": "has_domains"}


def record(name: str, n_items: int, flags: tuple[bool, bool, bool], meta: dict) -> dict[str, Any]:
    """meta.json: the format version, the name, n_items, which optional arrays exist
    (``flags``: timestamps, behaviours, domains) and the store's metadata."""
    has_ts, has_beh, has_dom = flags
    return {
        "version": STORE_VERSION,
        "name": name,
        "n_items": int(n_items),
        "has_timestamps": has_ts,
        "has_behaviors": has_beh,
        **({"has_domains": True} if has_dom else {}),
        "meta": meta,
    }


def write_store_dir(target: Path, fill: Callable[[Path], dict[str, Any]]) -> Path:
    """``fill`` writes the arrays into a temp dir beside ``target`` and returns meta.json's
    record; the finished folder is then swapped in, so readers never see a half-written store
    (a crash leaves only a dot-prefixed temp dir)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        tmp.chmod(0o755)  # mkdtemp makes it private; a shared cache must stay readable
        meta = fill(tmp)
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1, default=str))
        swap_dir(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
