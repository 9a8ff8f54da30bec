"""The `seqrec` command line end to end on a generated log: stats, train, evaluate, recommend."""

from __future__ import annotations

import json
import sys

import polars as pl
import pytest
import yaml
from typer.testing import CliRunner

from conftest import (
    ITEM_OFFSET,
    N_ITEMS,
    N_USERS,
    USER_OFFSET,
    cycle_sequences,
    tiny_config,
    write_csv_log,
)
from seqrec import cli
from seqrec.cli import app

runner = CliRunner()
pytestmark = pytest.mark.usefixtures("in_tmp_dir")
SEQS = cycle_sequences()  # what the session's trained_run was trained on


def invoke(*args: str):
    res = runner.invoke(app, [str(a) for a in args])
    assert res.exit_code == 0, (res.output, res.exception)
    return res


def next_item(item: str) -> str:
    return str(ITEM_OFFSET + (int(item) - ITEM_OFFSET + 1) % N_ITEMS)


@pytest.mark.parametrize(
    "command",
    [
        [],
        ["data"],
        ["data", "list"],
        ["data", "stats"],
        ["data", "prepare"],
        ["train"],
        ["evaluate"],
        ["recommend"],
        ["presets"],
    ],
)
def test_help_on_every_command(command):
    res = invoke(*command, "--help")
    assert "Usage" in res.output


def test_help_lists_the_options():
    assert "--resume" in invoke("train", "--help").output
    assert "--sampled" in invoke("evaluate", "--help").output
    assert "--skip-unknown" in invoke("recommend", "--help").output


def test_presets_and_data_list():
    assert "quickstart" in invoke("presets").output.split()
    assert "ml-1m" in invoke("data", "list").output


def test_every_preset_is_a_valid_config():
    """A preset that no longer validates (a renamed option, a bad value) fails here, not in
    a user's first `seqrec train -c`."""
    from seqrec.presets import list_presets
    from seqrec.recipe import load_config

    names = list_presets()
    assert len(names) > 20 and "ranking-sasrec-knn-ml-1m" in names
    for name in names:
        load_config(name)


def test_data_stats_on_a_generated_file(cycle_log):
    out = invoke("data", "stats", cycle_log).output
    rows = dict(
        line.strip("│ ").split("│")[:2] for line in out.splitlines() if line.count("│") == 3
    )
    rows = {k.strip(): v.strip() for k, v in rows.items()}
    assert rows["users"] == str(N_USERS) and rows["items"] == str(N_ITEMS)
    assert rows["interactions"] == str(sum(map(len, SEQS.values())))
    assert rows["valid users"] == rows["test users"] == str(N_USERS)
    # prepare is the same command and reuses the cache it just wrote
    assert rows["users"] in invoke("data", "prepare", cycle_log).output


def test_train_from_a_yaml_file_prints_a_metrics_table(cycle_log, tmp_path):
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(tiny_config(cycle_log)))
    run = tmp_path / "run"
    out = invoke(
        "train", "-c", config, "-o", "train.epochs=2", "--set", "model.layers=1", "--out", run
    ).stdout
    results = json.loads((run / "results.json").read_text())
    assert results["config"]["train"]["epochs"] == 2 and results["epochs_run"] == 2
    assert "full ranking, seen items masked" in out
    assert f"best epoch {results['best_epoch']}" in out
    header = next(line for line in out.splitlines() if "┃ split" in line)
    assert "MRR" in header and "…" not in out  # piped output keeps every number whole
    test_row = next(line for line in out.splitlines() if "│ test" in line)
    assert f"{results['test']['metrics']['NDCG@10']:.4f}" in test_row
    assert f"run saved in {run}" in out.replace("\n", "")


def test_train_title_follows_the_configured_protocol(cycle_log, tmp_path):
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(tiny_config(cycle_log, train={"epochs": 1})))
    out = invoke(
        "train",
        "-c",
        config,
        "-o",
        "eval.sampled=uniform",
        "-o",
        "eval.n_negatives=20",  # drawn without replacement from 30 items
        "-o",
        "eval.mask_seen=false",
        "--out",
        tmp_path / "run",
        "--no-progress",
    ).output
    assert "sampled (20 uniform negatives), seen items kept" in out
    assert "full ranking" not in out


def evaluate_json(run, tmp_path, *args) -> tuple[dict, str]:
    path = tmp_path / f"eval{len(list(tmp_path.glob('eval*.json')))}.json"
    out = invoke("evaluate", run, "--json", path, *args).output
    return json.loads(path.read_text()), out


def test_evaluate_full_sampled_and_keep_seen(trained_run, tmp_path):
    results = json.loads((trained_run / "results.json").read_text())
    full, out = evaluate_json(trained_run, tmp_path)
    assert "full, seen items masked" in out
    assert full["protocol"]["ranking"] == "full" and full["protocol"]["mask_seen"] is True
    assert full["protocol"]["split"] == "leave-one-out" and full["protocol"]["evaluated"] == "test"
    assert full["metrics"] == pytest.approx(results["test"]["metrics"])  # same weights, same data
    assert full["n_users"] == N_USERS

    valid, _ = evaluate_json(trained_run, tmp_path, "--split", "valid")
    assert valid["metrics"] == pytest.approx(results["valid"]["metrics"])

    sampled, out = evaluate_json(trained_run, tmp_path, "--sampled", "uniform", "--negatives", 5)
    assert "sampled (5 uniform negatives)" in out
    assert sampled["protocol"]["ranking"] == "sampled (5 uniform negatives)"
    # a subset of the candidates can only rank the target higher
    assert sampled["metrics"]["HR@1"] >= full["metrics"]["HR@1"]
    assert sampled["metrics"]["MRR"] >= full["metrics"]["MRR"]

    popular, out = evaluate_json(trained_run, tmp_path, "--sampled", "popularity", "--negatives", 8)
    assert "sampled (8 popularity negatives)" in out
    assert popular["protocol"]["ranking"] == "sampled (8 popularity negatives)"

    kept, out = evaluate_json(trained_run, tmp_path, "--keep-seen")
    assert "full, seen items kept" in out and kept["protocol"]["mask_seen"] is False
    # unmasked history items are extra candidates: the target can only drop
    assert kept["metrics"]["MRR"] <= full["metrics"]["MRR"]

    window, out = evaluate_json(trained_run, tmp_path, "--mask-window")
    assert "seen items in the model's window masked" in out
    assert window["protocol"]["mask_seen"] == "window"
    assert kept["metrics"]["MRR"] <= window["metrics"]["MRR"] <= full["metrics"]["MRR"]
    res = CliRunner().invoke(app, ["evaluate", str(trained_run), "--keep-seen", "--mask-window"])
    assert res.exit_code != 0 and "contradict each other" in str(res.exception or res.output)


def check_recs(df: pl.DataFrame, histories: dict[str, list[str]], k: int) -> float:
    """Shape, order and seen-item checks; returns the share with the cycle's next item in the top 3."""
    assert df.columns == ["user", "rank", "item", "score", "returned"]
    assert df.height == k * len(histories)
    assert df["user"].unique(maintain_order=True).to_list() == list(histories)
    hits = 0
    for user, group in df.group_by("user", maintain_order=True):
        hist = histories[user[0]]
        assert group["rank"].to_list() == list(range(1, k + 1))
        scores = group["score"].to_list()
        assert scores == sorted(scores, reverse=True)
        items = group["item"].to_list()
        assert len(set(items)) == k
        assert all(ITEM_OFFSET <= int(i) < ITEM_OFFSET + N_ITEMS for i in items)  # original ids
        assert not set(items) & set(hist)  # seen items excluded
        hits += next_item(hist[-1]) in items[:3]
    return hits / len(histories)


def test_recommend_for_dataset_users_to_csv(trained_run, tmp_path):
    users = [str(USER_OFFSET + u) for u in (0, 3, 7, 11, 20, 39)]
    path = tmp_path / "recs.csv"
    out = invoke("recommend", trained_run, "--users", ",".join(users), "--out", path, "-k", 5)
    assert f"wrote {5 * len(users)} recommendation rows" in out.output
    df = pl.read_csv(path, schema_overrides={"user": pl.Utf8, "item": pl.Utf8})
    # the whole sequence (train + valid + test) is the history of a dataset user
    assert check_recs(df, {u: SEQS[u] for u in users}, 5) >= 0.8


def test_recommend_for_histories_to_parquet(trained_run, tmp_path):
    histories = {
        "alice": ["105", "106", "107"],
        "bob": ["128", "129", "100", "101"],
        "carol": ["110", "111", "112", "113", "114"],
        "dave": ["120", "121"],
    }
    file = tmp_path / "hist.txt"
    lines = [f"{u} {' '.join(h)}" for u, h in histories.items()]
    lines[1] = lines[1].replace(" ", ",")  # comma separated works too
    file.write_text("\n".join([lines[0], "", *lines[1:]]) + "\n")
    path = tmp_path / "out" / "recs.parquet"
    invoke("recommend", trained_run, "--histories", file, "--out", path, "-k", 3)
    df = pl.read_parquet(path)
    assert df.schema["user"] == pl.Utf8 and df.schema["item"] == pl.Utf8
    assert check_recs(df, histories, 3) >= 0.75


def test_recommend_skip_unknown_drops_unknown_history_items(trained_run, tmp_path):
    file = tmp_path / "hist.txt"
    file.write_text("eve 999 115 nope 116\n")
    path = tmp_path / "recs.csv"
    invoke("recommend", trained_run, "--histories", file, "--out", path, "--skip-unknown")
    df = pl.read_csv(path, schema_overrides={"user": pl.Utf8, "item": pl.Utf8})
    assert check_recs(df, {"eve": ["115", "116"]}, 10) >= 0


def test_recommend_never_serves_seen_items_when_few_are_left(trained_run, tmp_path):
    seen = [str(ITEM_OFFSET + j) for j in range(N_ITEMS - 2)]
    file = tmp_path / "hist.txt"
    file.write_text(f"greedy {' '.join(seen)}\nnew 103\n")
    path = tmp_path / "recs.csv"
    out = invoke("recommend", trained_run, "--histories", file, "--out", path, "-k", 5).output
    df = pl.read_csv(path, schema_overrides={"user": pl.Utf8, "item": pl.Utf8})
    greedy = df.filter(pl.col("user") == "greedy")
    assert sorted(greedy["item"].to_list()) == [str(ITEM_OFFSET + N_ITEMS - 2), "129"]
    assert greedy["rank"].to_list() == [1, 2]
    assert df.filter(pl.col("user") == "new").height == 5
    assert "wrote 7 recommendation rows" in out


def test_recommend_overwrite_replaces_the_file(trained_run, tmp_path):
    path = tmp_path / "recs.csv"
    path.write_text("old\n")
    invoke("recommend", trained_run, "--users", USER_OFFSET, "--out", path, "-k", 2, "--overwrite")
    assert pl.read_csv(path).height == 2


def test_main_entry_point_success_and_error(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(sys, "argv", ["seqrec", "presets"])
    with pytest.raises(SystemExit) as info:
        cli.main()
    assert info.value.code in (0, None)
    assert "quickstart" in capsys.readouterr().out

    monkeypatch.setattr(sys, "argv", ["seqrec", "evaluate", str(tmp_path)])
    with pytest.raises(SystemExit) as info:
        cli.main()
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "not a seqrec run folder" in err


def test_recommend_reads_utf8_histories_like_the_data(tmp_path):
    """Non-ASCII item ids are decoded the same way in the training log and the histories file."""
    seqs = {u: [f"pièce{int(i) - ITEM_OFFSET}" for i in s] for u, s in cycle_sequences().items()}
    log = write_csv_log(tmp_path / "utf8.csv", seqs)
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(tiny_config(log, train={"epochs": 1})))
    invoke("train", "-c", config, "--out", tmp_path / "run", "--no-progress")
    hist = tmp_path / "hist.txt"
    hist.write_text("zoé pièce3 pièce4\n", encoding="utf-8")
    path = tmp_path / "recs.csv"
    invoke("recommend", tmp_path / "run", "--histories", hist, "--out", path, "-k", 4)
    df = pl.read_csv(path)
    assert df["user"].to_list() == ["zoé"] * 4
    assert set(df["item"]) <= {f"pièce{j}" for j in range(N_ITEMS)} - {"pièce3", "pièce4"}
