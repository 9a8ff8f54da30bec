"""SASRec (Kang & McAuley, ICDM'18): a causal Transformer over the item sequence.

Faithful to the paper where the paper is explicit: learned absolute positions, Q/K/V projections
with no output projection, a point-wise two-layer ReLU FFN (inner width = ffn_mult * hidden, 1 in
the paper), dropout on embeddings / attention / residual branches, and the item table shared with
the output layer. Choices the paper leaves open are explicit options and recorded with the run:

* ``norm="pre"`` (default) is the paper's g(x) = x + Dropout(g(LN(x))) with a final LayerNorm;
  ``"post"`` is the BERT-style layout; ``"official"`` is the reference code's query-only LN
  (queries and the residual come from LN(x), keys/values from the raw x; METHODS.md 1.4), kept
  so the reference numbers can be reproduced layout for layout. ``attn_out_proj``, ``init``,
  ``ln_eps`` and ``attn_residual_dropout`` (the reference code drops attention probabilities
  only, never the attention output) cover the other places where public ports differ.
* ``positions="from_start"`` (default) indexes slots from the oldest item of the window, so a
  query's position says only how many items precede it, the same in training and at inference.
  ``"from_end"`` counts back from the most recent item, which is the official code's fixed
  left-padded window; there a training query's index also reveals how many window items
  follow it. Whether either trains better is not measured yet (early ML-1M validation curves
  were close). Both are exact under right padding and trimmed batches.
* ``scale_embeddings`` multiplies item vectors by sqrt(d) before adding positions, as the
  official code does.
* ``l2_norm_output`` L2-normalises the returned states and ``item_weights`` (cosine scores), as
  generative-recommenders' "SASRec, sampled softmax" row does; training and evaluation both
  read these, so they score alike.
* ``rab``, ``residual="hstu"`` and ``norm_type="rmsnorm"`` are the SASRec+ switches of
  *Scaling New Frontiers* (HSTU's relative attention bias, its gated residual, RMSNorm); they
  live in sasrec_plus.py, which documents what is taken from HSTU and what is guessed. All
  off, the model is the plain SASRec above, weight for weight.

Attention goes through ``scaled_dot_product_attention``; `reference_forward` in the tests checks
it against an explicit softmax(QK^T) implementation.
"""

from __future__ import annotations

import math
from dataclasses import replace

import torch
import torch.nn.functional as F
from torch import nn

from seqrec.data.batches import SeqBatch
from seqrec.models.common import (
    check_width,
    embed_sequence,
    gather_last,
    init_matrices,
    position_ids,
)
from seqrec.models.common import count_parameters as count_parameters  # re-export
from seqrec.models.sasrec_plus import GatedBlock, RelativePositionBias, make_norm
from seqrec.models.side_info import SideInputs
from seqrec.options import ModelConfig


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
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=p, is_causal=mask is None
        )
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
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.dropout(F.relu(self.fc1(x))))


def make_attention(cfg: ModelConfig, max_len: int | None, out_proj: bool) -> CausalSelfAttention:
    """SASRec's attention for one layer, with its own relative bias when ``model.rab``."""
    if cfg.rab and max_len is None:
        raise ValueError("model.rab needs the block's max_len to size its offset table")
    attn_p = cfg.dropout if cfg.attn_dropout is None else cfg.attn_dropout
    rab = RelativePositionBias(max_len) if cfg.rab else None
    return CausalSelfAttention(cfg.hidden, cfg.heads, attn_p, out_proj, rab)


def make_block(cfg: ModelConfig, max_len: int) -> nn.Module:
    """One layer of ``model.residual``'s kind: attention + FFN `Block`, or HSTU's `GatedBlock`."""
    if cfg.residual == "hstu":
        return GatedBlock(cfg, make_attention(cfg, max_len, out_proj=False))
    return Block(cfg, max_len)


class Block(nn.Module):
    """Attention + FFN sub-layers in the ``model.norm`` layout (``max_len`` only for rab)."""

    def __init__(self, cfg: ModelConfig, max_len: int | None = None) -> None:
        super().__init__()
        self.layout = cfg.norm
        self.ln1 = make_norm(cfg)
        self.ln2 = make_norm(cfg)
        self.attn = make_attention(cfg, max_len, cfg.attn_out_proj)
        self.ffn = FeedForward(cfg.hidden, max(1, round(cfg.ffn_mult * cfg.hidden)), cfg.dropout)
        self.drop = nn.Dropout(cfg.dropout)
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


class SASRec(nn.Module):
    """Causal self-attentive sequential recommender; ``forward`` returns hidden states [B, L, D]."""

    def __init__(self, cfg: ModelConfig, n_items: int, max_len: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.n_items = n_items
        self.max_len = max_len
        self.item_emb = nn.Embedding(n_items + 1, cfg.hidden, padding_idx=0)
        self.pos_emb = nn.Embedding(max_len, cfg.hidden)
        self.emb_dropout = nn.Dropout(cfg.dropout)
        # interleaved item/action tokens double the attended length (models/side_info.py)
        self.interleaved = cfg.behavior_tokens == "interleave"
        width = 2 * max_len if self.interleaved else max_len
        self.blocks = nn.ModuleList(make_block(cfg, width) for _ in range(cfg.layers))
        final = cfg.norm in ("pre", "official")
        self.final_ln = make_norm(cfg) if final else nn.Identity()
        self.emb_scale = math.sqrt(cfg.hidden) if cfg.scale_embeddings else 1.0
        self.side = SideInputs(cfg, n_items)
        self.reset_parameters()

    def attach_features(self, features) -> None:
        """Item side information (`data.features.Features`); see models/side_info.py."""
        self.side.attach_features(features)

    def reset_parameters(self) -> None:
        init_matrices(self, self.cfg.init)
        for module in self.modules():
            if isinstance(module, RelativePositionBias):
                module.reset_parameters()
        with torch.no_grad():
            self.item_emb.weight[0].zero_()

    @property
    def item_weights(self) -> torch.Tensor:
        """Output item table [n_items + 1, D]; row 0 (PAD) is never a valid prediction."""
        w = self.side.output_table(self.item_emb.weight)
        return F.normalize(w, dim=-1, eps=1e-6) if self.cfg.l2_norm_output else w

    def _output(
        self, h: torch.Tensor, target_behaviors: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Target-behaviour conditioning (if on), final LN, then the optional L2 normalisation
        of ``model.l2_norm_output``."""
        h = self.final_ln(self.side.condition(h, target_behaviors))
        return F.normalize(h, dim=-1, eps=1e-6) if self.cfg.l2_norm_output else h

    def embed(
        self, items: torch.Tensor, behaviors: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Item (fused with side information / behaviours when on) + position embeddings of
        right-padded rows, and each row's true length."""
        cfg = self.cfg
        vectors = None
        if self.side.active and not self.interleaved:
            vectors = self.side.items_in(self.item_emb, items, behaviors)
        elif self.side.fields is not None:  # interleave: features still fuse into item tokens
            vectors = self.side.items_in(self.item_emb, items, None)
        return embed_sequence(
            items,
            self.item_emb,
            self.pos_emb,
            cfg.positions,
            self.emb_scale,
            self.emb_dropout,
            vectors,
        )

    def _interleave(self, items: torch.Tensor, behaviors: torch.Tensor | None) -> torch.Tensor:
        """[B, 2L, D] (item_1, action_1, ...): action tokens carry their item's position."""
        x, lengths = self.embed(items)
        pos = self.pos_emb(position_ids(items, lengths, self.cfg.positions))
        valid = (items != 0).unsqueeze(-1).to(x.dtype)
        return self.side.interleave(x, items, behaviors, pos, self.emb_dropout, valid)

    def _check(self, items: torch.Tensor) -> torch.Tensor:
        return check_width(items, self.max_len)

    def forward(self, batch: SeqBatch, reference: bool = False) -> torch.Tensor:
        """Hidden states [B, L, D]; ``reference`` uses an explicit mask instead of the causal kernel."""
        items = self._check(batch.items)
        if self.interleaved:
            x = self._interleave(items, batch.behaviors)
            mask = attention_mask(items.repeat_interleave(2, dim=1)) if reference else None
            for block in self.blocks:
                x = block(x, mask)
            return self._output(x[:, 1::2], batch.target_behaviors)  # states at action tokens
        mask = attention_mask(items) if reference else None
        x, _ = self.embed(items, batch.behaviors)
        for block in self.blocks:
            x = block(x, mask)
        return self._output(x, batch.target_behaviors)

    def last_hidden(self, batch: SeqBatch) -> torch.Tensor:
        """User representation [B, D] for next-item scoring: the state at the most recent item.

        The last block is evaluated for that one position only (its keys and values still cover
        the whole row), which cuts inference cost; the tests check it against ``forward``.
        """
        items = self._check(batch.items)
        if self.interleaved:  # every slot is computed; the user state is the last action token
            eval_batch = replace(batch, target_behaviors=None)
            return gather_last(self.forward(eval_batch), (items != 0).sum(1))
        x, lengths = self.embed(items, batch.behaviors)
        lengths = lengths.clamp(min=1)
        for block in self.blocks[:-1]:
            x = block(x)
        return self._output(self.blocks[-1].forward_last(x, lengths))


def flops_per_interaction(cfg: ModelConfig, n_items: int, seq_len: float) -> dict[str, float]:
    """Forward FLOPs per scored position (multiply-add = 2 FLOPs); training ~ 3x forward.

    ``seq_len`` is the average attended length (a causal position attends to ~half the window).
    The output layer term is the full-catalogue softmax, which dominates for small models.
    """
    d = cfg.hidden
    if cfg.residual == "hstu":  # Q, K, V, gate U and W_o; no FFN
        per_layer = 2 * 5 * d * d + 2 * 2 * seq_len * d
    else:
        inner = max(1, round(cfg.ffn_mult * d))
        proj = 4 if cfg.attn_out_proj else 3
        per_layer = 2 * proj * d * d + 2 * 2 * d * inner + 2 * 2 * seq_len * d
    output = 2 * d * (n_items + 1)
    forward = cfg.layers * per_layer + output
    return {"forward": float(forward), "train": float(3 * forward)}
