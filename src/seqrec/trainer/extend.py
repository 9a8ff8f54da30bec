"""A run trained further under new stopping rules: ``seqrec train --resume RUN -o KEY=VALUE``.

Why it exists: a run stopped by ``train.time_budget_s`` (or ``train.epochs``,
``train.max_steps``, ``train.patience``) is finished, yet its validation curve may still be
rising. Retraining it from scratch with a larger budget repeats every step it already took; its
last checkpoint is the exact point the loop stopped at (weights, optimiser, schedule, RNG, the
early-stopping counters), so it can go on from there instead.

Only the stopping rules may change (and ``train.threads``, where it runs): everything else would
make the steps already taken mean something other than the config says. ``train.epochs`` and ``train.max_steps`` also set the
length of a decaying schedule, so they may change only under ``train.schedule=constant``. The
time budget counts the wall time of every session, so ``train.time_budget_s=2800`` on a run
stopped at 1,400 s trains about 1,400 s more.

What the folder goes through: the reopened state is checkpointed first (the point a crash
returns to), then config.yaml takes the new rules, then results.json goes, since the weights
file will move on and the old results would no longer describe it. Its summary (why it stopped,
epochs, wall time, test NDCG@10 / HR@10) is kept in the loop state and written into the new
results.json under ``extended``, one entry per extension, so nothing measured is lost.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seqrec.errors import SeqrecError
from seqrec.recipe import RunConfig, apply_overrides, build_config

# the keys that decide when the loop ends, and nothing else
STOPPING_KEYS = ("train.time_budget_s", "train.epochs", "train.max_steps", "train.patience")
# where it runs, not what it learns: a CPU run may go on with more threads (the sums then
# add up in another order, so it equals the uninterrupted run up to rounding, not bit for bit)
PLACEMENT_KEYS = ("train.threads",)
# these also set the length of a decaying learning-rate schedule
SCHEDULE_LENGTH_KEYS = ("train.epochs", "train.max_steps")


@dataclass(frozen=True)
class Extension:
    """A resume under new stopping rules: the fingerprints a checkpoint of this run may carry
    (the saved config's, or the new one's after an extension interrupted half-way) and the
    summary of the results it replaces (None for a run that had not finished)."""

    fingerprints: frozenset[str]
    previous: dict[str, Any] | None

    def reopened(
        self, ck: dict[str, Any], cfg: RunConfig, steps_per_epoch: int, path: Path
    ) -> dict[str, Any]:
        """The checkpoint ``ck`` with its loop state reopened (`reopen`) and, the first time
        it is, the replaced results' summary appended to the state's ``extended``."""
        if ck.get("fingerprint") not in self.fingerprints:
            raise SeqrecError(
                f"checkpoint {path} was made with another config than the run's config.yaml; "
                "restore the config.yaml `seqrec train` wrote"
            )
        finished = bool(ck["state"].get("training_done"))
        state = reopen(ck["state"], cfg, steps_per_epoch)
        if finished and self.previous is not None:
            state["extended"] = [*state.get("extended", []), self.previous]
        return {**ck, "state": state}


def _rule(cfg: RunConfig, key: str) -> Any:
    return getattr(cfg.train, key.split(".", 1)[1])


def extended_config(saved: RunConfig, overrides: list[str]) -> RunConfig:
    """The saved config with new stopping rules; any other key is refused in one line."""
    for item in overrides:
        key = item.split("=", 1)[0].strip()
        if key not in STOPPING_KEYS + PLACEMENT_KEYS:
            raise SeqrecError(
                f"--resume keeps the run's config except its stopping rules; drop -o {key} "
                f"(only {', '.join(STOPPING_KEYS + PLACEMENT_KEYS)} may change), or start a "
                "new run"
            )
    cfg = build_config(apply_overrides(saved.model_dump(mode="json"), overrides))
    for key in SCHEDULE_LENGTH_KEYS:
        if saved.train.schedule != "constant" and _rule(cfg, key) != _rule(saved, key):
            raise SeqrecError(
                f"-o {key} would change the length of the run's {saved.train.schedule} "
                "learning-rate schedule, so the steps already taken would not be the ones the "
                "new config describes; extend it with train.time_budget_s or train.patience, "
                "or start a new run"
            )
    return cfg


def stopping_overrides(cfg: RunConfig) -> list[str]:
    """``cfg``'s stopping rules as ``-o`` overrides: what a resumed leaderboard cell or sweep
    run goes on under, so a larger budget on the command line reaches runs already started."""
    return [f"{key}={json.dumps(_rule(cfg, key))}" for key in STOPPING_KEYS]


def extendable(run_dir: Path, cfg: RunConfig) -> bool:
    """Whether the finished run in ``run_dir`` ended on a stopping rule that ``cfg`` relaxes
    (a larger time budget, more epochs under a constant schedule, more patience), so
    `seqrec train --resume` under ``cfg``'s rules would train it further."""
    try:
        res = json.loads((Path(run_dir) / "results.json").read_text())
        saved = res["config"]["train"]
        why = res.get("stopped_by")
    except (OSError, ValueError, KeyError, TypeError):
        return False
    train = cfg.train
    if why == "time_budget":
        return train.time_budget_s is None or train.time_budget_s > (res.get("wall_seconds") or 0)
    if why == "epochs":
        return train.schedule == "constant" and train.epochs > saved.get("epochs", train.epochs)
    if why == "patience":
        return train.patience > saved.get("patience", train.patience)
    return False


def plan_extension(run_dir: Path, saved: RunConfig, cfg: RunConfig) -> Extension:
    """What `Trainer.resume` needs to reopen ``run_dir`` under ``cfg`` (read only)."""
    previous = None
    results = Path(run_dir) / "results.json"
    if results.is_file():
        try:
            previous = summary(json.loads(results.read_text()), saved)
        except (OSError, ValueError):
            raise SeqrecError(
                f"{results} is not readable JSON; restore it, or evaluate the run before "
                "training it further"
            ) from None
    return Extension(frozenset({saved.fingerprint(), cfg.fingerprint()}), previous)


def summary(results: dict[str, Any], saved: RunConfig) -> dict[str, Any]:
    """The part of a finished run's results.json an extension keeps."""
    test = (results.get("test") or {}).get("metrics") or {}
    return {
        "stopped_by": results.get("stopped_by"),
        "epochs_run": results.get("epochs_run"),
        "best_epoch": results.get("best_epoch"),
        "wall_seconds": results.get("wall_seconds"),
        "finished": results.get("finished"),
        "rules": {k: _rule(saved, k) for k in STOPPING_KEYS},
        "test": {k: test[k] for k in ("NDCG@10", "HR@10") if k in test},
    }


def epochs_completed(state: dict, steps_per_epoch: int) -> int:
    """Whole epochs trained: the ``epochs_run`` of results.json.

    Why not ``state["epoch"]``: the loop advances the counter only when it goes on, so after
    every epoch ran it is a count, but after a stop by patience or time budget (which come at
    an epoch's end) it is the last epoch's index, one short. A max_steps stop inside an epoch
    leaves that epoch incomplete, and it is not counted.
    """
    return state["epoch"] + int(state["step_in_epoch"] >= steps_per_epoch)


def reopen(state: dict[str, Any], cfg: RunConfig, steps_per_epoch: int) -> dict[str, Any]:
    """The loop state of a finished run made to go on under ``cfg``'s stopping rules.

    The loop ends without advancing past the epoch a patience or time-budget stop came at, so
    a complete last epoch is stepped over here, as the loop itself would have done. Refused
    when a rule of ``cfg`` would stop it again at once, naming the rule and the value that
    lets it go on.
    """
    st = dict(state)
    if st.pop("training_done", False):
        st.pop("stopped_by", None)
        if st["step_in_epoch"] >= steps_per_epoch:  # as the loop does when it goes on
            st.update(epoch=epochs_completed(st, steps_per_epoch), step_in_epoch=0)
    train = cfg.train
    if st["epoch"] >= train.epochs:
        raise SeqrecError(
            f"the run already trained {st['epoch']} epochs; pass -o train.epochs=N with N "
            f"above {st['epoch']} to train it further"
        )
    if train.max_steps is not None and st["global_step"] >= train.max_steps:
        raise SeqrecError(
            f"the run already took {st['global_step']} steps; pass -o train.max_steps=N with "
            f"N above {st['global_step']} to train it further"
        )
    used = st.get("wall_seconds") or 0.0
    if train.time_budget_s is not None and used >= train.time_budget_s:
        raise SeqrecError(
            f"the run already used {used:.0f} s of its train.time_budget_s="
            f"{train.time_budget_s:g} (the budget counts every session); pass a larger "
            "-o train.time_budget_s to train it further"
        )
    if train.select == "best" and st["bad_evals"] >= train.patience:
        raise SeqrecError(
            f"the run stopped after {st['bad_evals']} validations without improvement "
            f"(train.patience={train.patience}); pass -o train.patience=N with N above "
            f"{st['bad_evals']} to train it further"
        )
    return st
