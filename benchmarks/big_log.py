"""A log larger than memory, end to end: generate, ingest out of core, open the store, train.

    python benchmarks/big_log.py                                   # 100M events, 1M items
    python benchmarks/big_log.py --events 1000000 --items 10000 --max-steps 30 --name big_log_smoke
    python benchmarks/big_log.py -o train.item_updates=sparse -o objective.shared_negatives=true

Four stages, each in its own process so each peak resident set is its own (the child reports
``ru_maxrss`` of itself; the parent only starts them and collects):

1. generate: ``seqrec.data.synthetic`` writes the log as time-partitioned Parquet (Zipf items,
   log-normal user lengths, increasing timestamps), chunk by chunk. ``--reuse-log`` skips it
   when the folder already holds the same spec.
2. ingest: ``build_store`` on the folder with a cold cache: the out-of-core path
   (data/outofcore.py) surveys the parts, scatters users into buckets, sorts each bucket and
   writes the memory-mapped arrays. Its own report (sub-stage seconds, buckets) is recorded.
3. store: ``seqrec.data.prepare``, what every training run pays: the cached store opened
   memory-mapped (after re-hashing the parts for the cache key) and the leave-one-out split.
4. train: the ordinary Trainer (SASRec, sampled softmax) built on that data, then one epoch
   of ``Trainer._step`` in the task's epoch order, as large_catalog.py times it; no
   validation (full ranking of millions of users is another benchmark). ``--max-steps`` stops
   early and the epoch time is extrapolated from the steps run (and says so).

The training config is SASRec width 64, 2 blocks, max_len 50, batch 128, 1024 uniform
negatives; ``-o section.key=value`` (repeatable) and ``--config-json '{"train": {...}}'``
change it through the same override parser as ``seqrec train -o``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STAGES = ("generate", "ingest", "store", "train")


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux reports KiB


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def spec_of(args):
    from seqrec.data.synthetic import LogSpec

    return LogSpec(
        events=args.events,
        items=args.items,
        zipf=args.zipf,
        median_length=args.median_length,
        parts=args.parts,
        seed=args.seed,
    )


def run_config(args, dataset: Path, cache: Path):
    from seqrec.recipe import apply_overrides, build_config

    raw = {
        "data": {"dataset": str(dataset), "cache_dir": str(cache), "max_len": args.max_len},
        "model": {"name": "sasrec", "hidden": args.hidden, "layers": 2, "heads": 1},
        "objective": {"name": "ssm", "n_negatives": 1024},
        "train": {"batch_size": args.batch, "device": "cpu", "threads": args.threads},
    }
    for section, values in json.loads(args.config_json or "{}").items():
        raw.setdefault(section, {}).update(values)
    return build_config(apply_overrides(raw, args.set or []))


def stage_generate(args, log_dir: Path) -> dict:
    from seqrec.data.synthetic import MANIFEST, generate_log

    spec = spec_of(args)
    manifest = log_dir / MANIFEST
    if args.reuse_log and manifest.is_file():
        made = json.loads(manifest.read_text())
        if made.get("spec") == spec.model_dump():
            return {"reused": True, "users": made["users"], "log MiB": made["bytes"] / 2**20}
    made = generate_log(spec, log_dir, overwrite=True)
    return {"reused": False, "users": made["users"], "log MiB": made["bytes"] / 2**20}


def stage_ingest(args, log_dir: Path, cache: Path) -> dict:
    from seqrec.data import outofcore
    from seqrec.data.store import build_store

    outofcore.BUCKET_EVENTS = args.bucket_events
    store = build_store(run_config(args, log_dir, cache).data)
    report = store.meta["ingest"]
    out = {f"ingest {k} s": v for k, v in report["seconds"].items()}
    out.update(buckets=report["buckets"], users=store.n_users, items=store.n_items)
    out["interactions"] = len(store.items)
    out["store MiB"] = du(cache / "stores") / 2**20
    return out


def stage_store(args, log_dir: Path, cache: Path) -> dict:
    from seqrec.data import prepare

    store, split = prepare(run_config(args, log_dir, cache).data)
    if "ingest" not in store.meta:
        raise SystemExit("the store stage expected the ingest stage's out-of-core store")
    return {"train rows": len(split.train), "users": store.n_users}


def stage_train(args, log_dir: Path, cache: Path) -> dict:
    import torch

    from seqrec.data import prepare
    from seqrec.trainer.loop import Trainer

    torch.manual_seed(0)
    cfg = run_config(args, log_dir, cache)
    store, split = prepare(cfg.data)
    with tempfile.TemporaryDirectory(dir=args.work_dir) as run_dir:
        t0 = time.perf_counter()
        trainer = Trainer(cfg, store, split, Path(run_dir) / "run", progress=False)
        setup = time.perf_counter() - t0
        order = trainer.task.epoch_order(0)
        steps = math.ceil(len(order) / cfg.train.batch_size)
        run = min(steps, args.max_steps or steps)
        targets, t1 = 0, time.perf_counter()
        for s in range(run):
            rows = order[s * cfg.train.batch_size : (s + 1) * cfg.train.batch_size]
            targets += trainer._step(rows)[1]
        seconds = time.perf_counter() - t1
    return {
        "trainer setup s": setup,
        "steps per epoch": steps,
        "steps run": run,
        "train interactions/s": targets / seconds,
        "epoch s" if run == steps else "epoch s (extrapolated)": seconds * steps / run,
        "config": {k: v for k, v in cfg.model_dump().items() if k in ("objective", "train")},
    }


def child(args) -> None:
    """One stage in this process; its metrics and peak RSS as JSON in args.report."""
    log_dir, cache = Path(args.work_dir) / "log", Path(args.cache)
    t0 = time.perf_counter()
    if args.stage == "generate":
        out = stage_generate(args, log_dir)
    else:
        out = {"ingest": stage_ingest, "store": stage_store, "train": stage_train}[args.stage](
            args, log_dir, cache
        )
    out["wall s"] = time.perf_counter() - t0
    out["peak RSS GiB"] = peak_rss_gib()
    Path(args.report).write_text(json.dumps(out, default=str))


def parent(args, argv: list[str]) -> None:
    from common import write_result

    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    cache = Path(tempfile.mkdtemp(prefix="cache-", dir=work))  # cold, and removed at the end
    stages: dict[str, dict] = {}
    try:
        for stage in STAGES:
            report = work / f".{stage}.json"
            cmd = [sys.executable, __file__, *argv, "--stage", stage]
            cmd += ["--report", str(report), "--cache", str(cache)]
            subprocess.run(cmd, check=True)
            stages[stage] = json.loads(report.read_text())
            report.unlink()
            print(f"{stage}: {json.dumps(stages[stage], default=str)}", flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(cache, ignore_errors=True)
    metrics = {}
    for stage, out in stages.items():
        metrics[f"{stage} wall s"] = out.pop("wall s")
        metrics[f"{stage} peak RSS GiB"] = out.pop("peak RSS GiB")
    metrics["events"] = args.events
    for stage in ("ingest", "store", "train"):
        metrics.update({k: v for k, v in stages[stage].items() if k != "config"})
    metrics["log MiB"] = stages["generate"]["log MiB"]
    metrics["log generated (not reused)"] = not stages["generate"]["reused"]
    write_result(
        args.name,
        metrics,
        dataset=(
            f"synthetic log: {args.events:,} events, {args.items:,} items, Zipf a={args.zipf}, "
            f"log-normal lengths (median {args.median_length}), {args.parts} Parquet parts"
        ),
        protocol={
            "stages": "generate, ingest (out of core, cold cache), store (open + split), "
            "train (one epoch of Trainer steps, no validation); one process each",
            "model": f"SASRec width {args.hidden}, 2 blocks, max_len {args.max_len}",
            "training config": stages["train"]["config"],
            "bucket events": args.bucket_events,
            "max steps": args.max_steps,
        },
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--events", type=int, default=100_000_000)
    ap.add_argument("--items", type=int, default=1_000_000)
    ap.add_argument("--zipf", type=float, default=1.05)
    ap.add_argument("--median-length", type=float, default=15.0)
    ap.add_argument("--parts", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--bucket-events", type=int, default=4_000_000)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--max-len", type=int, default=50)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-steps", type=int, default=None, help="stop the epoch early")
    ap.add_argument(
        "-o", "--set", action="append", help="training override, e.g. -o train.lr=0.002"
    )
    ap.add_argument(
        "--config-json", default=None, help='e.g. \'{"objective": {"n_negatives": 256}}\''
    )
    ap.add_argument("--work-dir", default=os.path.join(tempfile.gettempdir(), "seqrec-big-log"))
    ap.add_argument("--reuse-log", action="store_true", help="keep a log generated with this spec")
    ap.add_argument("--keep", action="store_true", help="keep the store cache")
    ap.add_argument("--name", default="big_log")
    ap.add_argument("--stage", choices=STAGES, help=argparse.SUPPRESS)
    ap.add_argument("--report", help=argparse.SUPPRESS)
    ap.add_argument("--cache", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.stage:
        child(args)
    else:
        parent(args, sys.argv[1:])


if __name__ == "__main__":
    main()
