"""What every command module shares: the console, the -c/-o option types and the result tables.

Only typer and rich are imported at module level, so `seqrec --help` stays fast; a helper that
needs seqrec's training code imports it when called.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
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


def metrics_table(
    title: str, sections: dict[str, dict[str, float]], ks=(1, 5, 10, 20, 50, 100)
) -> Table:
    """Retrieval metrics, one row per split, in a fixed column order (HR@k, NDCG@k, MRR) so
    tables of different runs line up; columns a result lacks are left out."""
    table = Table(title=title)
    table.add_column("split")
    names = [f"{m}@{k}" for m in ("HR", "NDCG") for k in ks] + ["MRR"]
    first = next(iter(sections.values()))
    names = [n for n in names if n in first]
    for n in names:
        table.add_column(n, justify="right")
    for split, metrics in sections.items():
        table.add_row(split, *[f"{metrics[n]:.4f}" for n in names])
    return table


def print_table(table: Table) -> None:
    """Print a table; piped output (files, CI logs) gets the table's natural width instead of
    80 columns, so metric values are never cut to '0.42…'."""
    (out if out.is_terminal else Console(width=1000)).print(table)


def print_ctr_table(title: str, sections: dict[str, dict]) -> None:
    """Ranking-task (CTR) metrics, one row per split: `train` and `evaluate` print the same."""
    table = Table(title=title)
    names = ("AUC", "GAUC", "LogLoss", "ECE", "mean_pred", "pos_rate", "examples")
    table.add_column("split")
    for n in names:
        table.add_column(n, justify="right")
    for part, m in sections.items():
        cells = [f"{m[n]:.4f}" if isinstance(m[n], float) else str(m[n]) for n in names]
        table.add_row(part, *cells)
    print_table(table)


def write_json(path: Path, body: Any, what: str, **dumps: Any) -> None:
    """Write ``body`` as indented JSON and say so; an unwritable path is a one-line error, not
    a traceback after the work is done."""
    try:
        path.write_text(json.dumps(body, indent=2, **dumps) + "\n")
    except OSError as err:
        raise SeqrecError(f"cannot write {path}: {err.strerror}") from None
    out.print(f"{what} written to {path}")
