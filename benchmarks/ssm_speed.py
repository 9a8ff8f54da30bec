"""The sampled softmax's chunked fast path against the plain autograd version, same machine.

    python benchmarks/ssm_speed.py [--threads 2] [--steps 6]

Part 1, the loss alone (forward + backward, median of 3 after a warm-up) on synthetic inputs at
the shapes our presets train with: R = 128 uniform negatives, temperature 0.05, ~14k positions
(one ML-1M batch of 128 x 200), and the item tables of ML-1M raw (3,706 items, width 50),
Amazon Beauty (12,101 items, width 64) and a 100k-item catalogue. Each shape times the plain
version, the fast path's automatic choice, and both of its modes forced; the largest absolute
difference of the loss and of both gradients from the plain version is recorded too.

Part 2, the whole training step (`Trainer._step`) of the hstu-ml-1m preset on the real data,
alternating plain and fast steps so that both see the same machine load: interactions/s.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch

from common import data_dir, write_result
from seqrec.objectives import base, candidates
from seqrec.objectives import sampled_softmax as ssm

SHAPES = {  # name: (positions, negatives, width, items)
    "ml1m": (14_000, 128, 50, 3_706),
    "beauty": (14_000, 128, 64, 12_101),
    "100k_items": (14_000, 128, 50, 100_000),
}
TEMPERATURE = 0.05


def timed(fn, h0, w0, t, neg, reps=3):
    """Median seconds of forward + backward, and the loss and gradients of the last call."""
    times = []
    for _ in range(reps + 1):
        h, w = h0.clone().requires_grad_(True), w0.clone().requires_grad_(True)
        start = time.perf_counter()
        loss = fn(h, w, t, neg, TEMPERATURE)
        loss.backward()
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:]), (loss.detach(), h.grad, w.grad)


def loss_alone() -> dict[str, float]:
    out: dict[str, float] = {}
    modes = {"auto": candidates.DENSE_ITEMS_PER_NEGATIVE, "dense": 10**9, "gather": 0}
    for name, (n, r, d, v) in SHAPES.items():
        g = torch.Generator().manual_seed(0)
        h0, w0 = torch.randn(n, d, generator=g), torch.randn(v + 1, d, generator=g)
        t = torch.randint(1, v + 1, (n,), generator=g)
        neg = torch.randint(1, v + 1, (n, r), generator=g)
        base_s, want = timed(ssm.plain_sampled_softmax, h0, w0, t, neg)
        out[f"{name} plain_s"] = base_s
        for mode, ratio in modes.items():
            candidates.DENSE_ITEMS_PER_NEGATIVE = ratio
            sec, got = timed(ssm.sampled_softmax_loss, h0, w0, t, neg)
            out[f"{name} {mode}_s"] = sec
            out[f"{name} {mode}_speedup"] = base_s / sec
            out[f"{name} {mode}_max_abs_diff"] = max(
                float((a - b).abs().max()) for a, b in zip(got, want, strict=True)
            )
        candidates.DENSE_ITEMS_PER_NEGATIVE = modes["auto"]
        print(name, {k.split(" ", 1)[1]: round(v, 4) for k, v in out.items() if name in k})
    return out


def hstu_step(steps: int) -> dict[str, float]:
    from seqrec.data import prepare
    from seqrec.recipe import load_config
    from seqrec.trainer.loop import Trainer

    cfg = load_config("hstu-ml-1m", ["train.device=cpu"])
    store, split = prepare(cfg.data)
    fast = base.sampled_softmax_loss
    rate: dict[str, list[float]] = {"plain": [], "fast": []}
    with tempfile.TemporaryDirectory() as tmp:
        tr = Trainer(cfg, store, split, tmp, progress=False)
        rows, bs = tr.task.epoch_order(0), cfg.train.batch_size
        for s in range(2 * steps + 2):
            which = ("plain", "fast")[s % 2]
            base.sampled_softmax_loss = ssm.plain_sampled_softmax if which == "plain" else fast
            start = time.perf_counter()
            _, n_targets, _, _ = tr._step(rows[s * bs : (s + 1) * bs])
            if s >= 2:  # the first pair warms up
                rate[which].append(n_targets / (time.perf_counter() - start))
    base.sampled_softmax_loss = fast
    out = {f"hstu-ml-1m step {k} interactions_per_s": statistics.mean(v) for k, v in rate.items()}
    fast_rate = out["hstu-ml-1m step fast interactions_per_s"]
    out["hstu-ml-1m step speedup"] = fast_rate / out["hstu-ml-1m step plain interactions_per_s"]
    print(out)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=6, help="timed HSTU steps per version")
    args = ap.parse_args()
    data_dir()
    torch.set_num_threads(args.threads)
    metrics = {**loss_alone(), **hstu_step(args.steps)}
    write_result(
        "ssm_speed",
        metrics,
        dataset="synthetic inputs at ML-1M / Beauty / 100k-item shapes; ML-1M raw for the step",
        protocol={
            "loss": "forward + backward, fp32, median of 3 after one warm-up",
            "negatives": 128,
            "temperature": TEMPERATURE,
            "chunk": 2048,
            "dense_items_per_negative": candidates.DENSE_ITEMS_PER_NEGATIVE,
            "step": "Trainer._step of hstu-ml-1m, plain and fast alternating, mean over steps",
            "torch threads": args.threads,
        },
        notes="plain = plain_sampled_softmax (autograd over gathered [N, R, D]); the fast path "
        "is what training runs; max_abs_diff compares loss, hidden and item-table gradients",
    )


if __name__ == "__main__":
    main()
