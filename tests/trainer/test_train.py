"""The trainer on generated data: it learns, writes a complete run folder and resumes exactly."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file

from conftest import ITEM_OFFSET, N_ITEMS, N_USERS, interrupt_after
from seqrec.data import prepare
from seqrec.errors import SeqrecError
from seqrec.recipe import build_config
from seqrec.tasks import retrieval
from seqrec.trainer.loop import Trainer, TrainingInterrupted
from seqrec.trainer.run import train_run

pytestmark = pytest.mark.usefixtures("in_tmp_dir")

STEPS_PER_EPOCH = -(-N_USERS // 8)  # batch_size 8 in tiny_config
RUN_FILES = {
    "config.yaml",
    "metrics.jsonl",
    "checkpoint.pt",
    "best.safetensors",
    "item_ids.npy",
    "results.json",
    "test_ranks.npy",
}


def record_losses(monkeypatch) -> list[float]:
    """Wrap the objective so every training loss is recorded."""
    losses: list[float] = []
    real = retrieval.build_objective

    def build(cfg):
        objective = real(cfg)

        def recorded(model, batch):
            loss = objective(model, batch)
            losses.append(loss.item())
            return loss

        return recorded

    monkeypatch.setattr(retrieval, "build_objective", build)
    return losses


def valid_events(run_dir) -> list[tuple]:
    events = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [
        (e["epoch"], e["step"], e["valid/NDCG@10"], e["valid/HR@10"])
        for e in events
        if e.get("event") == "valid"
    ]


def untrained_valid_ndcg(cfg, run_dir) -> float:
    store, split = prepare(cfg.data)
    return (
        Trainer(cfg, store, split, run_dir, progress=False)
        .task.evaluate_view("valid")
        .metrics["NDCG@10"]
    )


def test_ce_learns_the_cycle_and_writes_a_complete_run(
    cycle_log, config_for, tmp_path, monkeypatch
):
    cfg = config_for(cycle_log)
    losses = record_losses(monkeypatch)
    run = tmp_path / "run"
    res = train_run(cfg, run, progress=False)

    # the loss falls and the model beats an untrained one by far
    per_epoch = np.asarray(losses).reshape(cfg.train.epochs, STEPS_PER_EPOCH).mean(1)
    assert len(losses) == cfg.train.epochs * STEPS_PER_EPOCH == res["steps"]
    assert per_epoch[-1] < 0.8 * per_epoch[0]
    assert np.all(np.diff(per_epoch) < 0)
    baseline = untrained_valid_ndcg(cfg, tmp_path / "untrained")
    assert baseline < 0.45
    assert res["valid"]["metrics"]["NDCG@10"] > 0.8 > baseline + 0.3
    assert res["test"]["metrics"]["NDCG@10"] > 0.8

    # the run folder holds everything evaluate / recommend / papers need
    assert {p.name for p in run.iterdir()} >= RUN_FILES
    saved = json.loads((run / "results.json").read_text())
    assert saved["test"]["metrics"] == pytest.approx(res["test"]["metrics"])
    for split in ("valid", "test"):
        protocol = saved[split]["protocol"]
        assert protocol["ranking"] == "full"
        assert protocol["mask_seen"] is True
        assert protocol["split"] == "leave-one-out"
        assert protocol["evaluated"] == split
        assert saved[split]["n_users"] == N_USERS
    assert saved["best_epoch"] == cfg.train.epochs - 1
    assert saved["dataset"]["items"] == N_ITEMS and saved["dataset"]["users"] == N_USERS
    assert saved["params"]["total"] > 0 and saved["flops_per_interaction"]["forward"] > 0
    assert saved["config"] == cfg.model_dump(mode="json")

    ranks = np.load(run / "test_ranks.npy")
    assert ranks.shape == (N_USERS,) and ranks.min() >= 1 and ranks.max() <= N_ITEMS
    assert np.mean(ranks <= 10) == pytest.approx(saved["test"]["metrics"]["HR@10"])

    item_ids = np.load(run / "item_ids.npy")
    assert item_ids[0] == "<pad>"
    assert item_ids[1:].tolist() == [str(ITEM_OFFSET + j) for j in range(N_ITEMS)]

    assert build_config(yaml.safe_load((run / "config.yaml").read_text())) == cfg
    events = valid_events(run)
    assert [e[0] for e in events] == list(range(cfg.train.epochs))
    assert [e[1] for e in events] == [STEPS_PER_EPOCH * (i + 1) for i in range(cfg.train.epochs)]

    weights = load_file(run / "best.safetensors")
    ck = torch.load(run / "checkpoint.pt", weights_only=True)
    assert ck["state"]["global_step"] == res["steps"]
    for name, tensor in ck["model_state"].items():  # best epoch == last epoch here
        assert torch.equal(weights[name], tensor)


def test_bce_objective_trains(cycle_log, config_for, tmp_path, monkeypatch):
    cfg = config_for(cycle_log, objective={"name": "bce"})
    losses = record_losses(monkeypatch)
    res = train_run(cfg, tmp_path / "run", progress=False)
    per_epoch = np.asarray(losses).reshape(cfg.train.epochs, STEPS_PER_EPOCH).mean(1)
    assert per_epoch[-1] < 0.8 * per_epoch[0]
    assert res["valid"]["metrics"]["NDCG@10"] > 0.6
    assert res["test"]["metrics"]["NDCG@10"] > 0.6


def test_progress_prints_one_line_per_validation(cycle_log, config_for, tmp_path, capsys):
    cfg = config_for(cycle_log, train={"epochs": 2})
    train_run(cfg, tmp_path / "run", progress=True)
    lines = [ln for ln in capsys.readouterr().err.splitlines() if "valid NDCG@10" in ln]
    assert len(lines) == 2 and lines[0].startswith("epoch   0")


def test_max_steps_stops_mid_epoch_and_still_evaluates(cycle_log, config_for, tmp_path):
    cfg = config_for(cycle_log, train={"max_steps": 7})
    res = train_run(cfg, tmp_path / "run", progress=False)
    assert res["steps"] == 7
    assert res["epochs_run"] == 1  # stopped inside the second epoch
    assert [e[:2] for e in valid_events(tmp_path / "run")] == [(0, 5), (1, 7)]
    assert (tmp_path / "run" / "results.json").is_file()


def test_time_budget_stops_after_a_validation_and_tests_the_best(cycle_log, config_for, tmp_path):
    cfg = config_for(cycle_log, train={"epochs": 50, "time_budget_s": 1e-6})
    res = train_run(cfg, tmp_path / "run", progress=False)
    assert res["stopped_by"] == "time_budget"
    assert [e[0] for e in valid_events(tmp_path / "run")] == [0]  # one epoch, then stop
    assert res["test"]["metrics"]["NDCG@10"] >= 0


@pytest.mark.parametrize(
    ("objective", "stop_at"),
    [
        ("ce", 3),  # inside the first epoch, before any validation
        ("ce", STEPS_PER_EPOCH * 2),  # first step of an epoch
        ("ce", STEPS_PER_EPOCH * 2 + 2),  # mid-epoch after validations
        ("bce", STEPS_PER_EPOCH * 2 + 2),  # bce draws negatives from the global RNG
    ],
)
def test_interrupted_run_resumes_exactly(
    cycle_log, config_for, tmp_path, monkeypatch, objective, stop_at
):
    cfg = config_for(cycle_log, objective={"name": objective})
    straight = train_run(cfg, tmp_path / "a", progress=False)

    run = tmp_path / "b"
    with monkeypatch.context() as mp:
        interrupt_after(mp, stop_at)
        with pytest.raises(TrainingInterrupted, match="--resume") as info:
            train_run(cfg, run, progress=False)
    assert f"step {stop_at}" in str(info.value) and str(run) in str(info.value)
    assert not (run / "results.json").exists()
    ck = torch.load(run / "checkpoint.pt", weights_only=True)
    assert ck["state"]["global_step"] == stop_at
    assert ck["state"]["step_in_epoch"] == stop_at % STEPS_PER_EPOCH

    torch.manual_seed(1234)  # resuming must not depend on the caller's RNG state
    resumed = train_run(None, run, resume=True, progress=False)

    assert resumed["test"]["metrics"] == straight["test"]["metrics"]
    assert resumed["valid"]["metrics"] == straight["valid"]["metrics"]
    assert (resumed["steps"], resumed["best_epoch"], resumed["epochs_run"]) == (
        straight["steps"],
        straight["best_epoch"],
        straight["epochs_run"],
    )
    assert np.array_equal(np.load(run / "test_ranks.npy"), np.load(tmp_path / "a/test_ranks.npy"))
    a, b = load_file(tmp_path / "a/best.safetensors"), load_file(run / "best.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    ca = torch.load(tmp_path / "a/checkpoint.pt", weights_only=True)
    cb = torch.load(run / "checkpoint.pt", weights_only=True)
    assert all(torch.equal(ca["model_state"][k], cb["model_state"][k]) for k in ca["model_state"])
    # the log describes one history: the resumed validations match the uninterrupted ones
    assert valid_events(run) == valid_events(tmp_path / "a")


def test_crash_resumes_exactly_from_the_last_periodic_checkpoint(
    cycle_log, config_for, tmp_path, monkeypatch
):
    """A hard crash (no Ctrl-C handler) loses the steps after the last periodic checkpoint only;
    the warm-up + cosine schedule and the optimizer pick up where that checkpoint left them."""
    cfg = config_for(
        cycle_log, train={"checkpoint_every": 3, "schedule": "cosine", "warmup_steps": 4}
    )
    straight = train_run(cfg, tmp_path / "a", progress=False)

    real = retrieval.build_objective

    def crashing(objective_cfg):
        objective = real(objective_cfg)
        calls = [0]

        def crash(model, batch):
            calls[0] += 1
            if calls[0] > 8:
                raise RuntimeError("simulated crash")
            return objective(model, batch)

        return crash

    run = tmp_path / "b"
    with monkeypatch.context() as mp:
        mp.setattr(retrieval, "build_objective", crashing)
        with pytest.raises(RuntimeError, match="simulated crash"):
            train_run(cfg, run, progress=False)
    ck = torch.load(run / "checkpoint.pt", weights_only=True)
    assert ck["state"]["global_step"] == 6
    resumed = train_run(None, run, resume=True, progress=False)
    assert resumed["test"]["metrics"] == straight["test"]["metrics"]
    a, b = load_file(tmp_path / "a/best.safetensors"), load_file(run / "best.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert valid_events(run) == valid_events(tmp_path / "a")


def test_random_windows_cover_long_histories_and_are_reproducible(tmp_path):
    import numpy as np

    from seqrec.data.split import leave_one_out
    from seqrec.data.store import SequenceStore
    from seqrec.trainer.loop import Trainer

    lens = np.array([40, 5, 12])
    offsets = np.concatenate([[0], np.cumsum(lens)])
    store = SequenceStore(
        offsets=offsets,
        items=(np.arange(lens.sum()) % 30 + 1).astype(np.int32),
        timestamps=None,
        n_items=30,
        user_ids=np.array(["a", "b", "c"]),
        item_ids=np.array(["<pad>", *map(str, range(1, 31))]),
        name="t",
    )
    split = leave_one_out(store)
    from seqrec.recipe import load_config

    cfg = load_config(None, ["data.max_len=4", "model.hidden=8", "train.window=random"])
    t = Trainer(cfg, store, split, tmp_path / "run", progress=False).task
    tr = split.train
    seen_ends = {int(t.window_ends(e)[0]) for e in range(30)}
    assert len(seen_ends) > 5  # the long user's window moves across epochs
    for e in range(5):
        ends = t.window_ends(e)
        assert ((ends - tr.starts) >= np.minimum(tr.ends - tr.starts, 5)).all() and (
            ends <= tr.ends
        ).all()
    assert (
        t.window_ends(3)
        == Trainer(cfg, store, split, tmp_path / "r2", progress=False).task.window_ends(3)
    ).all()
    assert t.window_ends(7)[1] == tr.ends[1]  # short users always use their whole sequence


def test_sigterm_checkpoints_and_resumes_like_ctrl_c(cycle_log, config_for, tmp_path, monkeypatch):
    import os
    import signal

    cfg = config_for(cycle_log)
    straight = train_run(cfg, tmp_path / "a", progress=False)
    run = tmp_path / "b"
    with monkeypatch.context() as mp:
        # what `kill` or a scheduler sends
        interrupt_after(mp, 3, lambda: os.kill(os.getpid(), signal.SIGTERM))
        with pytest.raises(TrainingInterrupted, match="--resume"):
            train_run(cfg, run, progress=False)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handler restored
    # a signal is held until the step in flight ends (see trainer/interrupt.py): step 3 counts
    assert torch.load(run / "checkpoint.pt", weights_only=True)["state"]["global_step"] == 4
    resumed = train_run(None, run, resume=True, progress=False)
    assert resumed["test"]["metrics"] == straight["test"]["metrics"]


def test_fingerprint_hashes_only_non_default_values():
    from seqrec.recipe import RunConfig

    base = RunConfig()
    explicit = RunConfig.model_validate({"train": {"epochs": 200, "betas": [0.9, 0.98]}})
    assert base.fingerprint() == explicit.fingerprint()  # defaults spelled out change nothing
    assert base.fingerprint() != RunConfig.model_validate({"train": {"epochs": 3}}).fingerprint()


@pytest.mark.parametrize("select", ["best", "last"])
def test_select_last_runs_every_epoch_and_tests_the_final_weights(
    cycle_log, config_for, tmp_path, select
):
    """A learning rate too small to move validation makes every evaluation after the first a
    non-improvement: early stopping ends the run there, select=last runs on and tests the end."""
    cfg = config_for(cycle_log, train={"epochs": 4, "lr": 1e-12, "patience": 1, "select": select})
    run = tmp_path / select
    res = train_run(cfg, run, progress=False)
    if select == "best":
        assert [e[0] for e in valid_events(run)] == [0, 1]
        assert res["selected"] == "best validation NDCG@10" and res["tested_epoch"] == 0
        assert res["epochs_run"] == 2  # a count after an early stop too, not the last index
        return
    assert [e[0] for e in valid_events(run)] == [0, 1, 2, 3]
    assert res["selected"] == "last epoch" and res["tested_epoch"] == 3
    assert res["epochs_run"] == 4
    assert res["best_epoch"] == 0  # still reported: the best validation it saw
    weights = load_file(run / "best.safetensors")
    ck = torch.load(run / "checkpoint.pt", weights_only=True)
    for name, tensor in ck["model_state"].items():
        assert torch.equal(weights[name], tensor)


def test_select_last_is_refused_for_the_ranking_task():
    with pytest.raises(SeqrecError, match="select=last is implemented for next-item"):
        build_config({"task": {"name": "ranking"}, "data": {"split": "temporal"},
                      "train": {"select": "last"}})  # fmt: skip


def test_log_test_peeks_at_every_validation_without_changing_the_run(
    cycle_log, config_for, tmp_path
):
    """train.log_test logs the test metrics of the weights at each validation; the peek at the
    best epoch equals the final test of the best weights, and the run (selection, weights,
    final metrics) is the same as without it."""
    base = {"epochs": 4, "patience": 50}
    res = train_run(config_for(cycle_log, train={**base, "log_test": True}), tmp_path / "peek")
    plain = train_run(config_for(cycle_log, train=base), tmp_path / "plain")
    lines = (tmp_path / "peek" / "metrics.jsonl").read_text().splitlines()
    peeks = {r["epoch"]: r for r in map(json.loads, lines) if r.get("event") == "test_peek"}
    assert sorted(peeks) == [0, 1, 2, 3]
    best = peeks[res["best_epoch"]]
    assert best["test/NDCG@10"] == pytest.approx(res["test"]["metrics"]["NDCG@10"], abs=1e-12)
    assert best["test/HR@10"] == pytest.approx(res["test"]["metrics"]["HR@10"], abs=1e-12)
    assert res["best_epoch"] == plain["best_epoch"]
    assert res["test"]["metrics"] == plain["test"]["metrics"]
    assert "test_peek" not in (tmp_path / "plain" / "metrics.jsonl").read_text()
