"""`seqrec train`: one run of either task (retrieval or ranking) into a run folder."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from seqrec.cli.common import (
    Overrides,
    Preset,
    metrics_table,
    out,
    print_ctr_table,
    print_table,
    seen_label,
)
from seqrec.errors import SeqrecError


def train(
    config: Preset = None,
    set_: Overrides = None,
    model: Annotated[
        str | None,
        typer.Option(help="Model family, short for -o model.name=NAME (`seqrec models`)."),
    ] = None,
    task: Annotated[
        str | None,
        typer.Option(
            help="retrieval | ranking: short for -o task.name=NAME (ranking also sets "
            "data.split=temporal; metrics AUC, GAUC, log loss, calibration)."
        ),
    ] = None,
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="Run folder (default runs/<preset>).")
    ] = None,
    resume: Annotated[Path | None, typer.Option(help="Continue the run in this folder.")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing run folder.")] = False,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
) -> None:
    """Train a model, early-stop on validation NDCG@10, then evaluate the test split once.

    Multi-process: `torchrun --nproc_per_node N -m seqrec train ...` (docs/DISTRIBUTED.md).
    """
    from seqrec.trainer.run import train_run

    if resume is not None:
        if config or set_ or model or out_dir or overwrite or task:
            raise SeqrecError(
                "--resume continues a run with the config saved in its folder; "
                "drop -c/--set/--model/--out/--overwrite (or start a new run without --resume)"
            )
        run_dir = resume
        cfg = None
    else:
        cfg, run_dir = _new_run(config, set_, model, task, out_dir)
    from seqrec.trainer.distributed import is_main_process

    try:
        results = train_run(
            cfg, run_dir, resume=resume is not None, overwrite=overwrite, progress=progress
        )
    except SeqrecError:
        if not is_main_process():  # under torchrun rank 0 reports it; the others stay quiet
            raise typer.Exit(2) from None
        raise
    if not is_main_process():
        return
    if results.get("task") == "ranking":
        _print_ranking_results(results)
    else:
        _print_results(results)
    out.print(f"run saved in {run_dir}")


def _new_run(
    config: str | None,
    set_: list[str] | None,
    model: str | None,
    task: str | None,
    out_dir: Path | None,
):
    """The config a new run trains (preset + the shorthand flags + overrides) and its folder."""
    from seqrec.recipe import load_config

    by_task = [f"task.name={task}"] if task else []
    if task == "ranking":
        by_task.insert(0, "data.split=temporal")
    cfg = load_config(
        config, [*by_task, *(set_ or []), *([f"model.name={model}"] if model else [])]
    )
    # --model names the run after the model it trains, not after the preset it borrows
    by_model = f"{cfg.model.name}-{Path(cfg.data.dataset).stem}"
    if cfg.task.name == "ranking":
        by_model = f"ranking-{cfg.task.baseline or cfg.model.name}-{Path(cfg.data.dataset).stem}"
    name = Path(config).stem if config and not model else by_model
    return cfg, out_dir or Path("runs") / name


def _print_results(results: dict) -> None:
    """The valid/test metrics of a finished retrieval run, titled with its protocol."""
    params = results["params"]
    protocol = results["test"]["protocol"]
    label = protocol["ranking"] + (" ranking" if protocol["ranking"] == "full" else "")
    label += ", " + seen_label(protocol["mask_seen"])
    tested = f"best epoch {results['best_epoch']}"
    if results.get("selected") == "last epoch":
        tested = f"last epoch {results['tested_epoch']}, best validation {results['best_epoch']}"
    print_table(
        metrics_table(
            f"{results['config']['model']['name']} on {results['dataset']['name']} — {label} "
            f"({tested}, {params['total']:,} parameters)",
            {"valid": results["valid"]["metrics"], "test": results["test"]["metrics"]},
        )
    )


def _print_ranking_results(res: dict) -> None:
    """A ranking-task run's AUC, GAUC, log loss and calibration per split."""
    print_ctr_table(
        f"ranking {res['ranker']} on {res['dataset']['name']} — temporal split, real "
        f"events (best epoch {res['best_epoch']}, {res['params']['total']:,} parameters)",
        {part: res[part]["metrics"] for part in ("valid", "test")},
    )
