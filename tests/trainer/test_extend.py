"""A finished run trained further (`seqrec train --resume RUN -o train.time_budget_s=N`).

The promise: going on from the stop equals never having stopped. A run stopped by its time
budget, its epoch count or its patience, then extended, leaves what one run under the final
rules leaves, bit for bit on CPU (weights, test output, results less timings, the log less the
stop's own line), and its earlier results survive in results.json's ``extended``. Anything
other than a stopping rule, or a rule that would stop it again at once, is refused in one line
with the folder untouched.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_resume import run_record, strip
from typer.testing import CliRunner

from conftest import interrupt_after
from seqrec.cli import app
from seqrec.errors import SeqrecError
from seqrec.recipe import build_config
from seqrec.trainer.extend import extendable
from seqrec.trainer.interrupt import TrainingInterrupted
from seqrec.trainer.run import load_run_config, train_run

pytestmark = pytest.mark.usefixtures("in_tmp_dir")


def tiny(log: Path, **train):
    from conftest import tiny_config

    return build_config(tiny_config(log, train={"epochs": 4, "log_every": 1, **train}))


def record(run: Path, results: dict) -> dict:
    """What a run leaves, less what only says how it got there: the extension's summary, the
    stopping rules in the config, and the budget stop's log line."""
    rec = run_record(run, results)
    for res in (rec["results"], rec["results.json"]):
        res.pop("extended", None)
        res.get("config", {}).get("train", {}).update(
            time_budget_s=None, patience=None, epochs=None
        )
    rec["metrics.jsonl"] = [r for r in rec["metrics.jsonl"] if r.get("event") != "time_budget"]
    return rec


def folder_bytes(run: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(run.iterdir())}


@pytest.mark.parametrize(
    ("straight_rules", "first", "more"),
    [
        ({}, {"time_budget_s": 1e-9}, ["train.time_budget_s=1e9"]),  # stops after epoch 0
        ({}, {"epochs": 2}, ["train.epochs=4"]),
        # at lr 0.05 validation stalls at epoch 3: patience 1 stops it there
        (
            {"lr": 0.05, "epochs": 8},
            {"lr": 0.05, "epochs": 8, "patience": 1},
            ["train.patience=50"],
        ),
    ],
    ids=["time_budget", "epochs", "patience"],
)
def test_an_extended_run_equals_the_run_that_never_stopped(
    straight_rules, first, more, cycle_log, tmp_path
):
    straight = tmp_path / "straight"
    want = record(straight, train_run(tiny(cycle_log, **straight_rules), straight, progress=False))

    run = tmp_path / "extended"
    before = train_run(tiny(cycle_log, **first), run, progress=False)
    assert before["epochs_run"] < want["results"]["epochs_run"], "the first leg must stop early"
    got = train_run(None, run, resume=True, extend=more, progress=False)

    assert record(run, got) == want
    (previous,) = got["extended"]
    assert previous["stopped_by"] == before["stopped_by"]
    assert previous["epochs_run"] == before["epochs_run"]
    assert previous["test"]["NDCG@10"] == before["test"]["metrics"]["NDCG@10"]
    assert json.loads((run / "results.json").read_text())["extended"] == got["extended"]
    key, value = more[0].split("=")
    assert getattr(load_run_config(run).train, key.split(".")[1]) == float(value)


def test_an_interrupted_extension_keeps_one_summary_and_resumes(cycle_log, tmp_path, monkeypatch):
    straight = tmp_path / "straight"
    want = record(straight, train_run(tiny(cycle_log), straight, progress=False))
    run = tmp_path / "run"
    train_run(tiny(cycle_log, epochs=2), run, progress=False)
    steps = json.loads((run / "results.json").read_text())["steps"]
    with monkeypatch.context() as mp:
        interrupt_after(mp, 1)  # the extension's second step
        with pytest.raises(TrainingInterrupted):
            train_run(None, run, resume=True, extend=["train.epochs=4"], progress=False)
    assert not (run / "results.json").exists(), "a half-extended run is an unfinished run"
    got = train_run(None, run, resume=True, progress=False)  # plain --resume finishes it
    assert record(run, got) == want
    assert len(got["extended"]) == 1 and got["steps"] > steps


@pytest.mark.parametrize(
    ("first", "more", "says"),
    [
        ({}, ["model.hidden=32"], "drop -o model.hidden"),
        ({}, ["train.lr=0.1"], "drop -o train.lr"),
        ({"epochs": 2, "schedule": "cosine"}, ["train.epochs=4"], "cosine learning-rate"),
        ({"epochs": 2}, ["train.epochs=2"], "train.epochs=N with N above 2"),
        ({"time_budget_s": 1e-9}, ["train.time_budget_s=1e-9"], "larger -o train.time_budget_s"),
        ({"patience": 1, "lr": 0.05}, ["train.epochs=9"], "train.patience=N with N above 1"),
    ],
)
def test_an_extension_that_cannot_go_on_is_refused_and_writes_nothing(
    first, more, says, cycle_log, tmp_path
):
    run = tmp_path / "run"
    train_run(tiny(cycle_log, **{"epochs": 4, **first}), run, progress=False)
    before = folder_bytes(run)
    with pytest.raises(SeqrecError, match=says):
        train_run(None, run, resume=True, extend=more, progress=False)
    assert folder_bytes(run) == before


def test_the_cli_extends_a_finished_run_and_says_how(cycle_log, tmp_path):
    run = tmp_path / "run"
    train_run(tiny(cycle_log, epochs=1), run, progress=False)
    cli = CliRunner()
    plain = cli.invoke(app, ["train", "--resume", str(run)])
    assert isinstance(plain.exception, SeqrecError)  # the entry point prints it in one line
    assert "train it further with `seqrec train --resume" in str(plain.exception)
    wrong = cli.invoke(app, ["train", "--resume", str(run), "-c", "sasrec-beauty"])
    assert "stopping rules only" in str(wrong.exception)
    done = cli.invoke(
        app, ["train", "--resume", str(run), "-o", "train.epochs=2", "--format", "json"]
    )
    assert done.exit_code == 0, done.output
    results = json.loads((run / "results.json").read_text())
    assert results["epochs_run"] == 2 and results["extended"][0]["epochs_run"] == 1
    assert strip(results)["config"]["train"]["epochs"] == 2


def test_extendable_says_which_finished_runs_a_new_rule_would_train_further(cycle_log, tmp_path):
    budget = tmp_path / "budget"
    train_run(tiny(cycle_log, time_budget_s=1e-9), budget, progress=False)
    assert extendable(budget, tiny(cycle_log, time_budget_s=1e9))
    assert extendable(budget, tiny(cycle_log))  # no budget at all
    assert not extendable(budget, tiny(cycle_log, time_budget_s=1e-9))
    epochs = tmp_path / "epochs"
    train_run(tiny(cycle_log, epochs=1), epochs, progress=False)
    assert extendable(epochs, tiny(cycle_log, epochs=2))
    assert not extendable(epochs, tiny(cycle_log, epochs=1))
    assert not extendable(epochs, tiny(cycle_log, epochs=2, schedule="cosine"))
    assert not extendable(tmp_path / "nothing", tiny(cycle_log))
