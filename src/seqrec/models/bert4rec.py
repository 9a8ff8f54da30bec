"""BERT4Rec (Sun et al., CIKM'19): a bidirectional Transformer encoder trained by Cloze.

What follows the official TF code (METHODS.md 2.2) and why:

* **Input** = E[item] + P[position], then LayerNorm and dropout (BERT's embedding
  post-processor); no sqrt(d) scaling, so ``model.scale_embeddings`` is ignored. Positions follow
  ``model.positions`` exactly as in SASRec (``from_start`` counts from the oldest slot).
* **Encoder**: every query attends to every real item of its row (no causal mask); PAD keys are
  masked out, so whatever sits in a PAD slot never reaches a real position. Attention has
  BERT's output projection; the FFN is GELU with inner width ``ffn_mult * hidden`` (4 in
  BERT4Rec). ``model.norm="post"`` is BERT's x <- LN(x + Dropout(f(x))); ``"pre"`` adds a final
  LayerNorm instead.
* **Mask token**: id ``n_items + 1``, one extra row of the item table (``n_items + 2`` rows).
  It is never a candidate: ``item_weights`` returns rows 0..n_items only.
* **Output head** (``model.bert_head="official"``, the TF code): z = LN(GELU(h W^P + b^P)),
  logits = z E^T + b^O with the tied input table E and a per-item bias b^O. So that the
  evaluator, the server and the chunked CE keep scoring with one inner product, the bias rides
  along as an extra column: ``project(h)`` returns [z, 1] and ``item_weights`` returns
  [E, b^O], both of width D + 1. ``"tied"`` is Klenitskiy & Vasilev's plain h E^T (width D).
* **Init** is BERT's truncated normal (std 0.02) whatever ``model.init`` says; LayerNorms use
  ``model.ln_eps`` (BERT: 1e-12).

``forward`` returns encoder states [B, L, D] for the given items (no masking, no head);
``last_hidden`` appends the mask token after each history and returns the projected state at
that slot, i.e. what the Cloze task was trained to fill in.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from seqrec.data.batches import SeqBatch, keep_last
from seqrec.errors import SeqrecError
from seqrec.models.base import (
    AttentionDropoutOption,
    FeedForwardOption,
    HeadsConfig,
    LayerNormOption,
    PositionsOption,
    SeqModel,
)
from seqrec.models.common import (
    attention_layer_flops,
    check_width,
    merge_heads,
    output_flops,
    position_ids,
    split_heads,
)
from seqrec.ops.dropout import Dropout


class BERT4RecConfig(
    HeadsConfig, FeedForwardOption, AttentionDropoutOption, LayerNormOption, PositionsOption
):
    name: Literal["bert4rec"]
    objectives = ("cloze",)
    """A bidirectional encoder sees the item a next-item target names, and only it has a mask
    token: it trains with the cloze objective, and nothing else does."""
    norm: Literal["pre", "post", "official"] = "pre"
    """Block layout: ``pre`` x + f(LN(x)) with a final LN; ``post`` LN(x + f(x));
    ``official`` the reference code's query-only LN: q = LN1(x), x = q + Attn(q, x, x),
    h = LN2(x), x = h + FFN(h), with a final LN."""
    bert_head: Literal["official", "tied"] = "official"
    """BERT4Rec output head: ``official`` LN(GELU(h W + b)) E^T + per-item bias (the TF code);
    ``tied`` plain h E^T, the head of Klenitskiy & Vasilev's HF-BertModel port."""


def key_mask(items: torch.Tensor) -> torch.Tensor:
    """Boolean [B, 1, 1, L] (True = may attend): every real item of the row, PAD keys never.

    A row with no real item keeps its first key so the softmax stays finite (its outputs are
    never scored).
    """
    real = items != 0
    real[:, 0] |= ~real.any(1)
    return real[:, None, None, :]


class BidirectionalAttention(nn.Module):
    def __init__(self, hidden: int, heads: int, attn_dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.out = nn.Linear(hidden, hidden)
        self.attn_dropout = attn_dropout

    def forward(self, x: torch.Tensor, keep: torch.Tensor, reference: bool = False) -> torch.Tensor:
        """Multi-head attention with key mask ``keep`` [B, 1, 1, L]; ``reference`` = explicit
        softmax(QK^T / sqrt(d_h)) V, which the tests compare with the SDPA path."""
        q, k, v = (split_heads(t, self.heads) for t in self.qkv(x).chunk(3, dim=-1))
        p = self.attn_dropout if self.training else 0.0
        if reference:
            scores = (q @ k.transpose(-1, -2)) / q.shape[-1] ** 0.5
            probs = scores.masked_fill(~keep, float("-inf")).softmax(-1)
            out = F.dropout(probs, p, self.training) @ v
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=keep, dropout_p=p)
        return self.out(merge_heads(out))


class GeluFeedForward(nn.Module):
    def __init__(self, hidden: int, inner: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(hidden, inner)
        self.fc2 = nn.Linear(inner, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class EncoderBlock(nn.Module):
    def __init__(self, cfg: BERT4RecConfig) -> None:
        super().__init__()
        attn_p = cfg.dropout if cfg.attn_dropout is None else cfg.attn_dropout
        self.pre = cfg.norm == "pre"
        self.ln1 = nn.LayerNorm(cfg.hidden, eps=cfg.ln_eps)
        self.ln2 = nn.LayerNorm(cfg.hidden, eps=cfg.ln_eps)
        self.attn = BidirectionalAttention(cfg.hidden, cfg.heads, attn_p)
        self.ffn = GeluFeedForward(cfg.hidden, max(1, round(cfg.ffn_mult * cfg.hidden)))
        self.drop = Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, keep: torch.Tensor, reference: bool = False) -> torch.Tensor:
        if self.pre:
            x = x + self.drop(self.attn(self.ln1(x), keep, reference))
            return x + self.drop(self.ffn(self.ln2(x)))
        x = self.ln1(x + self.drop(self.attn(x, keep, reference)))
        return self.ln2(x + self.drop(self.ffn(x)))


class BERT4Rec(SeqModel):
    """Bidirectional encoder; ``forward`` -> states [B, L, D], ``last_hidden`` -> [B, D (+ 1)]."""

    config_class = BERT4RecConfig
    causal = False

    @staticmethod
    def flops_per_interaction(cfg: BERT4RecConfig, n_items: int, seq_len: float) -> dict:
        return flops_per_interaction(cfg, n_items, seq_len)

    def __init__(self, cfg: BERT4RecConfig, n_items: int, max_len: int) -> None:
        super().__init__()
        if cfg.norm not in ("pre", "post"):
            raise SeqrecError(
                f"model.norm={cfg.norm} is a SASRec-only layout; bert4rec takes model.norm=post "
                "(BERT) or pre"
            )
        self.cfg = cfg
        self.n_items = n_items
        self.max_len = max_len
        self.mask_token = n_items + 1
        self.item_emb = nn.Embedding(n_items + 2, cfg.hidden, padding_idx=0)
        self.pos_emb = nn.Embedding(max_len, cfg.hidden)
        self.emb_ln = nn.LayerNorm(cfg.hidden, eps=cfg.ln_eps)
        self.emb_dropout = Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(EncoderBlock(cfg) for _ in range(cfg.layers))
        pre = cfg.norm == "pre"
        self.final_ln = nn.LayerNorm(cfg.hidden, eps=cfg.ln_eps) if pre else nn.Identity()
        self.official_head = cfg.bert_head == "official"
        if self.official_head:
            self.head_proj = nn.Linear(cfg.hidden, cfg.hidden)
            self.head_ln = nn.LayerNorm(cfg.hidden, eps=cfg.ln_eps)
            self.out_bias = nn.Parameter(torch.zeros(n_items + 1))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """BERT's init: truncated normal (std 0.02, cut at 2 std) for every matrix, zero biases,
        unit LayerNorms; the PAD row and the output bias start at zero."""
        for module in self.modules():
            if isinstance(module, nn.Linear | nn.Embedding):
                nn.init.trunc_normal_(module.weight, std=0.02, a=-0.04, b=0.04)
            if isinstance(module, nn.Linear):
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        with torch.no_grad():
            self.item_emb.weight[0].zero_()
            if self.official_head:
                self.out_bias.zero_()

    @property
    def item_weights(self) -> torch.Tensor:
        """Output table [n_items + 1, D + 1]: tied item vectors (no mask row) and the output bias
        as the last column, matched by the constant 1 that ``project`` appends ([.., D] with
        the tied head)."""
        rows = self.item_emb.weight[: self.n_items + 1]
        if not self.official_head:
            return rows
        return torch.cat([rows, self.out_bias[:, None].to(rows.dtype)], dim=1)

    def project(self, hidden: torch.Tensor) -> torch.Tensor:
        """Output head on encoder states [..., D] -> [..., D + 1] = [LN(GELU(h W + b)), 1]
        (identity with the tied head)."""
        if not self.official_head:
            return hidden
        z = self.head_ln(F.gelu(self.head_proj(hidden)))
        return torch.cat([z, torch.ones_like(z[..., :1])], dim=-1)

    def embed(self, items: torch.Tensor) -> torch.Tensor:
        pos = position_ids(items, (items != 0).sum(1), self.cfg.positions)
        x = self.emb_ln(self.item_emb(items) + self.pos_emb(pos))
        return self.emb_dropout(x)

    def forward(self, batch: SeqBatch, reference: bool = False) -> torch.Tensor:
        """Encoder states [B, L, D] of ``batch.items`` as given (mask tokens included, if any)."""
        items = check_width(batch.items, self.max_len)
        keep = key_mask(items)
        x = self.embed(items)
        for block in self.blocks:
            x = block(x, keep, reference)
        return self.final_ln(x)

    def with_mask_appended(self, items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Rows with the mask token after the last real item (the oldest item drops when the
        row would exceed max_len), and the mask's slot in each row."""
        lengths = (items != 0).sum(1)
        rows = torch.arange(items.shape[0], device=items.device)
        ext = torch.cat([items, torch.zeros_like(items[:, :1])], dim=1)
        ext[rows, lengths] = self.mask_token
        ext = keep_last(ext, self.max_len)
        return ext, (lengths + 1).clamp(max=self.max_len) - 1

    def last_hidden(self, batch: SeqBatch) -> torch.Tensor:
        """User vector [B, D (+ 1)] for next-item scoring: the head's output at an appended mask."""
        items, slot = self.with_mask_appended(batch.items)
        hidden = self.forward(SeqBatch(items, batch.targets, batch.lengths, batch.users))
        rows = torch.arange(items.shape[0], device=items.device)
        return self.project(hidden[rows, slot])


def flops_per_interaction(cfg: BERT4RecConfig, n_items: int, seq_len: float) -> dict[str, float]:
    """Forward FLOPs per position (multiply-add = 2), training ~ 3x forward.

    ``seq_len`` is the trainer's causal average (half the window); a bidirectional query
    attends to the whole window, so attention is counted over ``2 * seq_len`` keys. Each
    position is counted with the head and the full-catalogue output, which Cloze training
    computes only at the masked ~``mask_prob`` of positions: ``train`` is an upper bound.
    """
    d = cfg.hidden
    inner = max(1, round(cfg.ffn_mult * d))
    forward = cfg.layers * attention_layer_flops(d, 2 * d * inner, 2 * seq_len)
    if cfg.bert_head == "official":  # W^P, then scores of width d + 1 (the bias column)
        forward += 2.0 * d * d + output_flops(d + 1, n_items)
    else:
        forward += output_flops(d, n_items)
    return {"forward": float(forward), "train": float(3 * forward)}
