"""`seqrec train`: one run of either task (retrieval or ranking) into a run folder.

The end of a run says why training stopped (patience, train.epochs, train.max_steps or
train.time_budget_s) in one line, then the result as `--format` asks (see cli/common.py).
"""

from __future__ import annotations

import sys
from contextlib import nullcontext, redirect_stdout
from pathlib import Path
from typing import Annotated

import typer

from seqrec.cli.common import (
    Format,
    FormatOption,
    Overrides,
    Preset,
    WideOption,
    out,
    output_format,
    print_ctr_table,
    print_json,
    print_metrics,
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
    resume: Annotated[
        Path | None,
        typer.Option(
            help="Continue the run in this folder; with -o train.time_budget_s=N (or "
            "train.epochs / train.patience / train.max_steps) train a finished run further."
        ),
    ] = None,
    continue_from: Annotated[
        Path | None,
        typer.Option(
            help="Update this finished run on new events (--events) into a new --out folder: "
            "old ids keep their rows, training goes on from its optimiser state "
            "(docs/INCREMENTAL.md). -o may change train.* and eval.* only."
        ),
    ] = None,
    events: Annotated[
        list[Path] | None,
        typer.Option(help="With --continue-from: a file of new events (repeatable, in order)."),
    ] = None,
    train_rows: Annotated[
        str, typer.Option(help="With --continue-from: all | changed (only users with new events).")
    ] = "all",
    new_items: Annotated[
        str,
        typer.Option(
            help="With --continue-from: how new items' rows start: auto (features when the "
            "run has them, else model) | model | mean | features | context (the mean hidden "
            "state before each new item in the training data)."
        ),
    ] = "auto",
    repeat_changed: Annotated[
        int,
        typer.Option(
            help="With --continue-from and --train-rows all: train the rows of users with new "
            "events this many times an epoch (the others once)."
        ),
    ] = 1,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing run folder.")] = False,
    progress: Annotated[
        bool, typer.Option(help="Show progress bars (on a terminal; never in a file).")
    ] = True,
    fmt: FormatOption = Format.table,
    wide: WideOption = False,
) -> None:
    """Train a model, early-stop on validation NDCG@10, then evaluate the test split once.

    --continue-from RUN --events FILE --out NEW updates a finished run on new events.
    --resume RUN -o train.time_budget_s=N (or train.epochs / train.patience / train.max_steps)
    trains a finished or interrupted run further from its last checkpoint.

    Prints why training stopped and the valid/test metrics (--wide: every K; --format json:
    the results.json content on stdout). Multi-process: `torchrun --nproc_per_node N -m
    seqrec train ...` (docs/DISTRIBUTED.md).
    """
    from seqrec.trainer.run import train_run

    fmt = output_format(fmt, wide)
    update = None
    if continue_from is not None:
        if config or model or task or resume:
            raise SeqrecError(
                "--continue-from keeps the run's config (-o may change train.* and eval.*); "
                "drop -c/--model/--task/--resume"
            )
        if out_dir is None:
            raise SeqrecError("--continue-from writes a new run folder; pass it with --out")
        from seqrec.trainer.continued import plan_continuation

        update = plan_continuation(
            continue_from, events or [], set_, train_rows, new_items, repeat_changed
        )
        cfg, run_dir = None, out_dir
    elif events or train_rows != "all" or new_items != "auto" or repeat_changed != 1:
        raise SeqrecError(
            "--events, --train-rows, --new-items and --repeat-changed belong to an update: "
            "pass them with --continue-from RUN"
        )
    elif resume is not None:
        if config or model or out_dir or overwrite or task:
            raise SeqrecError(
                "--resume continues a run with the config saved in its folder (-o may change "
                "its stopping rules only); drop -c/--model/--out/--overwrite (or start a new "
                "run without --resume)"
            )
        run_dir = resume
        cfg = None
    else:
        cfg, run_dir = _new_run(config, set_, model, task, out_dir)
    from seqrec.trainer.distributed import is_main_process

    # --format json: stdout carries the JSON alone, whatever training prints on the way
    quiet = redirect_stdout(sys.stderr) if fmt is Format.json else nullcontext()
    try:
        with quiet:
            results = train_run(
                cfg,
                run_dir,
                resume=resume is not None,
                overwrite=overwrite,
                progress=progress,
                continuation=update,
                extend=set_ if resume is not None else None,
            )
    except SeqrecError:
        if not is_main_process():  # under torchrun rank 0 reports it; the others stay quiet
            raise typer.Exit(2) from None
        raise
    if not is_main_process():
        return
    if fmt is Format.json:
        print_json(results)
        print(f"run saved in {run_dir}", file=sys.stderr)
        return
    if line := stop_line(results):
        _say(line)
    if results.get("task") == "ranking":
        _print_ranking_results(results)
    else:
        _print_results(results, fmt)
    _say(f"run saved in {run_dir}")


def _say(line: str) -> None:
    """One message line: on a terminal narrower than it, broken between phrases (as the
    trainer's lines are); piped, never broken."""
    from seqrec.trainer.log import phrase_lines

    if out.is_terminal:
        line = "\n".join(phrase_lines(line, out.width))
    out.print(line, highlight=False, markup=False, soft_wrap=True)


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


def stop_line(results: dict) -> str | None:
    """Why training ended, from results.json's ``stopped_by`` (none for an untrained
    baseline): the option that ended it, with its value, and the epoch whose weights count,
    so a run that stopped early is never mistaken for one that ran its course."""
    why = results.get("stopped_by")
    if why is None:
        return None
    train = results["config"]["train"]
    task = results["config"].get("task", {})
    monitor = task.get("monitor", "AUC") if results.get("task") == "ranking" else "NDCG@10"
    evals = f"{train['patience']} evaluation" + ("s" if train["patience"] != 1 else "")
    reason = {
        "patience": f"no better validation {monitor} in {evals} (train.patience)",
        "epochs": f"reached train.epochs={train['epochs']}",
        "max_steps": f"reached train.max_steps={train.get('max_steps')}",
        "time_budget": f"train.time_budget_s={train.get('time_budget_s')} used "
        f"({results.get('wall_seconds') or 0:.0f}s of training and validation)",
    }.get(why, why)
    return f"stopped: {reason}, best epoch {results['best_epoch']}"


def _caption(results: dict) -> list[str]:
    """Which weights the test scored (the best validated ones, or the last: train.select)
    and how many parameters they have; a baseline trains none."""
    if results.get("best_epoch") is None:
        return ["untrained baseline"]
    tested = f"best epoch {results['best_epoch']}"
    if results.get("selected") == "last epoch":
        tested = f"last epoch {results['tested_epoch']}, best validation {results['best_epoch']}"
    return [tested, f"{results['params']['total']:,} parameters"]


def _print_results(results: dict, fmt: Format) -> None:
    """The valid/test metrics of a finished retrieval run, titled with its protocol."""
    protocol = results["test"]["protocol"]
    label = protocol["ranking"] + (" ranking" if protocol["ranking"] == "full" else "")
    label += ", " + seen_label(protocol["mask_seen"])
    print_metrics(
        [f"{results['config']['model']['name']} on {results['dataset']['name']}", label],
        {"valid": results["valid"]["metrics"], "test": results["test"]["metrics"]},
        fmt,
        caption=_caption(results),
    )
    print_domain_metrics("test", results["test"]["metrics"], protocol, fmt)


def print_domain_metrics(split: str, metrics: dict, protocol: dict, fmt: Format) -> None:
    """Multi-domain data: one row per (domain, protocol) of ``split``'s per-domain metrics
    (``domain:<name>/<protocol>/<metric>``, eval/domains.py); nothing otherwise."""
    block = protocol.get("domains")
    if not block:
        return
    sections: dict[str, dict[str, float]] = {}
    for name in block["rows"]:
        for how in block["protocols"]:
            prefix = f"domain:{name}/{how}/"
            found = {k[len(prefix) :]: v for k, v in metrics.items() if k.startswith(prefix)}
            if found:
                sections[f"{name} {how}"] = found
    if not sections:
        return
    rows = ", ".join(f"{name} {n:,}" for name, n in block["rows"].items())
    short = {
        "own": "among its domain's items",
        "joint": "among every item",
        "sampled": f"among {block.get('negatives')} negatives from its domain",
    }
    said = [f"{how}: {short.get(how, text)}" for how, text in block["protocols"].items()]
    print_metrics([f"{split} by target domain ({rows} rows)"], sections, fmt, caption=said)


def _print_ranking_results(res: dict) -> None:
    """A ranking-task run's AUC, GAUC, log loss and calibration per split."""
    print_ctr_table(
        [f"ranking {res['ranker']} on {res['dataset']['name']}", "temporal split, real events"],
        {part: res[part]["metrics"] for part in ("valid", "test")},
        caption=_caption(res),
    )
