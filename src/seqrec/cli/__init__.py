"""The `seqrec` command line. Only this package knows about argv, exit codes and terminals.

Every `SeqrecError` is printed as one line (`error: ...`) with exit code 2; anything else is a
bug and keeps its traceback.

One module per command group (`data`, `train`, `evaluate`, `compare`, `tune`, `leaderboard`,
`serve`, `scaling`, `info`; shared options and tables in `common`); this file only assembles
them, in the order `seqrec --help` lists them, so a new command is a function in its group's
module (or a new module) plus one line in ``COMMANDS``. Command modules import torch, polars
and the rest of seqrec inside the command functions, which keeps `seqrec --help` fast.
"""

from __future__ import annotations

import sys

import typer
from rich.console import Console
from rich.markup import escape

from seqrec.cli import compare, data, evaluate, info, leaderboard, scaling, serve, train, tune
from seqrec.errors import SeqrecError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Sequential recommendation: train, evaluate and serve next-item models.",
)

COMMANDS = (
    train.train,
    evaluate.evaluate,
    compare.compare,
    tune.tune,
    serve.recommend,
    serve.export,
    serve.serve,
    scaling.apen,
    info.models,
    scaling.sweep,
    scaling.fit,
    info.presets,
)
"""Top-level commands in `seqrec --help` order; each is named after its function."""

for _command in COMMANDS:
    app.command()(_command)
app.add_typer(data.app, name="data")
app.add_typer(leaderboard.app, name="leaderboard")


def main() -> None:
    """Console entry point (`seqrec`, `python -m seqrec`): a `SeqrecError` becomes one line."""
    try:
        app()
    except SeqrecError as err:
        # the message is plain text: escape it so ids or paths like '[x]' are not read as markup
        Console(stderr=True).print(
            f"[bold red]error:[/] {escape(str(err))}", highlight=False, soft_wrap=True
        )
        sys.exit(2)
