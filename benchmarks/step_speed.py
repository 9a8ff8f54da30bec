"""Training-step speed of a preset, before and after: the run's own logged throughput and MFU.

    python benchmarks/step_speed.py                       # sasrec-ml-1m, baseline 998de2f
    python benchmarks/step_speed.py --preset sasrec-beauty --steps 120

Trains ``--preset`` for ``--steps`` steps with the code of a baseline commit (checked out once
as a git worktree under /tmp) and with this checkout, alternating the two ``--rounds`` times so
that drift of the machine hits both alike, each in a fresh process. Every number is what the
run itself wrote to results.json (``throughput``: training interactions per second over the
training steps only, achieved GFLOP/s at the model's FLOPs per interaction, and MFU against the
matmul peak the library measures once per machine). Writes benchmarks/results/step_speed_<preset>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from common import ROOT, data_dir, write_result

BASELINE = "998de2f"  # main before issue 23's step speed-ups


def worktree(rev: str) -> Path:
    """A checkout of ``rev`` under /tmp (made once; seqrec never touches it afterwards)."""
    path = Path(tempfile.gettempdir()) / f"seqrec-baseline-{rev}"
    if not (path / "src" / "seqrec").is_dir():
        subprocess.run(["git", "worktree", "add", "--detach", str(path), rev], cwd=ROOT,
                       check=True, capture_output=True)  # fmt: skip
    return path


def one_run(tree: Path, preset: str, steps: int, threads: int, extra: list[str]) -> dict:
    """Train in a fresh process with ``tree``'s code; the run's results.json throughput."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        overrides = [f"train.max_steps={steps}", f"train.threads={threads}", *extra]
        cmd = [sys.executable, "-m", "seqrec", "train", "-c", preset, "--out", str(out)]
        for o in overrides:
            cmd += ["-o", o]
        env = {**os.environ, "PYTHONPATH": str(tree / "src"), "SEQREC_DATA_DIR": str(data_dir())}
        subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)
        res = json.loads((out / "results.json").read_text())
    return res["throughput"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="sasrec-ml-1m")
    ap.add_argument("--baseline", default=BASELINE)
    ap.add_argument("--steps", type=int, default=96, help="training steps per run (2 ML-1M epochs)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("-o", "--override", action="append", default=[], help="extra key=value")
    args = ap.parse_args()
    sides = {"baseline": worktree(args.baseline), "current": ROOT}
    runs: dict[str, list[dict]] = {name: [] for name in sides}
    for r in range(args.rounds):
        for name, tree in sides.items():
            tp = one_run(tree, args.preset, args.steps, args.threads, args.override)
            runs[name].append(tp)
            print(f"round {r}: {name:8s} {tp['interactions_per_s']:,.0f} interactions/s  "
                  f"MFU {tp.get('mfu', float('nan')):.3f}", file=sys.stderr, flush=True)  # fmt: skip
    summary = {}
    for name, rs in runs.items():
        rates = [t["interactions_per_s"] for t in rs]
        summary[name] = {
            "interactions_per_s_mean": statistics.mean(rates),
            "interactions_per_s_range": [min(rates), max(rates)],
            "achieved_gflops_mean": statistics.mean(t["achieved_gflops"] for t in rs),
            "mfu_mean": statistics.mean(t["mfu"] for t in rs) if "mfu" in rs[0] else None,
            "peak_gflops": rs[0].get("peak_gflops"),
        }
    ratio = (
        summary["current"]["interactions_per_s_mean"]
        / summary["baseline"]["interactions_per_s_mean"]
    )
    write_result(
        f"step_speed_{args.preset.replace('-', '_')}",
        {**summary, "speedup": ratio},
        dataset=args.preset,
        protocol={
            "baseline": args.baseline,
            "steps": args.steps,
            "rounds": args.rounds,
            "threads": args.threads,
            "overrides": args.override,
        },
        extra={"runs": runs},
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
