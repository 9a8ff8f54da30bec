"""`seqrec sweep`: grid expansion, tiny runs on generated data, resuming, failures, the table."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
import yaml

from conftest import tiny_config
from seqrec.errors import SeqrecError
from seqrec.recipe import build_config
from seqrec.scaling.sweep import run_sweep
from seqrec.scaling.sweep_spec import (
    adopt_run_folders,
    config_hash,
    expand,
    load_spec,
    order_runs,
)
from seqrec.scaling.sweep_table import COLUMNS
from seqrec.tasks import retrieval
from seqrec.tasks.retrieval import keep_fraction

pytestmark = pytest.mark.usefixtures("in_tmp_dir")


def write_spec(tmp_path, dataset, **spec) -> object:
    """A base YAML from tiny_config (2 epochs) plus the given spec keys."""
    base = tmp_path / "base.yaml"
    base.write_text(yaml.safe_dump(tiny_config(dataset, train={"epochs": 2})))
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump({"base": "base.yaml", "apen": True, **spec}, sort_keys=False))
    return path


def test_grid_and_list_expand_to_the_cartesian_product(tmp_path, cycle_log):
    spec = write_spec(
        tmp_path,
        cycle_log,
        overrides={"train.lr": 0.005},
        grid={"model.layers": [1, 2, 3], "model.hidden": [8, 16]},
        runs=[{"model.dropout": 0.0}, {"model.dropout": 0.3, "data_fraction": 0.5}],
    )
    runs = expand(load_spec(spec))
    assert len(runs) == 2 * 3 * 2
    got = [(r.cfg.model.dropout, r.cfg.model.layers, r.cfg.model.hidden) for r in runs]
    want = [(p, n, d) for p in (0.0, 0.3) for n in (1, 2, 3) for d in (8, 16)]
    assert got == want  # runs entries outer, grid in key order, last key fastest
    assert all(r.cfg.train.lr == 0.005 for r in runs)
    assert {r.cfg.data.train_fraction for r in runs} == {1.0, 0.5}  # the data_fraction alias
    assert len({r.config_hash for r in runs}) == len(runs)
    other = tmp_path / "other.yaml"
    other.write_text(yaml.safe_dump(tiny_config(cycle_log, model={"ffn_mult": 2.0})))
    spec = write_spec(tmp_path, cycle_log, grid={"model.layers": [1, 2]},
                      runs=[{}, {"base": "other.yaml", "model.dropout": 0.0}])  # fmt: skip
    mixed = expand(load_spec(spec))
    assert [(r.cfg.model.ffn_mult, r.cfg.model.layers) for r in mixed] == [
        (1.0, 1), (1.0, 2), (2.0, 1), (2.0, 2)
    ]  # fmt: skip
    assert mixed[2].cfg.model.dropout == 0.0 and mixed[2].point["base"] == "other.yaml"
    assert runs[-1].point == {"model.dropout": 0.3, "data.train_fraction": 0.5,
                              "model.layers": 3, "model.hidden": 16}  # fmt: skip


def test_largest_first_orders_by_cost_and_bad_orders_are_refused(tmp_path, cycle_log):
    spec = write_spec(tmp_path, cycle_log, order="largest_first",
                      grid={"model.layers": [1, 3], "model.hidden": [8, 32],
                            "data_fraction": [0.5, 1.0]})  # fmt: skip
    runs = expand(load_spec(spec))
    ordered = order_runs(runs, "largest_first")
    key = [(r.cfg.model.layers, r.cfg.model.hidden, r.cfg.data.train_fraction) for r in ordered]
    assert key[0] == (3, 32, 1.0) and key[-1] == (1, 8, 0.5)
    assert sorted(key) == sorted((r.cfg.model.layers, r.cfg.model.hidden,
                                  r.cfg.data.train_fraction) for r in runs)  # fmt: skip
    assert order_runs(runs, "spec") == runs
    with pytest.raises(SeqrecError, match="order must be one of"):
        order_runs(runs, "random")


def test_hash_covers_only_non_defaults_and_old_folders_are_adopted(tmp_path, cycle_log):
    """A run folder named by an older hash (when the hash covered other fields) is renamed to
    today's hash of its own config.yaml, so the sweep skips it instead of training it again."""
    spec = write_spec(tmp_path, cycle_log, grid={"model.layers": [1, 2]})
    runs = expand(load_spec(spec))
    raw = runs[0].cfg.model_dump(mode="json")
    raw["task"]["item_prior"] = False  # a default spelled out: same run, same hash
    assert config_hash(build_config(raw)) == runs[0].config_hash
    old = tmp_path / "sweep" / "runs" / "0123456789ab"
    old.mkdir(parents=True)
    (old / "config.yaml").write_text(yaml.safe_dump(raw))
    unfinished = tmp_path / "sweep" / "runs" / "ba9876543210"
    unfinished.mkdir()
    (unfinished / "config.yaml").write_text(yaml.safe_dump(runs[1].cfg.model_dump(mode="json")))
    assert adopt_run_folders(tmp_path / "sweep", runs) == 0  # not finished: left alone
    (old / "results.json").write_text("{}")
    assert adopt_run_folders(tmp_path / "sweep", runs) == 1
    assert (tmp_path / "sweep" / "runs" / runs[0].config_hash / "config.yaml").is_file()
    assert not old.exists() and unfinished.exists()


def test_hash_ignores_device_and_threads(cycle_log):
    a = build_config(tiny_config(cycle_log))
    b = build_config(tiny_config(cycle_log, train={"device": "cuda", "threads": 8}))
    c = build_config(tiny_config(cycle_log, model={"layers": 2}))
    assert config_hash(a) == config_hash(b) != config_hash(c)


@pytest.mark.parametrize(
    "spec, message",
    [
        ({"grid": {"model.layerz": [1, 2]}}, "model.layers"),
        ({"grid": {"model.hidden": [6], "model.heads": [4]}}, "not divisible"),
        ({"grid": {"model.layers": 3}}, "non-empty list"),
        ({"gird": {}}, "unknown key"),
        ({"grid": {"model.layers": [1]}, "runs": [{"model.layers": 2}]}, "grid also varies"),
    ],
)
def test_bad_specs_fail_before_training(tmp_path, cycle_log, spec, message):
    with pytest.raises(SeqrecError, match=message):
        expand(load_spec(write_spec(tmp_path, cycle_log, **spec)))


def test_keep_fraction_is_nested_and_seeded():
    rows = np.arange(100, 200)
    half, quarter = keep_fraction(rows, 0.5, 1), keep_fraction(rows, 0.25, 1)
    assert len(half) == 50 and len(quarter) == 25
    assert set(quarter) <= set(half)  # a smaller budget is a subset of a larger one
    assert np.all(np.diff(half) > 0)
    assert not np.array_equal(half, keep_fraction(rows, 0.5, 2))
    assert keep_fraction(rows, 1.0, 1) is rows


def test_sweep_runs_resumes_and_records_failures(tmp_path, cycle_log, monkeypatch):
    spec = write_spec(
        tmp_path,
        cycle_log,
        grid={"model.hidden": [8, 16]},
        runs=[{"data_fraction": 1.0}, {"data_fraction": 0.5}],
    )
    out = tmp_path / "sweep"
    first = run_sweep(spec, out, in_process=True, progress=False)
    assert (first.ran, first.skipped, len(first.failed)) == (4, 0, 0)
    table = pl.read_parquet(out / "results.parquet")
    assert table.columns == list(COLUMNS)
    assert table.height == 4 and set(table["status"]) == {"ok"}
    full = table.filter(pl.col("data_fraction") == 1.0)
    half = table.filter(pl.col("data_fraction") == 0.5)
    assert (half["train_users"] * 2 - full["train_users"]).abs().max() <= 1
    assert (half["train_tokens"] < full["train_tokens"]).all()
    row = table.row(0, named=True)
    assert row["params"] == row["embedding_params"] + row["non_embedding_params"]
    assert row["train_flops"] == pytest.approx(row["flops_train"] * row["train_interactions"])
    assert row["test_ndcg10_lo"] <= row["test_ndcg10"] <= row["test_ndcg10_hi"]
    assert row["apen"] > 0 and row["train_loss"] > 0
    res = json.loads((out / "runs" / row["config_hash"] / "results.json").read_text())
    assert row["test_hr10"] == res["test"]["metrics"]["HR@10"]
    assert (out / row["metrics_path"]).is_file()
    mtime = (out / "runs" / row["config_hash"] / "results.json").stat().st_mtime_ns

    # resume: nothing left to run, the table is rebuilt identically
    again = run_sweep(spec, out, in_process=True, progress=False)
    assert (again.ran, again.skipped) == (0, 4)
    assert (out / "runs" / row["config_hash"] / "results.json").stat().st_mtime_ns == mtime
    assert pl.read_parquet(out / "results.parquet").equals(table)

    # a run that fails at training time is recorded and the sweep goes on; old rows stay
    real = retrieval.build_model

    def fragile(cfg, n_items, max_len):
        if cfg.layers == 3:
            raise RuntimeError("CUDA out of memory (simulated)")
        return real(cfg, n_items, max_len)

    monkeypatch.setattr(retrieval, "build_model", fragile)
    bad = write_spec(tmp_path, cycle_log, grid={"model.hidden": [8], "model.layers": [3, 2]})
    third = run_sweep(bad, out, in_process=True, progress=False)
    assert third.ran == 1 and len(third.failed) == 1
    assert "simulated" in third.failed[0][1]
    table = pl.read_parquet(out / "results.parquet")
    assert table.height == 6
    failed = table.filter(pl.col("status") == "failed").row(0, named=True)
    assert failed["layers"] == 3 and "out of memory" in failed["error"]
    assert failed["test_ndcg10"] is None


def test_cli_sweep_runs_subprocesses_in_parallel(tmp_path, cycle_log):
    from typer.testing import CliRunner

    from seqrec.cli import app

    spec = write_spec(tmp_path, cycle_log, grid={"model.hidden": [8, 16]}, apen=False)
    out = tmp_path / "sweep"
    args = ["sweep", str(spec), "--out", str(out), "--jobs", "2", "--no-progress"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "2 trained, 0 already finished, 0 failed" in res.output
    table = pl.read_parquet(out / "results.parquet")
    assert table["status"].to_list() == ["ok", "ok"] and table["apen"].is_null().all()
    assert sorted(p.name for p in (out / "logs").iterdir()) == sorted(
        f"{h}.log" for h in table["config_hash"]
    )
    again = CliRunner().invoke(app, args)
    assert "0 trained, 2 already finished" in again.output
