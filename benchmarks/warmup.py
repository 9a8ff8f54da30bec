"""How long should the learning-rate warm-up be? Early validation quality by warm-up length.

    python benchmarks/warmup.py --dataset ml-1m --epochs 5
    python benchmarks/warmup.py --dataset beauty --epochs 5

Trains the dataset's SASRec preset (full CE) for a few epochs under each warm-up setting and
records validation NDCG@10 after every epoch: the fixed 100 steps seqrec used to default to
(longer than ML-1M's 48-step epoch), none, and ``train.warmup_epochs`` of 0.1 and 0.5. The
default is the setting that learns earliest without a worse curve later in the window; the
final quality of full runs is checked by benchmarks/time_to_quality.py under the new default.
Writes benchmarks/results/warmup_<dataset without dashes>.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

from common import write_result
from seqrec.recipe import load_config
from seqrec.trainer.run import train_run

PRESETS = {"ml-1m": "sasrec-ml-1m", "beauty": "sasrec-beauty"}
SETTINGS = {
    "steps=100 (old default)": ["train.warmup_steps=100"],
    "none": ["train.warmup_steps=0"],
    "epochs=0.1": ["train.warmup_epochs=0.1"],
    "epochs=0.5": ["train.warmup_epochs=0.5"],
}


def curve(run_dir: Path) -> list[float]:
    """Validation NDCG@10 after each epoch, from the run's metrics.jsonl."""
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r["valid/NDCG@10"] for r in rows if r.get("event") == "valid"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", choices=sorted(PRESETS), default="ml-1m")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--seeds", type=int, nargs="+", default=[42])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("-o", "--out", help="result name (default warmup_<dataset>)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    preset = PRESETS[args.dataset]
    rows = []
    for seed in args.seeds:
        for name, overrides in SETTINGS.items():
            extra = [f"train.epochs={args.epochs}", f"train.seed={seed}", "train.patience=1000"]
            cfg = load_config(preset, overrides + extra + [f"train.threads={args.threads}"])
            with tempfile.TemporaryDirectory() as tmp:
                t0 = time.perf_counter()
                train_run(cfg, Path(tmp) / "run", progress=False)
                ndcg = curve(Path(tmp) / "run")
            rows.append({"setting": name, "seed": seed, "valid_ndcg10": ndcg,
                         "seconds": round(time.perf_counter() - t0, 1)})  # fmt: skip
            print(f"{args.dataset} seed {seed} {name:24s} " + " ".join(f"{v:.4f}" for v in ndcg),
                  file=sys.stderr, flush=True)  # fmt: skip
    best = {}
    for name in SETTINGS:
        curves = [r["valid_ndcg10"] for r in rows if r["setting"] == name]
        best[name] = [round(sum(c[e] for c in curves) / len(curves), 4) for e in range(args.epochs)]
    write_result(
        args.out or f"warmup_{args.dataset.replace('-', '')}",
        {"mean_valid_ndcg10_by_epoch": best},
        dataset=args.dataset,
        protocol={"preset": preset, "epochs": args.epochs, "seeds": args.seeds},
        extra={"settings": SETTINGS, "runs": rows},
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
