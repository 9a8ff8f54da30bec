"""Multi-process (DDP over gloo, 2 CPU processes) training on generated data.

The optimisation does not depend on the number of processes: one DDP step equals one
single-process step on the same global batch, sharded evaluation equals the full one, and a run
resumes with another world size. Processes are started with torch.multiprocessing (each one
sets the variables torchrun would set) and once through the real `torchrun -m seqrec train`.
Runs compared across world sizes use dropout 0, so only float rounding differs; a resume with
the same world size is compared bitwise, with dropout.
"""

from __future__ import annotations

import faulthandler
import json
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import yaml
from safetensors.torch import load_file
from torch.multiprocessing.spawn import ProcessException, ProcessRaisedException

from conftest import N_USERS, tiny_config
from seqrec.data import prepare
from seqrec.recipe import build_config
from seqrec.tasks import load_task_data, retrieval
from seqrec.trainer.distributed import DistContext, rank_seed
from seqrec.trainer.loop import Trainer, TrainingInterrupted
from seqrec.trainer.run import train_run

pytestmark = [
    pytest.mark.distributed,
    pytest.mark.slow,
    pytest.mark.skipif(not dist.is_available(), reason="torch built without torch.distributed"),
    pytest.mark.usefixtures("in_tmp_dir"),
]

WORLD = 2
TIMEOUT_S = 90  # per group of processes; a healthy one takes a few seconds
# a collective (or the rendezvous) stuck this long raises in the worker, naming the operation,
# well before the harness gives up on the whole group
COLLECTIVE_TIMEOUT_S = 60
KEY_BIAS = slice(16, 32)  # in qkv.bias of the 16-wide test model: [query | key | value]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------- process harness
_STACK_FILES: list = []  # a worker's stack file, open for its lifetime


def _worker(rank: int, task: str, port: int, env: dict, cwd: str, stacks: str, args: tuple) -> None:
    # where this process writes every thread's Python stack when the harness sends SIGUSR1
    # (a hang then says where it is)
    _STACK_FILES.append(open(Path(stacks) / f"rank{rank}.txt", "w"))  # noqa: SIM115
    faulthandler.register(signal.SIGUSR1, file=_STACK_FILES[-1], all_threads=True)
    # a fork-server child starts with the server's environment and folder, not the test's
    for key, value in env.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    os.chdir(cwd)
    os.environ.update(
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(WORLD),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        OMP_NUM_THREADS="1",
        SEQREC_DIST_TIMEOUT=str(COLLECTIVE_TIMEOUT_S),
    )
    torch.set_num_threads(1)
    TASKS[task](rank, *args)


# what the fork server imports once (installed packages: it does not see tests/ on sys.path);
# DDP's constructor imports torch._dynamo (seconds) on first use
PRELOAD = ["torch", "torch._dynamo", "seqrec.trainer.run", "safetensors.torch", "yaml", "pytest"]


def spawn(task: str, *args, retry_hang: bool = False) -> None:
    """Run TASKS[task](rank, *args) in WORLD processes; raise if any fails or hangs.

    Started through a fork server where the platform has one: the server imports torch and
    seqrec once per session and forks each worker from that clean state (plain fork from
    pytest would copy the parent's polars thread pool, which deadlocks; spawn would import
    torch again for every process, seconds each).

    A group still running after TIMEOUT_S is asked for its Python stacks, which go into the
    error; a worker whose gloo collective timed out counts as a hang too. One CI run (of
    several hundred spawns) saw a group hang that never recurred here; ``retry_hang`` reruns
    a task whose outputs a rerun simply overwrites once after a hang, with the stacks in a
    warning, so that a rare stall costs one rerun and leaves evidence.
    A wrong result or a crash is never retried, and a second hang fails.
    """
    try:
        _spawn_once(task, args)
    except _Hang as hang:
        if not retry_hang:
            raise TimeoutError(str(hang)) from None
        warnings.warn(f"retried after a hang: {hang}", RuntimeWarning, stacklevel=2)
        try:
            _spawn_once(task, args)
        except _Hang as again:
            raise TimeoutError(f"hung twice: {again}") from None


class _Hang(Exception):
    """A process group that hung: still running after TIMEOUT_S (message: every rank's
    stacks), or a worker whose collective timed out (message: its traceback)."""


def _spawn_once(task: str, args: tuple) -> None:
    if "forkserver" in mp.get_all_start_methods():
        method = "forkserver"
        multiprocessing.set_forkserver_preload(PRELOAD)  # no-op once the server runs
    else:
        method = "spawn"
    env = {k: os.environ.get(k) for k in ("SEQREC_CACHE_DIR", "SEQREC_DATA_DIR")}
    with tempfile.TemporaryDirectory(prefix="ddp-stacks-") as stacks:
        ctx = mp.start_processes(
            _worker,
            args=(task, free_port(), env, os.getcwd(), stacks, args),
            nprocs=WORLD,
            join=False,
            start_method=method,
        )
        deadline = time.monotonic() + TIMEOUT_S
        try:
            while not _joined(ctx):
                if time.monotonic() > deadline:
                    raise _Hang(
                        f"{task} processes still running after {TIMEOUT_S}s"
                        + (_stacks(ctx.processes, Path(stacks)))
                    )
        finally:
            for p in ctx.processes:
                if p.is_alive():
                    p.kill()


def _joined(ctx) -> bool:
    """ctx.join for one second; a worker whose collective or rendezvous timed out (gloo,
    COLLECTIVE_TIMEOUT_S) is a hang that already says where it stopped, not a crash."""
    try:
        return ctx.join(timeout=1)
    except ProcessRaisedException as e:
        if "timed out" in str(e).lower():
            raise _Hang(str(e)) from None
        raise


def _stacks(processes: list, folder: Path) -> str:
    """Every live rank's Python stacks (SIGUSR1 -> faulthandler), as text for an error."""
    alive = [(rank, p) for rank, p in enumerate(processes) if p.is_alive()]
    for _, p in alive:
        os.kill(p.pid, signal.SIGUSR1)
    time.sleep(2)
    parts = []
    for rank, _ in alive:
        f = folder / f"rank{rank}.txt"
        text = f.read_text() if f.exists() else ""
        parts.append(f"\n--- rank {rank} ---\n{text.strip() or '(no stack written)'}")
    return "".join(parts)


def task_steps(rank: int, raw: dict, out: Path, batches: list[list[int]]) -> None:
    """A few optimiser steps on given global batches, then a sharded validation (either task)."""
    cfg = build_config(raw)
    store, data = load_task_data(cfg)
    ctx = DistContext.from_env()
    try:
        trainer = Trainer(cfg, store, data, out / f"rank{rank}", progress=False, dist=ctx)
        torch.save(steps(trainer, batches), out / f"rank{rank}.pt")
    finally:
        ctx.close()


def task_train(rank: int, raw: dict | None, run_dir: Path, kill_rank1_at: int | None) -> None:
    """train_run (resume when raw is None); rank 1 dies hard inside step ``kill_rank1_at``."""
    if kill_rank1_at is not None and rank == 1:
        real = retrieval.build_objective

        def build(cfg):
            objective, calls = real(cfg), [0]

            def dying(model, batch):
                calls[0] += 1
                if calls[0] == kill_rank1_at:
                    os._exit(1)  # no cleanup, no Ctrl-C handler: like a killed process
                return objective(model, batch)

            return dying

        retrieval.build_objective = build
    cfg = None if raw is None else build_config(raw)
    train_run(cfg, run_dir, resume=raw is None, progress=False)


TASKS = {"steps": task_steps, "train": task_train}


# ---------------------------------------------------------------------------- helpers
def steps(trainer: Trainer, batches: list) -> dict:
    """Losses, (synchronised) gradients and parameters after each step, then what validation
    yields: retrieval ranks, or the ranking task's probabilities."""
    out = {"losses": [], "grads": [], "params": []}
    for rows in batches:
        out["losses"].append(trainer._step(np.asarray(rows))[0])
        out["grads"].append({n: p.grad.clone() for n, p in trainer.model.named_parameters()})
        out["params"].append({n: p.detach().clone() for n, p in trainer.model.named_parameters()})
    if trainer.cfg.task.name == "ranking":
        out["probs"] = torch.from_numpy(trainer.task.predict(trainer.data.valid))
    else:
        out["ranks"] = torch.from_numpy(trainer.task.evaluate_view("valid").ranks)
    return out


def run_like_single(single: Trainer, raw: dict, tmp_path: Path) -> tuple[dict, dict, dict]:
    """The same three global batches (7 rows split 4 + 3, 7 more, then 1 row that leaves
    rank 1 a zero-weight placeholder) in one process and in WORLD: the losses, gradients and
    synchronised parameters must agree step by step. Returns (single, rank 0, rank 1)."""
    order = single.task.epoch_order(0)
    batches = [order[:7], order[7:14], order[14:15]]
    want = steps(single, batches)
    spawn("steps", raw, tmp_path, [b.tolist() for b in batches], retry_hang=True)
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert r0["losses"] == pytest.approx(want["losses"], rel=1e-5)
    for step in range(len(batches)):
        for name, grad in want["grads"][step].items():
            torch.testing.assert_close(r0["grads"][step][name], grad, rtol=1e-4, atol=1e-6)
            assert torch.equal(r0["params"][step][name], r1["params"][step][name])  # in sync
    return want, r0, r1


def write_rating_log(path: Path, n_users: int = 40, per_user: int = 12, n_items: int = 30) -> Path:
    """`user_id,item_id,timestamp,rating` for the ranking task (ratings 1..5, both labels)."""
    rng = np.random.default_rng(0)
    rows = [
        f"{u + 1},{i + 1},{1_000_000 + 1_000 * t + u},{1 + (i + u) % 5}"
        for u in range(n_users)
        for t, i in enumerate(rng.choice(n_items, per_user, replace=False))
    ]
    path.write_text("user_id,item_id,timestamp,rating\n" + "\n".join(rows) + "\n")
    return path


def ranking_config(log: Path) -> dict:
    """No dropout: the two runs then differ by float rounding only."""
    return {
        "data": {"dataset": str(log), "behavior_col": "rating", "split": "temporal",
                 "max_len": 8, "temporal_valid_frac": 0.2, "temporal_test_frac": 0.2},
        "model": {"hidden": 16, "layers": 1, "heads": 1, "dropout": 0.0},
        "task": {"name": "ranking", "head_hidden": [8], "attention_hidden": 8},
        "train": {"epochs": 1, "batch_size": 7, "lr": 0.01, "warmup_steps": 0,
                  "grad_clip": 0.5, "device": "cpu", "threads": 1},
    }  # fmt: skip


def compared_config(cycle_log: Path, **train) -> dict:
    """No dropout: results then differ across world sizes only by float rounding."""
    return tiny_config(cycle_log, model={"dropout": 0.0}, train=train)


def valid_events(run_dir: Path) -> list[tuple]:
    events = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [
        (e["epoch"], e["step"], e["valid/NDCG@10"], e["valid/HR@10"])
        for e in events
        if e.get("event") == "valid"
    ]


def valid_steps(run_dir: Path) -> list[tuple[int, int]]:
    return [e[:2] for e in valid_events(run_dir)]


def assert_close_runs(a: Path, b: Path, res_a: dict, res_b: dict) -> None:
    wa, wb = load_file(a / "best.safetensors"), load_file(b / "best.safetensors")
    for k in wa:
        keep = torch.ones(wa[k].shape[0], dtype=torch.bool)
        if k.endswith("qkv.bias"):
            # the attention key bias has an exactly-zero gradient (softmax is shift-invariant):
            # AdamW moves it by float noise, differently for any change in summation order
            keep[KEY_BIAS] = False
        torch.testing.assert_close(wa[k][keep], wb[k][keep], rtol=1e-3, atol=1e-4)
    assert np.array_equal(np.load(a / "test_ranks.npy"), np.load(b / "test_ranks.npy"))
    assert (res_a["steps"], res_a["best_epoch"]) == (res_b["steps"], res_b["best_epoch"])
    for split in ("valid", "test"):
        ma, mb = res_a[split]["metrics"], res_b[split]["metrics"]
        assert mb["NDCG@10"] == pytest.approx(ma["NDCG@10"], abs=0.02)
    assert valid_steps(a) == valid_steps(b)


# ---------------------------------------------------------------------------- tests
def test_shards_cover_every_row_once_in_order():
    rows = np.arange(11)
    for world in (1, 2, 3, 4, 16):
        parts = [DistContext(rank=r, world_size=world).shard(rows) for r in range(world)]
        assert np.array_equal(np.concatenate(parts), rows)
        assert max(map(len, parts)) - min(map(len, parts)) <= 1


def test_rng_restore_per_rank():
    states = [torch.manual_seed(s).get_state() for s in (1, 2)]
    ck = {"torch_rng": states[0], "torch_rng_ranks": states, "world_size": 2}

    def restored(rank: int, world: int) -> torch.Tensor:
        torch.manual_seed(999)
        DistContext(rank=rank, world_size=world).restore_rng(ck, seed=7, step=5)
        return torch.get_rng_state()

    assert torch.equal(restored(0, 3), states[0])  # rank 0: the single-process stream
    assert torch.equal(restored(1, 2), states[1])  # same world size: its own stream
    assert torch.equal(restored(1, 3), torch.manual_seed(rank_seed(7, 1, 5)).get_state())


def test_ddp_steps_equal_single_process_steps_and_sharded_eval_equals_full(cycle_log, tmp_path):
    """Global batches of 7 (ranks get 4 + 3 rows with different target counts) and of 1 row
    (rank 1 only holds a zero-weight placeholder): the loss scaling must make the averaged
    gradient the single-process one, step after step (AdamW state, gradient clipping)."""
    raw = compared_config(cycle_log, batch_size=7, grad_clip=0.5)
    cfg = build_config(raw)
    store, split = prepare(cfg.data)  # also fills the cache the workers load
    single = Trainer(cfg, store, split, tmp_path / "single", progress=False)
    want, r0, r1 = run_like_single(single, raw, tmp_path)
    # the parameters after one step: AdamW's first update is lr * g / (|g| + eps), which turns
    # float noise in an exactly-zero gradient (the attention key bias) into a full-size move,
    # so those coordinates are left out
    for name, grad in want["grads"][0].items():
        real = grad.abs() > 1e-6
        torch.testing.assert_close(
            r0["params"][0][name][real], want["params"][0][name][real], rtol=1e-5, atol=1e-6
        )

    # sharded validation: every rank holds every user's rank, identical to one process
    single.model.load_state_dict(r0["params"][-1])
    full = single.task.evaluate_view("valid").ranks
    assert len(full) == N_USERS
    assert np.array_equal(r0["ranks"].numpy(), full)
    assert np.array_equal(r1["ranks"].numpy(), full)


def test_ranking_ddp_steps_equal_single_process_steps_and_sharded_scores(tmp_path):
    """The ranking task under the same DDP loop: BCE is a mean over examples, so the loss
    rescaling makes the averaged gradient the single-process one (batches of 7 examples split
    4 + 3, and a 1-example batch that leaves rank 1 a zero-weight placeholder); the sharded
    validation probabilities are the single process's."""
    raw = ranking_config(write_rating_log(tmp_path / "ratings.csv"))
    cfg = build_config(raw)
    store, data = load_task_data(cfg)  # also fills the cache the workers load
    single = Trainer(cfg, store, data, tmp_path / "single", progress=False)
    _, r0, r1 = run_like_single(single, raw, tmp_path)
    single.model.load_state_dict(r0["params"][-1])
    full = single.task.predict(data.valid)
    assert len(full) == len(data.valid)
    np.testing.assert_allclose(r0["probs"].numpy(), full, rtol=1e-6, atol=1e-7)
    assert torch.equal(r0["probs"], r1["probs"])  # every rank holds every probability


def test_killed_rank_resumes_with_one_process_and_one_process_resumes_with_two(
    cycle_log, tmp_path, monkeypatch
):
    raw = compared_config(cycle_log, checkpoint_every=3)
    straight = train_run(build_config(raw), tmp_path / "straight", progress=False)

    # 2 processes; rank 1 is killed inside step 9 -> the step-6 checkpoint survives
    killed = tmp_path / "killed"
    with pytest.raises(ProcessException):
        spawn("train", raw, killed, 9)
    ck = torch.load(killed / "checkpoint.pt", weights_only=True)
    assert ck["world_size"] == 2 and len(ck["torch_rng_ranks"]) == 2
    assert ck["state"]["global_step"] == 6  # lost: the 2 steps after it, nothing more
    assert not (killed / "results.json").exists()
    resumed = train_run(None, killed, resume=True, progress=False)  # 1 process now
    assert_close_runs(tmp_path / "straight", killed, straight, resumed)

    # 1 process, Ctrl-C at step 8 -> resumed with 2 processes
    stopped = tmp_path / "stopped"
    real = retrieval.build_objective

    def build(cfg):
        objective, calls = real(cfg), [0]

        def interrupted(model, batch):
            if calls[0] == 8:
                raise KeyboardInterrupt
            calls[0] += 1
            return objective(model, batch)

        return interrupted

    with monkeypatch.context() as mp_:
        mp_.setattr(retrieval, "build_objective", build)
        with pytest.raises(TrainingInterrupted):
            train_run(build_config(raw), stopped, progress=False)
    spawn("train", None, stopped, None)
    resumed2 = json.loads((stopped / "results.json").read_text())
    assert resumed2["throughput"]["processes"] == 2
    assert_close_runs(tmp_path / "straight", stopped, straight, resumed2)
    assert np.load(stopped / "test_ranks.npy").shape == (N_USERS,)


def test_killed_rank_resumes_exactly_with_the_same_world_size(cycle_log, tmp_path):
    """With dropout on, a 2-process resume continues every rank's own RNG stream: the result
    is bitwise the uninterrupted 2-process run."""
    raw = tiny_config(cycle_log, train={"checkpoint_every": 3})
    spawn("train", raw, tmp_path / "straight", None)
    with pytest.raises(ProcessException):
        spawn("train", raw, tmp_path / "killed", 9)
    spawn("train", None, tmp_path / "killed", None)
    a, b = (
        load_file(tmp_path / "straight/best.safetensors"),
        load_file(tmp_path / "killed/best.safetensors"),
    )
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert np.array_equal(
        np.load(tmp_path / "straight/test_ranks.npy"), np.load(tmp_path / "killed/test_ranks.npy")
    )
    assert valid_events(tmp_path / "straight") == valid_events(tmp_path / "killed")


def test_torchrun_cli_trains_on_two_processes(cycle_log, tmp_path):
    raw = tiny_config(cycle_log, train={"batch_size": 4})  # 10 steps/epoch, 60 steps
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(raw))
    run = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",  # = torchrun
        "--nproc_per_node",
        str(WORLD),
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(free_port()),
        "-m",
        "seqrec",
        "train",
        "-c",
        str(tmp_path / "cfg.yaml"),
        "--out",
        str(run),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S, env=env)
    assert proc.returncode == 0, proc.stderr[-4000:]
    printed = proc.stdout + proc.stderr
    # only rank 0 reports: one line per validation, one table, one summary
    assert printed.count("valid NDCG@10") == raw["train"]["epochs"]
    assert printed.count("run saved in") == 1 and printed.count("2 processes") == 1
    assert printed.count("training throughput") == 1

    res = json.loads((run / "results.json").read_text())
    assert res["steps"] == 60 and res["valid"]["metrics"]["NDCG@10"] > 0.8
    assert res["test"]["n_users"] == N_USERS and res["test"]["protocol"]["processes"] == 2
    assert res["throughput"]["processes"] == 2
    assert len(res["throughput"]["interactions_per_s_per_process"]) == 2
    assert res["throughput"]["interactions_per_s"] > 0
    logged = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    speed = [e for e in logged if "interactions_per_s_per_process" in e]
    assert [e["step"] for e in speed] == [50]
    assert len(speed[0]["interactions_per_s_per_process"]) == 2
    assert np.load(run / "test_ranks.npy").shape == (N_USERS,)
