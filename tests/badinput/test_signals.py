"""Signals during training, and the behaviour only a real process shows: exit codes, tracebacks.

Ctrl-C (SIGINT) or SIGTERM while `seqrec train` runs must save a checkpoint and end with one
line that gives the command resuming it, exit 2, and only the run folder as new files; that
command then finishes the run. The in-process cases raise the interrupt at a chosen point
(inside a step, inside validation); the subprocess cases send real signals to a real
``python -m seqrec`` and check what a terminal would show. All subprocesses of this file start
together (one module fixture), so they cost the suite one process start-up, not six.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import seqrec
from conftest import (
    cycle_sequences,
    interrupt_after,
    interrupt_in_validation,
    tiny_config,
    write_csv_log,
)

from .harness import Result, assert_unchanged, case, check_cli_error, snapshot

SRC = Path(seqrec.__file__).resolve().parents[1]
LONG = {"epochs": 100_000, "patience": 100_000}  # trains until it is stopped


def _long_config(root: Path, **train) -> Path:
    import yaml

    log = write_csv_log(root / "log.csv", cycle_sequences())
    path = root / "long.yaml"
    path.write_text(yaml.safe_dump(tiny_config(log, train={**LONG, **train})))
    return path


# ------------------------------------------------------------------------------ in process


def _ctrl_c():
    raise KeyboardInterrupt


def _sigterm():
    os.kill(os.getpid(), signal.SIGTERM)


IN_PROCESS = [
    # (installs the interruption, words the message must hold besides the resume command)
    case("signals", "ctrl-c-inside-a-training-step",
         lambda mp: interrupt_after(mp, 3, _ctrl_c), ["interrupted at step 3"]),
    # a signal is held until the step it lands in is whole: SIGTERM in step 7 stops after it
    case("signals", "sigterm-inside-a-training-step",
         lambda mp: interrupt_after(mp, 7, _sigterm), ["interrupted at step 8"]),
    case("signals", "ctrl-c-inside-validation",
         lambda mp: interrupt_in_validation(mp, 1, _ctrl_c), ["interrupted at step"]),
]  # fmt: skip


@pytest.mark.parametrize(("interrupt", "says"), IN_PROCESS)
def test_an_interrupted_run_saves_and_says_how_to_resume(user, monkeypatch, interrupt, says):
    cfg = _long_config(user.root, epochs=3)
    interrupt(monkeypatch)
    run = user.root / "run"
    msg = user.cli_fails("train", "-c", cfg, "--out", run, "--no-progress",
                         says=[*says, f"continue with: seqrec train --resume {run}"],
                         creates=["run", "run/*"])  # fmt: skip
    assert (run / "checkpoint.pt").is_file() and not (run / "results.json").exists(), msg
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handlers are put back


@pytest.mark.badinput("signals")
def test_the_resume_command_it_gives_finishes_the_run(user, monkeypatch):
    """signals: the command in the interruption's line is the one that works."""
    cfg = _long_config(user.root, epochs=2)
    run = user.root / "run"
    with monkeypatch.context() as mp:
        interrupt_after(mp, 4, _ctrl_c)
        msg = user.cli_fails("train", "-c", cfg, "--out", run, "--no-progress",
                             creates=["run", "run/*"])  # fmt: skip
    command = msg.split("continue with: ", 1)[1].split()
    res = user.cli_ok(*command[1:], "--no-progress", creates=["run/*"], rewrites=["run/*"])
    assert (run / "results.json").is_file(), res.err


@pytest.mark.badinput("signals")
def test_api_train_interrupted_raises_one_line(user, monkeypatch):
    """signals: seqrec.train raises TrainingInterrupted, a SeqrecError, with the resume line."""
    cfg = seqrec.config(str(_long_config(user.root, epochs=3)))
    interrupt_after(monkeypatch, 2, _ctrl_c)
    run = user.root / "run"
    user.api_fails(lambda: seqrec.train(cfg, run, progress=False),
                   says=["checkpoint saved", f"--resume {run}"], creates=["run", "run/*"])  # fmt: skip


# ----------------------------------------------------------------------- real processes


@dataclass
class Proc:
    """One `python -m seqrec` run in its own folder, with its snapshots."""

    root: Path
    args: list[str]
    signal: int | None = None
    creates: list[str] = field(default_factory=list)
    before: dict[str, str] = field(default_factory=dict)
    after: dict[str, str] = field(default_factory=dict)
    result: Result | None = None
    popen: subprocess.Popen | None = None


def _setup(name: str, root: Path, run: Path) -> Proc:
    import gzip
    import shutil

    root.mkdir(parents=True)
    if name in ("sigint", "sigterm"):
        cfg = _long_config(root)
        sig = signal.SIGINT if name == "sigint" else signal.SIGTERM
        args = ["train", "-c", str(cfg), "--out", str(root / "run"), "--no-progress"]
        return Proc(root, args, sig, creates=[str(root / "run"), str(root / "run/*")])
    if name == "gzip":
        data = gzip.compress(b"1 2 978300760\n" * 50_000)
        (root / "cut.txt.gz").write_bytes(data[: len(data) // 2])
        return Proc(root, ["data", "stats", str(root / "cut.txt.gz")])
    if name == "config":
        return Proc(root, ["train", "-c", str(_long_config(root)), "-o", "train.epochz=1"])
    shutil.copytree(run, root / "run")
    if name == "serve":
        return Proc(root, ["serve", str(root / "run")])
    (root / "result.json").write_text("{}\n")
    return Proc(root, ["evaluate", str(root / "run"), "--json", str(root / "result.json")])


def _wait_for_training(proc: Proc, log: Path, timeout: float = 60) -> None:
    """Send the signal once the trainer has printed its first validation line."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.popen.poll() is None:
        if "epoch " in log.read_text(errors="replace"):
            proc.popen.send_signal(proc.signal)
            return
        time.sleep(0.05)
    proc.popen.kill()
    raise AssertionError(f"training never printed an epoch line:\n{log.read_text()}")


@pytest.fixture(scope="module")
def processes(tmp_path_factory, trained_run) -> dict[str, Proc]:
    """Every subprocess case, started together, signalled, finished and snapshotted."""
    base = tmp_path_factory.mktemp("badinput-procs")
    procs = {name: _setup(name, base / name, trained_run) for name in PROCS}
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
    }
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", COLUMNS="200")
    logs = {}
    for name, proc in procs.items():
        cache = base / f"{name}-cache"
        proc.before = snapshot([proc.root])
        logs[name] = (base / f"{name}.out", base / f"{name}.err")
        with open(logs[name][0], "wb") as out, open(logs[name][1], "wb") as err:
            proc.popen = subprocess.Popen(
                [sys.executable, "-m", "seqrec", *proc.args],
                cwd=proc.root,
                stdout=out,
                stderr=err,
                env={**env, "SEQREC_CACHE_DIR": str(cache)},
            )
    for name, proc in procs.items():
        if proc.signal is not None:
            _wait_for_training(proc, logs[name][1])
    for name, proc in procs.items():
        try:
            code = proc.popen.wait(timeout=120)
        except subprocess.TimeoutExpired:
            proc.popen.kill()
            code = proc.popen.wait()
        out, err = (p.read_text(errors="replace") for p in logs[name])
        proc.result = Result(code, out, err)
        proc.after = snapshot([proc.root])
    return procs


PROCS = {
    "sigint": case("signals", "a-real-SIGINT-during-training", "sigint",
                   ["continue with: seqrec train --resume"]),
    "sigterm": case("signals", "a-real-SIGTERM-during-training", "sigterm",
                    ["continue with: seqrec train --resume"]),
    "gzip": case("files", "process-a-truncated-gzip-exits-2-not-Aborted", "gzip",
                 ["cut.txt.gz is a truncated gzip"]),
    "config": case("configs", "process-an-unknown-key-exits-2", "config",
                   ["train.epochz"]),
    "serve": case("packages", "process-serve-a-run-folder-exits-2", "serve",
                  ["is a training run, not a model package"]),
    "json": case("paths", "process-evaluate-json-that-exists-exits-2", "json",
                 ["result.json already exists"]),
}  # fmt: skip


@pytest.mark.parametrize(("name", "says"), list(PROCS.values()))
def test_a_real_process_exits_2_with_one_line(processes, name, says):
    proc = processes[name]
    assert_unchanged(proc.before, proc.after, proc.creates)
    check_cli_error(proc.result, says)
    if proc.signal is not None:
        assert (proc.root / "run" / "checkpoint.pt").is_file(), proc.result.err
        assert not (proc.root / "run" / "results.json").exists()
