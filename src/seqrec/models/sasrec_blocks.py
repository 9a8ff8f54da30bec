"""SASRec's block stack and its options, shared by every model built on it (SASRec, CL4SRec,
LACLRec's encoder and augmenter, SRT).

A block is attention + FFN sub-layers in the ``model.norm`` layout (models/sasrec.py's docstring
explains the layouts), or with ``model.residual=hstu`` HSTU's gated single sub-layer
(sasrec_plus.py). `attention_mask` is the explicit mask of the reference path the tests compare
the causal kernel with.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import model_validator
from torch import nn

from seqrec.models.base import (
    AttentionDropoutOption,
    EmbeddingScaleOption,
    FeedForwardOption,
    HeadsConfig,
    LayerNormOption,
    PositionsOption,
)
from seqrec.models.sasrec_plus import GatedBlock, RelativePositionBias, make_norm
from seqrec.ops.attention import causal_attention
from seqrec.ops.dropout import Dropout


class SASRecBlockConfig(
    HeadsConfig,
    FeedForwardOption,
    AttentionDropoutOption,
    LayerNormOption,
    PositionsOption,
    EmbeddingScaleOption,
):
    """SASRec's embedding and block options, shared by the models built on its blocks
    (CL4SRec, LACLRec, SRT)."""

    norm: Literal["pre", "post", "official"] = "pre"
    """SASRec block layout: ``pre`` x + f(LN(x)) with a final LN; ``post`` LN(x + f(x));
    ``official`` the reference code's query-only LN: q = LN1(x), x = q + Attn(q, x, x),
    h = LN2(x), x = h + FFN(h), with a final LN."""
    attn_out_proj: bool = False
    """Linear projection after attention (torch ``MultiheadAttention`` has one; the paper has none)."""
    attn_residual_dropout: bool = True
    """SASRec blocks: dropout (``dropout``) on the attention sub-layer's output before the residual
    add, as transformer code usually has. The reference SASRec code (kang205/SASRec, pmixer's
    port, Klenitskiy & Vasilev) has none there: its only attention dropout is on the
    probabilities (``attn_dropout``)."""
    init: Literal["xavier", "normal", "normal_xavier_qkv"] = "xavier"
    """Weight init of matrices: xavier-normal, or N(0, 0.02) as BERT-style code does, or N(0, 0.02)
    with a xavier-uniform Q/K/V projection (torch MultiheadAttention ports; models/common.py)."""
    # --- SASRec+ switches (Scaling New Frontiers, METHODS.md 10.2; models/sasrec_plus.py)
    rab: bool = False
    """SASRec: add HSTU's learned relative position bias to the attention logits (one scalar per
    causal offset i - j and layer, shared by the heads). Causal attention only."""
    residual: Literal["standard", "hstu"] = "standard"
    """SASRec block: ``standard`` attention + FFN sub-layers; ``hstu`` one gated sub-layer
    x + W_o Dropout(SiLU(Norm(x) W_u) * Norm(Attn(Norm(x)))), no FFN (needs ``norm=pre``)."""
    norm_type: Literal["layernorm", "rmsnorm"] = "layernorm"
    """SASRec: the normalisation used wherever ``norm`` places one (eps ``ln_eps``)."""

    @model_validator(mode="after")
    def _sasrec_plus_fits(self) -> SASRecBlockConfig:
        if self.residual == "hstu" and self.norm != "pre":
            raise ValueError(
                f"model.residual=hstu is a pre-norm layout (the branch reads Norm(x)); "
                f"model.norm={self.norm} does not fit it, set model.norm=pre"
            )
        return self


def attention_mask(items: torch.Tensor) -> torch.Tensor:
    """Explicit boolean [B, 1, L, L] mask (True = may attend) for right-padded rows.

    Causal attention alone already hides the PAD slots from every real query (they come after
    it); this full mask is what the reference implementation in the tests uses.
    """
    length = items.shape[1]
    causal = torch.ones(length, length, dtype=torch.bool, device=items.device).tril()
    diag = torch.eye(length, dtype=torch.bool, device=items.device)
    return (causal & (items != 0)[:, None, None, :]) | diag


class CausalSelfAttention(nn.Module):
    """Softmax attention, causal unless the caller's boolean ``mask`` says otherwise; with
    ``rab`` (a `RelativePositionBias`) the bias and the mask go to SDPA as one float mask."""

    def __init__(
        self,
        hidden: int,
        heads: int,
        attn_dropout: float,
        out_proj: bool = False,
        rab: RelativePositionBias | None = None,
    ) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.out = nn.Linear(hidden, hidden) if out_proj else nn.Identity()
        self.attn_dropout = attn_dropout
        self.rab = rab

    def _split(self, t: torch.Tensor) -> torch.Tensor:
        b, length, d = t.shape
        return t.view(b, length, self.heads, d // self.heads).transpose(1, 2)

    def _project(
        self, x_q: torch.Tensor, x_kv: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Q from ``x_q``, K/V from ``x_kv`` (the same input unless the official layout)."""
        if x_kv is None:
            return tuple(self._split(t) for t in self.qkv(x_q).chunk(3, dim=-1))
        d = x_q.shape[-1]
        w_q, w_kv = self.qkv.weight.split([d, 2 * d])
        b_q, b_kv = self.qkv.bias.split([d, 2 * d])
        k, v = (self._split(t) for t in F.linear(x_kv, w_kv, b_kv).chunk(2, dim=-1))
        return self._split(F.linear(x_q, w_q, b_q)), k, v

    def forward(
        self,
        x: torch.Tensor,
        mask: torch.Tensor | None = None,
        x_kv: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Causal attention over right-padded rows (``mask`` only for the reference path)."""
        b, length, d = x.shape
        q, k, v = self._project(x, x_kv)
        p = self.attn_dropout if self.training else 0.0
        if self.rab is not None:
            mask = self.rab.mask(length, mask, q.dtype)
        if mask is None:
            out = causal_attention(q, k, v, p)
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
        return self.out(out.transpose(1, 2).reshape(b, length, d))

    def forward_last(
        self, x_last: torch.Tensor, x: torch.Tensor, lengths: torch.Tensor
    ) -> torch.Tensor:
        """Attention output for one query per row (its most recent item) over that row's keys."""
        d = x.shape[-1]
        q, k, v = self._project(x_last[:, None], x)
        if self.rab is not None:
            mask = self.rab.last_mask(lengths, x.shape[1], q.dtype)
        else:
            keep = torch.arange(x.shape[1], device=x.device)[None, :] < lengths[:, None]
            mask = keep[:, None, None, :]
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.out(out.transpose(1, 2).reshape(-1, d))


class FeedForward(nn.Module):
    def __init__(self, hidden: int, inner: int, dropout: float) -> None:
        super().__init__()
        self.fc1 = nn.Linear(hidden, inner)
        self.fc2 = nn.Linear(inner, hidden)
        self.dropout = Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.dropout(F.relu(self.fc1(x))))


def make_attention(
    cfg: SASRecBlockConfig, max_len: int | None, out_proj: bool
) -> CausalSelfAttention:
    """SASRec's attention for one layer, with its own relative bias when ``model.rab``."""
    if cfg.rab and max_len is None:
        raise ValueError("model.rab needs the block's max_len to size its offset table")
    attn_p = cfg.dropout if cfg.attn_dropout is None else cfg.attn_dropout
    rab = RelativePositionBias(max_len) if cfg.rab else None
    return CausalSelfAttention(cfg.hidden, cfg.heads, attn_p, out_proj, rab)


def make_block(cfg: SASRecBlockConfig, max_len: int) -> nn.Module:
    """One layer of ``model.residual``'s kind: attention + FFN `Block`, or HSTU's `GatedBlock`."""
    if cfg.residual == "hstu":
        return GatedBlock(cfg, make_attention(cfg, max_len, out_proj=False))
    return Block(cfg, max_len)


class Block(nn.Module):
    """Attention + FFN sub-layers in the ``model.norm`` layout (``max_len`` only for rab)."""

    def __init__(self, cfg: SASRecBlockConfig, max_len: int | None = None) -> None:
        super().__init__()
        self.layout = cfg.norm
        self.ln1 = make_norm(cfg)
        self.ln2 = make_norm(cfg)
        self.attn = make_attention(cfg, max_len, cfg.attn_out_proj)
        self.ffn = FeedForward(cfg.hidden, max(1, round(cfg.ffn_mult * cfg.hidden)), cfg.dropout)
        self.drop = Dropout(cfg.dropout)
        self.attn_drop = self.drop if cfg.attn_residual_dropout else nn.Identity()

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if self.layout == "pre":
            x = x + self.attn_drop(self.attn(self.ln1(x), mask))
            return x + self.drop(self.ffn(self.ln2(x)))
        if self.layout == "official":
            q = self.ln1(x)
            h = self.ln2(q + self.attn_drop(self.attn(q, mask, x_kv=x)))
            return h + self.drop(self.ffn(h))
        x = self.ln1(x + self.attn_drop(self.attn(x, mask)))
        return self.ln2(x + self.drop(self.ffn(x)))

    def forward_last(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Output [B, D] at each row's most recent position only (inference fast path)."""
        rows = torch.arange(x.shape[0], device=x.device)
        x_last = x[rows, lengths - 1]
        if self.layout == "pre":
            h = self.ln1(x)
            x_last = x_last + self.attn.forward_last(h[rows, lengths - 1], h, lengths)
            return x_last + self.ffn(self.ln2(x_last))
        if self.layout == "official":
            q = self.ln1(x_last)
            h = self.ln2(q + self.attn.forward_last(q, x, lengths))
            return h + self.ffn(h)
        x_last = self.ln1(x_last + self.attn.forward_last(x_last, x, lengths))
        return self.ln2(x_last + self.ffn(x_last))
