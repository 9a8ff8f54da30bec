"""BSARec (Shin et al., AAAI'24): self-attention beside a Fourier filter that restores the
inductive bias attention lacks.

Each layer mixes two views of the same input X [B, N, D]:

* **Filter (the "dsp" branch).** Take the DFT of X along the sequence, keep the lowest
  ``c // 2 + 1`` frequency bins (the low-frequency component LFC), and add back the remaining
  high-frequency component HFC = X - LFC scaled per dimension by beta = ``sqrt_beta``^2, a
  learned [D] vector (init N(0, 1)): F = LFC + beta * HFC, then LayerNorm(dropout(F) + X).
  The low-pass is a fixed linear map over the N slots, so the fast path is one [N, N] real
  matrix built once from an explicit DFT (an N x N matmul is cheaper than rfft + irfft on
  CPU for N = 50); ``reference=True`` runs the paper's rfft/irfft instead and
  tests/models/test_bsarec.py checks both against a DFT written out in numpy.
* **Attention (the "gsp" branch).** Post-LN multi-head attention: LayerNorm(dropout(W_o
  softmax(QK^T / sqrt(d) + M) V) + X), with the additive mask M = -10000 at keys that are
  PAD or after the query, as the public code builds it. Mixed as alpha * dsp + (1 - alpha) *
  gsp, then a GELU FFN (4 x width) with its own residual LayerNorm.

**Why it trains on prefixes.** The filter mixes every slot of the window into every other, so
the state at slot t reads the items after t: trained with a target at every slot it would see
them. The public code trains each prefix of each training sequence as its own sample with one
target, its next item, at the last slot; seqrec does the same with ``train.samples=prefixes``
(the only value this model accepts).

**The window.** The public code left-pads every sample to ``max_seq_length`` = 50 and takes the
last slot. The DFT runs over all 50 slots, PAD slots included (they hold LayerNorm(position
embedding), not zeros), so the filter's output at the last slot depends on how much padding
precedes the items. To score what the paper scores, ``forward`` moves seqrec's right-padded
rows into that left-padded window of ``data.max_len`` slots (one gather), runs the paper's
stack there and moves the states back: slot ``length - 1`` of the returned [B, L, D] is the
paper's last-slot state. Positions count slots of that window (the last item is always at
position N - 1). Every batch therefore costs N slots per row whatever its real lengths.

**Reproduction (Beauty).** The authors' log ``src/output/BSARec_Beauty_best.log``
(yehjin-shin/BSARec) reports test HR@10 0.1008 / NDCG@10 0.0611 with: width 64, 2 layers, 1
head, dropout 0.5 (hidden and attention), c = 5, alpha = 0.7, lr 5e-4, Adam (0.9, 0.999), no
weight decay, batch 256, up to 200 epochs with patience 10 on validation NDCG@20 (``main.py``
stops on ``scores[-1:]``; seqrec stops on NDCG@10), init N(0, 0.02), LayerNorm eps 1e-12, on
the S3-Rec Beauty file (22,363 users, 12,101 items), leave-one-out, max length 50, full
ranking. Differences in scoring: their code sets the scores of the user's training items to 0
(``rating_pred[train_matrix > 0] = 0``), not -inf, so an item seen in training can still
outrank a target whose score is negative; seqrec masks with -inf (a target is never a
training item on this file: 0% repeat targets, benchmarks/results/repeat_share.json), so on
this file only their negative-score targets differ, in seqrec's favour by at most a little.
"""

from __future__ import annotations

import math
from typing import ClassVar, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from seqrec.data.batches import SeqBatch
from seqrec.models.base import (
    AttentionDropoutOption,
    FeedForwardOption,
    HeadsConfig,
    SeqModel,
)
from seqrec.models.common import check_width, merge_heads, output_flops, split_heads
from seqrec.ops.dropout import Dropout

MASKED = -10000.0
"""The public code's additive attention mask: not -inf, so a PAD query whose every key is
masked still attends (over all keys, by their raw scores), and its state feeds the filter."""


class BSARecConfig(HeadsConfig, FeedForwardOption, AttentionDropoutOption):
    """BSARec's options; defaults are the authors' Beauty run (module docstring)."""

    name: Literal["bsarec"]
    dropout: float = Field(0.5, ge=0, lt=1)
    ffn_mult: float = Field(4.0, gt=0)
    """FFN inner width = 4 x width (256 at width 64, as the public code)."""
    alpha: float = Field(0.7, ge=0, le=1)
    """Weight of the filter branch: alpha * filter + (1 - alpha) * attention."""
    c: int = Field(5, ge=1)
    """Low-pass cut-off: the lowest c // 2 + 1 DFT bins form the low-frequency component."""
    ln_eps: float = Field(1e-12, gt=0)
    """LayerNorm epsilon (1e-12 throughout the public code)."""

    training_samples: ClassVar[tuple[str, ...]] = ("prefixes",)


def low_pass_matrix(n: int, c: int) -> torch.Tensor:
    """[n, n] real matrix P with P @ x = irfft(rfft(x) with bins >= c // 2 + 1 zeroed), both
    orthonormal, for x along a sequence of n slots: the filter is linear, so one matrix is it.

    Built from its columns: the low-passed unit impulses.
    """
    keep = c // 2 + 1
    spectrum = np.fft.rfft(np.eye(n), axis=0, norm="ortho")
    spectrum[keep:] = 0
    return torch.from_numpy(np.fft.irfft(spectrum, n=n, axis=0, norm="ortho")).float()


class FrequencyLayer(nn.Module):
    """LayerNorm(dropout(LFC + beta * HFC) + X), beta = sqrt_beta^2 per dimension."""

    def __init__(self, cfg: BSARecConfig, window: int) -> None:
        super().__init__()
        self.c = cfg.c
        self.register_buffer("low_pass", low_pass_matrix(window, cfg.c), persistent=False)
        self.sqrt_beta = nn.Parameter(torch.randn(1, 1, cfg.hidden))
        self.dropout = Dropout(cfg.dropout)
        self.norm = nn.LayerNorm(cfg.hidden, eps=cfg.ln_eps)

    def low(self, x: torch.Tensor, reference: bool = False) -> torch.Tensor:
        """The low-frequency component of x [B, N, D] along N."""
        if reference:
            spectrum = torch.fft.rfft(x, dim=1, norm="ortho")
            spectrum[:, self.c // 2 + 1 :, :] = 0
            return torch.fft.irfft(spectrum, n=x.shape[1], dim=1, norm="ortho")
        return torch.matmul(self.low_pass.to(x.dtype), x)

    def forward(self, x: torch.Tensor, reference: bool = False) -> torch.Tensor:
        low = self.low(x, reference)
        mixed = low + self.sqrt_beta**2 * (x - low)
        return self.norm(self.dropout(mixed) + x)


class PostNormAttention(nn.Module):
    """LayerNorm(dropout(W_o attention) + X) with the public code's additive mask."""

    def __init__(self, cfg: BSARecConfig) -> None:
        super().__init__()
        d = cfg.hidden
        self.heads = cfg.heads
        self.qkv = nn.Linear(d, 3 * d)
        self.out = nn.Linear(d, d)
        p_attn = cfg.dropout if cfg.attn_dropout is None else cfg.attn_dropout
        self.attn_dropout = Dropout(p_attn)
        self.dropout = Dropout(cfg.dropout)
        self.norm = nn.LayerNorm(d, eps=cfg.ln_eps)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        q, k, v = (split_heads(t, self.heads) for t in self.qkv(x).chunk(3, dim=-1))
        scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]) + mask
        probs = self.attn_dropout(torch.softmax(scores, dim=-1))
        context = self.out(merge_heads(probs @ v))
        return self.norm(self.dropout(context) + x)


class BSARecBlock(nn.Module):
    """alpha * filter + (1 - alpha) * attention, then the FFN with its residual LayerNorm."""

    def __init__(self, cfg: BSARecConfig, window: int) -> None:
        super().__init__()
        self.alpha = cfg.alpha
        self.filter = FrequencyLayer(cfg, window)
        self.attention = PostNormAttention(cfg)
        inner = round(cfg.ffn_mult * cfg.hidden)
        self.ffn_in, self.ffn_out = nn.Linear(cfg.hidden, inner), nn.Linear(inner, cfg.hidden)
        self.dropout = Dropout(cfg.dropout)
        self.norm = nn.LayerNorm(cfg.hidden, eps=cfg.ln_eps)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, reference: bool = False):
        mixed = self.alpha * self.filter(x, reference) + (1 - self.alpha) * self.attention(x, mask)
        ffn = self.ffn_out(F.gelu(self.ffn_in(mixed)))
        return self.norm(self.dropout(ffn) + mixed)


class BSARec(SeqModel):
    """BSARec on a left-padded window of ``max_len`` slots (module docstring)."""

    config_class = BSARecConfig
    causal = False

    def __init__(self, cfg: BSARecConfig, n_items: int, max_len: int) -> None:
        super().__init__()
        self.cfg, self.n_items, self.max_len = cfg, n_items, max_len
        d = cfg.hidden
        self.item_emb = nn.Embedding(n_items + 1, d, padding_idx=0)
        self.pos_emb = nn.Embedding(max_len, d)
        self.emb_norm = nn.LayerNorm(d, eps=cfg.ln_eps)
        self.emb_dropout = Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(BSARecBlock(cfg, max_len) for _ in range(cfg.layers))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The public code's init: every Linear and Embedding weight N(0, 0.02), biases 0,
        LayerNorms (1, 0); sqrt_beta keeps its N(0, 1) draw. The PAD row is not re-zeroed
        (their code re-draws it too; PAD never reaches a score, its embedding is LayerNormed
        with the position like any slot)."""
        for m in self.modules():
            if isinstance(m, nn.Linear | nn.Embedding):
                nn.init.normal_(m.weight, std=0.02)
            if isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)

    @property
    def item_weights(self) -> torch.Tensor:
        return self.item_emb.weight

    def _left_slots(self, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """For the left-padded window: (index into the right-padded row, valid) per slot."""
        slots = torch.arange(self.max_len, device=lengths.device)[None, :]
        source = slots - (self.max_len - lengths[:, None])
        return source.clamp(min=0), source >= 0

    def encode(self, batch: SeqBatch, reference: bool = False) -> torch.Tensor:
        """States [B, N, D] of the left-padded window (the paper's layout)."""
        items = check_width(batch.items, self.max_len)
        lengths = (items != 0).sum(1)
        source, valid = self._left_slots(lengths)
        window = items.gather(1, source) * valid
        x = self.item_emb(window) + self.pos_emb.weight[None]
        x = self.emb_dropout(self.emb_norm(x))
        allowed = torch.ones(self.max_len, self.max_len, device=x.device).tril().bool()
        allowed = allowed[None, None] & valid[:, None, None, :]
        mask = (~allowed).to(x.dtype) * MASKED
        for block in self.blocks:
            x = block(x, mask, reference)
        return x

    def forward(self, batch: SeqBatch, reference: bool = False) -> torch.Tensor:
        """States [B, L, D] of the right-padded rows: slot j is window slot j + N - length
        (PAD slots get zeros)."""
        states = self.encode(batch, reference)
        width = batch.items.shape[1]
        lengths = (batch.items != 0).sum(1, keepdim=True)
        slots = torch.arange(width, device=states.device)[None, :]
        back = (slots + self.max_len - lengths).clamp(max=self.max_len - 1)
        out = states.gather(1, back[..., None].expand(-1, -1, states.shape[-1]))
        return out * (slots < lengths)[..., None]

    def last_hidden(self, batch: SeqBatch) -> torch.Tensor:
        return self.encode(batch)[:, -1]

    @staticmethod
    def flops_per_interaction(cfg: BSARecConfig, n_items: int, seq_len: float) -> dict:
        """Per scored position: one sample's whole window. ``seq_len`` is the trainer's half
        window average, so the window is taken as 2 * seq_len slots (the public code's fixed
        window is ``data.max_len``; padding costs as much as items)."""
        d, n = cfg.hidden, 2 * seq_len
        inner = cfg.ffn_mult * d
        per_slot = 2 * 4 * d * d + 2 * 2 * d * inner + 2 * 2 * n * d + 2 * n * d
        forward = cfg.layers * n * per_slot + output_flops(d, n_items)
        return {"forward": float(forward), "train": float(3 * forward)}
