"""Which files in a leaderboard folder are seqrec's, so nothing else is ever replaced.

A leaderboard folder (``--dir``) is new, empty, or marked as seqrec's by its ledger
``cells.json`` or its table ``leaderboard.json`` (both declare their ``format``). A table is
written only over files an earlier table listed as its own in leaderboard.json: a
``leaderboard.md`` someone wrote by hand is refused, never replaced.
"""

from __future__ import annotations

from pathlib import Path

from seqrec.errors import SeqrecError
from seqrec.fsutil import describe, read_format, unwritable

LEDGER, LEDGER_FORMAT = "cells.json", "seqrec-leaderboard-cells"
TABLE_JSON, TABLE_MD, TABLE_FORMAT = "leaderboard.json", "leaderboard.md", "seqrec-leaderboard"


def is_leaderboard(folder: Path) -> bool:
    folder = Path(folder)
    return (
        read_format(folder / LEDGER, LEDGER_FORMAT) is not None
        or read_format(folder / TABLE_JSON, TABLE_FORMAT) is not None
    )


def claim(folder: Path, flag: str) -> None:
    """Refuse a folder seqrec may not write a leaderboard into (before any work)."""
    folder = Path(folder)
    why = unwritable(folder, flag)
    if why is not None:
        raise SeqrecError(why)
    if folder.exists() and not folder.is_dir():
        raise SeqrecError(f"{flag} {folder} is a file; choose a folder")
    if folder.is_dir() and any(folder.iterdir()) and not is_leaderboard(folder):
        names = sorted(p.name for p in folder.iterdir())
        raise SeqrecError(
            f"{folder} holds {describe(names)} but is not a seqrec leaderboard (no {LEDGER} or "
            f"{TABLE_JSON}); choose an empty or new folder for {flag}"
        )


def owned_outputs(folder: Path) -> set[str]:
    """The table files an earlier `leaderboard table` wrote into ``folder``."""
    record = read_format(Path(folder) / TABLE_JSON, TABLE_FORMAT) or {}
    files = record.get("files", [])
    return {str(f) for f in files if isinstance(f, str)} | ({TABLE_JSON} if record else set())


def check_outputs(folder: Path, names: list[str]) -> None:
    """Every output that exists already must be one seqrec wrote there."""
    owned = owned_outputs(folder)
    foreign = [n for n in names if (Path(folder) / n).exists() and n not in owned]
    if foreign:
        raise SeqrecError(
            f"{folder} already holds {describe(foreign)}, which seqrec did not write; move "
            "them or choose another --out"
        )
