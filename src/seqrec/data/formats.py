"""The interaction formats seqrec reads, and a chosen format with the evidence for it.

Kept apart from detection (``evidence.py``, which needs polars) so that a store whose format
is given (``data.format`` or a catalogue entry) can be looked up in the cache without importing
polars, and still record why it was read the way it was.
"""

from __future__ import annotations

from typing import NamedTuple

FORMATS = ("ml-dat", "csv", "parquet", "seq", "pairs", "seq-ts")


class FormatChoice(NamedTuple):
    """The format a file is read in and why; ``detected`` False means it was given."""

    format: str
    evidence: str
    detected: bool = True


def given(fmt: str, why: str) -> FormatChoice:
    """A format the user or the catalogue named: never second-guessed."""
    return FormatChoice(fmt, f"given: {why}", False)


def found(fmt: str, why: str) -> FormatChoice:
    """A format detection chose, with what it saw."""
    return FormatChoice(fmt, f"detected: {why}", True)
