"""`seqrec evaluate`: a finished run's best weights under another protocol.

`--json PATH` writes the result to a file (as it always has); `--format json` prints it on
stdout instead of the table.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from seqrec.cli.common import (
    Format,
    FormatOption,
    WideOption,
    output_format,
    print_ctr_table,
    print_json,
    print_metrics,
    seen_label,
)
from seqrec.cli.train import print_domain_metrics


def evaluate(
    run: Annotated[Path, typer.Argument(help="Run folder written by `seqrec train`.")],
    split: Annotated[str, typer.Option(help="valid or test")] = "test",
    sampled: Annotated[
        str | None, typer.Option(help="uniform | popularity: sampled metrics (labelled so).")
    ] = None,
    negatives: Annotated[
        int | None, typer.Option(help="Negatives for sampled metrics (with --sampled; 100).")
    ] = None,
    keep_seen: Annotated[bool, typer.Option(help="Do not mask already-seen items.")] = False,
    mask_window: Annotated[
        bool,
        typer.Option(
            help="Mask only the seen items inside the model's window (the last data.max_len), "
            "as generative-recommenders evaluates."
        ),
    ] = False,
    repeat_targets: Annotated[
        str | None,
        typer.Option(
            help="rank | miss | drop: a target the user has already seen is ranked by its "
            "score, counted a miss (as code that zeroes training items does) or left out "
            "(default: the run's eval.repeat_targets)."
        ),
    ] = None,
    json_out: Annotated[
        Path | None,
        typer.Option(
            "--json", help="Also write the full result to this file (--format json: to stdout)."
        ),
    ] = None,
    overwrite: bool = False,
    fmt: FormatOption = Format.table,
    wide: WideOption = False,
) -> None:
    """Evaluate a trained run's best weights (full ranking unless --sampled; a ranking-task
    run reports AUC, GAUC, log loss and calibration)."""
    from seqrec.errors import SeqrecError
    from seqrec.fsutil import unwritable
    from seqrec.run import Run
    from seqrec.trainer.checkpoint import atomic_write_json

    fmt = output_format(fmt, wide)
    if split not in {"valid", "test"}:
        raise SeqrecError(f"--split must be 'valid' or 'test', not '{split}'")
    if sampled not in {None, "uniform", "popularity"}:
        raise SeqrecError(f"--sampled must be 'uniform' or 'popularity', not '{sampled}'")
    if keep_seen and mask_window:
        raise SeqrecError("--keep-seen and --mask-window contradict each other; pass one")
    if negatives is not None and sampled is None:
        raise SeqrecError(
            "--negatives sets the sampled protocol's negatives, but full ranking uses none; "
            "add --sampled uniform (or popularity) or drop --negatives"
        )
    if json_out is not None:  # checked before any work
        if json_out.is_dir():
            raise SeqrecError(f"{json_out} is a folder; choose a file path for --json")
        if json_out.exists() and not overwrite:
            raise SeqrecError(f"{json_out} already exists; pass --overwrite or choose another path")
        if (why := unwritable(json_out, "--json path")) is not None:
            raise SeqrecError(why)
    run_ = Run(run)
    if run_.config.task.name == "ranking":
        res = run_.evaluate(split)
        if fmt is not Format.json:
            print_ctr_table([str(run), "ranking task, real events"], {split: res.metrics})
    else:
        mask_seen: bool | str = "window" if mask_window else not keep_seen
        res = run_.evaluate(
            split, sampled, 100 if negatives is None else negatives, mask_seen,
            repeat_targets=repeat_targets,
        )  # fmt: skip
        label = res.protocol["ranking"] + ", " + seen_label(res.protocol["mask_seen"])
        if res.protocol["repeat_targets"] != "rank":
            label += f", seen targets: {res.protocol['repeat_targets']}"
        if fmt is not Format.json:
            print_metrics([str(run), label], {split: res.metrics}, fmt)
            print_domain_metrics(split, res.metrics, res.protocol, fmt)
    if json_out is not None:
        atomic_write_json(json_out, res.to_json())
    if fmt is Format.json:
        print_json(res.to_json())
