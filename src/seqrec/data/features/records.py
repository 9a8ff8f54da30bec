"""What every reader produces: a file's records before alignment, with ids in the form the
interaction readers give them, so metadata and interactions match on the same text."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

TITLE_BUCKETS = 4096
"""Hashed title-word vocabulary (ids 1..4096); crc32 is stable across processes and machines."""


@dataclass
class RawRecords:
    """Parsed file before alignment: original ids (text) and per-field per-record values."""

    ids: list[str]
    categorical: dict[str, list[str | None]] = field(default_factory=dict)
    multi: dict[str, list[list[str]]] = field(default_factory=dict)
    hashed: dict[str, list[list[int]]] = field(default_factory=dict)  # ids already 1..vocab-1
    numeric: dict[str, list[float | None]] = field(default_factory=dict)
    vectors: dict[str, np.ndarray] = field(default_factory=dict)


def canon_id(item_id: str) -> str:
    """Ids as the interaction readers write them: canonical integers lose leading zeros/space."""
    s = item_id.strip()
    return str(int(s)) if s.isdigit() and not (len(s) > 1 and s[0] == "0") else s
