"""SIGMA's scan paths against the per-position reference, same machine, interleaved.

    python benchmarks/sigma_scan_speed.py [--threads 1] [--reps 3]

Forward + backward in process CPU seconds (median of ``reps`` after a warm-up; CPU time, not
wall time, so a shared machine's other jobs do not enter) of the forward and partially flipped
scans (r = 5) at SIGMA's width (E = 128, N = 32) on right-padded batches whose row lengths are
drawn like the presets' (Beauty: max 50, most rows short; ML-1M: max 200, most rows full):

* ``reference``: two `selective_scan_reference` scans over every slot, the cost of the released
  code's two Mamba calls (`flipped_scan_reference`, one scan per query, is not timed);
* ``vectorised``: the chunked scan (T = sqrt(L)) and `flipped_scan`'s closed form;
* ``packed``: `packed_scan`, the loop over real slots that the model uses on a CPU.

Also records the largest difference of the flipped output from the packed path's.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import torch
import torch.nn.functional as F

from common import write_result
from seqrec.ops.selective_scan import (
    flipped_scan,
    packed_scan,
    selective_scan_reference,
)

SHAPES = {  # name: (rows, max length, mean real length)
    "beauty": (256, 50, 9),
    "ml1m": (32, 200, 165),
}
WIDTH, STATES, KEEP = 128, 32, 5


def inputs(rows: int, length: int, mean: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.distributions.Geometric(1 / mean).sample((rows,)).long().clamp(1, length)
    lengths[0] = length
    u = torch.randn(rows, length, WIDTH, generator=g)
    delta = F.softplus(torch.randn(rows, length, WIDTH, generator=g) - 1)
    A = -torch.arange(1.0, STATES + 1).repeat(WIDTH, 1)
    B, C = torch.randn(2, rows, length, STATES, generator=g)
    return (u, delta, A, B, C, torch.ones(WIDTH)), lengths


def paths(lengths):
    return {
        "reference": lambda *a: (selective_scan_reference(*a), selective_scan_reference(*a)),
        "vectorised": lambda *a: flipped_scan(*a, keep=KEEP, chunk=math.ceil(math.sqrt(a[0].shape[1]))),
        "packed": lambda *a: packed_scan(*a, lengths, KEEP),
    }  # fmt: skip


def timed(fn, args, mask):
    leaves = [a.detach().requires_grad_() for a in args]
    start = time.process_time()
    y, y_flip = fn(*leaves)
    ((y * mask).sum() + (y_flip * mask).sum()).backward()
    return time.process_time() - start, y_flip.detach()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    metrics = {}
    for shape, (rows, length, mean) in SHAPES.items():
        tensors, lengths = inputs(rows, length, mean)
        mask = (torch.arange(length)[None] < lengths[:, None])[..., None].float()
        times = {name: [] for name in paths(lengths)}
        flipped = {}
        for rep in range(args.reps + 1):
            for name, fn in paths(lengths).items():
                seconds, flipped[name] = timed(fn, tensors, mask)
                if rep:
                    times[name].append(seconds)
        for name, ts in times.items():
            metrics[f"{shape}_{name}_cpu_s"] = statistics.median(ts)
        diff = ((flipped["vectorised"] - flipped["packed"]) * mask).abs().max()
        metrics[f"{shape}_max_abs_diff_vectorised_vs_packed"] = diff.item()
        metrics[f"{shape}_real_slot_share"] = mask.mean().item()
    write_result(
        "sigma_scan_speed",
        metrics,
        dataset="synthetic",
        protocol=f"forward + backward CPU seconds, {args.threads} thread(s), E={WIDTH}, N={STATES}, r={KEEP}, median of {args.reps}",
        notes="reference = two full per-position scans (the released code's two Mamba calls)",
    )


if __name__ == "__main__":
    main()
