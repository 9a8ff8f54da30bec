"""One process vs. `torchrun` with 2 processes (DDP, gloo) on ML-1M, same preset.

    python benchmarks/ddp_ml1m.py                      # the real comparison: a quiet machine, hours
    python benchmarks/ddp_ml1m.py --smoke-steps 3      # checks the script end to end in minutes

Runs, one after the other and with `-o train.threads=1` in each process:

    python -m seqrec train -c PRESET -o train.threads=1 --out runs/ddp_ml1m/np1
    torchrun --standalone --nproc_per_node 2 -m seqrec train -c PRESET -o train.threads=1 \\
        --out runs/ddp_ml1m/np2

`train.batch_size` is the global batch in both, so the 2-process run follows the single-process
optimisation except for float rounding and dropout masks (docs/DISTRIBUTED.md). Recorded: best
validation NDCG@10 (the early-stopping value) and test NDCG@10 of both runs, training
throughput (interactions/s per process and in total), epochs, training and wall seconds.
A finished run folder is reused (--retrain trains it again), an unfinished one is resumed with
its own launcher. Writes benchmarks/results/ddp_ml1m.json (--smoke-steps: ddp_ml1m_smoke.json,
from runs/ddp_ml1m_smoke/, which a smoke check should delete afterwards).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

from common import ROOT, data_dir, write_result


def launcher(nproc: int) -> list[str]:
    if nproc == 1:
        return [sys.executable, "-m", "seqrec"]
    # --standalone: a local rendezvous on a free port (the same as `torchrun --standalone`)
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        str(nproc),
        "-m",
        "seqrec",
    ]


def train(nproc: int, preset: str, overrides: list[str], run_dir: Path, retrain: bool) -> dict:
    """Train (or reuse / resume) one run; returns what the comparison needs from it."""
    sets = [a for o in ["train.threads=1", *overrides] for a in ("-o", o)]
    fresh = ["train", "-c", preset, *sets, "--out", str(run_dir), "--no-progress"]
    if retrain:
        fresh.append("--overwrite")
    cmd = [*launcher(nproc), *fresh]
    shown = f"torchrun --standalone --nproc_per_node {nproc} -m seqrec " if nproc > 1 else "seqrec "
    shown += shlex.join(fresh)
    wall = None
    if retrain or not (run_dir / "results.json").is_file():
        if not retrain and (run_dir / "checkpoint.pt").is_file():
            cmd = [*launcher(nproc), "train", "--resume", str(run_dir), "--no-progress"]
        print("$", shlex.join(cmd), flush=True)
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        t0 = time.perf_counter()
        subprocess.run(cmd, cwd=ROOT, env=env, check=True)
        wall = time.perf_counter() - t0
    res = json.loads((run_dir / "results.json").read_text())
    events = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    valid = [e["valid/NDCG@10"] for e in events if e.get("event") == "valid"]
    tp = res.get("throughput", {})
    return {
        "command": shown,
        "processes": tp.get("processes", nproc),
        "best_valid_NDCG@10": max(valid) if valid else None,
        "valid_NDCG@10": res["valid"]["metrics"]["NDCG@10"],
        "test_NDCG@10": res["test"]["metrics"]["NDCG@10"],
        "test_HR@10": res["test"]["metrics"]["HR@10"],
        "best_epoch": res["best_epoch"],
        "epochs_run": res["epochs_run"],
        "steps": res["steps"],
        "train_seconds": res["train_seconds"],
        "wall_seconds": wall,
        "interactions_per_s": tp.get("interactions_per_s"),
        "interactions_per_s_per_process": tp.get("interactions_per_s_per_process"),
        "_res": res,
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--preset", default="sasrec-ml-1m")
    ap.add_argument("--nproc", type=int, default=2, help="processes of the torchrun run")
    ap.add_argument("--set", "-o", action="append", default=[], help="config override (both)")
    ap.add_argument("--run-root", type=Path, help="default runs/ddp_ml1m[_smoke]")
    ap.add_argument("--retrain", action="store_true", help="train again even if finished")
    ap.add_argument(
        "--smoke-steps",
        type=int,
        metavar="N",
        help="stop each run after N steps (train.max_steps=N) and write ddp_ml1m_smoke.json",
    )
    args = ap.parse_args()
    data_dir()
    name = "ddp_ml1m_smoke" if args.smoke_steps else "ddp_ml1m"
    root = args.run_root or ROOT / "runs" / name
    overrides = list(args.set)
    if args.smoke_steps:
        overrides.append(f"train.max_steps={args.smoke_steps}")

    one = train(1, args.preset, overrides, root / "np1", args.retrain)
    many = train(args.nproc, args.preset, overrides, root / f"np{args.nproc}", args.retrain)
    res = one.pop("_res")
    many.pop("_res")

    metrics = {}
    for tag, run in (("1 process", one), (f"{args.nproc} processes", many)):
        for key in (
            "best_valid_NDCG@10",
            "test_NDCG@10",
            "interactions_per_s",
            "interactions_per_s_per_process",
            "best_epoch",
            "epochs_run",
            "train_seconds",
        ):
            metrics[f"{tag}/{key}"] = run[key]
    if one["interactions_per_s"] and many["interactions_per_s"]:
        metrics["throughput speed-up"] = many["interactions_per_s"] / one["interactions_per_s"]
    ds = res["dataset"]
    write_result(
        name,
        metrics,
        dataset=f"{ds['name']} ({ds['users']:,} users, {ds['items']:,} items, "
        f"{ds['interactions']:,} interactions)",
        protocol={
            **res["test"]["protocol"],
            "comparison": f"{args.preset}, same global batch, 1 vs {args.nproc} processes (DDP, "
            "gloo), 1 torch thread per process; throughput = trained target interactions per "
            "second of training steps (total: all processes' interactions / slowest process)",
        },
        command=f"{one['command']}  &&  {many['command']}",
        notes="smoke check of the script only (max_steps), not a result"
        if args.smoke_steps
        else "",
        extra={"runs": {"single": one, "ddp": many}, "config": res["config"]},
    )


if __name__ == "__main__":
    main()
