"""`seqrec data list|prepare|stats|generate`: the dataset catalogue, the prepared stores, and
synthetic logs of any size (data/synthetic.py)."""

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


@app.command("generate")
def data_generate(
    out_dir: Annotated[str, typer.Argument(help="New folder for the part files.")],
    events: Annotated[int, typer.Option(help="Interactions in the whole log.")] = 1_000_000,
    items: Annotated[int, typer.Option(help="Catalogue size.")] = 100_000,
    zipf: Annotated[float, typer.Option(help="Item popularity exponent a (p ~ rank^-a).")] = 1.05,
    median_length: Annotated[float, typer.Option(help="Median events per user.")] = 15.0,
    length_sigma: Annotated[float, typer.Option(help="Log-normal sigma of lengths.")] = 0.8,
    days: Annotated[int, typer.Option(help="Length of the period, in days.")] = 90,
    parts: Annotated[int, typer.Option(help="Part files (equal time windows).")] = 16,
    file_format: Annotated[str, typer.Option("--format", help="parquet or csv.")] = "parquet",
    chunk_events: Annotated[int, typer.Option(help="Events generated at a time.")] = 1_000_000,
    seed: Annotated[int, typer.Option(help="Random seed: same seed, same files.")] = 0,
    overwrite: Annotated[
        bool, typer.Option(help="Replace a folder this command generated before.")
    ] = False,
) -> None:
    """Write a synthetic log (Zipf items, log-normal user lengths, increasing timestamps) as
    time-partitioned Parquet or CSV, in bounded memory; train on it with -o data.dataset=OUT."""
    from pydantic import ValidationError

    from seqrec.data.synthetic import LogSpec, generate_log
    from seqrec.errors import SeqrecError

    values = dict(events=events, items=items, zipf=zipf, median_length=median_length)
    values.update(length_sigma=length_sigma, days=days, parts=parts, format=file_format)
    values.update(chunk_events=chunk_events, seed=seed)
    try:
        spec = LogSpec(**values)
    except ValidationError as err:
        first = err.errors()[0]
        name = "--" + str(first["loc"][0]).replace("_", "-")
        raise SeqrecError(f"{name}: {first['msg']}; fix the option") from None
    made = generate_log(spec, out_dir, overwrite)
    out.print(
        f"wrote {made['events']:,} events of {made['users']:,} users over {items:,} items "
        f"into {len(made['files'])} {file_format} file(s) in {out_dir} "
        f"({made['bytes'] / 2**20:,.1f} MiB, {made['seconds']:.1f}s)"
    )
