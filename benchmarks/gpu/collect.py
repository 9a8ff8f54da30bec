"""Turn a GPU session's archive (run_jobs.py) into benchmarks/results/<job>.json files.

    python benchmarks/gpu/collect.py /path/to/results.tar.gz --jobs benchmarks/gpu/jobs/zoo.yaml
    python benchmarks/gpu/collect.py gpu-runs --jobs JOBS.yaml   # run folders already in place

Each finished run goes through benchmarks/quality.py with the same overrides the GPU session
used (so the recorded command reproduces the run), reading the run instead of training it.
A job's ``budget_s`` (else --budget) is the time budget it trained with; ``window_masked: true``
(or --window-masked for every HSTU job) also scores it as generative-recommenders does.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tarfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
SAMPLED = "sasrec_ml1m_bce"  # jobs named so also get the SASRec paper's 100-negative protocol


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("archive", type=Path)
    ap.add_argument("--jobs", type=Path, required=True, help="the jobs file the session ran")
    ap.add_argument("--budget", type=float, default=425, help="time_budget_s the jobs ran with")
    ap.add_argument("--only", nargs="*", help="collect only these job names")
    ap.add_argument("--window-masked", action="store_true",
                    help="also score HSTU runs as generative-recommenders does (quality.py)")  # fmt: skip
    args = ap.parse_args()
    if args.archive.is_file():  # else: gpu-runs/ is already in place (e.g. from recover.py)
        with tarfile.open(args.archive) as tar:
            tar.extractall(ROOT, filter="data")
    runs = ROOT / "gpu-runs"
    for job in yaml.safe_load(args.jobs.read_text()):
        if args.only and job["name"] not in args.only:
            continue
        run = runs / job["name"]
        if job.get("preset", "").startswith("ranking-"):
            print(f"skip {job['name']}: ranking runs go through benchmarks/ranking_ml1m.py",
                  file=sys.stderr)  # fmt: skip
            continue
        if "preset" not in job or not (run / "results.json").is_file():
            print(f"skip {job['name']}: no finished run", file=sys.stderr)
            continue
        sets = [*job.get("set", []), f"train.time_budget_s={job.get('budget_s', args.budget)}"]
        cmd = [sys.executable, str(ROOT / "benchmarks/quality.py"), "--preset", job["preset"]]
        cmd += ["--name", job["name"], "--run-dir", str(run.relative_to(ROOT))]
        cmd += [a for s in sets for a in ("-o", s)]
        if job["name"].startswith(SAMPLED):
            cmd += ["--sampled", "uniform", "--sampled-draws", "5"]
        if job.get("window_masked") or (args.window_masked and job["preset"].startswith("hstu")):
            cmd += ["--window-masked"]
        subprocess.run(cmd, check=True, cwd=ROOT)


if __name__ == "__main__":
    main()
