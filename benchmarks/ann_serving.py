"""Serving a 10M-item catalogue: top-10 latency and recall@10 of the faiss indexes against exact.

    python benchmarks/ann_serving.py                                   # 10,000,000 items
    OMP_NUM_THREADS=1 python benchmarks/ann_serving.py --items 200000 --threads 1 \\
        --name ann_serving_smoke                                       # < 2 minutes

The issue's target: 10M items, top-10 p50 <= 5 ms at recall@10 >= 0.98 on the 2-core CPU.

The model is a SASRec (width 64, 2 blocks, max_len 50) whose item table is generated, not
trained: training a 10M-row table long enough to give it a trained table's shape is out of reach
on this CPU, and a briefly trained one is its random initialisation for almost every row (the
hardest case, unlike any trained table). ``--vectors clustered`` (default) gives the table the
structure trained tables have: items fall into ``items / 1000`` clusters (categories, co-consumed
groups), a row is its cluster's centre plus noise (``--spread`` of the centre's norm), and its
norm grows with popularity (1 to 1 + ``--norm-range``, by the log of its Zipf popularity rank),
as rows of popular items do under training. ``--vectors gaussian`` is the structureless worst
case. The transformer's weights are its initialisation; its user vector is then dominated by the
residual stream of the recent items, so queries sit near the item clusters a user's history is
in, as a trained model's do.

Users: each has a home cluster (drawn by cluster popularity) and a log-normal history length
(median 15); each item comes from the home cluster with probability 0.8, else from the whole
catalogue by Zipf popularity (a = 1.05). Every measurement goes through the serving code:
`choose_index` builds and tunes the index (recall measured on ``--sample-users`` real histories
of these users), then held-out users measure recall@10 against the exact top-10 (the index's
raw top-10, and the served answer with seen items masked against `Recommender.top_k`), and
single requests (`index.search` for one history: encoder, index, exact re-scoring, exclusion)
give the latency. Peak memory is the process's maximum resident set size after each phase;
"RSS GiB" is the resident set at that moment.
"""

from __future__ import annotations

import argparse
import gc
import resource
import time
from pathlib import Path

import numpy as np
import torch

from common import write_result
from seqrec.models import build_model
from seqrec.recipe import RunConfig
from seqrec.run import Recommender
from seqrec.serve.ann import exact_top_k, recall_at_k, user_vectors
from seqrec.serve.index import IndexConfig, choose_index

_CHUNK = 1 << 20


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux reports KiB


def rss_gib() -> float:
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * resource.getpagesize() / 2**30


def zipf_cdf(n: int, a: float) -> np.ndarray:
    cdf = np.cumsum(np.arange(1, n + 1, dtype=np.float64) ** -a)
    return cdf / cdf[-1]


def fill_item_table(table: np.ndarray, rank: np.ndarray, cluster: np.ndarray, args) -> None:
    """Rows 1..N of ``table`` (the model's own memory), a million at a time."""
    rng = np.random.default_rng(1)
    n, d = table.shape[0] - 1, table.shape[1]
    centres = rng.standard_normal((int(cluster.max()) + 1, d), dtype=np.float32)
    for s in range(0, n, _CHUNK):
        e = min(n, s + _CHUNK)
        noise = rng.standard_normal((e - s, d), dtype=np.float32)
        if args.vectors == "gaussian":
            table[1 + s : 1 + e] = noise / np.sqrt(d)
            continue
        rows = centres[cluster[s:e]] + args.spread * noise
        rows /= np.linalg.norm(rows, axis=1, keepdims=True)
        norm = 1 + args.norm_range * (1 - np.log(rank[s:e]) / np.log(n))
        table[1 + s : 1 + e] = rows * norm[:, None].astype(np.float32)


def make_users(n_items: int, cluster: np.ndarray, rank: np.ndarray, args) -> list[np.ndarray]:
    """Internal-id histories: 80% home cluster (uniform inside it), 20% global Zipf."""
    rng = np.random.default_rng(2)
    by_cluster = np.argsort(cluster, kind="stable")
    starts = np.searchsorted(cluster[by_cluster], np.arange(int(cluster.max()) + 2))
    n_clusters = len(starts) - 1
    home = np.minimum(
        np.searchsorted(zipf_cdf(n_clusters, 1.0), rng.random(args.users)), n_clusters - 1
    )
    lens = np.clip(rng.lognormal(np.log(15), 0.8, args.users).astype(np.int64), 3, 500)
    owner = np.repeat(home, lens)
    size = np.maximum(starts[owner + 1] - starts[owner], 1)
    local = by_cluster[starts[owner] + (rng.random(len(owner)) * size).astype(np.int64)]
    by_rank = np.argsort(rank)  # item index of each popularity rank
    pos = np.minimum(np.searchsorted(zipf_cdf(n_items, 1.05), rng.random(len(owner))), n_items - 1)
    flat = np.where(rng.random(len(owner)) < 0.8, local, by_rank[pos]) + 1
    return np.split(flat.astype(np.int64), np.cumsum(lens)[:-1])


def build_recommender(args) -> tuple[Recommender, list[np.ndarray]]:
    torch.manual_seed(0)
    cfg = RunConfig.model_validate(
        {
            "data": {"dataset": "synthetic", "max_len": args.max_len},
            "model": {"name": "sasrec", "hidden": args.hidden, "layers": 2, "heads": 1},
        }
    )
    model = build_model(cfg.model, args.items, args.max_len).eval()
    rng = np.random.default_rng(0)
    rank = rng.permutation(args.items) + 1  # popularity rank of each item
    cluster = rng.integers(0, max(1, args.items // 1000), args.items)
    with torch.no_grad():
        fill_item_table(model.item_emb.weight.detach().numpy(), rank, cluster, args)
    users = make_users(args.items, cluster, rank, args)
    counts = np.bincount(np.concatenate(users), minlength=args.items + 1)
    ids = np.arange(args.items + 1)  # original id = internal id (never read on this path)
    rec = Recommender(model, ids, args.max_len, torch.device("cpu"), popularity=counts)
    return rec, users


def latency(fn, histories: list[np.ndarray]) -> dict[str, float]:
    lat = []
    for h in histories:
        t0 = time.perf_counter()
        fn(h)
        lat.append(time.perf_counter() - t0)
    ms = np.asarray(lat[3:] if len(lat) > 10 else lat) * 1e3  # the first calls warm caches
    return {"p50": float(np.percentile(ms, 50)), "p99": float(np.percentile(ms, 99))}


def served_recall(rec, index, hists: list[np.ndarray]) -> float:
    """Recall@10 of what is served (seen items masked) against the exact path's answer."""
    got, _ = index.search(rec, hists, 10, True, [None] * len(hists))
    want, _ = rec.top_k(hists, 10, True, chunk=8)  # [8, N] score blocks bound the memory
    return recall_at_k(np.where(got > 0, got, -1), want)


def measure_kind(kind: str, rec, tune_users, held_out, truth, args) -> dict:
    label = kind
    cfg = IndexConfig(kind=kind, target_recall=args.target_recall, sample_users=args.sample_users)
    rss0 = rss_gib()
    index, report = choose_index(rec, cfg, args.threads, histories=tune_users)
    effort_name = next(k for k in report["effort"] if k != "cap")
    vecs = user_vectors(rec, held_out)
    recall = recall_at_k(index.raw_search(vecs, 10), truth)
    lat = latency(lambda h: index.search(rec, [h], 10, True, [None]), held_out[: args.requests])
    out = {
        f"build seconds, {label}": report["build_seconds"],
        f"tune seconds, {label}": report["tune_seconds"],
        f"chosen {effort_name}, {label}": report["effort"][effort_name],
        f"recall@10 at build (tuning sample), {label}": report["recall_at_10"],
        f"recall@10 vs exact, held-out users, {label}": recall,
        f"served recall@10 vs exact (seen masked), {label}": served_recall(
            rec, index, held_out[: args.served_users]
        ),
        f"top-10 latency p50 ms, {label} (1 request)": lat["p50"],
        f"top-10 latency p99 ms, {label} (1 request)": lat["p99"],
        f"index-only search p50 ms, {label}": report["search_ms_p50"],
        f"exact fallbacks, {label}": index.fallbacks,
        f"index GiB (faiss's own memory), {label}": report["index_gib"],
        f"RSS GiB growth while built, {label}": rss_gib() - rss0,
        f"peak RSS GiB after {label}": peak_rss_gib(),
    }
    out[f"target met (p50 <= 5 ms, recall >= 0.98), {label}"] = bool(
        lat["p50"] <= 5 and recall >= 0.98
    )
    out[f"index parameters, {label}"] = report["params"]
    out[f"efforts tried (effort, recall), {label}"] = report["tried"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--items", type=int, default=10_000_000)
    ap.add_argument("--vectors", choices=["clustered", "gaussian"], default="clustered")
    ap.add_argument("--spread", type=float, default=0.7)
    ap.add_argument("--norm-range", type=float, default=0.5)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--max-len", type=int, default=50)
    ap.add_argument("--users", type=int, default=20_000)
    ap.add_argument(
        "--kinds", default="faiss-ivf", help="comma-separated, e.g. faiss-ivf,faiss-hnsw"
    )
    ap.add_argument("--target-recall", type=float, default=0.98)
    ap.add_argument("--sample-users", type=int, default=500, help="recall sample at build")
    ap.add_argument("--eval-users", type=int, default=1000, help="held-out recall users")
    ap.add_argument("--served-users", type=int, default=200)
    ap.add_argument("--requests", type=int, default=500)
    ap.add_argument("--exact-requests", type=int, default=30)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--name", default="ann_serving")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    rec, users = build_recommender(args)
    metrics: dict = {"catalogue items": args.items}
    metrics["table and users build seconds"] = time.perf_counter() - t0
    metrics["RSS GiB after table"] = rss_gib()
    tune_users = users[: len(users) // 2]
    held_out = users[len(users) // 2 :][: args.eval_users]
    t1 = time.perf_counter()
    truth = exact_top_k(
        user_vectors(rec, held_out), rec.model.item_weights.detach().numpy()[1:], 10
    )
    metrics["exact top-10 of held-out users, seconds"] = time.perf_counter() - t1
    enc = latency(lambda h: user_vectors(rec, [h]), held_out[:200])
    metrics["encoder latency p50 ms (1 request)"] = enc["p50"]
    exact = latency(lambda h: rec.top_k([h], 10), held_out[: args.exact_requests])
    metrics["top-10 latency p50 ms, exact (1 request)"] = exact["p50"]
    metrics["top-10 latency p99 ms, exact (1 request)"] = exact["p99"]
    metrics["peak RSS GiB after exact"] = peak_rss_gib()
    for kind in [k for k in args.kinds.split(",") if k]:
        metrics.update(measure_kind(kind, rec, tune_users, held_out, truth, args))
        gc.collect()  # the index goes before the next one is built
    write_result(
        args.name,
        metrics,
        dataset=f"synthetic: {args.items:,} items, {args.vectors} item table, "
        f"{args.users:,} users (half tune the index, {len(held_out)} held out measure it)",
        protocol={
            "model": f"SASRec width {args.hidden}, 2 blocks, max_len {args.max_len}, "
            "initialised weights, generated item table",
            "item table": {
                "vectors": args.vectors,
                "clusters": max(1, args.items // 1000),
                "spread": args.spread,
                "norm range": args.norm_range,
            },
            "users": "home cluster 0.8 / global Zipf(1.05) 0.2, log-normal lengths (median 15)",
            "target recall@10": args.target_recall,
            "threads": args.threads,
            "requests": args.requests,
            "recall": "index top-10 vs exact top-10 of the same user vectors (no masking); "
            "served: index.search vs Recommender.top_k with seen items masked",
        },
    )


if __name__ == "__main__":
    main()
