"""Rebuild GPU-trained run folders from their best weights when the rest did not come back.

    python benchmarks/gpu/recover.py WEIGHTS_ROOT SUMMARY.json [--jobs JOBS.yaml ...] [--sweeps]

The 2026-11-26 session's results archive was over the device's file-size limit and its run
folders were cleared before a second call, so only the best-on-validation weights
(best.safetensors) and summary.json (test metrics as measured on the GPU, best epoch, epochs
run, why training stopped) came back. This rebuilds each run folder the trainer would have
written: config.yaml from the job's preset + overrides (so the config is exactly the one
trained), item_ids.npy from the same cached store, and validation/test metrics, per-user test
ranks and results.json by evaluating the returned weights on this machine's CPU. The test
NDCG@10 re-measured here is compared with the GPU's; a mismatch above 1e-3 stops the script.
Training curves (metrics.jsonl) are not recoverable and are not invented.

With --sweeps, sweep runs are rebuilt the same way (config from the sweep spec by config
hash); runs still training when the session's deadline came (the last `--jobs` started per
sweep) are left out, since their weights are not the end of their budget.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
TRAIN_MACHINE = {
    "cuda": "NVIDIA H100 80GB HBM3",
    "torch": "device image (2.11.0+cu130 per the device notes)",
    "note": "trained on the lent GPU; metrics re-evaluated on CPU from the returned weights",
}


def write_run(run_dir: Path, cfg, weights: Path, extra: dict) -> dict:
    from seqrec.data import prepare
    from seqrec.models.common import count_parameters
    from seqrec.run import Run
    from seqrec.trainer.checkpoint import atomic_write_json

    run_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy2(weights, run_dir / "best.safetensors")
    (run_dir / "config.yaml").write_text(
        yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
    )
    store, _ = prepare(cfg.data)
    np.save(run_dir / "item_ids.npy", np.asarray(store.item_ids).astype(str))
    valid = Run(run_dir).evaluate("valid")
    test = Run(run_dir).evaluate("test")
    model = Run(run_dir).load_model()
    res = {
        **extra,
        "valid": valid.to_json(),
        "test": test.to_json(),
        "params": count_parameters(model),
        "dataset": {"name": store.name, **store.stats()},
        "config": cfg.model_dump(mode="json"),
        "machine": TRAIN_MACHINE,
        "recovered": True,
    }
    np.save(run_dir / "test_ranks.npy", test.ranks)
    atomic_write_json(run_dir / "results.json", res)
    return res


def recover_jobs(src: Path, summary: dict, budget: float, files: list[Path]) -> None:
    from seqrec.recipe import load_config

    jobs = [job for f in files for job in yaml.safe_load(f.read_text())]
    for job in jobs:
        weights = src / job["name"] / "best.safetensors"
        if "preset" not in job or not weights.is_file():
            continue
        sets = [*job.get("set", []), f"train.time_budget_s={job.get('budget_s', budget)}"]
        cfg = load_config(job["preset"], sets)
        s = summary.get(job["name"], {})
        extra = {
            "best_epoch": s.get("best_epoch"),
            "epochs_run": s.get("epochs_run"),
            "stopped_by": s.get("stopped_by"),
            "train_seconds": s.get("seconds"),
            "gpu_test": s.get("test"),
        }
        res = write_run(ROOT / "gpu-runs" / job["name"], cfg, weights, extra)
        here, there = res["test"]["metrics"]["NDCG@10"], (s.get("test") or {}).get("NDCG@10")
        print(f"{job['name']}: test NDCG@10 {here:.4f} (GPU {there})", flush=True)
        if there is not None and abs(here - there) > 1e-3:
            sys.exit(f"{job['name']}: CPU re-evaluation {here} differs from the GPU's {there}")


def recover_sweeps(src: Path, jobs_per_sweep: dict[str, tuple[str, int]]) -> None:
    from seqrec.scaling.sweep_spec import expand, load_spec

    for name, (spec, jobs) in jobs_per_sweep.items():
        runs = expand(load_spec(ROOT / spec), device="cpu")
        have = [r for r in runs if (src / "sweeps" / name / "runs" / r.config_hash).is_dir()]
        done, cut = have[: max(len(have) - jobs, 0)], have[max(len(have) - jobs, 0) :]
        print(f"sweep {name}: {len(have)} runs came back, {len(cut)} cut at the deadline")
        for r in done:
            w = src / "sweeps" / name / "runs" / r.config_hash / "best.safetensors"
            out = ROOT / "gpu-runs" / "sweeps" / name / "runs" / r.config_hash
            res = write_run(out, r.cfg, w, {"best_epoch": None, "epochs_run": None})
            print(f"  {r.config_hash}: NDCG@10 {res['test']['metrics']['NDCG@10']:.4f}")
        (ROOT / "gpu-runs" / "sweeps" / name / "cut.json").write_text(
            json.dumps([r.config_hash for r in cut])
        )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("src", type=Path, help="folder holding gpu-runs/<job>/best.safetensors")
    ap.add_argument("summary", type=Path)
    ap.add_argument("--budget", type=float, default=425)
    ap.add_argument("--jobs", type=Path, nargs="+", help="jobs files (default: every one in jobs/)")
    ap.add_argument("--sweeps", action="store_true")
    args = ap.parse_args()
    summary = json.loads(args.summary.read_text())
    files = args.jobs or sorted((ROOT / "benchmarks/gpu/jobs").glob("*.yaml"))
    recover_jobs(args.src, summary, args.budget, files)
    if args.sweeps:
        recover_sweeps(
            args.src,
            {
                "ml1m": ("benchmarks/sweeps/ml1m-sasrec-hstu.yaml", 4),
                "sasrec_plus": ("benchmarks/sweeps/ml1m-sasrec-plus.yaml", 3),
                "beauty": ("benchmarks/sweeps/beauty-perf-law.yaml", 3),
            },
        )


if __name__ == "__main__":
    main()
