"""`seqrec evaluate`: a finished run's best weights under another protocol."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from seqrec.cli.common import (
    is_ranking,
    metrics_table,
    print_ctr_table,
    print_table,
    seen_label,
)


def evaluate(
    run: Annotated[Path, typer.Argument(help="Run folder written by `seqrec train`.")],
    split: Annotated[str, typer.Option(help="valid or test")] = "test",
    sampled: Annotated[
        str | None, typer.Option(help="uniform | popularity: sampled metrics (labelled so).")
    ] = None,
    negatives: Annotated[int, typer.Option(help="Negatives for sampled metrics.")] = 100,
    keep_seen: Annotated[bool, typer.Option(help="Do not mask already-seen items.")] = False,
    mask_window: Annotated[
        bool,
        typer.Option(
            help="Mask only the seen items inside the model's window (the last data.max_len), "
            "as generative-recommenders evaluates."
        ),
    ] = False,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Also write the result here.")
    ] = None,
    overwrite: bool = False,
) -> None:
    """Evaluate a trained run's best weights (full ranking unless --sampled; a ranking-task
    run reports AUC, GAUC, log loss and calibration)."""
    from seqrec.train.evaluate_run import evaluate_run

    if is_ranking(None, run, marker="config.yaml"):
        from seqrec.task.ranking import evaluate_ranking_run

        metrics = evaluate_ranking_run(run, split, json_out, overwrite)
        print_ctr_table(f"{run} — ranking task, real events", {split: metrics})
        return
    res = evaluate_run(
        run, split, sampled, negatives, keep_seen, json_out, overwrite, mask_window=mask_window
    )
    label = res.protocol["ranking"] + ", " + seen_label(res.protocol["mask_seen"])
    print_table(metrics_table(f"{run} — {label}", {split: res.metrics}))
