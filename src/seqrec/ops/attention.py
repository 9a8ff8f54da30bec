"""Causal attention: SDPA's fused kernel without dropout, a causally blocked path with it, and
the explicit reference both are tested against (generative-recommenders' habit: a plain PyTorch
reference beside every fast path).

Why a second path: on CPU, SDPA with ``dropout_p > 0`` leaves its fused (flash) kernel for the
unfused math one, which builds the whole [B, H, L, L] score tensor, a float Bernoulli mask of
the same size and the causal mask, and computes the future half it then throws away (ML-1M,
L = 200: ~11x slower than the fused kernel forward + backward). `causal_attention` instead walks
over blocks of queries; the block of queries s..e-1 only meets keys 0..e-1, so with 4 blocks
5/8 of the score matrix is computed, each block's tensors are small enough to stay in cache,
and the dropout mask is `ops.dropout`'s cheap one.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from seqrec.ops.dropout import dropout

QUERY_BLOCKS = 4  # 5/8 of the score matrix for 4; more blocks add per-op overhead on small L


def causal_sdpa(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, dropout_p: float = 0.0
) -> torch.Tensor:
    """Causal attention [B, H, L, Dh] through SDPA's causal kernel: under right padding every
    real query sees only earlier slots, which are all real, so no padding mask is needed."""
    return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=True)


def causal_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, dropout_p: float = 0.0
) -> torch.Tensor:
    """Causal attention [B, H, L, Dh] with dropout ``dropout_p`` on the probabilities: SDPA's
    fused kernel when there is none, else the causally blocked path (module docstring)."""
    if dropout_p == 0.0:
        return causal_sdpa(q, k, v)
    return blocked_causal_attention(q, k, v, dropout_p)


def blocked_causal_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, dropout_p: float, blocks: int = QUERY_BLOCKS
) -> torch.Tensor:
    """softmax(QK^T / sqrt(Dh) + causal) with dropout, times V, one block of queries at a time."""
    length = q.shape[-2]
    step = max(1, math.ceil(length / blocks))
    future = torch.ones(length, length, dtype=torch.bool, device=q.device).triu(1)
    q = q * q.shape[-1] ** -0.5
    out = []
    for start in range(0, length, step):
        end = min(length, start + step)
        scores = q[..., start:end, :] @ k[..., :end, :].transpose(-1, -2)
        probs = scores.masked_fill(future[start:end, :end], float("-inf")).softmax(-1)
        out.append(dropout(probs, dropout_p) @ v[..., :end, :])
    return torch.cat(out, dim=-2)


def reference_causal_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, keep: torch.Tensor | None = None
) -> torch.Tensor:
    """Explicit softmax(QK^T / sqrt(Dh) + causal mask) V, the tests' check on the fast paths;
    ``keep`` [.., L, L] is a dropout mask already scaled by 1 / P(keep) (None = no dropout)."""
    length = q.shape[-2]
    scores = q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5
    future = torch.ones(length, length, dtype=torch.bool, device=q.device).triu(1)
    probs = scores.masked_fill(future, float("-inf")).softmax(-1)
    return (probs if keep is None else probs * keep) @ v
