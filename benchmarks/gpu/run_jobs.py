"""Run many trainings side by side on one GPU within a wall-clock budget, then pack the results.

    python benchmarks/gpu/run_jobs.py benchmarks/gpu/jobs/zoo.yaml --budget 480 --out $OUT

A lent GPU session is short and single-shot, and the models here are small: one process per
run keeps the GPU busy while each process's Python overhead sits on its own CPU core. Every
run gets ``train.time_budget_s`` so it stops like early stopping (best weights, test once)
before the deadline; a run still alive at the hard deadline is sent SIGTERM (the trainer
checkpoints) and reported as unfinished. A job that dies early has its log tail printed at
once, so a broken job costs seconds, not the session.

The jobs file is a list of ``{name, preset, set: [overrides], budget_s?, nice?, window_masked?}`` or
``{name, cmd: "shell command", nice?}`` entries (``nice`` lowers the CPU priority of background
work such as sweeps, so the headline runs get the cores first). Everything comes back from the same call:
``results.tar.gz`` (results, logs, configs, per-user test ranks, sweep tables) and
``weights.tar.gz`` (best weights), split into parts under the device's 16 MB file limit, plus
``summary.json``; `collect.py` turns the results into benchmarks/results/*.json.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import yaml

KEEP = ("results.json", "metrics.jsonl", "config.yaml", "test_ranks.npy", "best.safetensors")


def launch(job: dict, runs: Path, budget: float, env: dict) -> subprocess.Popen:
    log = open(runs / f"{job['name']}.log", "w")  # noqa: SIM115 (closed with the process)
    if "cmd" in job:
        cmd = ["bash", "-c", job["cmd"]]
    else:
        sets = [*job.get("set", []), f"train.time_budget_s={job.get('budget_s', budget)}"]
        cmd = [sys.executable, "-m", "seqrec", "train", "-c", job["preset"]]
        cmd += [a for s in sets for a in ("-o", s)]
        cmd += ["--out", str(runs / job["name"]), "--no-progress"]
    if job.get("nice"):  # lower CPU priority (inherited by a sweep's runs) for background work
        cmd = ["nice", "-n", str(job["nice"]), *cmd]
    print(f"[{time.strftime('%H:%M:%S')}] start {job['name']}: {' '.join(cmd[2:])}", flush=True)
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)


def tail(path: Path, n: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


PART_BYTES = 15_000_000  # the device returns files of at most 16 MB, 8 files, 64 MB in all


def pack(runs: Path, out: Path) -> None:
    """Results first (small, one archive), weights second, each split into <= 15 MB parts.

    Everything must come back from the call that trained it: between calls the device keeps
    only files matching .gitignore patterns (*.pt, *.safetensors), so a run folder's
    results.json and logs are gone by the next call. Rejoin parts with `cat NAME.part* | tar xz`.
    """
    small, weights = [], []
    for p in sorted(runs.rglob("*")):
        if not p.is_file():
            continue
        in_sweep = "sweeps" in p.relative_to(runs).parts
        if p.suffix == ".safetensors" and not in_sweep:
            weights.append(p)
        elif p.name in KEEP[:-1] or p.suffix in (".log", ".parquet", ".png", ".npz", ".npy"):
            small.append(p)
    for name, files in (("results", small), ("weights", weights)):
        archive = out / f"{name}.tar.gz"
        with tarfile.open(archive, "w:gz") as tar:
            for p in files:
                tar.add(p, arcname=str(p.relative_to(runs.parent)))
        data = archive.read_bytes()
        if len(data) > PART_BYTES:
            for i in range(0, len(data), PART_BYTES):
                (out / f"{name}.tar.gz.part{i // PART_BYTES:02d}").write_bytes(
                    data[i : i + PART_BYTES]
                )
            archive.unlink()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("jobs", type=Path)
    ap.add_argument("--budget", type=float, default=480, help="seconds until the hard deadline")
    ap.add_argument("--margin", type=float, default=45, help="test + teardown time per run")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--only", nargs="*", help="run only these job names")
    ap.add_argument(
        "--extra", nargs="*", default=[], help="overrides added to every preset job (smoke tests)"
    )
    args = ap.parse_args()
    jobs = yaml.safe_load(args.jobs.read_text())
    if args.only:
        jobs = [j for j in jobs if j["name"] in args.only]
    for j in jobs:
        if "preset" in j:
            j["set"] = [*j.get("set", []), *args.extra]
    runs = Path("gpu-runs").resolve()
    runs.mkdir(exist_ok=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    t0 = time.monotonic()
    procs = {j["name"]: launch(j, runs, args.budget - args.margin, env) for j in jobs}
    status: dict[str, dict] = {}
    while len(status) < len(procs):
        time.sleep(2)
        elapsed = time.monotonic() - t0
        for name, p in procs.items():
            if name in status or p.poll() is None:
                continue
            status[name] = {"rc": p.returncode, "seconds": round(elapsed, 1)}
            print(f"[{elapsed:6.0f}s] {name} exited rc={p.returncode}", flush=True)
            if p.returncode:
                print(tail(runs / f"{name}.log"), flush=True)
        if elapsed > args.budget:
            for name, p in procs.items():
                if name not in status:
                    p.send_signal(signal.SIGTERM)
            time.sleep(20)
            for name, p in procs.items():
                if name not in status:
                    p.kill()
                    status[name] = {"rc": "killed at deadline", "seconds": round(elapsed, 1)}
            break
    summary = {}
    for name in procs:
        res_file = runs / name / "results.json"
        entry = dict(status[name])
        if res_file.is_file():
            res = json.loads(res_file.read_text())
            entry.update(
                test={k: res["test"]["metrics"].get(k) for k in ("HR@10", "NDCG@10")},
                best_epoch=res.get("best_epoch"),
                epochs_run=res.get("epochs_run"),
                stopped_by=res.get("stopped_by"),
            )
        summary[name] = entry
        print(name, json.dumps(entry), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1))
    pack(runs, args.out)


if __name__ == "__main__":
    main()
