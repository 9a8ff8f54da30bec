"""Model packages, by their old import path: the format is `seqrec.run.package`, the loader
`seqrec.run.Run` (a package is an exported run read by the same loader).

`export_package` and `load` keep the CLI's `seqrec export` / `seqrec serve` working until it
calls `Run` directly (`Run(run).export(...)`, `seqrec.run.load_package(path)`); this module,
which imports the run layer from beside it, goes then.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from seqrec.run import Recommender, Run, load_package
from seqrec.run.package import (
    CONFIG,
    FORMAT,
    FORMAT_VERSION,
    ITEMS,
    MANIFEST,
    METADATA,
    WEIGHTS,
    is_package,
    read_item_metadata,
    read_manifest,
    read_package,
    sha256_file,
)

__all__ = [
    "CONFIG",
    "FORMAT",
    "FORMAT_VERSION",
    "ITEMS",
    "MANIFEST",
    "METADATA",
    "WEIGHTS",
    "export_package",
    "is_package",
    "load",
    "read_item_metadata",
    "read_manifest",
    "read_package",
    "sha256_file",
]


def export_package(
    run_dir: Path,
    out_dir: Path,
    item_metadata: Path | None = None,
    metadata_id_col: str | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """`Run(run_dir).export(...)` -> the package's manifest."""
    return Run(run_dir).export(out_dir, item_metadata, metadata_id_col, overwrite).manifest


def load(path: str | os.PathLike, device: str = "cpu") -> Recommender:
    """`seqrec.run.load_package`: a verified package only (the server needs its popularity)."""
    return load_package(path, device)
