"""What every command module shares: the console, the -c/-o option types and the result tables.

The result tables are for a person at a terminal of any width, 80 columns included: the
default shows the headline metrics and never cuts a number ('0.…'), leaving out columns or
turning the table when the terminal is narrow; --wide shows every K and --format json the
full result. Piped output gets each table at its own width.

Only typer and rich are imported at module level, so `seqrec --help` stays fast; a helper that
needs seqrec's training code imports it when called.
"""

from __future__ import annotations

import json
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.cells import cell_len
from rich.console import Console
from rich.table import Table

from seqrec.errors import SeqrecError

out = Console()

Preset = Annotated[
    str | None, typer.Option("--config", "-c", help="Preset name in configs/ or a YAML file.")
]
Overrides = Annotated[
    list[str] | None,
    typer.Option("--set", "-o", help="Dotted override, e.g. -o model.layers=4 (repeatable)."),
]


def seen_label(mask_seen: bool | str) -> str:
    """How a result's protocol treated already-seen items, for table titles."""
    if mask_seen == "window":
        return "seen items in the model's window masked"
    return "seen items masked" if mask_seen else "seen items kept"


class Format(str, Enum):
    """How `train` and `evaluate` show their result (the full grid always reaches results.json
    or the --json file)."""

    table = "table"
    wide = "wide"
    json = "json"


FormatOption = Annotated[
    Format,
    typer.Option(
        "--format",
        help="table: the headline metrics (HR and NDCG at 5, 10, 20, and MRR), fitted to the "
        "terminal; wide: HR and NDCG at every K; json: the full result as JSON on stdout, "
        "nothing else there (messages go to stderr).",
    ),
]
WideOption = Annotated[bool, typer.Option("--wide", help="Short for --format wide.")]


def output_format(fmt: Format, wide: bool) -> Format:
    """The format asked for, --wide being short for --format wide."""
    if wide and fmt is Format.json:
        raise SeqrecError("--wide and --format json contradict each other; pass one")
    return Format.wide if wide else fmt


# What a person reads at a glance: HR@1 is NDCG@1, and MRR already weighs the top ranks
HEADLINE = ("HR@5", "HR@10", "HR@20", "NDCG@5", "NDCG@10", "NDCG@20", "MRR")
# left out, in this order, while the headline table is wider than the terminal
OPTIONAL = (("HR@20", "NDCG@20"), ("HR@5", "NDCG@5"))


def metric_names(metrics: dict[str, float]) -> list[str]:
    """Every HR@k, then every NDCG@k (by k), then MRR: the same column order for every run,
    so tables of different runs line up."""
    ks = sorted({int(n.split("@")[1]) for n in metrics if n.startswith(("HR@", "NDCG@"))})
    names = [f"{m}@{k}" for m in ("HR", "NDCG") for k in ks] + ["MRR"]
    return [n for n in names if n in metrics]


def print_metrics(
    title: list[str],
    sections: dict[str, dict[str, float]],
    fmt: Format = Format.table,
    caption: list[str] | None = None,
) -> None:
    """Retrieval metrics, one row per split, never with a number cut to '0.4…'.

    The headline table (7 columns, 74 wide) fits an 80-column terminal; a narrower one loses
    the @20, then the @5 columns, and below that the table turns to one row per metric.
    ``wide`` shows every K in one row per split where the terminal is wide enough (a file
    always is) and one row per metric where it is not.
    """
    every = metric_names(next(iter(sections.values())))
    if fmt is Format.wide:
        layouts = [("split", every), ("metric", every)]
    else:
        names = [n for n in every if n in HEADLINE]
        layouts = [("split", names)]
        for pair in OPTIONAL:
            names = [n for n in names if n not in pair]
            layouts.append(("split", names))
        layouts.append(("metric", layouts[0][1]))
        if len(every) > len(layouts[0][1]):
            caption = [*(caption or []), "every K: --wide"]
    tables = [_table(by, sections, names) for by, names in layouts]
    _print_fitting(tables, title, caption or [])


def print_ctr_table(
    title: list[str], sections: dict[str, dict], caption: list[str] | None = None
) -> None:
    """Ranking-task (CTR) metrics, one row per split (80 columns wide), or one row per metric
    on a narrower terminal: `train` and `evaluate` print the same."""
    names = ["AUC", "GAUC", "LogLoss", "ECE", "mean_pred", "pos_rate", "examples"]
    tables = [_table(by, sections, names) for by in ("split", "metric")]
    _print_fitting(tables, title, caption or [])


def _table(by: str, sections: dict[str, dict], names: list[str]) -> Table:
    """A table with one row per split (``by="split"``) or one row per metric."""
    table = Table()
    if by == "split":
        table.add_column("split")
        for n in names:
            table.add_column(n, justify="right")
        for split, metrics in sections.items():
            table.add_row(split, *[_cell(metrics[n]) for n in names])
    else:
        table.add_column("metric")
        for split in sections:
            table.add_column(split, justify="right")
        for n in names:
            table.add_row(n, *[_cell(metrics[n]) for metrics in sections.values()])
    return table


def _cell(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _print_fitting(tables: list[Table], title: list[str], caption: list[str]) -> None:
    """Print the first of ``tables`` that fits the terminal (piped output has no width: the
    first), its title and caption packed into lines no wider than the table, broken only
    between their parts."""
    widths = [_natural_width(t) for t in tables]
    room = out.width if out.is_terminal else None
    pick = next((i for i, w in enumerate(widths) if room is None or w <= room), len(tables) - 1)
    table, width = tables[pick], widths[pick]
    # a narrow table widens to its longest title part, so rich never wraps one mid-phrase
    width = max(width, *(cell_len(part) for part in [*title, *caption]))
    width = width if room is None else min(width, room)
    table.min_width = width
    table.title = "\n".join(pack(title, width, " — ")) or None
    table.caption = "\n".join(pack(caption, width, " · ")) or None
    # piped output (files, CI logs) is printed at the table's own width, not rich's 80
    (out if out.is_terminal else Console(width=max(width, 80))).print(table)


def _natural_width(table: Table) -> int:
    return Console(width=10_000).measure(table).maximum


def pack(parts: list[str], width: int, sep: str) -> list[str]:
    """``parts`` joined by ``sep`` into lines of at most ``width`` columns, a line break only
    between parts (a part wider than ``width`` keeps a line of its own)."""
    lines: list[str] = []
    for part in parts:
        if lines and cell_len(lines[-1] + sep + part) <= width:
            lines[-1] += sep + part
        else:
            lines.append(part)
    return lines


def print_table(table: Table) -> None:
    """Print a table; piped output (files, CI logs) gets the table's natural width instead of
    80 columns, so metric values are never cut to '0.42…'."""
    (out if out.is_terminal else Console(width=1000)).print(table)


def print_json(body: Any) -> None:
    """--format json: the result as indented JSON, raw on stdout (rich would wrap and colour
    it), so `seqrec train --format json | jq` works."""
    sys.stdout.write(json.dumps(body, indent=2, sort_keys=True, default=float) + "\n")
    sys.stdout.flush()


def write_json(path: Path, body: Any, what: str, **dumps: Any) -> None:
    """Write ``body`` as indented JSON and say so; an unwritable path is a one-line error, not
    a traceback after the work is done."""
    try:
        path.write_text(json.dumps(body, indent=2, **dumps) + "\n")
    except OSError as err:
        raise SeqrecError(f"cannot write {path}: {err.strerror}") from None
    out.print(f"{what} written to {path}")
