"""Filesystem rules that never lose a user's data: atomic folder swaps, owned folders.

Why here: a run folder, a model package and a dataset store are all folders seqrec replaces.
Each replacement follows the same two rules, so they live in one place below every layer
(this module imports nothing from seqrec; callers turn its findings into `SeqrecError`s):

* a finished folder is swapped into place atomically (`swap_dir`), so at every instant the
  target is either the complete old folder or the complete new one;
* a folder is replaced only when everything in it is something seqrec writes there
  (`foreign_entries` lists what is not), and only those entries are ever removed
  (`remove_entries`), so a user's own files survive any flag.

Output paths are checked before work starts (`unwritable`), so a long run does not fail
at its last step on a folder it cannot write.

The run folder's layout (its file names and manifest) is here too, for the same reason: the
trainer, the ranking task, the package writer and `seqrec.run.Run` must agree on what a run
folder is without importing one another.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

_SHOWN = 4  # foreign names quoted in a refusal; the rest are counted

RUN_MANIFEST = "seqrec-run.json"
RUN_FORMAT = "seqrec-run"
RUN_FORMAT_VERSION = 1
CONFIG = "config.yaml"
METRICS = "metrics.jsonl"
CHECKPOINT = "checkpoint.pt"
WEIGHTS = "best.safetensors"
ITEM_IDS = "item_ids.npy"
RESULTS = "results.json"
TEST_RANKS = "test_ranks.npy"
RUN_FILES = frozenset(
    {RUN_MANIFEST, CONFIG, METRICS, CHECKPOINT, WEIGHTS, ITEM_IDS, RESULTS, TEST_RANKS}
    | {"test_predictions.npz"}  # the ranking task's per-example test output
)
"""Every file seqrec writes into a run folder. A trainer that writes a new file must add it
here, or `--overwrite` will (safely) refuse to replace its runs."""


def swap_dir(tmp: Path, target: Path) -> None:
    """Move the finished folder ``tmp`` to ``target``, replacing an existing one.

    The old folder is first renamed aside (same filesystem, so both renames are atomic) and only
    deleted once the new one is in place: at every instant ``target`` is either the complete old
    folder or the complete new one. Callers check first that ``target`` is theirs to replace.
    """
    if not target.exists():
        os.replace(tmp, target)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
    os.replace(target, old / target.name)
    os.replace(tmp, target)
    shutil.rmtree(old, ignore_errors=True)


def is_temp_of(name: str, known: Iterable[str]) -> bool:
    """Whether ``name`` is an atomic write's leftover temporary of one of ``known``
    (``.<name>.<random>.tmp``, what an interrupted `atomic_write_*` can leave)."""
    return (
        name.startswith(".")
        and name.endswith(".tmp")
        and any(name.startswith(f".{k}.") for k in known)
    )


def foreign_entries(folder: Path, owned: Callable[[str], bool]) -> list[str]:
    """Sorted names in ``folder`` that are not ``owned`` files (sub-folders never are)."""
    return sorted(p.name for p in Path(folder).iterdir() if not (p.is_file() and owned(p.name)))


def describe(names: list[str]) -> str:
    """``a, b, c, d and 3 more``: enough of a list to recognise it, on one line."""
    shown = ", ".join(names[:_SHOWN])
    return shown + (f" and {len(names) - _SHOWN} more" if len(names) > _SHOWN else "")


def remove_entries(folder: Path, owned: Callable[[str], bool]) -> None:
    """Delete the ``owned`` files of ``folder`` and nothing else (the folder itself stays).

    Entry by entry rather than `shutil.rmtree`, so even a file that appears after the caller's
    check is left alone unless it is one seqrec writes.
    """
    for p in Path(folder).iterdir():
        if p.is_file() and not p.is_symlink() and owned(p.name):
            p.unlink()


def unwritable(path: Path, flag: str) -> str | None:
    """Why an output ``path`` cannot be created or written (one line naming ``flag``, the
    option the user gave it with), or None when it can: checked before any work starts.

    The nearest existing ancestor must be a folder this process may write into (files are
    renamed into place there), and an existing folder at ``path`` must be writable too.
    """
    path = Path(path)
    probe = path.parent
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        return f"cannot create {path}: {probe} is a file; choose another {flag}"
    for folder in (probe, path) if path.is_dir() else (probe,):
        if not os.access(folder, os.W_OK | os.X_OK):
            return f"cannot write to {folder} (permission denied); choose another {flag}"
    return None


# ----------------------------------------------------------------------- run folder layout


def owned_by_run(name: str) -> bool:
    """Whether a run folder's entry ``name`` is one seqrec writes there (or its temporary)."""
    return name in RUN_FILES or is_temp_of(name, RUN_FILES)


def read_format(path: Path, fmt: str) -> dict[str, Any] | None:
    """The JSON object in ``path`` when it declares ``"format": fmt``, else None (missing,
    unreadable, or some other tool's file of the same name)."""
    try:
        obj = json.loads(Path(path).read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return obj if isinstance(obj, dict) and obj.get("format") == fmt else None


def read_run_manifest(run_dir: Path) -> dict[str, Any] | None:
    """The run's manifest, or None when it has none (a run from before manifests, or not a
    run)."""
    return read_format(Path(run_dir) / RUN_MANIFEST, RUN_FORMAT)


def is_run_folder(run_dir: Path) -> bool:
    """A seqrec run: its manifest, or (written before manifests) config.yaml beside
    item_ids.npy or checkpoint.pt."""
    run_dir = Path(run_dir)
    if read_run_manifest(run_dir) is not None:
        return True
    return (run_dir / CONFIG).is_file() and (
        (run_dir / ITEM_IDS).is_file() or (run_dir / CHECKPOINT).is_file()
    )
