"""What seqrec has: `seqrec models` (every registered model's size for one config) and
`seqrec presets` (the YAML presets in configs/)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from seqrec.cli.common import Overrides, Preset, out, print_table
from seqrec.errors import SeqrecError


def models(
    config: Preset = None,
    set_: Overrides = None,
    n_items: Annotated[
        int, typer.Option(help="Catalogue size (ML-1M after filtering: 3416).")
    ] = 3416,
    max_len: Annotated[
        int | None, typer.Option(help="Window length (default: the config's data.max_len).")
    ] = None,
) -> None:
    """List every registered model with its parameter and FLOP counts for one config.

    Each model is built from the preset + overrides with only model.name changed, on torch's
    meta device (no memory is allocated, so large shapes are instant). FLOPs are forward +
    backward per scored position at an attended length of half the window."""
    import torch

    from seqrec.models import build_model, config_class, model_names
    from seqrec.models.common import count_parameters
    from seqrec.models.registry import flops_per_interaction
    from seqrec.recipe import load_config

    cfg = load_config(config, set_ or [])
    width = max_len or cfg.data.max_len
    shown = cfg.model.model_dump()
    table = Table(
        title=f"models at hidden={cfg.model.hidden}, layers={cfg.model.layers}, "
        f"heads={shown.get('heads', '-')}, {n_items:,} items, max_len {width}"
    )
    for col in ("model", "total", "embedding", "non-embedding", "train MFLOPs/interaction"):
        table.add_column(col, justify="left" if col == "model" else "right")
    for name in model_names():
        try:
            fields = config_class(name).model_fields  # the options this family shares
            mcfg = config_class(name).model_validate(
                {**{k: v for k, v in shown.items() if k in fields}, "name": name}
            )
            try:
                with torch.device("meta"):
                    params = count_parameters(build_model(mcfg, n_items, width))
            except (RuntimeError, NotImplementedError):  # an op without a meta kernel
                params = count_parameters(build_model(mcfg, n_items, width))
            flops = flops_per_interaction(mcfg, n_items, width / 2)["train"] / 1e6
        except (ValueError, SeqrecError) as err:  # this config does not fit that model
            table.add_row(name, f"[red]{escape(str(err).splitlines()[0])}[/]", "", "", "")
            continue
        table.add_row(
            name,
            f"{params['total']:,}",
            f"{params['embedding']:,}",
            f"{params['non_embedding']:,}",
            f"{flops:,.2f}",
        )
    print_table(table)


def presets() -> None:
    """List the YAML presets in configs/."""
    from seqrec.presets import list_presets

    for name in list_presets():
        out.print(name)
