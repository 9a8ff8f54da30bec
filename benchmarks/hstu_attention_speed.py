"""HSTU point-wise attention vs softmax attention (SDPA) at sequence lengths 200, 1000, 4000.

    python benchmarks/hstu_attention_speed.py            # CPU, and CUDA when available
    python benchmarks/hstu_attention_speed.py --device cuda

Both sides run the same causal attention problem, forward + backward, from q, k, v [B, h, L, d]:

* ``hstu``: `seqrec.models.hstu_layer.hstu_attention`, the code the model trains with: SiLU(q k^T +
  rab) * causal, times v, divided by n, with a learned [L, L] position bias. It is plain
  PyTorch and materialises [B, h, L, L] (no fused kernel; the research repo's Triton/CUDA
  kernels are not used here).
* ``sdpa``: ``F.scaled_dot_product_attention(is_causal=True)``, PyTorch's fused softmax kernel
  (flash / memory-efficient on CUDA), i.e. what SASRec runs.

So the ratio measures our HSTU attention against an optimised softmax kernel, not the paper's
"5.3-15.2x faster than FlashAttention2" (that needs fused HSTU kernels). Batch sizes shrink with
the length so that B x L stays about constant; on CPU they are small and every length but 4000
is timed as the median of a few repeats after a warm-up (4000 runs once: one call, no warm-up).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from common import write_result
from seqrec.models.hstu_layer import hstu_attention

LENGTHS = (200, 1000, 4000)
HEADS, HEAD_DIM = 2, 32
TOKENS = {"cpu": 2000, "cuda": 64_000}  # B x L per call
REPEATS = {"cpu": 3, "cuda": 10}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _inputs(b: int, length: int, device: torch.device):
    g = torch.Generator(device=device).manual_seed(0)
    shape = (b, HEADS, length, HEAD_DIM)
    q, k, v = (
        torch.randn(shape, device=device, generator=g).requires_grad_(True) for _ in range(3)
    )
    return q, k, v


def _hstu(q, k, v, rab, causal, n):
    return hstu_attention(q, k, v, rab, causal, n, 0.0, True)


def _sdpa(q, k, v, rab, causal, n):
    return F.scaled_dot_product_attention(q, k, v, is_causal=True)


def _time(fn, args, device: torch.device, repeats: int, warmup: bool) -> float:
    """Median seconds of forward + backward."""

    def once() -> float:
        for t in args[:3]:
            t.grad = None
        _sync(device)
        t0 = time.perf_counter()
        fn(*args).sum().backward()
        _sync(device)
        return time.perf_counter() - t0

    if warmup:
        once()
    return statistics.median(once() for _ in range(repeats))


def run(device: torch.device) -> dict:
    out = {}
    kind = device.type
    for length in LENGTHS:
        b = max(1, TOKENS[kind] // length)
        q, k, v = _inputs(b, length, device)
        slots = torch.arange(length, device=device)
        rel = (slots[:, None] - slots[None, :]).clamp(min=0)
        rab = (torch.randn(length, device=device) * 0.02)[rel]  # the layer's [L, L] table
        causal = (slots[None, :] <= slots[:, None]).float()
        args = (q, k, v, rab, causal, float(length))
        long_cpu = kind == "cpu" and length >= 4000
        reps, warm = (1, False) if long_cpu else (REPEATS[kind], True)
        t_hstu = _time(_hstu, args, device, reps, warm)
        t_sdpa = _time(_sdpa, args, device, reps, warm)
        out[f"{kind}_L{length}_batch"] = b
        out[f"{kind}_L{length}_hstu_ms"] = 1e3 * t_hstu
        out[f"{kind}_L{length}_sdpa_ms"] = 1e3 * t_sdpa
        out[f"{kind}_L{length}_hstu_over_sdpa"] = t_hstu / t_sdpa
        print(f"{kind} L={length} B={b}: hstu {1e3 * t_hstu:.1f} ms, sdpa {1e3 * t_sdpa:.1f} ms")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    ap.add_argument("--threads", type=int, default=1, help="CPU threads (the box is shared)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    has_cuda = torch.cuda.is_available()
    if args.device == "cuda" and not has_cuda:
        raise SystemExit("--device cuda but no CUDA device is visible")
    devices = {"cpu": ["cpu"], "cuda": ["cuda"], "auto": ["cpu"] + ["cuda"] * has_cuda}
    devices = devices[args.device]
    metrics = {}
    for dev in devices:
        metrics.update(run(torch.device(dev)))
    write_result(
        "hstu_attention_speed" + ("_cuda" if devices == ["cuda"] else ""),
        metrics,
        dataset="synthetic q, k, v ~ N(0, 1)",
        protocol={
            "pass": "forward + backward, causal, fp32",
            "heads": HEADS,
            "head_dim": HEAD_DIM,
            "tokens_per_call": {d: TOKENS[d] for d in devices},
            "timing": "median of repeats after one warm-up; CPU L=4000: one call, no warm-up",
            "hstu": "seqrec.models.hstu_layer.hstu_attention (plain PyTorch, materialises [B,h,L,L])",
            "sdpa": "torch scaled_dot_product_attention(is_causal=True)",
        },
        notes="ratio > 1 means the HSTU attention is slower than the fused softmax kernel",
    )


if __name__ == "__main__":
    main()
