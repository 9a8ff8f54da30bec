"""One trainer, tasks as plugins: the task comes from ``cfg.task.name``, never from the caller.

The retrieval and ranking behaviour is tested in tests/train and test_ranking.py; this file
checks the seams: the data a config's task needs, the trainer refusing data of the other
task (the old silent bug: a ranking config through the retrieval path trained retrieval),
baselines that take no step, and the per-unit outputs each task hands the run folder.
"""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
from test_ranking import ranking_raw, write_rating_log

from conftest import tiny_config
from seqrec.data.split import Split
from seqrec.errors import SeqrecError
from seqrec.recipe import build_config
from seqrec.tasks import (
    RankingTask,
    RetrievalTask,
    Task,
    load_task_data,
    output_files,
    trains,
    untrained_results,
)
from seqrec.tasks.ranking.examples import RankingData
from seqrec.trainer.loop import Trainer


@pytest.fixture
def rating_log(tmp_path, monkeypatch):
    monkeypatch.setenv("SEQREC_CACHE_DIR", str(tmp_path / "cache"))
    return write_rating_log(tmp_path / "ratings.csv")


def test_the_config_picks_the_task_and_its_data(rating_log, cycle_log, tmp_path):
    ranking = build_config(ranking_raw(rating_log, train={"epochs": 1}))
    store, data = load_task_data(ranking)
    assert isinstance(data, RankingData)
    trainer = Trainer(ranking, store, data, tmp_path / "r", progress=False)
    assert isinstance(trainer.task, RankingTask) and isinstance(trainer.task, Task)
    assert trainer.model is trainer.task.model

    retrieval = build_config(tiny_config(cycle_log))
    store_r, split = load_task_data(retrieval)
    assert isinstance(split, Split)
    assert isinstance(Trainer(retrieval, store_r, split, tmp_path / "s").task, RetrievalTask)

    # the data of the other task is refused with the fix, not trained on silently
    _, ranking_split = load_task_data(build_config(ranking_raw(rating_log)))
    with pytest.raises(SeqrecError, match="load_task_data"):
        Trainer(ranking, store, split, tmp_path / "x", progress=False)
    with pytest.raises(SeqrecError, match="load_task_data"):
        Trainer(retrieval, store_r, ranking_split, tmp_path / "y", progress=False)


def test_a_baseline_takes_no_step_and_no_trainer(rating_log, tmp_path):
    cfg = build_config(ranking_raw(rating_log, task={"baseline": "popularity"}))
    assert not trains(cfg)
    store, data = load_task_data(cfg)
    res = untrained_results(cfg, store, data)
    assert res["steps"] == 0 and res["params"]["total"] == 0 and res["ranker"] == "popularity"
    assert res["test"]["protocol"]["evaluated"] == "test"
    assert not (tmp_path / "run").exists()  # nothing to log, checkpoint or save
    with pytest.raises(SeqrecError, match="trains nothing"):
        Trainer(cfg, store, data, tmp_path / "t", progress=False)
    files = output_files(cfg, data, res)
    assert "_test_probs" not in res
    npz = np.load(io.BytesIO(files["test_predictions.npz"]))
    np.testing.assert_array_equal(npz["items"], data.test.items)
    assert len(npz["probs"]) == len(data.test)


def test_both_tasks_share_the_loop_checkpoint_and_log(rating_log, cycle_log, tmp_path):
    """One step loop: the same state counters (named by each task), the task's tag in the
    checkpoint and weights, one training line per ``train.log_every`` steps."""
    for cfg, name, unit in (
        (build_config(ranking_raw(rating_log, train={"epochs": 1, "log_every": 2})),
         "ranking-sasrec", "examples_per_s"),
        (build_config(tiny_config(cycle_log, train={"epochs": 1, "log_every": 2})),
         "sasrec", "interactions_per_s"),
    ):  # fmt: skip
        store, data = load_task_data(cfg)
        run = tmp_path / name
        trainer = Trainer(cfg, store, data, run, progress=False)
        res = trainer.fit()
        ck = torch.load(run / "checkpoint.pt", weights_only=True)
        assert ck["model"] == name and "task_state" not in ck
        assert ck["state"]["global_step"] == res["steps"] == trainer.steps_per_epoch
        assert ck["state"][trainer.task.counting.total] == res[trainer.task.counting.total] > 0
        lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
        steps = [r for r in lines if "loss" in r and "event" not in r]
        assert [r["step"] for r in steps] == list(range(2, res["steps"] + 1, 2))
        assert all(unit in r for r in steps)
        files = output_files(cfg, data, res)
        assert set(files) == {"test_predictions.npz" if "ranking" in name else "test_ranks.npy"}
        assert not any(k.startswith("_") for k in res)
