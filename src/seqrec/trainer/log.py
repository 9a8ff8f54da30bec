"""Run logging: an append-only JSONL metrics file and a rich progress bar.

The JSONL log is the machine-readable record of a run (loss, lr, throughput, validation
metrics); on resume, lines written after the checkpoint's step are dropped so the log describes
exactly one history.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from seqrec.trainer.checkpoint import atomic_write_text


class RunLog:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, record: dict) -> None:
        record = {"time": round(time.time(), 3), **record}
        with self.path.open("a") as f:
            f.write(json.dumps(record, default=float) + "\n")

    def truncate_after(self, step: int) -> None:
        if not self.path.is_file():
            return
        kept = [
            line
            for line in self.path.read_text().splitlines()
            if line.strip() and json.loads(line).get("step", 0) <= step
        ]
        atomic_write_text(self.path, "".join(f"{line}\n" for line in kept))


class NoLog:
    """The metrics log of DDP ranks other than 0: they write nothing."""

    def write(self, record: dict) -> None:
        pass

    def truncate_after(self, step: int) -> None:
        pass


class TrainProgress:
    """Per-epoch progress bar with loss and interactions/s, plus one summary line per validation."""

    def __init__(self, steps_per_epoch: int, enabled: bool = True) -> None:
        self.console = Console(stderr=True)
        self.enabled = enabled
        self.steps = steps_per_epoch
        self.progress = Progress(
            TextColumn("[bold]epoch {task.fields[epoch]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]:.4f}"),
            TextColumn("{task.fields[speed]:,.0f} inter/s"),
            TimeElapsedColumn(),
            console=self.console,
            disable=not enabled,
            transient=True,
        )
        self.task = None
        self.loss_ema: float | None = None

    def __enter__(self) -> TrainProgress:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.__exit__(*exc)

    def new_epoch(self, epoch: int, done: int) -> None:
        if self.task is not None:
            self.progress.remove_task(self.task)
        self.task = self.progress.add_task(
            "train", total=self.steps, completed=done, epoch=epoch, loss=float("nan"), speed=0.0
        )

    def step(self, loss: float, speed: float) -> None:
        self.loss_ema = loss if self.loss_ema is None else 0.95 * self.loss_ema + 0.05 * loss
        self.progress.update(self.task, advance=1, loss=self.loss_ema, speed=speed)

    def report(self, epoch: int, ndcg: float, hr: float, best: float, improved: bool) -> None:
        # one line per validation even without a live bar, so logs and CI show progress
        mark = " *" if improved else ""
        loss = self.loss_ema if self.loss_ema is not None else float("nan")
        self.console.print(
            f"epoch {epoch:3d}  loss {loss:.4f}  valid NDCG@10 {ndcg:.4f}  "
            f"HR@10 {hr:.4f}  best {best:.4f}{mark}",
            highlight=False,
        )
