"""Run logging: an append-only JSONL metrics file, a rich progress bar and the printed lines.

The JSONL log is the machine-readable record of a run (loss, lr, throughput, validation
metrics); on resume, lines written after the checkpoint's step are dropped so the log describes
exactly one history.

The printed lines (the start line, one line per validation) are read by people in terminals of
any width and in log files: `LineConsole` keeps each one a single line in a file and, on a
terminal narrower than the line, breaks it between phrases (`phrase_lines`), never inside one.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

from rich.cells import cell_len
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from seqrec.trainer.checkpoint import atomic_write_text

# a phrase ends at ", " outside parentheses, or at a run of two or more spaces before a word
# (the separator of the trainer's fields); a padded number such as "epoch   3" stays whole
_BREAK = re.compile(r", | {2,}(?=[^\s\d])")


def phrases(text: str) -> list[tuple[str, str]]:
    """``text`` cut at its phrase boundaries, as (phrase, the spaces that followed it): a comma
    stays with the phrase before it, so joining the pairs gives ``text`` back."""
    pieces, start = [], 0
    for m in _BREAK.finditer(text):
        if text.count("(", 0, m.start()) > text.count(")", 0, m.start()):
            continue  # "(496 embedding, 1,648 other)" is one phrase
        cut = m.start() + (text[m.start()] == ",")
        pieces.append((text[start:cut], text[cut : m.end()]))
        start = m.end()
    return [*pieces, (text[start:], "")]


def phrase_lines(text: str, width: int, indent: str = "  ") -> list[str]:
    """``text`` as lines of at most ``width`` columns, broken only between phrases (a line
    keeps the spacing it had), the continuation lines indented. A phrase wider than ``width``
    keeps a line of its own (the terminal folds it: still better than a break inside some
    other phrase)."""
    if cell_len(text) <= width:
        return [text]
    lines, line, sep = [], "", ""
    for piece, after in phrases(text):
        if line and cell_len(line + sep + piece) > width:
            lines.append(line)
            line = indent + piece
        else:
            line += sep + piece
        sep = after
    return [*lines, line]


class LineConsole(Console):
    """The trainer's console (stderr): plain-text lines are never broken inside a phrase.

    When stderr is not a terminal rich assumes 80 columns and hard-wraps wherever a word
    crosses them, which cut the start line mid-phrase in every log file; a file has no width,
    so there a line stays one line (soft wrap). On a terminal a line wider than the window is
    broken between phrases. Every caller's ``console.print(str)`` (the trainer's start line,
    each task's validation line) gets this without knowing about it; renderables such as the
    progress bar are printed as rich prints them.
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.soft_wrap = not self.is_terminal

    def print(self, *objects, **kwargs) -> None:
        if self.is_terminal and len(objects) == 1 and isinstance(objects[0], str):
            objects = ("\n".join(phrase_lines(objects[0], self.width)),)
        super().print(*objects, **kwargs)


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
    """Per-epoch progress bar with loss and interactions/s, plus one summary line per validation.

    The bar is transient and drawn only on a terminal, never into a log file (rich shrinks it
    to the window); the validation lines are printed everywhere.
    """

    def __init__(self, steps_per_epoch: int, enabled: bool = True) -> None:
        self.console = LineConsole(stderr=True)
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
            disable=not enabled or not self.console.is_terminal,
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
