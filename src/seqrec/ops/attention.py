"""Causal attention through SDPA's fused kernel, with the explicit reference it is tested
against (generative-recommenders' habit: a plain PyTorch reference beside every fast path)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def causal_sdpa(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, dropout_p: float = 0.0
) -> torch.Tensor:
    """Causal attention [B, H, L, Dh] through SDPA's causal kernel: under right padding every
    real query sees only earlier slots, which are all real, so no padding mask is needed."""
    return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=True)


def reference_causal_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Explicit softmax(QK^T / sqrt(Dh) + causal mask) V, the tests' check on ``causal_sdpa``."""
    length = q.shape[-2]
    scores = q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5
    future = torch.ones(length, length, dtype=torch.bool, device=q.device).triu(1)
    return scores.masked_fill(future, float("-inf")).softmax(-1) @ v
