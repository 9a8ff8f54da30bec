"""Exact resume, whatever the interruption point: a randomized property test.

The README promises that ``seqrec train --resume`` continues "exactly where it stopped". This
checks it the way a person breaks it: a real SIGINT (Ctrl-C) or SIGTERM (``kill``, a scheduler)
sent to this process at a point drawn at random among the places training passes through
(right before or after the n-th call of the objective, of an optimiser step, of a batch, of
the evaluator, of a log line, of a weights or checkpoint write, of validation, of the final
test), once or twice in a run, each time followed by ``--resume``. The resumed run must leave
what the uninterrupted one leaves, bit for bit on CPU: the weights (every tensor of
best.safetensors and its metadata), results.json and the returned results less timings and
dates, metrics.jsonl less its timing fields, and the per-user test output.

Each trial aims its first interruption at one kind of point (between steps and at epoch ends,
inside a step, inside validation, inside the final test) and draws the rest at random, from the
calls an uninterrupted run of the same config makes, with a seeded `random.Random`: a failure
names its model, seed and points. ``SEQREC_RESUME_TRIALS`` / ``SEQREC_RESUME_SEED`` draw more
or other points (the default keeps the file under ~20 s).
"""

from __future__ import annotations

import json
import os
import random
import signal
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open

from conftest import interrupt_after, interrupt_in_validation, tiny_config
from seqrec.recipe import build_config
from seqrec.tasks import retrieval
from seqrec.tasks.ranking.task import RankingTask
from seqrec.trainer import loop
from seqrec.trainer.interrupt import TrainingInterrupted
from seqrec.trainer.log import RunLog
from seqrec.trainer.run import train_run

pytestmark = pytest.mark.usefixtures("in_tmp_dir")

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"
TRIALS = int(os.environ.get("SEQREC_RESUME_TRIALS", "8"))
SEED = os.environ.get("SEQREC_RESUME_SEED", "0")

TIMING = {
    "time",
    "seconds",
    "epoch_seconds",
    "eval_seconds",
    "train_seconds",
    "wall_seconds",
    "interactions_per_s",
    "examples_per_s",
    "interactions_per_s_per_process",
    "throughput",
    "finished",
    "machine",
}
"""Keys holding clock readings or the machine, not the training: left out of comparisons."""

TASK, EVALUATOR = "task", "evaluator"
# Where an interruption can land: (label, owner, attribute); the task's methods are patched on
# the run's task class, the evaluator is the retrieval ranking or the ranking task's predict.
SITES = [
    ("batch", TASK, "batch"),  # a step's start
    ("objective", TASK, "loss"),  # after: dropout / negatives / masks drawn, no backward yet
    ("optimiser step", loop.Trainer, "_step"),  # after: weights moved, counters not yet
    ("log line", RunLog, "write"),
    ("checkpoint", loop, "save_checkpoint"),  # periodic, epoch ends, before the final test
    ("validation", TASK, "validate"),
    ("evaluator", EVALUATOR, None),  # validation, test peeks and the final test
    ("report", TASK, "report"),  # after validation wrote its log line
    ("weights file", loop, "save_weights"),  # best.safetensors, in validation and at the end
    ("final test", TASK, "final"),
]
KINDS = {
    "between steps": ["batch", "log line", "checkpoint"],
    "inside a step": ["objective", "optimiser step"],
    "in validation": ["validation", "evaluator", "report", "weights file"],
    "in the final test": ["final test"],
}


@dataclass(frozen=True)
class Point:
    site: int
    call: int  # 0-based, counted within one session (one train_run call)
    after: bool
    sig: int

    def __str__(self) -> str:
        where = "after" if self.after else "before"
        return f"{signal.Signals(self.sig).name} {where} call {self.call} of {SITES[self.site][0]}"


class Interrupter:
    """Counts the calls at every site; sends ``point``'s signal when its call comes. Python
    runs the handler as soon as `os.kill` returns, in the middle of the caller."""

    def __init__(self, monkeypatch, task_class: type, point: Point | None = None) -> None:
        self.calls = [0] * len(SITES)
        self.point = point
        for i, (_, owner, attr) in enumerate(SITES):
            if owner is EVALUATOR:
                ranking = task_class is RankingTask
                owner, attr = (RankingTask, "predict") if ranking else (retrieval, "evaluate")
            elif owner is TASK:
                owner = task_class
            monkeypatch.setattr(owner, attr, self._wrap(i, getattr(owner, attr)))

    def _wrap(self, site: int, real):
        def wrapped(*args, **kwargs):
            n = self.calls[site]
            self.calls[site] += 1
            hit = self.point is not None and (self.point.site, self.point.call) == (site, n)
            if hit and not self.point.after:
                os.kill(os.getpid(), self.point.sig)
            out = real(*args, **kwargs)
            if hit and self.point.after:
                os.kill(os.getpid(), self.point.sig)
            return out

        return wrapped


# --------------------------------------------------------------------------- what a run leaves
def strip(obj):
    if isinstance(obj, dict):
        return {k: strip(v) for k, v in obj.items() if k.split("/")[-1] not in TIMING}
    if isinstance(obj, list):
        return [strip(v) for v in obj]
    return obj


def weights(path: Path) -> tuple[dict, dict[str, bytes]]:
    """The metadata and every tensor's bytes. Not the file's bytes: safetensors writes its
    metadata in hash-map order, so two files of the same weights may differ in the header."""
    with safe_open(str(path), "pt") as f:
        return f.metadata(), {k: f.get_tensor(k).numpy().tobytes() for k in f.keys()}  # noqa: SIM118


def run_record(run: Path, results: dict) -> dict:
    log = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    if (run / "test_ranks.npy").is_file():
        test = np.load(run / "test_ranks.npy").tolist()
    else:
        with np.load(run / "test_predictions.npz") as z:
            test = {k: z[k].tolist() for k in z.files}
    return {
        "results": strip(results),
        "results.json": strip(json.loads((run / "results.json").read_text())),
        "metrics.jsonl": strip(log),
        "weights": weights(run / "best.safetensors"),
        "test output": test,
    }


def first_difference(a: dict, b: dict) -> str:
    for key in a:
        if a[key] == b[key]:
            continue
        if isinstance(a[key], list):
            for i, (x, y) in enumerate(zip(a[key], b[key], strict=False)):
                if x != y:
                    return f"{key}[{i}]: {str(x)[:300]} != {str(y)[:300]}"
            return f"{key}: {len(a[key])} != {len(b[key])} entries"
        if isinstance(a[key], dict):
            keys = set(a[key]) | set(b[key])
            return f"{key} differs in {sorted(k for k in keys if a[key].get(k) != b[key].get(k))}"
        return f"{key} differs"
    return ""


# --------------------------------------------------------------------------- the runs
CONFIGS = {
    # each model with options that take more paths through the loop: the test peek inside
    # validation, periodic checkpoints, a warm-up + cosine schedule, clipping (sasrec); a
    # validation subset and a patience stop (bert4rec); random windows, validation every
    # other epoch and the last weights tested (hstu); a max_steps stop mid-epoch (cl4srec)
    "sasrec": {
        "train": {
            "log_test": True,
            "checkpoint_every": 3,
            "schedule": "cosine",
            "warmup_steps": 4,
            "grad_clip": 1.0,
        }
    },
    "bert4rec": {
        "objective": {"name": "cloze"},
        "eval": {"valid_max_users": 25},
        "train": {"epochs": 5, "patience": 1},
    },
    "hstu": {
        "data": {"max_len": 6},
        "train": {"window": "random", "eval_every": 2, "select": "last"},
    },
    "cl4srec": {"train": {"max_steps": 13}},
}


def config(log: Path, name: str):
    sections = {k: dict(v) for k, v in CONFIGS[name].items()}
    sections["model"] = {"name": name}
    sections["train"] = {"epochs": 3, "log_every": 1, **sections.get("train", {})}
    return build_config(tiny_config(log, **sections))


def write_rating_log(path: Path, n_users: int = 40, n_items: int = 20, per_user: int = 12) -> Path:
    """A small ratings log for the ranking task (users like the items of one parity)."""
    rng = np.random.default_rng(0)
    rows = [
        f"{u + 1},{i + 1},{1_000_000 + 1_000 * t + u},{5 if i % 2 == u % 2 else 2}"
        for u in range(n_users)
        for t, i in enumerate(rng.choice(n_items, per_user, replace=False))
    ]
    path.write_text("user_id,item_id,timestamp,rating\n" + "\n".join(rows) + "\n")
    return path


def ranking_config(log: Path):
    """The ranking task: a SASRec encoder under a target-attention head, sampled negatives."""
    return build_config(
        {
            "data": {"dataset": str(log), "behavior_col": "rating", "split": "temporal",
                     "max_len": 8, "temporal_valid_frac": 0.15, "temporal_test_frac": 0.15},
            "model": {"hidden": 16, "layers": 1, "heads": 1, "dropout": 0.1},
            "task": {"name": "ranking", "head_hidden": [16], "attention_hidden": 16,
                     "sampled_negatives": 1},
            "train": {"epochs": 3, "batch_size": 64, "lr": 0.01, "warmup_steps": 0,
                      "patience": 50, "device": "cpu", "threads": 1, "log_every": 1,
                      "checkpoint_every": 4},
        }
    )  # fmt: skip


def draw(rng: random.Random, calls: list[int], kind: str | None = None) -> Point:
    """A point among the sites of ``kind`` (any site when None) that the run reaches."""
    labels = KINDS[kind] if kind else [label for label, _, _ in SITES]
    sites = [i for i, (label, _, _) in enumerate(SITES) if label in labels and calls[i]]
    site = rng.choice(sites)
    after = rng.random() < 0.5
    if SITES[site][0] == "objective" and kind == "inside a step":
        after = True  # before the objective is a step's start
    sig = rng.choice([signal.SIGINT, signal.SIGTERM])
    return Point(site, rng.randrange(calls[site]), after, sig)


def interrupted_run(cfg, run: Path, task_class: type, points: list[Point], monkeypatch) -> dict:
    """Train with an interruption at each point in turn, resuming after each; then finish."""
    resume = False
    for point in points:
        with monkeypatch.context() as mp:
            Interrupter(mp, task_class, point)
            try:
                return train_run(None if resume else cfg, run, resume=resume, progress=False)
            except TrainingInterrupted as stop:
                assert "--resume" in str(stop)
                resume = True
            except KeyboardInterrupt:  # pytest would take it for the user's Ctrl-C
                pytest.fail(f"{point} escaped as a bare KeyboardInterrupt")
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
        assert not (run / "results.json").exists()
    torch.manual_seed(12345)  # a resume must not depend on the caller's RNG
    return train_run(None, run, resume=True, progress=False)


@pytest.mark.parametrize("name", [*CONFIGS, "ranking"])
def test_resume_after_random_interruptions_is_bit_identical(name, cycle_log, tmp_path, monkeypatch):
    if name == "ranking":
        cfg, task_class = ranking_config(write_rating_log(tmp_path / "ratings.csv")), RankingTask
    else:
        cfg, task_class = config(cycle_log, name), retrieval.RetrievalTask
    with monkeypatch.context() as mp:
        counter = Interrupter(mp, task_class)
        straight = run_record(
            tmp_path / "straight", train_run(cfg, tmp_path / "straight", progress=False)
        )
    rng = random.Random(f"{SEED}-{name}")
    kinds = list(KINDS)
    for trial in range(TRIALS):
        points = [draw(rng, counter.calls, kinds[trial % len(kinds)])]
        points += [draw(rng, counter.calls) for _ in range(rng.choice([0, 0, 1]))]
        run = tmp_path / f"trial{trial}"
        got = run_record(run, interrupted_run(cfg, run, task_class, points, monkeypatch))
        diff = first_difference(straight, got)
        assert not diff, (
            f"{name} (SEQREC_RESUME_SEED={SEED}), interrupted "
            f"{', then '.join(map(str, points))}: {diff}"
        )


# --------------------------------------------------------------------------- named points
def test_ctrl_c_in_validation_validates_again_and_decides_the_same(
    cycle_log, tmp_path, monkeypatch
):
    """Ctrl-C inside a validation that improves: the checkpoint holds the point before it, so
    the resumed run validates again, finds the same improvement (not a bad evaluation that
    patience=1 would stop on), writes the same weights and logs that validation once."""
    cfg = config(cycle_log, "bert4rec")
    straight = train_run(cfg, tmp_path / "a", progress=False)
    run = tmp_path / "b"
    with monkeypatch.context() as mp:
        interrupt_in_validation(mp, 1)
        with pytest.raises(TrainingInterrupted, match="--resume"):
            train_run(cfg, run, progress=False)
    ck = torch.load(run / "checkpoint.pt", weights_only=True)
    assert (ck["state"]["epoch"], ck["state"]["best_epoch"]) == (1, 0)  # before validation 1
    resumed = train_run(None, run, resume=True, progress=False)
    assert first_difference(run_record(tmp_path / "a", straight), run_record(run, resumed)) == ""


def test_ctrl_c_in_the_final_test_trains_no_more_on_resume(cycle_log, tmp_path, monkeypatch):
    cfg = config(cycle_log, "sasrec")
    straight = train_run(cfg, tmp_path / "a", progress=False)
    run = tmp_path / "b"
    with monkeypatch.context() as mp:
        Interrupter(mp, retrieval.RetrievalTask, Point(9, 0, False, signal.SIGINT))
        with pytest.raises(TrainingInterrupted, match=r"in the final test.*--resume"):
            train_run(cfg, run, progress=False)
    assert torch.load(run / "checkpoint.pt", weights_only=True)["state"]["training_done"]
    steps = []
    with monkeypatch.context() as mp:
        mp.setattr(loop.Trainer, "_step", lambda self, rows: steps.append(rows))
        resumed = train_run(None, run, resume=True, progress=False)
    assert steps == []
    assert first_difference(run_record(tmp_path / "a", straight), run_record(run, resumed)) == ""


def test_interrupt_after_raised_mid_step_resumes_from_before_the_step(
    cycle_log, tmp_path, monkeypatch
):
    """An error raised inside the objective (conftest's interrupt_after, after the model drew
    its dropout masks) saves the point before that step: the step is replayed identically."""
    cfg = config(cycle_log, "cl4srec")
    straight = train_run(cfg, tmp_path / "a", progress=False)
    run = tmp_path / "b"

    def draw_then_stop():
        torch.rand(100)  # the RNG moved, as a forward pass moves it
        raise KeyboardInterrupt

    with monkeypatch.context() as mp:
        interrupt_after(mp, 7, draw_then_stop)
        with pytest.raises(TrainingInterrupted, match="step 7"):
            train_run(cfg, run, progress=False)
    resumed = train_run(None, run, resume=True, progress=False)
    assert first_difference(run_record(tmp_path / "a", straight), run_record(run, resumed)) == ""


def test_a_checkpoint_without_the_log_length_still_resumes_exactly(
    cycle_log, tmp_path, monkeypatch
):
    """Checkpoints written before the log length was kept: the log is cut by step instead."""
    cfg = config(cycle_log, "sasrec")
    straight = train_run(cfg, tmp_path / "a", progress=False)
    run = tmp_path / "b"
    with monkeypatch.context() as mp:
        interrupt_after(mp, 7)
        with pytest.raises(TrainingInterrupted):
            train_run(cfg, run, progress=False)
    ck = torch.load(run / "checkpoint.pt", weights_only=True)
    del ck["log_bytes"]
    torch.save(ck, run / "checkpoint.pt")
    resumed = train_run(None, run, resume=True, progress=False)
    assert first_difference(run_record(tmp_path / "a", straight), run_record(run, resumed)) == ""


@pytest.mark.parametrize("preset", sorted(p.stem for p in CONFIG_DIR.glob("*.yaml")))
def test_a_resume_reads_back_the_config_it_was_started_with(preset, tmp_path):
    """`--resume DIR` rebuilds the run from DIR/config.yaml: every preset (with float and
    tuple overrides) must come back equal, fingerprint included (the checkpoint checks it)."""
    from seqrec.recipe import load_config
    from seqrec.trainer.run import load_run_config, write_run_config

    cfg = load_config(preset, ["train.lr=0.0003", "train.weight_decay=1e-7"])
    write_run_config(tmp_path, cfg)
    back = load_run_config(tmp_path)
    assert back == cfg and back.fingerprint() == cfg.fingerprint()
