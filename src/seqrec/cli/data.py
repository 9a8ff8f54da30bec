"""`seqrec data list|prepare|stats`: the dataset catalogue and the prepared stores."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from seqrec.cli.common import Overrides, Preset, out, print_table

app = typer.Typer(no_args_is_help=True, help="Inspect and prepare datasets.")


@app.command("list")
def data_list() -> None:
    """List the datasets the catalogue knows (name, source, preprocessing)."""
    from seqrec.data import list_datasets

    table = Table(title="dataset catalogue (local copies: $SEQREC_DATA_DIR)")
    for col in ("name", "format", "defaults", "source"):
        table.add_column(col)
    for spec in list_datasets():
        defaults = ", ".join(f"{k}={v}" for k, v in spec.defaults.items()) or "-"
        table.add_row(spec.name, spec.format, defaults, spec.url)
    out.print(table)


def _data_config(dataset: str, preset: str | None, overrides: list[str] | None):
    from seqrec.recipe import load_config

    return load_config(preset, [f"data.dataset={dataset}", *(overrides or [])]).data


@app.command("prepare")
def data_prepare(
    dataset: Annotated[str, typer.Argument(help="Catalogue name or path.")],
    config: Preset = None,
    set_: Overrides = None,
) -> None:
    """Parse, filter and cache a dataset (later runs load the memory-mapped cache)."""
    data_stats(dataset, config, set_)


@app.command("stats")
def data_stats(
    dataset: Annotated[str, typer.Argument(help="Catalogue name or path.")],
    config: Preset = None,
    set_: Overrides = None,
) -> None:
    """Print users, items, interactions and sequence-length statistics."""
    from seqrec.data import prepare

    store, split = prepare(_data_config(dataset, config, set_))
    table = Table(title=f"dataset {dataset}")
    table.add_column("statistic")
    table.add_column("value", justify="right")
    for key, value in {
        **store.stats(),
        "train users": len(split.train),
        "valid users": len(split.valid),
        "test users": len(split.test),
    }.items():
        table.add_row(key, f"{value:,.4g}" if isinstance(value, float) else str(value))
    print_table(table)
