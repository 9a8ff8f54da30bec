"""`seqrec leaderboard run|table` on tiny generated data: cells, resuming, the table's numbers
checked against a hand computation, and bad input as one line."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import yaml
from scipy import stats

from conftest import cycle_sequences, interrupt_after, tiny_config, write_csv_log
from seqrec import cli
from seqrec.errors import SeqrecError
from seqrec.leaderboard import build, collect, plan, run_cells, write_table
from seqrec.leaderboard.plan import parse_datasets, parse_models, parse_seeds

pytestmark = pytest.mark.usefixtures("in_tmp_dir")
MODELS = ["sasrec", "gru4rec", "caser"]  # caser has no preset below
SEEDS = [42, 1]


def write_presets(folder, log, epochs: int = 2):
    folder.mkdir(parents=True, exist_ok=True)
    for model in ("sasrec", "gru4rec"):
        raw = tiny_config(log, model={"name": model}, train={"epochs": epochs})
        (folder / f"{model}-beauty.yaml").write_text(yaml.safe_dump(raw))
    return folder


@pytest.fixture(scope="module")
def board(tmp_path_factory):
    """2 models x 1 dataset x 2 seeds trained once in this process (caser: no preset), and
    the lines of a second invocation over the same cells."""
    root = tmp_path_factory.mktemp("board")
    log = write_csv_log(root / "log.csv", cycle_sequences())
    presets = write_presets(root / "presets", log)
    cells = plan(MODELS, ["beauty"], SEEDS, [presets])
    first, second = [], []
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SEQREC_CACHE_DIR", str(root / "cache"))
        run_cells(cells, root / "lb", in_process=True, on_line=first.append)
        stamps = {p: p.stat().st_mtime_ns for p in (root / "lb" / "runs").glob("*/results.json")}
        outcomes = run_cells(cells, root / "lb", in_process=True, on_line=second.append)
    return {"root": root / "lb", "first": first, "second": second, "stamps": stamps,
            "outcomes": outcomes, "presets": presets, "log": log}  # fmt: skip


def test_every_cell_trains_then_a_second_run_skips_them(board):
    root = board["root"]
    assert len(board["first"]) == len(board["second"]) == 6
    status = {line.split()[1]: line.split()[2] for line in board["first"]}
    assert status == {
        "sasrec-beauty-s42": "done", "sasrec-beauty-s1": "done",
        "gru4rec-beauty-s42": "done", "gru4rec-beauty-s1": "done",
        "caser-beauty-s42": "no", "caser-beauty-s1": "no",
    }  # fmt: skip
    assert all("no preset" in line for line in board["first"] if "caser" in line)
    assert {o.cell.name: o.status for o in board["outcomes"]} == {
        "sasrec-beauty-s42": "skip", "sasrec-beauty-s1": "skip",
        "gru4rec-beauty-s42": "skip", "gru4rec-beauty-s1": "skip",
        "caser-beauty-s42": "no preset", "caser-beauty-s1": "no preset",
    }  # fmt: skip
    for path, stamp in board["stamps"].items():
        assert path.stat().st_mtime_ns == stamp  # nothing retrained
        res = json.loads(path.read_text())
        assert res["config"]["train"]["seed"] == int(path.parent.name.rsplit("-s", 1)[1])
    ledger = json.loads((root / "cells.json").read_text())["cells"]
    assert ledger["caser-beauty-s1"]["status"] == "no preset"
    assert ledger["sasrec-beauty-s42"]["status"] == "skip"


def _per_user_ndcg(run_dir) -> np.ndarray:
    ranks = np.load(run_dir / "test_ranks.npy").astype(float)
    return np.where(ranks <= 10, 1.0 / np.log2(ranks + 1.0), 0.0)


def test_table_rows_cis_and_paired_tests_match_a_hand_computation(board):
    root = board["root"]
    files = write_table(root)
    body = json.loads((root / "leaderboard.json").read_text())
    (only,) = body["boards"]
    assert only["dataset"] == "log" and only["users"] == 40 and only["items"] == 30
    rows = {r["label"]: r for r in only["rows"]}
    assert set(rows) == {"sasrec-beauty", "gru4rec-beauty"}
    t = stats.t.ppf(0.975, 1)
    means = {}
    for label, row in rows.items():
        assert row["seeds"] == [1, 42]
        values = [
            json.loads((root / "runs" / f"{label}-s{s}" / "results.json").read_text())["test"][
                "metrics"
            ]["NDCG@10"]
            for s in (1, 42)
        ]
        half = t * np.std(values, ddof=1) / np.sqrt(2)
        assert row["NDCG@10"]["ci"] == "seeds"
        assert row["NDCG@10"]["mean"] == pytest.approx(np.mean(values))
        assert row["NDCG@10"]["half_width"] == pytest.approx(half)
        assert row["repeat_targets"] == "rank" and row["repeat_share"] == 0.0
        assert row["hardware"] == "CPU, 1 thread"
        means[label] = np.mean(values)
    best, other = sorted(means, key=means.get, reverse=True)
    assert only["rows"][0]["label"] == best and only["paired_against"] == best
    assert rows[best]["vs_best"] is None
    per_user = {
        label: np.mean([_per_user_ndcg(root / "runs" / f"{label}-s{s}") for s in SEEDS], axis=0)
        for label in rows
    }
    vs = rows[other]["vs_best"]["NDCG@10"]
    assert vs["diff"] == pytest.approx(np.mean(per_user[other] - per_user[best]))
    assert vs["p_ttest"] == pytest.approx(stats.ttest_rel(per_user[other], per_user[best]).pvalue)
    assert vs["p_wilcoxon"] == pytest.approx(
        stats.wilcoxon(per_user[other] - per_user[best]).pvalue
    )
    assert vs["p_holm"] == pytest.approx(vs["p_ttest"])  # one test on the board
    md = (root / "leaderboard.md").read_text()
    assert f"| 1 | {best} |" in md and f"| 2 | {other} |" in md
    assert "caser-beauty-s42 | no preset" in md
    assert set(body["files"]) >= {"leaderboard.md", "leaderboard.json"}
    if "leaderboard-log.png" in files.written:
        assert (root / "leaderboard-log.png").read_bytes()[:4] == b"\x89PNG"
    else:
        assert any("matplotlib" in note for note in files.notes)


def test_one_seed_gets_the_per_user_ci_and_result_files_join_the_board(board, tmp_path):
    root = board["root"]
    records = [r for r in collect(root) if r["config"]["train"]["seed"] == 42]
    res = json.loads((root / "runs" / "sasrec-beauty-s42" / "results.json").read_text())
    results = tmp_path / "results"
    results.mkdir()
    quality = {
        "name": "sasrec_log_s7",
        "metrics": {"test/NDCG@10": 0.5, "test/HR@10": 0.9, "test/NDCG@10 95% CI": [0.4, 0.6],
                    "test/HR@10 95% CI": [0.8, 1.0], "train_seconds": 3.0},
        "dataset": "log (40 users, 30 items, 371 interactions)",
        "protocol": res["test"]["protocol"],
        "config": {**res["config"], "train": {**res["config"]["train"], "seed": 7}},
        "machine": {"threads": 2},
    }  # fmt: skip
    (results / "sasrec_log_s7.json").write_text(json.dumps(quality))
    (results / "speed.json").write_text(json.dumps({"name": "speed", "metrics": {"x": 1}}))
    (only,) = build(records + collect(None, results))
    rows = {r["label"]: r for r in only["rows"]}
    ndcg = _per_user_ndcg(root / "runs" / "sasrec-beauty-s42")
    half = 1.959964 * ndcg.std(ddof=1) / np.sqrt(len(ndcg))
    cell = rows["sasrec-beauty"]["NDCG@10"]
    assert cell["ci"] == "users" and cell["half_width"] == pytest.approx(half, rel=1e-5)
    from_file = rows["sasrec_log"]
    assert from_file["source"] == "result" and from_file["vs_best"] is None
    assert from_file["NDCG@10"]["low"] == 0.4 and from_file["hardware"] == "CPU, 2 threads"


def test_table_never_replaces_files_seqrec_did_not_write(board, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "leaderboard.md").write_text("my notes\n")
    with pytest.raises(SeqrecError, match="not a seqrec leaderboard"):
        write_table(board["root"], out)
    (out / "leaderboard.json").write_text(json.dumps({"format": "seqrec-leaderboard"}))
    with pytest.raises(SeqrecError, match="seqrec did not write"):
        write_table(board["root"], out)
    assert (out / "leaderboard.md").read_text() == "my notes\n"


def test_an_interrupted_cell_resumes_from_its_checkpoint(tmp_path, monkeypatch, cycle_log):
    presets = write_presets(tmp_path / "presets", cycle_log, epochs=3)
    cells = plan(["sasrec"], ["beauty"], [42], [presets])
    with monkeypatch.context() as mp:
        interrupt_after(mp, 7)
        with pytest.raises(SeqrecError, match="run the same command again to resume"):
            run_cells(cells, tmp_path / "lb", in_process=True, on_line=lambda _: None)
    run_dir = tmp_path / "lb" / "runs" / "sasrec-beauty-s42"
    assert (run_dir / "checkpoint.pt").is_file() and not (run_dir / "results.json").exists()
    lines = []
    run_cells(cells, tmp_path / "lb", in_process=True, on_line=lines.append)
    assert " done " in lines[0]
    events = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [e.get("event") for e in events].count("start") == 1  # continued, not restarted


def test_a_larger_budget_trains_a_budget_stopped_cell_further(tmp_path, cycle_log):
    """-o train.time_budget_s above what a finished cell used: it goes on from its checkpoint
    (one start event, the earlier stop under `extended`); the same budget again skips it."""
    presets = write_presets(tmp_path / "presets", cycle_log, epochs=3)
    cells = plan(["sasrec"], ["beauty"], [42], [presets])
    quiet = lambda _: None  # noqa: E731
    run_cells(cells, tmp_path / "lb", ["train.time_budget_s=1e-9"], in_process=True, on_line=quiet)
    run_dir = tmp_path / "lb" / "runs" / "sasrec-beauty-s42"
    first = json.loads((run_dir / "results.json").read_text())
    assert first["stopped_by"] == "time_budget" and first["epochs_run"] == 1
    (out,) = run_cells(cells, tmp_path / "lb", ["train.time_budget_s=1e-9"], in_process=True,
                       on_line=quiet)  # fmt: skip
    assert out.status == "skip"
    (out,) = run_cells(cells, tmp_path / "lb", ["train.time_budget_s=1e9"], in_process=True,
                       on_line=quiet)  # fmt: skip
    assert out.status == "done"
    res = json.loads((run_dir / "results.json").read_text())
    assert res["epochs_run"] == 3 and res["extended"][0]["stopped_by"] == "time_budget"
    events = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [e.get("event") for e in events].count("start") == 1


def test_the_command_says_what_it_did_per_cell(tmp_path, cycle_log, capsys, monkeypatch):
    """(The default subprocess path is the scaling sweep's runner, tested with the sweep.)"""
    presets = write_presets(tmp_path / "presets", cycle_log, epochs=1)
    argv = ["leaderboard", "run", "--datasets", "beauty", "--seeds", "3", "--models", "sasrec",
            "--presets", str(presets), "--dir", str(tmp_path / "lb"), "--in-process"]  # fmt: skip
    for expect in (" done ", " skip "):
        monkeypatch.setattr(sys, "argv", ["seqrec", *argv])
        with pytest.raises(SystemExit) as info:
            cli.main()
        out = capsys.readouterr().out
        assert info.value.code == 0 and expect in out and "sasrec-beauty-s3" in out, out
    assert (tmp_path / "lb" / "logs" / "sasrec-beauty-s3.log").is_file()
    assert (tmp_path / "lb" / "runs" / "sasrec-beauty-s3" / "results.json").is_file()


def test_parsing_the_plan():
    assert parse_seeds("42, 1,2,1") == [42, 1, 2]
    assert parse_models("all") == parse_models(",".join(parse_models("all")))
    assert parse_datasets("beauty,ml-1m") == ["beauty", "ml-1m"]


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--datasets", "beauty", "--models", "sasrek"], "'sasrek' is not a model. Did you mean"),
        (["--datasets", "beuaty"], "'beuaty' is not a dataset key"),
        (["--datasets", "beauty", "--seeds", "42,one"], "'one' is not an integer"),
        (["--datasets", "beauty", "--seeds", "1.5"], "'1.5' is not an integer"),
        (["--datasets", ","], "--datasets is empty"),
    ],
)
def test_bad_input_is_one_clear_line(args, fragment, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["seqrec", "leaderboard", "run", *args, "--dry-run"])
    with pytest.raises(SystemExit) as info:
        cli.main()
    err = capsys.readouterr().err.strip().splitlines()
    assert info.value.code == 2 and len(err) == 1 and err[0].startswith("error: ")
    assert fragment in err[0]


def test_a_folder_that_is_not_a_leaderboard_is_refused(tmp_path, cycle_log):
    presets = write_presets(tmp_path / "presets", cycle_log)
    with pytest.raises(SeqrecError, match="is not a seqrec leaderboard"):
        run_cells(plan(["sasrec"], ["beauty"], [1], [presets]), presets, dry_run=True)
