"""Histories files for `seqrec recommend --histories`: one `id item item ...` line per user.

Read line by line and handed out in chunks, so a file of any size is held one chunk at a time.
Each id may appear once: a second line with the same id is refused, naming both line numbers,
because two histories under one id would produce two interleaved blocks of recommendations
that no reader can tell apart, and merging them would guess at an order the file does not give.
`check_history_file` reads the whole file once before any model is loaded, so a bad line
anywhere stops the command before any scoring.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from seqrec.errors import SeqrecError


def _decode_line(raw: bytes) -> str:
    try:  # the data readers' rule (UTF-8 when valid, latin-1 otherwise), line by line
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _history_lines(path: Path) -> Iterator[tuple[int, str, list[str]]]:
    """(bytes read, id, items) for every non-blank line; every line checked as it is read."""
    path = Path(path)
    if not path.is_file():
        raise SeqrecError(
            f"histories file {path} does not exist; pass a file with one `id item ...` line per user"
        )
    first_line: dict[str, int] = {}
    with open(path, "rb") as fh:
        for n, raw in enumerate(fh, 1):
            line = _decode_line(raw)
            parts = line.replace(",", " ").split()
            if not parts:
                yield len(raw), "", []
                continue
            if len(parts) < 2:
                raise SeqrecError(
                    f"{path}:{n}: a line needs an id and at least one item, got "
                    f"'{line.strip()}'; write it as `id item item ...` or remove it"
                )
            if (earlier := first_line.setdefault(parts[0], n)) != n:
                raise SeqrecError(
                    f"{path}: id '{parts[0]}' is on lines {earlier} and {n}; give each id one "
                    "line (join its items into one history, oldest first)"
                )
            yield len(raw), parts[0], parts[1:]
    if not first_line:
        raise SeqrecError(
            f"histories file {path} is empty; write one `id item item ...` line per user"
        )


def check_history_file(path: Path) -> int:
    """Read the whole file once, refusing its first bad line; returns the number of users."""
    return sum(1 for _, uid, _ in _history_lines(path) if uid)


def iter_history_file(path: Path, chunk: int) -> Iterator[tuple[list[str], list[list[str]], int]]:
    """(ids, histories, bytes read) for at most ``chunk`` users at a time.

    The file holds one `id item item ...` line per user (whitespace or comma separated);
    blank lines are skipped, and an id on a second line is refused.
    """
    ids: list[str] = []
    hists: list[list[str]] = []
    consumed = 0
    for size, uid, items in _history_lines(path):
        consumed += size
        if not uid:
            continue
        ids.append(uid)
        hists.append(items)
        if len(ids) >= chunk:
            yield ids, hists, consumed
            ids, hists, consumed = [], [], 0
    if ids:
        yield ids, hists, consumed


def read_histories(path: Path) -> tuple[list[str], list[list[str]]]:
    """The whole histories file at once (small files; `recommend_to_file` streams instead)."""
    ids, hists = [], []
    for i, h, _ in iter_history_file(path, 1 << 62):
        ids += i
        hists += h
    return ids, hists
