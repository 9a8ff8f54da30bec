"""The item table sharded row-wise by TorchRec over 2 gloo CPU processes (trainer/sharded.py).

Sharded training must be single-process training, redistributed: the same losses step by
step, the same layers, the same table once gathered, the same checkpoint. The reference is the
ordinary `Trainer` in this process on the same global batches, with dropout off, so only float
summation order differs. The table has 51 rows, which 2 processes split 26 + 25.
The refusals need no TorchRec and no processes.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import socket
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from conftest import cycle_sequences, tiny_config, write_csv_log
from seqrec.data import prepare
from seqrec.errors import SeqrecError
from seqrec.recipe import build_config
from seqrec.tasks import load_task_data
from seqrec.trainer.distributed import DistContext
from seqrec.trainer.loop import Trainer
from seqrec.trainer.sharded import ShardedTrainer, check_sharding
from seqrec.trainer.sharded_table import INSTALL, require_torchrec, row_blocks

pytestmark = pytest.mark.usefixtures("in_tmp_dir")

WORLD = 2
N_ITEMS = 50
TIMEOUT_S = 120  # per group of processes; a healthy one takes a few seconds
KEY_BIAS = slice(16, 32)  # in qkv.bias of the 16-wide test model: [query | key | value]


@pytest.fixture
def log50(tmp_path: Path) -> Path:
    return write_csv_log(tmp_path / "log50.csv", cycle_sequences(n_items=N_ITEMS))


def sharded_config(log: Path, **train) -> dict:
    """SASRec + sampled softmax over 16 shared negatives; no dropout; clipping that bites."""
    return tiny_config(
        log,
        model={"dropout": 0.0},
        objective={"name": "ssm", "shared_negatives": True, "n_negatives": 16},
        train={"grad_clip": 0.05, "log_every": 1, **train},
    )


# ---------------------------------------------------------------------------- processes
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, task: str, port: int, env: dict, cwd: str, args: tuple) -> None:
    for key, value in env.items():
        if value is not None:
            os.environ[key] = value
    os.chdir(cwd)
    os.environ.update(
        RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(WORLD), LOCAL_WORLD_SIZE=str(WORLD),
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), OMP_NUM_THREADS="1",
        SEQREC_DIST_TIMEOUT="60",
    )  # fmt: skip
    torch.set_num_threads(1)
    ctx = DistContext.from_env()
    try:
        TASKS[task](rank, ctx, *args)
    finally:
        ctx.close()


def spawn(task: str, *args) -> None:
    """TASKS[task](rank, dist, *args) in WORLD fresh processes; raise if one fails or hangs."""
    env = {k: os.environ.get(k) for k in ("SEQREC_CACHE_DIR", "SEQREC_DATA_DIR")}
    ctx = mp.start_processes(
        _worker,
        args=(task, _free_port(), env, os.getcwd(), args),
        nprocs=WORLD,
        join=False,
        start_method="spawn",
    )
    deadline = time.monotonic() + TIMEOUT_S
    try:
        while not ctx.join(timeout=1):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{task} processes still running after {TIMEOUT_S}s")
    finally:
        for p in ctx.processes:
            if p.is_alive():
                p.kill()


def task_fit(rank: int, ctx: DistContext, raw: dict, run_dir: Path) -> None:
    cfg = build_config(raw)
    store, data = load_task_data(cfg)
    trainer = ShardedTrainer(cfg, store, data, run_dir, progress=False, dist=ctx)
    results = trainer.fit()
    if rank == 0:
        metrics = {k: results[k]["metrics"] for k in ("valid", "test")}
        (run_dir / "metrics.json").write_text(json.dumps(metrics))
    torch.save(trainer.table.bounds, run_dir / f"bounds{rank}.pt")


def task_resume_steps(rank: int, ctx: DistContext, raw: dict, run_dir: Path, batches) -> None:
    """Resume the single-process checkpoint in ``run_dir`` sharded, take ``batches``, write a
    checkpoint; rank 0 saves the losses and the (gathered) parameters."""
    cfg = build_config(raw)
    store, data = load_task_data(cfg)
    trainer = ShardedTrainer(cfg, store, data, run_dir, progress=False, dist=ctx)
    trainer.resume()
    losses = [trainer._step(np.asarray(rows))[0] for rows in batches]
    trainer.checkpoint()  # gathers the table and the moments
    if rank == 0:
        params = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
        torch.save({"losses": losses, "params": params}, run_dir / "sharded.pt")


TASKS = {"fit": task_fit, "resume_steps": task_resume_steps}


# ---------------------------------------------------------------------------- helpers
def step_losses(run_dir: Path) -> list[float]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [e["loss"] for e in map(json.loads, lines) if "loss" in e and "step" in e]


def assert_close_weights(a: dict, b: dict) -> None:
    """Two state dicts equal to float rounding, except the attention key bias: its gradient
    is exactly zero (softmax is shift-invariant), so AdamW moves it by float noise, which
    differs with any change of summation order (as in test_distributed.py)."""
    assert a.keys() == b.keys()
    for name, t in a.items():
        keep = torch.ones(t.shape[0], dtype=torch.bool)
        if name.endswith("qkv.bias"):
            keep[KEY_BIAS] = False
        torch.testing.assert_close(b[name][keep], t[keep], rtol=1e-4, atol=1e-6)


def assert_same_checkpoint(a: dict, b: dict) -> None:
    """Two checkpoints: the weights, the optimiser's layout, its step counts and moments
    (the key bias's moments are float noise too, but far below the tolerance)."""
    assert_close_weights(a["model_state"], b["model_state"])
    assert a["optimizer"]["param_groups"] == b["optimizer"]["param_groups"]
    assert a["optimizer"]["state"].keys() == b["optimizer"]["state"].keys()
    for idx, entry in a["optimizer"]["state"].items():
        for key, t in entry.items():
            torch.testing.assert_close(b["optimizer"]["state"][idx][key], t, rtol=1e-4, atol=1e-7)


# ---------------------------------------------------------------------------- tests
@pytest.mark.distributed
@pytest.mark.slow
def test_sharded_training_is_single_process_training(log50, tmp_path):
    """A whole run (2 epochs, validation, weights, checkpoints, final test): per-step losses,
    the weights file, the metrics and the final checkpoint are the single process's."""
    pytest.importorskip("torchrec")
    raw = sharded_config(log50, epochs=2)
    cfg = build_config(raw)
    store, split = prepare(cfg.data)  # also fills the cache the workers read
    rows = store.n_items + 1
    assert rows % WORLD, "the test table should not divide by the number of processes"
    single = Trainer(cfg, store, split, tmp_path / "single", progress=False).fit()

    sharded = tmp_path / "sharded"
    sharded.mkdir()
    spawn("fit", raw, sharded)
    assert torch.load(sharded / "bounds0.pt") == row_blocks(rows, WORLD) == [(0, 26), (26, 51)]

    want = step_losses(tmp_path / "single")
    assert len(want) == single["steps"] == 10
    assert step_losses(sharded) == pytest.approx(want, rel=1e-5)
    got = json.loads((sharded / "metrics.json").read_text())
    for split_name in ("valid", "test"):
        for k in ("NDCG@10", "HR@10"):
            want_metric = single[split_name]["metrics"][k]
            assert got[split_name][k] == pytest.approx(want_metric, abs=1e-6)
    from safetensors.torch import load_file

    assert_close_weights(
        load_file(tmp_path / "single/best.safetensors"), load_file(sharded / "best.safetensors")
    )
    ck_single = torch.load(tmp_path / "single/checkpoint.pt", weights_only=True)
    ck_sharded = torch.load(sharded / "checkpoint.pt", weights_only=True)
    assert_same_checkpoint(ck_single, ck_sharded)  # a sharded checkpoint is a single-process one


@pytest.mark.distributed
@pytest.mark.slow
def test_single_process_checkpoint_resumes_sharded(log50, tmp_path):
    """2 single-process steps, checkpointed (the layout a sharded checkpoint has too, by the
    test above); 3 more batches (7 rows split 4 + 3, then 1 row that leaves rank 1 a
    zero-weight placeholder) sharded from that checkpoint, or in the single process: the same
    losses, parameters and checkpoint. Cosine scores this time (the looked-up rows are
    normalised like the whole table)."""
    pytest.importorskip("torchrec")
    raw = sharded_config(log50, batch_size=7)
    raw["model"]["l2_norm_output"] = True
    raw["objective"].update(normalize=True, temperature=0.2)
    cfg = build_config(raw)
    store, split = prepare(cfg.data)
    single = Trainer(cfg, store, split, tmp_path / "single", progress=False)
    order = single.task.epoch_order(0)
    batches = [order[:7], order[7:14], order[14:21], order[21:28], order[28:29]]
    for rows in batches[:2]:
        single._step(rows)
        single.state["global_step"] += 1
    single.checkpoint()
    sharded = tmp_path / "sharded"
    sharded.mkdir()
    shutil.copy(tmp_path / "single/checkpoint.pt", sharded / "checkpoint.pt")
    want = [single._step(rows)[0] for rows in batches[2:]]
    single.checkpoint()

    spawn("resume_steps", raw, sharded, [b.tolist() for b in batches[2:]])
    got = torch.load(sharded / "sharded.pt", weights_only=True)
    assert got["losses"] == pytest.approx(want, rel=1e-5)
    want_params = {n: p.detach() for n, p in single.model.named_parameters()}
    assert_close_weights(want_params, got["params"])
    assert_same_checkpoint(
        torch.load(tmp_path / "single/checkpoint.pt", weights_only=True),
        torch.load(sharded / "checkpoint.pt", weights_only=True),
    )


def test_row_blocks_cover_the_table_once():
    for rows in (1, 5, 10, 51):
        for world in (1, 2, 3, 4, 8):
            blocks = row_blocks(rows, world)
            assert blocks[0][0] == 0 and blocks[-1][1] == rows
            assert all(a[1] == b[0] for a, b in itertools.pairwise(blocks))
    assert row_blocks(5, 4) == [(0, 2), (2, 4), (4, 5), (5, 5)]  # TorchRec's: the last empty


@pytest.mark.parametrize(
    ("override", "names"),
    [
        ({}, "torchrun --nproc_per_node N"),  # one process: nothing to split
        ({"objective": {"name": "ce"}}, "objective.shared_negatives=true"),
        ({"objective": {"shared_negatives": False}}, "objective.shared_negatives=true"),
        ({"objective": {"sampling": "in_batch"}}, "objective.sampling=global"),
        ({"model": {"name": "gru4rec"}}, "model.name=sasrec"),
        ({"train": {"item_updates": "sparse"}}, "train.item_updates=dense"),
        ({"train": {"compile": True}}, "train.compile=false"),
    ],
)
def test_refusals_are_one_line_naming_the_fix(log50, override, names):
    raw = sharded_config(log50)
    for section, values in override.items():
        raw[section].update(values)
    if raw["model"].get("name") == "gru4rec":
        raw["model"] = {"name": "gru4rec", "hidden": 16}
    if raw["objective"]["name"] == "ce":
        raw["objective"] = {"name": "ce"}
    cfg = build_config(raw)
    world = DistContext() if not override else DistContext(rank=0, world_size=2)
    with pytest.raises(SeqrecError) as err:
        check_sharding(cfg, world)
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith("train.item_sharding=rowwise") and names in msg


def test_missing_torchrec_names_the_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "torchrec", None)  # import torchrec -> ImportError
    with pytest.raises(SeqrecError) as err:
        require_torchrec()
    assert "\n" not in str(err.value) and INSTALL in str(err.value)
