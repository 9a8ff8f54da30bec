"""The leaderboard's files: leaderboard.md, leaderboard.json and one PNG per board.

Each is written atomically (a temporary file renamed into place), and only over files an
earlier `leaderboard table` wrote (files.py): leaderboard.json lists them. The JSON holds
every number the markdown shows and more (each seed's value, both paired tests, the raw and
Holm-adjusted p-values, every run folder), so the markdown is only a view of it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from seqrec.errors import SeqrecError
from seqrec.leaderboard.collect import KEYS, build, collect, read_ledger
from seqrec.leaderboard.files import (
    TABLE_FORMAT,
    TABLE_JSON,
    TABLE_MD,
    check_outputs,
    claim,
    owned_outputs,
)
from seqrec.leaderboard.plot import MISSING, figure_png, matplotlib_pyplot
from seqrec.trainer.checkpoint import atomic_write_bytes, atomic_write_text

SHORT = {"best": "early stopping", "last": "fixed epochs", "best-512": "512 validation users",
         "gr": "generative-recommenders' protocol"}  # fmt: skip
MARK = "<!-- written by `seqrec leaderboard table`; edits are lost when it runs again -->"
INTRO = (
    "Test NDCG@10 and HR@10, mean ± 95% CI half-width: a t-interval over the row's seeds, or "
    "(†) with one seed the normal CI over its test users, which leaves out seed noise. "
    "Δ and p: each row of trained runs against the board's best one, paired over the same "
    "test users (per-user NDCG@10 averaged over each row's seeds; paired t-test, "
    "Holm-adjusted over the board's rows). Repeats: the share of test targets among the "
    "user's masked history items, and the `eval.repeat_targets` rule applied to them."
)


def _fmt(cell: dict) -> str:
    return f"{cell['mean']:.4f} ± {cell['half_width']:.4f}" + ("†" if cell["ci"] == "users" else "")


def _paired(row: dict) -> tuple[str, str]:
    vs = row["vs_best"]
    if vs is None:
        return "—", "—"
    if "error" in vs:
        return "n/a", "not paired"
    ndcg = vs["NDCG@10"]
    return f"{ndcg['diff']:+.4f}", f"{ndcg['p_ttest']:.1e} ({ndcg['p_holm']:.1e})"


def _tuning(row: dict) -> str:
    budget = row["tuning"]
    if budget:
        return f"tuned: {budget['trials']} trials, {budget['seconds']:,.0f} s"
    return "preset" if row["source"] == "run" else "—"


def _seconds(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    return f"{seconds:,.1f} s" if seconds < 100 else f"{seconds:,.0f} s"


def _repeats(row: dict) -> str:
    share = row["repeat_share"]
    return ("n/a" if share is None else f"{share:.1%}") + f" ({row['repeat_targets']})"


def board_markdown(board: dict, figure: bool) -> list[str]:
    seen = {True: "seen items masked", False: "seen items kept", "window": "seen items in the "
            "model's window masked"}.get(board["mask_seen"], str(board["mask_seen"]))  # fmt: skip
    lines = [
        f"## {board['dataset']} ({board['users']:,} users, {board['items']:,} items): "
        f"{SHORT[board['training']]}"
        + ("" if board["repeat_targets"] == "rank" else f", repeats {board['repeat_targets']}"),
        "",
        f"{board['ranking']} ranking, {seen}; {board['training_text']}."
        + (f" Paired against `{board['paired_against']}`." if board["paired_against"] else ""),
        "",
    ]
    if figure:
        lines += [f"![{board['dataset']}]({board['figure']})", ""]
    lines += [
        "| # | row | model | NDCG@10 | HR@10 | seeds | Δ NDCG@10 | p (Holm) | repeats "
        "| train time | hardware | tuning |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for i, row in enumerate(board["rows"], 1):
        diff, p = _paired(row)
        took = _seconds(row["train_seconds"])
        lines.append(
            f"| {i} | {row['label']} | {row['model']} · {row['objective']} "
            f"| {_fmt(row['NDCG@10'])} | {_fmt(row['HR@10'])} | {len(row['seeds'])} | {diff} "
            f"| {p} | {_repeats(row)} | {took} | {row['hardware']} | {_tuning(row)} |"
        )
    return [*lines, ""]


def missing_cells(ledger: dict[str, dict], root: Path | None) -> list[dict]:
    """Cells whose last outcome was no preset or a failure, and that have no finished run."""
    return [
        {"cell": name, "status": c["status"], "detail": c.get("detail", "")}
        for name, c in sorted(ledger.items())
        if c.get("status") in ("no preset", "fail")
        and not (root is not None and (Path(root) / "runs" / name / "results.json").is_file())
    ]


def markdown(boards: list[dict], missing: list[dict], figures: set[str]) -> str:
    lines = [MARK, "", "# Leaderboard", "", INTRO, ""]
    for board in boards:
        lines += board_markdown(board, board["figure"] in figures)
    if missing:
        lines += ["## Cells without a result", "", "| cell | status | detail |", "|---|---|---|"]
        lines += [
            f"| {m['cell']} | {m['status']} | {m['detail'].replace('|', '/')} |" for m in missing
        ]
        lines.append("")
    return "\n".join(lines)


@dataclass
class TableFiles:
    """What `write_table` wrote, for the command's closing lines."""

    folder: Path
    boards: int
    rows: int
    written: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def write_table(
    root: Path | None,
    out: Path | None = None,
    results: Path | None = None,
    *,
    figures: bool = True,
    on_line: Callable[[str], None] | None = None,
) -> TableFiles:
    """Collect, build and write the leaderboard into ``out`` (default: ``root``)."""
    out = Path(out if out is not None else root)
    claim(out, "--out")  # before any work
    records = collect(root, results)
    if not records:
        where = f"{root}/runs" if root is not None else ""
        where += f" or {results}" if results is not None else ""
        raise SeqrecError(
            f"no finished runs found in {where}; train some with `seqrec leaderboard run`"
        )
    boards = build(records)
    ledger = read_ledger(root) if root is not None else {}
    plt = matplotlib_pyplot() if figures else None
    done = TableFiles(out, len(boards), sum(len(b["rows"]) for b in boards))
    if figures and plt is None:
        done.notes.append(MISSING)
    pngs = [b["figure"] for b in boards] if plt is not None else []
    check_outputs(out, [TABLE_MD, TABLE_JSON, *pngs])
    out.mkdir(parents=True, exist_ok=True)
    for board in boards if plt is not None else []:
        atomic_write_bytes(out / board["figure"], figure_png(board, plt))
    missing = missing_cells(ledger, root)
    atomic_write_text(out / TABLE_MD, markdown(boards, missing, set(pngs)))
    owned = {n for n in owned_outputs(out) if (out / n).exists()} | {TABLE_MD, *pngs}
    body: dict[str, Any] = {
        "format": TABLE_FORMAT,
        "keys": list(KEYS),
        "files": sorted(owned | {TABLE_JSON}),
        "boards": boards,
        "missing": missing,
    }
    atomic_write_text(out / TABLE_JSON, json.dumps(body, indent=1, default=float) + "\n")
    done.written = [TABLE_MD, TABLE_JSON, *pngs]
    if on_line is not None:
        for note in done.notes:
            on_line(note)
    return done
