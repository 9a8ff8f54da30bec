"""GPT-style causal transformer for next-item prediction (the "GPT" backbone of METHODS.md 10.2).

GPT-2's decoder on item ids: item embedding (x sqrt(d) when ``scale_embeddings``, as in
SASRec) + learned absolute positions -> dropout -> ``layers`` pre-LayerNorm blocks
x + Attn(LN(x)), x + MLP(LN(x)) -> final LayerNorm -> dot product with the same item table.
Where it differs from SASRec: attention has an output projection, the MLP is GELU (tanh
approximation, GPT-2's) with inner width ffn_mult * hidden (GPT's 4x when ffn_mult = 4), and
GPT-2's init (N(0, 0.02), residual-writing projections at 0.02 / sqrt(2 * layers); the
``init`` option is SASRec's and does not apply). Biases are kept, as in GPT-2.

``positions`` (from_start / from_end) indexes the learned table exactly as in SASRec.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from seqrec.data.batches import SeqBatch
from seqrec.models.base import (
    AttentionDropoutOption,
    EmbeddingScaleOption,
    FeedForwardOption,
    HeadsConfig,
    LayerNormOption,
    PositionsOption,
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
)
from seqrec.ops.dropout import Dropout

__all__ = ["GPT", "count_parameters", "flops_per_interaction"]


class GPTConfig(
    HeadsConfig,
    FeedForwardOption,
    AttentionDropoutOption,
    LayerNormOption,
    PositionsOption,
    EmbeddingScaleOption,
):
    name: Literal["gpt"]


def mlp_width(cfg: GPTConfig) -> int:
    return max(1, round(cfg.ffn_mult * cfg.hidden))


class GeluMLP(nn.Module):
    def __init__(self, hidden: int, inner: int) -> None:
        super().__init__()
        self.up = nn.Linear(hidden, inner)
        self.down = nn.Linear(inner, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(F.gelu(self.up(x), approximate="tanh"))


class GPT(SeqModel):
    """Pre-LN decoder with learned positions; ``forward`` returns hidden states [B, L, D]."""

    config_class = GPTConfig

    @staticmethod
    def flops_per_interaction(cfg: GPTConfig, n_items: int, seq_len: float) -> dict:
        return flops_per_interaction(cfg, n_items, seq_len)

    def __init__(self, cfg: GPTConfig, n_items: int, max_len: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.n_items = n_items
        self.max_len = max_len
        attn_p = cfg.dropout if cfg.attn_dropout is None else cfg.attn_dropout
        d = cfg.hidden
        self.item_emb = nn.Embedding(n_items + 1, d, padding_idx=0)
        self.pos_emb = nn.Embedding(max_len, d)
        self.emb_dropout = Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(
            PreNormBlock(
                nn.LayerNorm(d, eps=cfg.ln_eps),
                CausalAttention(d, cfg.heads, attn_p, bias=True),
                nn.LayerNorm(d, eps=cfg.ln_eps),
                GeluMLP(d, mlp_width(cfg)),
                cfg.dropout,
            )
            for _ in range(cfg.layers)
        )
        self.final_ln = nn.LayerNorm(d, eps=cfg.ln_eps)
        self.emb_scale = math.sqrt(d) if cfg.scale_embeddings else 1.0
        init_decoder_(self, cfg.layers)

    @property
    def item_weights(self) -> torch.Tensor:
        """Output item table [n_items + 1, D] (the input table); row 0 is PAD."""
        return self.item_emb.weight

    def forward(self, batch: SeqBatch) -> torch.Tensor:
        """Hidden states [B, L, D] of right-padded rows (SDPA causal kernel, no mask)."""
        items = check_width(batch.items, self.max_len)
        x, _ = embed_sequence(
            items,
            self.item_emb,
            self.pos_emb,
            self.cfg.positions,
            self.emb_scale,
            self.emb_dropout,
        )
        for block in self.blocks:
            x = block(x)
        return self.final_ln(x)

    def last_hidden(self, batch: SeqBatch) -> torch.Tensor:
        """State at each row's most recent item [B, D]: the user representation."""
        return last_from_forward(self, batch)


def flops_per_interaction(cfg: GPTConfig, n_items: int, seq_len: float) -> dict[str, float]:
    """Forward FLOPs per scored position (multiply-add = 2), training ~ 3x forward.

    Per layer: Q, K, V, O projections, attention over ``seq_len`` keys, the MLP's two
    d x inner matrices; plus the full-catalogue output. LayerNorm, GELU and bias adds are
    elementwise and not counted (as in SASRec's count).
    """
    d, inner = cfg.hidden, mlp_width(cfg)
    forward = cfg.layers * attention_layer_flops(d, 2 * d * inner, seq_len)
    forward += output_flops(d, n_items)
    return {"forward": float(forward), "train": float(3 * forward)}
