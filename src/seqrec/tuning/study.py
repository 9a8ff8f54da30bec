"""`seqrec tune`: an Optuna study (seeded TPE) over config overrides, scored on validation only.

    seqrec tune -c sasrec-beauty --trials 30 --timeout 7200      # -> tune/sasrec-beauty/

Each trial is one training run of the preset with the trial's overrides, in
``DIR/trials/<number>/`` (its log in ``DIR/logs/``), by the same ``train_run`` as
`seqrec train`. Its score is the run's **validation** NDCG@10, the number early stopping
already selected its weights on. The trainer scores every finished run on the test split as
its last step, as `seqrec train` always does; the study never reads those numbers, and
trials.json records none of them. Only when the study is over is the test result of the one
selected trial read, and it is reported apart (in best.yaml's header and tune.json), so
the test split never takes part in choosing the configuration it is reported for.

The study lives in ``DIR/study.db`` (SQLite), so a stopped study resumes: ``--trials N`` is
the study's total, a rerun adds only the missing trials (raise N to extend the search), and a
trial cut off by Ctrl-C is recorded as failed. The TPE sampler is seeded with ``--seed`` plus
the number of trials already in the study, so a resumed session does not propose the first
session's random start-up points again. A study is tied to its preset, overrides, space and
seed: a rerun that changes them is refused rather than mixing two searches.

Outputs, each written atomically: ``best.yaml`` (the preset with the best trial's values
applied, headed by a comment stating the budget: trials, time, space), ``trials.json``
(every trial: values, validation metrics, time, error) and ``tune.json`` (the budget, the
best trial and its test result, read by `seqrec leaderboard table`).
"""

from __future__ import annotations

import copy
import json
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from seqrec.errors import SeqrecError
from seqrec.fsutil import describe, is_temp_of, unwritable
from seqrec.recipe import apply_overrides, apply_values, build_config, read_preset
from seqrec.trainer.checkpoint import atomic_write_text
from seqrec.trainer.interrupt import TrainingInterrupted
from seqrec.trainer.run import train_run
from seqrec.tuning.space import Param, builtin_space, check_space, load_space

STUDY, STUDY_NAME = "study.db", "seqrec-tune"
BEST, TRIALS, BUDGET = "best.yaml", "trials.json", "tune.json"
FORMAT = "seqrec-tune"
OWNED = frozenset({STUDY, f"{STUDY}-journal", BEST, TRIALS, BUDGET, "trials", "logs"})
KEYS = ("NDCG@10", "HR@10")


def import_optuna():
    """Optuna, quiet (the command prints one line per trial itself), or the one-line fix."""
    try:
        import optuna
    except ImportError:
        raise SeqrecError("seqrec tune needs optuna: pip install 'seqrec[tune]'") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def claim_folder(folder: Path) -> None:
    """A study folder is new, empty, or one `seqrec tune` wrote: nothing else is written into."""
    why = unwritable(folder, "--dir")
    if why is not None:
        raise SeqrecError(why)
    if folder.exists() and not folder.is_dir():
        raise SeqrecError(f"--dir {folder} is a file; choose a folder")
    if folder.is_dir():
        foreign = sorted(
            p.name
            for p in folder.iterdir()
            if p.name not in OWNED and not is_temp_of(p.name, OWNED)
        )
        if foreign:
            raise SeqrecError(
                f"{folder} holds files that are not part of a seqrec tuning study "
                f"({describe(foreign)}); choose an empty or new folder for --dir"
            )


def train_trial(cfg, run_dir: Path, log: Path) -> dict:
    """Train one trial in this process, its training lines going to ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as fh, redirect_stdout(fh), redirect_stderr(fh):
        return train_run(cfg, run_dir, overwrite=run_dir.exists(), progress=False)


@dataclass
class TuneResult:
    """What one `tune` call leaves: the best trial, its test result, the budget, the files."""

    folder: Path
    best: dict[str, Any]
    test: dict[str, Any]
    budget: dict[str, Any]
    trials: list[dict[str, Any]] = field(default_factory=list)
    added: int = 0


class Study:
    """One tuning study: its folder, preset, overrides, space, seed and Optuna study."""

    def __init__(self, preset, overrides, space_path, folder, seed) -> None:
        self.optuna = import_optuna()
        self.preset, self.overrides, self.seed = str(preset), list(overrides), seed
        self.folder = Path(folder)
        self.base = apply_overrides(read_preset(self.preset), self.overrides)
        build_config(copy.deepcopy(self.base))  # a bad preset or override fails before work
        if space_path is None:
            self.space: list[Param] = builtin_space(self.base)
            where = f"the built-in space of model.name={self.base.get('model', {}).get('name')}"
        else:
            self.space = load_space(Path(space_path))
            where = f"search space {space_path}"
        check_space(self.space, self.base, where)
        self.setup = {
            "preset": self.preset,
            "overrides": self.overrides,
            "space": [p.to_json() for p in self.space],
            "seed": seed,
            "score": "valid/NDCG@10",
        }

    def open(self):
        """Create or load the study in the folder's SQLite file; refuse another search's."""
        claim_folder(self.folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        optuna = self.optuna
        storage = f"sqlite:///{(self.folder / STUDY).resolve()}"
        study = optuna.create_study(
            storage=storage, study_name=STUDY_NAME, direction="maximize", load_if_exists=True
        )
        saved = study.user_attrs.get("setup")
        if saved is None:
            study.set_user_attr("setup", self.setup)
        elif saved != self.setup:
            differs = [k for k in self.setup if saved.get(k) != self.setup[k]]
            raise SeqrecError(
                f"{self.folder} holds a study with another setup ({', '.join(differs)} "
                "differ); rerun it with the same -c/--set/--space/--seed, or choose another --dir"
            )
        for stale in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            study.tell(stale.number, state=optuna.trial.TrialState.FAIL)  # cut off by Ctrl-C
        sampler = optuna.samplers.TPESampler(seed=self.seed + len(study.trials))
        return optuna.load_study(study_name=STUDY_NAME, storage=storage, sampler=sampler)

    def objective(self, trial) -> float:
        """Train the trial's config; its score is the validation NDCG@10 and nothing else."""
        params = {p.key: p.suggest(trial) for p in self.space}
        name = f"{trial.number:04d}"
        trial.set_user_attr("run", f"trials/{name}")
        try:
            raw = apply_values(copy.deepcopy(self.base), [*params.items()])
            cfg = build_config(apply_values(raw, [("train.log_test", False)]))
            results = train_trial(
                cfg, self.folder / "trials" / name, self.folder / "logs" / f"{name}.log"
            )
        except TrainingInterrupted:
            raise KeyboardInterrupt from None  # Ctrl-C ends the study, not just this trial
        except (SeqrecError, RuntimeError) as err:  # a bad combination, an out-of-memory
            trial.set_user_attr("error", str(err).splitlines()[0] if str(err) else repr(err))
            raise
        valid = results["valid"]["metrics"]
        trial.set_user_attr("valid", {k: valid[k] for k in KEYS})
        return float(valid["NDCG@10"])


def trial_rows(study, optuna) -> list[dict[str, Any]]:
    """Every trial as plain data: values, validation metrics, time, error (no test numbers)."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        seconds = None
        if t.datetime_start and t.datetime_complete:
            seconds = (t.datetime_complete - t.datetime_start).total_seconds()
        error = t.user_attrs.get("error")
        if t.state == optuna.trial.TrialState.FAIL and error is None:
            error = "interrupted before it finished"
        rows.append({
            "number": t.number,
            "state": t.state.name.lower(),
            "params": t.params,
            "valid": t.user_attrs.get("valid"),
            "seconds": seconds,
            "error": error,
            "run": t.user_attrs.get("run"),
        })  # fmt: skip
    return rows


def best_yaml(study_obj: Study, best: dict, budget: dict, test: dict) -> str:
    """The preset with the best values applied, its header stating how it was chosen."""
    raw = apply_values(copy.deepcopy(study_obj.base), list(best["params"].items()))
    values = ", ".join(f"{k}={v!r}" for k, v in best["params"].items())
    header = [
        f"seqrec tune: the best of {budget['trials']} trials ({budget['complete']} finished, "
        f"{budget['failed']} failed) on validation NDCG@10 = {best['valid']['NDCG@10']:.4f} "
        f"(trial {best['number']})",
        f"preset {study_obj.preset}"
        + (f", fixed overrides {' '.join(study_obj.overrides)}" if study_obj.overrides else ""),
        f"budget: {budget['trials']} trials, {budget['seconds']:.0f} s of trial time, "
        f"sampler {budget['sampler']}",
        f"space: {'; '.join(budget['space'])}",
        f"best values: {values}",
        f"test of this config (read once, after the search; never used to choose): NDCG@10 "
        f"{test.get('NDCG@10', float('nan')):.4f}, HR@10 {test.get('HR@10', float('nan')):.4f}",
    ]
    return "".join(f"# {line}\n" for line in header) + yaml.safe_dump(raw, sort_keys=False)


def _test_of(folder: Path, run: str) -> dict[str, Any]:
    """The selected trial's test metrics: the one read of a test result in a study."""
    results = json.loads((folder / run / "results.json").read_text())
    return {k: results["test"]["metrics"][k] for k in KEYS}


def _summary(study_obj: Study, rows: list[dict], timeout: float | None) -> dict[str, Any]:
    done = [r for r in rows if r["state"] in ("complete", "fail")]
    return {
        "trials": len(done),
        "complete": sum(r["state"] == "complete" for r in rows),
        "failed": sum(r["state"] == "fail" for r in rows),
        "seconds": sum(r["seconds"] or 0.0 for r in done),
        "timeout_s": timeout,
        "space": [p.describe() for p in study_obj.space],
        "sampler": f"TPE, seed {study_obj.seed}",
        "score": "validation NDCG@10 (best epoch, early stopping on validation)",
    }


def write_outputs(study_obj: Study, study, timeout: float | None) -> TuneResult:
    """trials.json always; best.yaml and tune.json once a trial has finished."""
    rows = trial_rows(study, study_obj.optuna)
    folder = study_obj.folder
    atomic_write_text(folder / TRIALS, json.dumps({"format": FORMAT, "trials": rows}, indent=1))
    finished = [r for r in rows if r["state"] == "complete"]
    budget = _summary(study_obj, rows, timeout)
    if not finished:
        first = next((r["error"] for r in rows if r["error"]), "no trial ran")
        raise SeqrecError(
            f"no trial of the study in {folder} finished ({first}); fix that and run again"
        )
    best = max(finished, key=lambda r: (r["valid"]["NDCG@10"], -r["number"]))
    test = _test_of(folder, best["run"])
    atomic_write_text(folder / BEST, best_yaml(study_obj, best, budget, test))
    record = {
        "format": FORMAT,
        **study_obj.setup,
        "budget": budget,
        "best": {k: best[k] for k in ("number", "params", "valid", "run")},
        "test_of_best": test,
    }
    atomic_write_text(folder / BUDGET, json.dumps(record, indent=1) + "\n")
    return TuneResult(folder, best, test, budget, rows)


def tune(
    preset: str,
    trials: int,
    *,
    timeout: float | None = None,
    space: Path | None = None,
    folder: Path | None = None,
    seed: int = 0,
    overrides: list[str] | tuple[str, ...] = (),
    on_trial=None,
) -> TuneResult:
    """Run the study until it has ``trials`` finished trials (or ``timeout`` seconds pass in
    this call); ``on_trial(row)`` hears of each as it ends. See the module docstring."""
    if trials < 1:
        raise SeqrecError(f"--trials {trials}: give the study's total number of trials, >= 1")
    if timeout is not None and timeout <= 0:
        raise SeqrecError(f"--timeout {timeout}: give seconds > 0, or leave it out")
    folder = Path(folder) if folder is not None else Path("tune") / Path(preset).stem
    study_obj = Study(preset, overrides, space, folder, seed)
    study = study_obj.open()
    optuna = study_obj.optuna
    finished = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL)
    missing = trials - len(study.get_trials(deepcopy=False, states=finished))

    def report(_study, frozen) -> None:
        if on_trial is not None:
            on_trial(next(r for r in trial_rows(_study, optuna) if r["number"] == frozen.number))

    before = len(study.trials)
    if missing > 0:
        try:
            study.optimize(study_obj.objective, n_trials=missing, timeout=timeout,
                           catch=(SeqrecError, RuntimeError), callbacks=[report])  # fmt: skip
        except KeyboardInterrupt:
            raise SeqrecError(
                f"tuning interrupted; finished trials are kept in {folder / STUDY}: run the "
                "same command again to resume"
            ) from None
    result = write_outputs(study_obj, study, timeout)
    result.added = len(study.trials) - before
    return result


def read_budget(preset: Path) -> dict[str, Any] | None:
    """The tuning budget behind a `seqrec tune` best.yaml (its tune.json), or None when the
    preset did not come from a study."""
    path = Path(preset).parent / BUDGET
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        return None
    return {**record["budget"], "best_trial": record["best"]["number"], "folder": str(path.parent)}
