"""The CLI's output as a person reads it: an 80-column terminal, a log file, --wide, JSON.

Why a pseudo-terminal: rich sizes tables and lines from the terminal it finds, so only a real
terminal 80 columns wide shows what a user sees there (every metric cut to '0.…', the start
line wrapped mid-phrase); CliRunner's captured output is not a terminal at all. Why a real
file as well: when stdout is not a terminal rich assumes 80 columns and hard-wraps, which is
what cut the log lines of redirected runs.
"""

from __future__ import annotations

import fcntl
import io
import json
import os
import re
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest
import yaml
from rich.cells import cell_len
from rich.console import Console
from typer.testing import CliRunner

import seqrec
from conftest import cycle_sequences, tiny_config, write_csv_log
from seqrec.cli import app, common
from seqrec.cli.common import Format, print_ctr_table, print_metrics
from seqrec.cli.train import stop_line
from seqrec.errors import SeqrecError
from seqrec.tasks.base import Validation
from seqrec.tasks.retrieval import RetrievalTask
from seqrec.trainer.log import phrase_lines, phrases
from seqrec.trainer.run import train_run

# CSI (colours, cursor moves, erase), OSC (titles, links) and two-byte escapes
ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]")
START = re.compile(r"^sasrec: [\d,]+ parameters \(.*\), .* MFLOPs per training interaction, ")


def _env(**extra: str) -> dict[str, str]:
    """The environment of a `python -m seqrec` child: this test's seqrec and cache, no
    inherited terminal size or colour switches."""
    env = {k: v for k, v in os.environ.items() if k not in {"COLUMNS", "LINES", "NO_COLOR"}}
    src = str(Path(seqrec.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
    return {**env, **extra}


def _train_args(tmp_path: Path, **sections) -> list[str]:
    log = write_csv_log(tmp_path / "log.csv", cycle_sequences())
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(tiny_config(log, **sections)))
    return [sys.executable, "-m", "seqrec", "train", "-c", str(config), "--out", str(tmp_path / "run")]  # fmt: skip


def run_in_terminal(args: list[str], width: int = 80, timeout: float = 240) -> tuple[int, str]:
    """Run ``args`` attached to a new pseudo-terminal ``width`` columns wide; its exit code
    and everything it wrote there."""
    main, sub = os.openpty()
    fcntl.ioctl(sub, termios.TIOCSWINSZ, struct.pack("HHHH", 24, width, 0, 0))
    env = _env(COLUMNS=str(width), LINES="24", TERM="xterm-256color")
    proc = subprocess.Popen(args, stdin=sub, stdout=sub, stderr=sub, env=env, close_fds=True)
    os.close(sub)
    chunks, deadline = [], time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if select.select([main], [], [], 0.5)[0]:
                try:
                    chunk = os.read(main, 65536)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not chunk:
                    break
                chunks.append(chunk)
            elif proc.poll() is not None:
                break
        else:
            proc.kill()
            pytest.fail(f"`seqrec train` did not finish in {timeout}s")
    finally:
        os.close(main)
    return proc.wait(timeout=30), b"".join(chunks).decode("utf-8", "replace")


def screen_lines(raw: str) -> list[str]:
    """Every line drawn on the terminal, escapes removed; a lone carriage return (how a live
    progress bar redraws) starts a new one. The terminal writes each newline as CR LF."""
    text = ANSI.sub("", raw).replace("\r\n", "\n")
    return [part for line in text.split("\n") for part in line.split("\r")]


def table_cells(lines: list[str], row: str) -> dict[str, str]:
    """{column: cell} of the row whose first cell is ``row`` in the table printed in ``lines``."""
    header = next(line for line in lines if "┃ split" in line)
    body = next(line for line in lines if line.startswith(f"│ {row} "))
    names = [c.strip() for c in header.strip("┃").split("┃")]
    return dict(zip(names, [c.strip() for c in body.strip("│").split("│")], strict=True))


def test_train_on_an_80_column_terminal_is_readable(tmp_path):
    rc, raw = run_in_terminal(_train_args(tmp_path, train={"epochs": 3}))
    lines = screen_lines(raw)
    text = "\n".join(lines)
    assert rc == 0, text
    too_wide = [line for line in lines if cell_len(line) > 80]
    assert not too_wide, too_wide
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert "…" not in text  # no number, title or bar cut short
    for split in ("valid", "test"):
        cells = table_cells(lines, split)
        for name in ("HR@10", "NDCG@10", "MRR"):
            assert re.fullmatch(r"[01]\.\d{4}", cells[name]), (name, cells)
            assert cells[name] == f"{results[split]['metrics'][name]:.4f}"
    assert "stopped: reached train.epochs=3, best epoch " in text
    # the start line is broken between phrases, never inside one
    start = next(i for i, line in enumerate(lines) if line.startswith("sasrec: "))
    assert lines[start].endswith("other),")
    assert lines[start + 1].startswith("  ") and "MFLOPs per training interaction," in text


def test_train_piped_to_a_file_keeps_every_line_whole(tmp_path):
    stdout, stderr = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
    with stdout.open("w") as out, stderr.open("w") as err:
        args = _train_args(tmp_path, train={"epochs": 2, "max_steps": 7})
        rc = subprocess.run(args, stdout=out, stderr=err, env=_env(), timeout=240).returncode
    log, shown = stderr.read_text().splitlines(), stdout.read_text().splitlines()
    assert rc == 0, log
    # one line per message, however long (a file has no width): nothing wrapped by rich
    assert sum(bool(START.match(line)) for line in log) == 1
    assert next(line for line in log if START.match(line)).endswith(" steps/epoch")
    epochs = [line for line in log if line.startswith("epoch ")]
    assert len(epochs) == 2 and all("valid NDCG@10 " in e and " best " in e for e in epochs)
    assert not [line for line in log if line.startswith(" ")]  # no continuation lines
    assert not any("inter/s" in line for line in log)  # progress bars: terminals only
    assert "stopped: reached train.max_steps=7, best epoch 1" in shown
    assert shown[-1] == f"run saved in {tmp_path / 'run'}"
    assert "…" not in "".join(shown) and table_cells(shown, "test")["NDCG@10"] != ""


def test_train_format_json_and_wide(tmp_path):
    args = _train_args(tmp_path, train={"epochs": 1})[3:]  # from "train" on
    res = CliRunner().invoke(app, [*args, "--format", "json", "--no-progress"])
    assert res.exit_code == 0, res.output
    body = json.loads(res.stdout)  # stdout is the JSON and nothing else
    assert body == json.loads((tmp_path / "run" / "results.json").read_text())
    assert body["stopped_by"] == "epochs" and "run saved in" in res.stderr
    wide = CliRunner().invoke(app, [*args, "--overwrite", "--wide", "--no-progress"])
    assert wide.exit_code == 0, wide.output
    header = next(line for line in wide.stdout.splitlines() if "┃ split" in line)
    assert all(f"┃ {m} " in header or f" {m} ┃" in header for m in ("HR@1", "NDCG@20", "MRR"))


def test_evaluate_format_json_and_wide(trained_run, tmp_path):
    res = CliRunner().invoke(app, ["evaluate", str(trained_run), "--format", "json"])
    assert res.exit_code == 0, res.output
    body = json.loads(res.stdout)
    assert body["metrics"]["NDCG@10"] == pytest.approx(
        json.loads((trained_run / "results.json").read_text())["test"]["metrics"]["NDCG@10"]
    )
    table = CliRunner().invoke(app, ["evaluate", str(trained_run), "--split", "valid"])
    assert "HR@10" in table.stdout and "HR@1 " not in table.stdout and "--wide" in table.stdout
    wide = CliRunner().invoke(app, ["evaluate", str(trained_run), "--wide"])
    assert wide.exit_code == 0 and "HR@1 " in wide.stdout
    both = CliRunner().invoke(app, ["evaluate", str(trained_run), "--wide", "--format", "json"])
    assert isinstance(both.exception, SeqrecError) and "contradict" in str(both.exception)


METRICS = {f"{m}@{k}": 0.1234 + k / 1000 for m in ("HR", "NDCG") for k in (1, 5, 10, 20, 50, 100)}


@pytest.mark.parametrize("width", [80, 60, 40, 32])
@pytest.mark.parametrize("fmt", [Format.table, Format.wide])
def test_metric_tables_fit_the_terminal_without_cutting_a_number(monkeypatch, width, fmt):
    sink = io.StringIO()
    console = Console(file=sink, width=width, force_terminal=True, color_system=None)
    monkeypatch.setattr(common, "out", console)
    sections = {"valid": {**METRICS, "MRR": 0.5}, "test": {**METRICS, "MRR": 0.25}}
    print_metrics(["sasrec on ml-1m", "full ranking, seen items masked"], sections, fmt,
                  caption=["best epoch 14", "1,234,567 parameters"])  # fmt: skip
    text = sink.getvalue()
    assert max(cell_len(line) for line in text.splitlines()) <= width, text
    assert "…" not in text and "full ranking, seen items masked" in text
    for name in ("HR@10", "NDCG@10", "MRR"):
        assert name in text
    assert f"{METRICS['NDCG@10']:.4f}" in text and "0.2500" in text
    if width == 80:  # the whole headline fits; --wide at 80 turns the 14-column grid
        assert ("HR@20" in text) and (("HR@100" in text) == (fmt is Format.wide))
    print_ctr_table(["ranking din on ml-1m", "temporal split, real events"],
                    {"valid": {"AUC": 0.7, "GAUC": 0.6, "LogLoss": 0.5, "ECE": 0.01,
                               "mean_pred": 0.5, "pos_rate": 0.5, "examples": 123456}})  # fmt: skip
    text = sink.getvalue()
    assert max(cell_len(line) for line in text.splitlines()) <= width and "…" not in text


def test_stop_line_names_the_option_that_ended_training():
    base = {"best_epoch": 14, "config": {"train": {"epochs": 60, "patience": 10,
            "max_steps": 4, "time_budget_s": 300}}, "wall_seconds": 301.2}  # fmt: skip
    lines = {why: stop_line({**base, "stopped_by": why}) for why in
             ("patience", "epochs", "max_steps", "time_budget")}  # fmt: skip
    assert lines["patience"] == (
        "stopped: no better validation NDCG@10 in 10 evaluations (train.patience), best epoch 14"
    )
    assert lines["epochs"] == "stopped: reached train.epochs=60, best epoch 14"
    assert lines["max_steps"] == "stopped: reached train.max_steps=4, best epoch 14"
    assert lines["time_budget"].startswith("stopped: train.time_budget_s=300 used (301s")
    ranking = {**base, "task": "ranking", "stopped_by": "patience"}
    ranking["config"] = {**base["config"], "task": {"monitor": "GAUC"}}
    assert "no better validation GAUC in 10" in stop_line(ranking)
    assert stop_line({"best_epoch": None, "task": "ranking"}) is None  # a baseline


def test_the_loop_records_which_limit_stopped_it(cycle_log, config_for, tmp_path, monkeypatch):
    def run(name: str, **train) -> dict:
        cfg = config_for(cycle_log, train={"epochs": 3, **train})
        return train_run(cfg, tmp_path / name, progress=False)

    assert run("epochs")["stopped_by"] == "epochs"
    assert run("steps", max_steps=7)["stopped_by"] == "max_steps"
    real = RetrievalTask.validate

    def flat(self, state):  # the same validation score every time: patience runs out
        val = real(self, state)
        return Validation(0.5, val.fields, val.metrics)

    monkeypatch.setattr(RetrievalTask, "validate", flat)
    res = run("patience", patience=1)
    assert res["stopped_by"] == "patience" and res["best_epoch"] == 0 and res["epochs_run"] == 2


def test_phrase_lines_break_only_between_phrases():
    text = (
        "sasrec: 2,144 parameters (496 embedding, 1,648 other), 0.01 MFLOPs per training "
        "interaction, 40 training users, 5 steps/epoch"
    )
    assert "".join(p + sep for p, sep in phrases(text)) == text
    assert phrase_lines(text, 200) == [text]
    assert phrase_lines(text, 80) == [
        "sasrec: 2,144 parameters (496 embedding, 1,648 other),",
        "  0.01 MFLOPs per training interaction, 40 training users, 5 steps/epoch",
    ]
    line = "epoch   3  loss 0.6931  valid AUC 0.5000  GAUC 0.5000  logloss 0.6931  best 0.5 *"
    assert phrase_lines(line, 30) == [
        "epoch   3  loss 0.6931",  # a padded epoch number stays with its word
        "  valid AUC 0.5000",
        "  GAUC 0.5000  logloss 0.6931",
        "  best 0.5 *",
    ]
