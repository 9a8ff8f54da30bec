"""Speed, side by side in one run on one machine: seqrec vs RecBole 1.2.1 SASRec on ML-1M.

    python benchmarks/speed_ml1m.py            # sets up /tmp/recbole-venv on first use

Both train SASRec with full-catalogue cross-entropy, width 64, 2 blocks, 1 head, max length
200, batch 128, on the same 6,040-user / 3,416-item data and the same torch threads. Measured:

* training throughput in target interactions per second (one next-item prediction scored by
  the loss = one interaction). RecBole materialises every prefix of every sequence as its own
  sample with one target; seqrec trains every position of each user's window at once. Also
  seconds per epoch (one pass over the training interactions for RecBole; one pass over the
  users' windows for seqrec, which covers the same next-item targets except those older than
  the last 200 items of long histories);
* full-ranking evaluation of the test split (6,040 users x 3,416 items), seconds and users/s.

RecBole's epochs take hours on CPU, so its per-epoch time is extrapolated from timed batches.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from common import ROOT, data_dir, write_result
from seqrec.data import prepare
from seqrec.eval.ranking import evaluate
from seqrec.models import build_model
from seqrec.recipe import load_config
from seqrec.trainer.loop import Trainer

VENV = Path("/tmp/recbole-venv/bin/python")


def seqrec_side(threads: int, epochs: int) -> dict:
    torch.set_num_threads(threads)
    cfg = load_config("sasrec-ml-1m")
    t0 = time.perf_counter()
    store, split = prepare(cfg.data)
    prep = time.perf_counter() - t0
    trainer = Trainer(cfg, store, split, Path("/tmp/seqrec-speed-run"), progress=False)
    model, bs = trainer.model, cfg.train.batch_size
    n_targets, seconds = 0, 0.0
    for epoch in range(epochs):
        trainer.state["epoch"] = epoch
        order = trainer.task.epoch_order(epoch)
        t0 = time.perf_counter()  # wall time of the trainer's own step, batch building included
        for i in range(trainer.steps_per_epoch):
            n_targets += trainer._step(order[i * bs : (i + 1) * bs])[1]
        seconds += time.perf_counter() - t0
    test = split.test
    evals = []
    for _ in range(3):
        res = evaluate(
            model, store.items, test.starts, test.ends, test.targets, cfg.data.max_len, cfg.eval
        )
        evals.append(res.seconds)
    fresh = build_model(cfg.model, store.n_items, cfg.data.max_len)
    return {
        "data_prep_sec": prep,
        "sec_per_epoch": seconds / epochs,
        "train_interactions_per_epoch": n_targets / epochs,
        "train_interactions_per_sec": n_targets / seconds,
        "eval_test_sec": float(np.median(evals)),
        "eval_users_per_sec": len(test) / float(np.median(evals)),
        "params": sum(p.numel() for p in fresh.parameters()),
    }


def recbole_side(threads: int, batches: int) -> dict:
    if not VENV.is_file():
        subprocess.run(["bash", str(ROOT / "benchmarks/recbole/setup_venv.sh")], check=True)
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks/recbole/make_atomic.py"),
            "--out",
            "/tmp/recbole-data",
        ],
        check=True,
    )
    out = Path("/tmp/recbole-sasrec.json")
    subprocess.run(
        [
            str(VENV),
            str(ROOT / "benchmarks/recbole/run_recbole_sasrec.py"),
            "--data",
            "/tmp/recbole-data",
            "--train-batches",
            str(batches),
            "--threads",
            str(threads),
            "--out",
            str(out),
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return json.loads(out.read_text())


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=2, help="seqrec epochs to time")
    ap.add_argument("--recbole-batches", type=int, default=30)
    args = ap.parse_args()
    data_dir()
    ours = seqrec_side(args.threads, args.epochs)
    rb = recbole_side(args.threads, args.recbole_batches)
    rb_rate = rb["timed_samples"] / (rb["sec_per_batch_median"] * rb["timed_batches"])
    metrics = {
        "seqrec/sec_per_epoch": ours["sec_per_epoch"],
        "seqrec/train_interactions_per_sec": ours["train_interactions_per_sec"],
        "seqrec/eval_test_sec": ours["eval_test_sec"],
        "seqrec/eval_users_per_sec": ours["eval_users_per_sec"],
        "recbole/sec_per_epoch (extrapolated)": rb["train_samples_per_epoch"] / rb_rate,
        "recbole/train_interactions_per_sec": rb_rate,
        "recbole/eval_test_sec": rb["eval_test_sec"],
        "recbole/eval_users_per_sec": rb["eval_users_per_sec"],
        "speedup/train_throughput": ours["train_interactions_per_sec"] / rb_rate,
        "speedup/epoch_time": (rb["train_samples_per_epoch"] / rb_rate) / ours["sec_per_epoch"],
        "speedup/eval": rb["eval_test_sec"] / ours["eval_test_sec"],
    }
    write_result(
        "speed_ml1m_vs_recbole",
        metrics,
        dataset="ml-1m (6,040 users, 3,416 items, 999,611 interactions)",
        protocol="SASRec, CE over all items, width 64, 2 blocks, 1 head, max len 200, batch 128; "
        "full-ranking test evaluation of all 6,040 users; same machine, same run, same thread count",
        extra={"seqrec": ours, "recbole": {k: v for k, v in rb.items() if k != "per_batch_sec"}},
    )


if __name__ == "__main__":
    main()
