"""Training throughput and peak memory of every model family, one run, same machine.

    python benchmarks/model_costs.py                         # ML-1M presets, 20 timed steps each
    python benchmarks/model_costs.py --dataset beauty --steps 10

Each model trains in its own subprocess (so peak memory is that model's alone): the preset's
real data, batch and sizes, a few warm-up steps, then `--steps` timed optimiser steps through
the ordinary Trainer step. Reported: interactions/s (next-item targets per second), seconds per
step, the process's peak resident memory (CPU) or peak allocated CUDA memory, parameters.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile

from common import data_dir, write_result

PRESETS = {
    "ml-1m": ["sasrec", "bert4rec", "gru4rec", "hstu", "llama", "gpt", "cl4srec", "laclrec"],
    "beauty": ["sasrec", "bert4rec", "gru4rec", "hstu", "llama", "gpt", "cl4srec", "laclrec"],
}

CHILD = r"""
import json, resource, sys, tempfile, time
import numpy as np, torch
from seqrec.recipe import load_config
from seqrec.data import prepare
from seqrec.models.common import count_parameters
from seqrec.trainer.loop import Trainer

preset, steps, device, threads = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
cfg = load_config(preset, [f"train.device={device}", f"train.threads={threads}"])
store, split = prepare(cfg.data)
with tempfile.TemporaryDirectory() as tmp:
    tr = Trainer(cfg, store, split, tmp, progress=False)
    rows = tr.task.epoch_order(0)
    bs = cfg.train.batch_size
    times, targets = [], 0
    for s in range(steps + 3):
        batch_rows = rows[(s * bs) % len(rows):][:bs]
        t0 = time.perf_counter()
        _, n, _, _ = tr._step(batch_rows)
        if tr.device.type == "cuda":
            torch.cuda.synchronize()
        if s >= 3:
            times.append(time.perf_counter() - t0)
            targets += n
    out = {
        "interactions_per_s": targets / sum(times),
        "seconds_per_step": float(np.median(times)),
        "params": count_parameters(tr.model)["total"],
        "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
    }
    if tr.device.type == "cuda":
        out["peak_cuda_gib"] = torch.cuda.max_memory_allocated() / 2**30
print("RESULT " + json.dumps(out))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--dataset", choices=sorted(PRESETS), default="ml-1m")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--models", nargs="*", help="default: every family with a preset")
    args = ap.parse_args()
    data_dir()
    metrics: dict[str, float] = {}
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(CHILD)
    for model in args.models or PRESETS[args.dataset]:
        preset = f"{model}-{args.dataset}"
        cmd = [sys.executable, f.name, preset, str(args.steps), args.device, str(args.threads)]
        print("$", " ".join(cmd[2:]), flush=True)
        proc = subprocess.run(cmd, capture_output=True, text=True)
        line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
        if line is None:
            print(proc.stderr[-2000:], file=sys.stderr)
            metrics[f"{model} error"] = proc.stderr.strip().splitlines()[-1][:200]
            continue
        res = json.loads(line[7:])
        for k, v in res.items():
            metrics[f"{model} {k}"] = v
        print(model, res, flush=True)
    write_result(
        f"model_costs_{args.dataset.replace('-', '')}_{args.device}",
        metrics,
        dataset=args.dataset,
        protocol={
            "what": "Trainer._step on the preset's data, batch and sizes",
            "timed steps": args.steps,
            "warm-up steps": 3,
            "device": args.device,
            "torch threads": args.threads,
        },
        command=f"python benchmarks/model_costs.py --dataset {args.dataset} --steps {args.steps} "
        f"--device {args.device} --threads {args.threads}",
    )


if __name__ == "__main__":
    main()
