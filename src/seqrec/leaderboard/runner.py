"""Training the leaderboard's cells into ``DIR/runs/<model>-<dataset>-s<seed>/``, resumably.

Each cell is one `seqrec train` of its preset with ``train.seed`` set, by the scaling sweep's
`Runner` (seqrec.scaling.sweep_runner): by default a ``python -m seqrec train`` subprocess, so
a crash or a CUDA out-of-memory stays in its cell and ``jobs`` cells can share a GPU, or in
this process. Its training log goes to ``DIR/logs/<cell>.log``. The device is the preset's
``train.device`` (``auto``: the GPU when there is one).

A cell whose folder holds a finished run (results.json) is skipped, so a stopped leaderboard
resumes where it was; one with a checkpoint continues from it (`seqrec train --resume`), under
the planned stopping rules. A finished run that one of those rules stopped and the plan relaxes
(``-o train.time_budget_s`` larger than the time it used, more epochs, more patience) is
trained further from its checkpoint rather than skipped (trainer/extend.py).
A finished run whose config differs from what the plan would train now (another ``--set``)
is still skipped, and the line says what differs: results are never silently replaced.
A cell that fails is recorded with its error and the rest go on.

Every cell's last outcome (status, time, preset, and for a tuned preset its tuning budget)
is kept in ``DIR/cells.json``, which `seqrec leaderboard table` reads beside the run folders.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from seqrec.comparison import config_differences
from seqrec.errors import SeqrecError
from seqrec.fsutil import read_format
from seqrec.leaderboard.files import LEDGER, LEDGER_FORMAT, claim
from seqrec.leaderboard.plan import Cell
from seqrec.recipe import RunConfig, load_config
from seqrec.scaling.sweep_runner import Runner
from seqrec.scaling.sweep_spec import SweepRun
from seqrec.trainer.checkpoint import atomic_write_json
from seqrec.trainer.extend import extendable
from seqrec.tuning import read_budget


@dataclass
class Outcome:
    """What became of one cell: done | skip | fail | no preset | todo (a dry run's plan)."""

    cell: Cell
    status: str
    seconds: float | None = None
    detail: str = ""


class Ledger:
    """DIR/cells.json: each cell's last outcome; rewritten atomically after every cell."""

    def __init__(self, root: Path, write: bool) -> None:
        self.path, self.write = root / LEDGER, write
        self.cells: dict[str, dict[str, Any]] = dict(
            (read_format(self.path, LEDGER_FORMAT) or {}).get("cells", {})
        )
        self._lock = threading.Lock()

    def record(self, out: Outcome) -> None:
        cell = out.cell
        with self._lock:
            self.cells[cell.name] = {
                "model": cell.model,
                "dataset": cell.dataset,
                "seed": cell.seed,
                "row": cell.row,
                "preset": None if cell.preset is None else str(cell.preset),
                "tuning": read_budget(cell.preset) if cell.tuned else None,
                "status": out.status,
                "seconds": out.seconds,
                "detail": out.detail,
                "updated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            }
            self.flush()

    def flush(self) -> None:
        """Write the ledger; the first write marks the folder as a leaderboard."""
        if self.write:
            atomic_write_json(self.path, {"format": LEDGER_FORMAT, "cells": self.cells})


def cell_config(cell: Cell, overrides: list[str]) -> RunConfig:
    """The cell's preset with the user's overrides and its seed (the seed last: it is the cell's)."""
    return load_config(str(cell.preset), [*overrides, f"train.seed={cell.seed}"])


def _finished(run_dir: Path, cfg: RunConfig) -> str:
    """The skip line of a finished run: what in its config differs from the plan, if anything."""
    try:
        saved = json.loads((run_dir / "results.json").read_text())["config"]
    except (OSError, ValueError, KeyError):
        return "finished (its results.json is unreadable: remove the folder to retrain)"
    diff = config_differences(saved, cfg.model_dump(mode="json"))
    if not diff:
        return "finished"
    shown = ", ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in list(diff.items())[:3])
    return f"finished, with another config than planned ({shown}); remove the folder to retrain"


def _done_detail(run_dir: Path) -> str:
    res = json.loads((run_dir / "results.json").read_text())
    cuda = (res.get("machine") or {}).get("cuda")
    where = cuda.replace("NVIDIA ", "") if cuda else "CPU"
    return (
        f"test NDCG@10 {res['test']['metrics']['NDCG@10']:.4f}, best epoch "
        f"{res.get('best_epoch')}, {where}"
    )


class LeaderboardRun:
    """One `leaderboard run` call: triage every cell, then train those left."""

    def __init__(self, root: Path, overrides: list[str], in_process: bool, on_line, ledger):
        self.root, self.overrides, self.on_line = Path(root), list(overrides), on_line
        self.runner = Runner(self.root, in_process)
        self.in_process, self.ledger = in_process, ledger
        self.outcomes: list[Outcome] = []
        self.total = 0

    def emit(self, out: Outcome) -> None:
        self.outcomes.append(out)
        self.ledger.record(out)
        took = "" if out.seconds is None else f"{out.seconds:8.1f}s"
        self.on_line(
            f"[{len(self.outcomes)}/{self.total}] {out.cell.name:<32} {out.status:<9} "
            f"{took:>9}  {out.detail}".rstrip()
        )

    def triage(self, cell: Cell) -> tuple[Outcome | None, RunConfig | None]:
        """The outcome of a cell that needs no training, or its config to train."""
        if cell.preset is None:
            return Outcome(cell, "no preset", detail=f"no preset {cell.row}.yaml"), None
        try:
            cfg = cell_config(cell, self.overrides)
        except SeqrecError as err:
            return Outcome(cell, "fail", detail=str(err)), None
        run_dir = self.root / "runs" / cell.name
        if (run_dir / "results.json").is_file() and not extendable(run_dir, cfg):
            return Outcome(cell, "skip", detail=_finished(run_dir, cfg)), None
        return None, cfg

    def train_one(self, cell: Cell, cfg: RunConfig) -> Outcome:
        t0 = time.perf_counter()
        log = self.root / "logs" / f"{cell.name}.log"
        point = {"model": cell.model, "dataset": cell.dataset, "seed": cell.seed}
        run = SweepRun(cell.name, cfg, point)
        if self.in_process:  # the trainer's lines go to the cell's log, as a subprocess's do
            log.parent.mkdir(parents=True, exist_ok=True)
            with log.open("a") as fh, redirect_stdout(fh), redirect_stderr(fh):
                error = self.runner(run)
        else:
            error = self.runner(run)
        seconds = time.perf_counter() - t0
        run_dir = self.root / "runs" / cell.name
        if error is None and not (run_dir / "results.json").is_file():
            error = "stopped before it finished"  # Ctrl-C reached it before it started
        if error is not None:
            return Outcome(cell, "fail", seconds, error)
        return Outcome(cell, "done", seconds, _done_detail(run_dir))

    def train(self, todo: list[tuple[Cell, RunConfig]], jobs: int) -> None:
        if self.in_process:
            for cell, cfg in todo:
                self.emit(self.train_one(cell, cfg))
            return
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            live: dict[Future, Cell] = {pool.submit(self.train_one, c, cfg): c for c, cfg in todo}
            try:
                while live:
                    finished, _ = wait(live, timeout=1.0, return_when=FIRST_COMPLETED)
                    for fut in finished:
                        live.pop(fut)
                        if not self.runner.stopping.is_set():
                            self.emit(fut.result())
            except KeyboardInterrupt:
                self.runner.interrupt()
                raise


def _prepare_data(board: LeaderboardRun, todo: list[tuple[Cell, RunConfig]]) -> list:
    """Build each dataset's store once here, so cells trained at once load the cache instead
    of racing to build it; the cells of a dataset that fails to build fail with its error."""
    from seqrec.data import prepare

    errors: dict[str, str | None] = {}
    left = []
    for cell, cfg in todo:
        key = json.dumps(cfg.data.model_dump(mode="json"), sort_keys=True)
        if key not in errors:
            try:
                prepare(cfg.data)
                errors[key] = None
            except SeqrecError as err:
                errors[key] = str(err)
        if errors[key] is None:
            left.append((cell, cfg))
        else:
            board.emit(Outcome(cell, "fail", detail=errors[key]))
    return left


def run_cells(
    cells: list[Cell],
    root: Path,
    overrides: list[str] | None = None,
    *,
    jobs: int = 1,
    in_process: bool = False,
    dry_run: bool = False,
    on_line: Callable[[str], None] = print,
) -> list[Outcome]:
    """Train every cell that has a preset and no finished run; one line per cell."""
    if jobs < 1:
        raise SeqrecError(f"--jobs {jobs}: give the number of cells trained at once, >= 1")
    if in_process and jobs > 1:
        raise SeqrecError("in-process cells train one at a time; drop --jobs or --in-process")
    root = Path(root)
    claim(root, "--dir")
    board = LeaderboardRun(root, overrides or [], in_process, on_line, Ledger(root, not dry_run))
    board.total = len(cells)
    todo = []
    for cell in cells:
        out, cfg = board.triage(cell)
        if out is not None:
            board.emit(out)
        else:
            todo.append((cell, cfg))
    if dry_run:
        for cell, _ in todo:
            run_dir = root / "runs" / cell.name
            resume = (run_dir / "checkpoint.pt").is_file()
            what = "would resume" if resume else "would train"
            if (run_dir / "results.json").is_file():
                what = "would train further"
            board.emit(Outcome(cell, "todo", detail=f"{what} {cell.preset}"))
        return board.outcomes
    board.ledger.flush()  # before any training: a stopped first cell leaves a marked folder
    if jobs > 1:
        todo = _prepare_data(board, todo)
    try:
        board.train(todo, jobs)
    except KeyboardInterrupt:
        board.runner.stopping.set()
        raise SeqrecError(
            f"leaderboard interrupted; finished cells are kept in {root / 'runs'}: run the "
            "same command again to resume (unfinished runs continue from their checkpoints)"
        ) from None
    return board.outcomes
