"""A 1M-item synthetic catalogue: training step time, top-10 serving latency, peak memory.

    python benchmarks/large_catalog.py                      # 1,000,000 items, every training arm
    python benchmarks/large_catalog.py --items 10000000 --arms sparse --no-serving \
        --name large_catalog_10m                            # 10M items: sparse updates only
    python benchmarks/large_catalog.py --items 50000 --users 5000 --name large_catalog_smoke

Training arms (``--arms``): ``ce`` full chunked CE; ``ssm`` sampled softmax with 1024 negatives
per position; ``shared`` the same 1024 negatives shared by the batch
(``objective.shared_negatives``); ``sparse`` shared negatives plus sparse item-table updates
(``train.item_updates=sparse``: sparse gradients and a row-wise AdamW, trainer/rowwise.py).

Interactions follow a Zipf popularity law (item of popularity rank r drawn with probability
proportional to r^-a, a = 1.05 by default, close to what public logs show), sequence lengths are
log-normal (median ~15, at least 3). The store is built in memory (no file round trip), split
leave-one-out, and trained with the ordinary Trainer step, so what is timed is what `seqrec
train` runs. Serving goes through `Recommender.recommend` (exact: one [1, V] score row and a
top-k) and, when faiss is installed, the HNSW index of `seqrec serve --index faiss`.
Peak memory is the process's maximum resident set size after each phase.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from common import write_result
from seqrec.data.split import leave_one_out
from seqrec.data.store import SequenceStore
from seqrec.recipe import RunConfig
from seqrec.run import Recommender
from seqrec.trainer.loop import Trainer

NEGATIVES = 1024
ARMS = {
    "ce": ("full CE (chunked, 256 rows per block)", {"name": "ce", "chunk_size": 256}, "dense"),
    "ssm": (
        f"sampled softmax ({NEGATIVES} uniform negatives, logQ)",
        {"name": "ssm", "n_negatives": NEGATIVES},
        "dense",
    ),
    "shared": (
        f"sampled softmax ({NEGATIVES} shared negatives), dense updates",
        {"name": "ssm", "n_negatives": NEGATIVES, "shared_negatives": True},
        "dense",
    ),
    "sparse": (
        f"sampled softmax ({NEGATIVES} shared negatives), sparse item updates",
        {"name": "ssm", "n_negatives": NEGATIVES, "shared_negatives": True},
        "sparse",
    ),
}


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux reports KiB


def synthetic_store(n_items: int, n_users: int, zipf: float, seed: int) -> SequenceStore:
    rng = np.random.default_rng(seed)
    lengths = np.maximum(3, rng.lognormal(np.log(15), 0.8, n_users).astype(np.int64))
    ranks = np.arange(1, n_items + 1, dtype=np.float64)
    cdf = np.cumsum(ranks**-zipf)
    cdf /= cdf[-1]
    draws = np.searchsorted(cdf, rng.random(int(lengths.sum())), side="right")
    items = (rng.permutation(n_items)[np.minimum(draws, n_items - 1)] + 1).astype(np.int32)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    item_ids = np.array(["<pad>", *(f"i{i}" for i in range(1, n_items + 1))])
    user_ids = np.array([f"u{u}" for u in range(n_users)])
    return SequenceStore(offsets, items, None, n_items, user_ids, item_ids, "synthetic-zipf")


def time_training(store, split, objective: dict, updates: str, args, run_dir: Path) -> dict:
    train = {"batch_size": args.batch, "device": "cpu", "threads": args.threads}
    cfg = RunConfig.model_validate(
        {
            "data": {"dataset": "synthetic", "max_len": args.max_len},
            "model": {"name": "sasrec", "hidden": args.hidden, "layers": 2, "heads": 1},
            "objective": objective,
            "train": {**train, "item_updates": updates},
        }
    )
    trainer = Trainer(cfg, store, split, run_dir, progress=False)
    rows = trainer.task.train_rows
    times, targets = [], 0
    for s in range(args.steps + 2):
        batch_rows = rows[s * args.batch : (s + 1) * args.batch]
        t0 = time.perf_counter()
        _, n_targets, _, _ = trainer._step(batch_rows)
        if s >= 2:  # the first steps allocate the optimiser state
            times.append(time.perf_counter() - t0)
            targets += n_targets
    return {
        "trainer": trainer,
        "step_seconds": statistics.median(times),
        "interactions_per_s": targets / sum(times),
    }


def time_serving(rec: Recommender, histories: list[np.ndarray], index=None) -> dict:
    lat = []
    for h in histories:
        t0 = time.perf_counter()
        if index is None:
            rec.top_k([h], k=10)
        else:
            index.search(rec, [h], 10, True, [None])
        lat.append(time.perf_counter() - t0)
    lat_ms = np.asarray(lat[3:]) * 1e3
    return {"p50_ms": float(np.percentile(lat_ms, 50)), "p99_ms": float(np.percentile(lat_ms, 99))}


def main() -> None:  # noqa: PLR0915
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--items", type=int, default=1_000_000)
    ap.add_argument("--users", type=int, default=100_000)
    ap.add_argument("--zipf", type=float, default=1.05)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--max-len", type=int, default=50)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-faiss", action="store_true")
    ap.add_argument("--no-serving", action="store_true", help="time training only")
    ap.add_argument("--arms", default=",".join(ARMS), help=f"subset of {','.join(ARMS)}")
    ap.add_argument("--name", default="large_catalog")
    args = ap.parse_args()
    torch.manual_seed(0)
    metrics: dict[str, float] = {}
    t0 = time.perf_counter()
    store = synthetic_store(args.items, args.users, args.zipf, seed=0)
    split = leave_one_out(store)
    pop = np.bincount(store.items, minlength=args.items + 1)
    metrics["catalogue items"] = args.items
    metrics["interactions"] = len(store.items)
    metrics["items with >= 1 interaction"] = int((pop[1:] > 0).sum())
    metrics["top 1% of items' share of interactions"] = float(
        np.sort(pop[1:])[::-1][: args.items // 100].sum() / pop.sum()
    )
    metrics["data build seconds"] = time.perf_counter() - t0
    metrics["peak RSS GiB after data"] = peak_rss_gib()
    with tempfile.TemporaryDirectory() as tmp:
        trainer = None
        for arm in args.arms.split(","):
            if arm not in ARMS:
                raise SystemExit(f"--arms: unknown arm '{arm}'; choose from {', '.join(ARMS)}")
            label, objective, updates = ARMS[arm]
            out = time_training(store, split, objective, updates, args, Path(tmp) / arm)
            trainer = out["trainer"]
            metrics[f"train step seconds, {label}"] = out["step_seconds"]
            metrics[f"train interactions/s, {label}"] = out["interactions_per_s"]
            metrics[f"peak RSS GiB after training, {label}"] = peak_rss_gib()
        if args.no_serving:
            write(args, metrics)
            return
        trainer.model.item_emb.sparse = False  # serving reads the table, it does not train it
        rec = Recommender(trainer.model.eval(), store.item_ids, args.max_len, torch.device("cpu"))
        users = np.random.default_rng(1).choice(len(store.offsets) - 1, args.requests)
        hist = [
            store.items[store.offsets[u] : store.offsets[u + 1]].astype(np.int64) for u in users
        ]
        exact = time_serving(rec, hist)
        metrics["top-10 latency p50 ms, exact (1 request)"] = exact["p50_ms"]
        metrics["top-10 latency p99 ms, exact (1 request)"] = exact["p99_ms"]
        metrics["peak RSS GiB after exact serving"] = peak_rss_gib()
        if not args.no_faiss:
            from seqrec.serve.index import FaissIndex

            t1 = time.perf_counter()
            index = FaissIndex(rec, threads=args.threads)
            metrics["faiss HNSW build seconds"] = time.perf_counter() - t1
            ann = time_serving(rec, hist, index)
            metrics["top-10 latency p50 ms, faiss HNSW (1 request)"] = ann["p50_ms"]
            metrics["top-10 latency p99 ms, faiss HNSW (1 request)"] = ann["p99_ms"]
            metrics["peak RSS GiB after faiss"] = peak_rss_gib()
    write(args, metrics)


def write(args, metrics: dict) -> None:
    write_result(
        args.name,
        metrics,
        dataset=f"synthetic: {args.items:,} items, {args.users:,} users, Zipf a={args.zipf}",
        protocol={
            "model": f"SASRec width {args.hidden}, 2 blocks, max_len {args.max_len}",
            "batch": args.batch,
            "torch threads": args.threads,
            "timed steps": args.steps,
            "requests": args.requests,
            "arms": args.arms,
        },
    )


if __name__ == "__main__":
    main()
