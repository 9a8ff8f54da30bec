"""Llama-style causal transformer for next-item prediction (METHODS.md 10.2-10.3).

The backbone that "Scaling New Frontiers" (Guo et al., 2024) found to keep improving with
depth, shaped like [PL]'s ``LLaMA2_SASRec``: item embedding (x sqrt(d) when
``scale_embeddings``) -> dropout -> ``layers`` pre-norm blocks x + Attn(RMSNorm(x)),
x + SwiGLU(RMSNorm(x)) -> final RMSNorm -> dot product with the same item table.

* Positions are rotary only (RoPE on Q and K, base ``rope_theta``; no learned position
  table), so attention scores depend on how far apart two items are, never on where the
  window starts; ``positions`` (from_start / from_end) therefore makes no difference here.
* No biases anywhere; RMSNorm epsilon is ``ln_eps`` (1e-5 as in Llama 2 and [PL]).
* SwiGLU inner width is 2/3 * ffn_mult * hidden (Llama's convention, so its three matrices
  hold as many weights as a 2-matrix MLP of width ffn_mult * hidden); ffn_mult = 4 gives
  Llama's 8/3 d. [PL]'s rounding up to a multiple of 32 is not applied: at d = 64 it would
  change the width by up to 50%.
* Init N(0, 0.02), residual-writing projections at 0.02 / sqrt(2 * layers) ([PL]); the
  ``init`` option (SASRec's) does not apply. [PL]'s two bugs are not reproduced: PAD stays a
  zero vector and, with right padding, no real query ever attends to a PAD slot.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from seqrec.data.batches import SeqBatch
from seqrec.errors import SeqrecError
from seqrec.models.base import (
    AttentionDropoutOption,
    EmbeddingScaleOption,
    FeedForwardOption,
    HeadsConfig,
    LayerNormOption,
    Needs,
    SeqModel,
)
from seqrec.models.common import (
    CausalAttention,
    PreNormBlock,
    attention_layer_flops,
    check_width,
    count_parameters,
    embed_sequence,
    init_decoder_,
    last_from_forward,
    output_flops,
    rope_tables,
)
from seqrec.models.domain_inputs import DomainInputs, DomainOptions
from seqrec.ops.dropout import Dropout

__all__ = ["Llama", "count_parameters", "flops_per_interaction"]


class LlamaConfig(
    HeadsConfig,
    FeedForwardOption,
    AttentionDropoutOption,
    LayerNormOption,
    EmbeddingScaleOption,
    DomainOptions,
):
    name: Literal["llama"]
    rope_theta: float = Field(10000.0, gt=0)
    """Llama: rotary-position base (10,000 as in Llama and [PL]'s LLaMA2_SASRec)."""

    def needs(self) -> Needs:
        return self.domain_needs()


def swiglu_width(cfg: LlamaConfig) -> int:
    return max(1, round(2 / 3 * cfg.ffn_mult * cfg.hidden))


class RMSNorm(nn.Module):
    """x / sqrt(mean(x^2) + eps) * weight (no mean subtraction, no bias); torch's own
    ``nn.RMSNorm`` needs torch 2.4, the package supports 2.3."""

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)).to(
            x.dtype
        ) * self.weight


class SwiGLU(nn.Module):
    """down(SiLU(gate(x)) * up(x)); gate and up are one fused matmul."""

    def __init__(self, hidden: int, inner: int) -> None:
        super().__init__()
        self.gate_up = nn.Linear(hidden, 2 * inner, bias=False)
        self.down = nn.Linear(inner, hidden, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up(x).chunk(2, dim=-1)
        return self.down(F.silu(gate) * up)


class Llama(SeqModel):
    """Pre-RMSNorm, RoPE, SwiGLU decoder; ``forward`` returns hidden states [B, L, D]."""

    config_class = LlamaConfig

    @staticmethod
    def flops_per_interaction(cfg: LlamaConfig, n_items: int, seq_len: float) -> dict:
        return flops_per_interaction(cfg, n_items, seq_len)

    def __init__(self, cfg: LlamaConfig, n_items: int, max_len: int) -> None:
        super().__init__()
        head_dim = cfg.hidden // cfg.heads
        if head_dim % 2:
            raise SeqrecError(
                f"llama: head width hidden/heads = {cfg.hidden}/{cfg.heads} = {head_dim} is odd; "
                "RoPE rotates pairs of dimensions, so pick hidden and heads with an even ratio"
            )
        self.cfg = cfg
        self.n_items = n_items
        self.max_len = max_len
        self.head_dim = head_dim
        attn_p = cfg.dropout if cfg.attn_dropout is None else cfg.attn_dropout
        d = cfg.hidden
        self.item_emb = nn.Embedding(n_items + 1, d, padding_idx=0)
        self.emb_dropout = Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(
            PreNormBlock(
                RMSNorm(d, cfg.ln_eps),
                CausalAttention(d, cfg.heads, attn_p, bias=False),
                RMSNorm(d, cfg.ln_eps),
                SwiGLU(d, swiglu_width(cfg)),
                cfg.dropout,
            )
            for _ in range(cfg.layers)
        )
        self.final_norm = RMSNorm(d, cfg.ln_eps)
        self.emb_scale = math.sqrt(d) if cfg.scale_embeddings else 1.0
        init_decoder_(self, cfg.layers)
        self.domain = DomainInputs(cfg, d)  # after the init: its own N(0, 0.02), PAD row zero

    @property
    def item_weights(self) -> torch.Tensor:
        """Output item table [n_items + 1, D] (the input table); row 0 is PAD."""
        return self.item_emb.weight

    def rotary(self, length: int, device: torch.device, dtype: torch.dtype, offset: int = 0):
        """cos, sin tables for slots offset .. offset + length - 1 (``offset`` only in tests:
        a shift must not change any output)."""
        pos = torch.arange(offset, offset + length, device=device)
        return rope_tables(pos, self.head_dim, self.cfg.rope_theta, dtype)

    def forward(self, batch: SeqBatch, position_offset: int = 0) -> torch.Tensor:
        """Hidden states [B, L, D] of right-padded rows (SDPA causal kernel, no mask)."""
        items = check_width(batch.items, self.max_len)
        vectors = self.domain.items_in(self.item_emb, items, batch.domains)
        x, _ = embed_sequence(
            items, self.item_emb, None, "from_start", self.emb_scale, self.emb_dropout, vectors
        )
        rot = self.rotary(items.shape[1], items.device, x.dtype, position_offset)
        for block in self.blocks:
            x = block(x, rot)
        return self.final_norm(x)

    def last_hidden(self, batch: SeqBatch) -> torch.Tensor:
        """State at each row's most recent item [B, D]: the user representation."""
        return last_from_forward(self, batch)


def flops_per_interaction(cfg: LlamaConfig, n_items: int, seq_len: float) -> dict[str, float]:
    """Forward FLOPs per scored position (multiply-add = 2), training ~ 3x forward.

    Per layer: Q, K, V, O projections, attention over ``seq_len`` keys, and SwiGLU's three
    d x inner matrices; plus the full-catalogue output. Norms, RoPE and SiLU are elementwise
    and not counted (as in SASRec's count).
    """
    d, inner = cfg.hidden, swiglu_width(cfg)
    forward = cfg.layers * attention_layer_flops(d, 3 * d * inner, seq_len)
    forward += output_flops(d, n_items)
    return {"forward": float(forward), "train": float(3 * forward)}
