"""`seqrec tune`: an Optuna study over a preset's options, scored on validation NDCG@10 only."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from seqrec.cli.common import Overrides, out


def _say(line: str) -> None:
    out.print(escape(line), highlight=False, soft_wrap=True)


def _trial_line(total: int):
    best: dict = {}

    def say(row: dict) -> None:
        values = " ".join(
            f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in row["params"].items()
        )
        took = f"{row['seconds']:.0f}s" if row["seconds"] is not None else ""
        if row["state"] != "complete":
            _say(f"trial {row['number']} failed {took}: {row['error']}  ({values})")
            return
        score = row["valid"]["NDCG@10"]
        if not best or score > best["score"]:
            best.update(score=score, number=row["number"])
        _say(
            f"trial {row['number']} ({row['number'] + 1}/{total})  valid NDCG@10 {score:.4f}  best {best['score']:.4f} "
            f"(trial {best['number']})  {took}  {values}"
        )

    return say


def tune(
    config: Annotated[
        str, typer.Option("--config", "-c", help="Preset name in configs/ or a YAML file.")
    ],
    trials: Annotated[
        int, typer.Option(help="The study's total trials; a rerun adds only the missing ones.")
    ],
    timeout: Annotated[
        float | None, typer.Option(help="Start no trial after this many seconds (this call).")
    ] = None,
    space: Annotated[
        Path | None,
        typer.Option(
            help="Search space YAML: key: {low, high[, log]} or {choices: [...]} "
            "(default: the model family's built-in space)."
        ),
    ] = None,
    folder: Annotated[
        Path | None, typer.Option("--dir", help="Study folder (default tune/<preset>).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the TPE sampler.")] = 0,
    set_: Overrides = None,
) -> None:
    """Tune a preset's options with Optuna (seeded TPE) on validation NDCG@10.

    Each trial trains the preset with the trial's values; only validation scores it. The
    study resumes from DIR/study.db. Writes DIR/best.yaml (the preset with the best values,
    its header stating the budget), trials.json and tune.json; the selected config's test
    result is read once, after the search, and shown apart (docs/LEADERBOARD.md)."""
    from seqrec.tuning import tune as run_study

    res = run_study(config, trials, timeout=timeout, space=space, folder=folder, seed=seed,
                    overrides=set_ or [], on_trial=_trial_line(trials))  # fmt: skip
    b, best = res.budget, res.best
    if res.added == 0:
        _say(f"the study already has {b['trials']} finished trials; raise --trials to add more")
    values = ", ".join(f"{k}={v!r}" for k, v in best["params"].items())
    _say(f"{b['trials']} trials ({b['complete']} finished, {b['failed']} failed, "
         f"{b['seconds']:.0f}s); best: trial {best['number']}, valid NDCG@10 "
         f"{best['valid']['NDCG@10']:.4f} ({values})")  # fmt: skip
    _say(f"test of the selected config, read once after the search (not used to choose it): "
         f"NDCG@10 {res.test['NDCG@10']:.4f}, HR@10 {res.test['HR@10']:.4f}")  # fmt: skip
    _say(f"wrote {res.folder / 'best.yaml'}, {res.folder / 'trials.json'}, "
         f"{res.folder / 'tune.json'}")  # fmt: skip
