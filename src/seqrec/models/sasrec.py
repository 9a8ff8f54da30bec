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
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from seqrec.data.batches import SeqBatch
from seqrec.models.base import (
    CosineOutputOption,
    Needs,
    SeqModel,
)
from seqrec.models.common import (
    check_width,
    embed_sequence,
    gather_last,
    init_matrices,
    position_ids,
)
from seqrec.models.common import count_parameters as count_parameters  # re-export
from seqrec.models.domain_inputs import DomainInputs, DomainOptions
from seqrec.models.sasrec_blocks import (
    SASRecBlockConfig,
    attention_mask,
    make_block,
)
from seqrec.models.sasrec_plus import RelativePositionBias, make_norm
from seqrec.models.side_info import SideInputs, SideOptions
from seqrec.ops.dropout import Dropout


class SASRecConfig(SASRecBlockConfig, CosineOutputOption, SideOptions, DomainOptions):
    name: Literal["sasrec"] = "sasrec"
    ranking_encoder = True
    cosine_output = True

    def needs(self) -> Needs:
        return replace(self.side_needs(), domains=self.domain_embedding)


class SASRec(SeqModel):
    """Causal self-attentive sequential recommender; ``forward`` returns hidden states [B, L, D]."""

    config_class = SASRecConfig

    def __init__(self, cfg: SASRecConfig, n_items: int, max_len: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.n_items = n_items
        self.max_len = max_len
        self.item_emb = nn.Embedding(n_items + 1, cfg.hidden, padding_idx=0)
        self.pos_emb = nn.Embedding(max_len, cfg.hidden)
        self.emb_dropout = Dropout(cfg.dropout)
        # a config without side options (CL4SRec, LACLRec) gets them all off
        side = cfg if isinstance(cfg, SideOptions) else SideOptions()
        # interleaved item/action tokens double the attended length (models/side_info.py)
        self.interleaved = side.behavior_tokens == "interleave"
        width = 2 * max_len if self.interleaved else max_len
        self.blocks = nn.ModuleList(make_block(cfg, width) for _ in range(cfg.layers))
        final = cfg.norm in ("pre", "official")
        self.final_ln = make_norm(cfg) if final else nn.Identity()
        self.emb_scale = math.sqrt(cfg.hidden) if cfg.scale_embeddings else 1.0
        self.side = SideInputs(side, cfg.hidden, n_items)
        # domain embeddings (models/domain_inputs.py); off for configs without the group
        self.domain = DomainInputs(
            cfg if isinstance(cfg, DomainOptions) else DomainOptions(), cfg.hidden
        )
        self.reset_parameters()

    def attach_item_features(self, features) -> None:  # no report: the run log has none
        """Item side information (`data.features.Features`); see models/side_info.py."""
        self.side.attach_features(features)

    def reset_parameters(self) -> None:
        init_matrices(self, self.cfg.init)
        for module in self.modules():
            if isinstance(module, RelativePositionBias):
                module.reset_parameters()
        with torch.no_grad():
            self.item_emb.weight[0].zero_()
        self.domain.reset_parameters()

    @property
    def item_weights(self) -> torch.Tensor:
        """Output item table [n_items + 1, D]; row 0 (PAD) is never a valid prediction."""
        w = self.side.output_table(self.item_emb.weight)
        return F.normalize(w, dim=-1, eps=1e-6) if self._cosine else w

    def _output(
        self, h: torch.Tensor, target_behaviors: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Target-behaviour conditioning (if on), final LN, then the optional L2 normalisation
        of ``model.l2_norm_output``."""
        h = self.final_ln(self.side.condition(h, target_behaviors))
        return F.normalize(h, dim=-1, eps=1e-6) if self._cosine else h

    @property
    def _cosine(self) -> bool:
        """``l2_norm_output``, for the configs that declare it (CL4SRec's; not LACLRec's or
        SRT's, which build on these blocks without the option)."""
        return self.cfg.cosine_output and self.cfg.l2_norm_output

    def embed(
        self,
        items: torch.Tensor,
        behaviors: torch.Tensor | None = None,
        domains: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Item (fused with side information / behaviours when on) + position embeddings of
        right-padded rows, and each row's true length."""
        cfg = self.cfg
        vectors = None
        if self.side.active and not self.interleaved:
            vectors = self.side.items_in(self.item_emb, items, behaviors)
        elif self.side.fields is not None:  # interleave: features still fuse into item tokens
            vectors = self.side.items_in(self.item_emb, items, None)
        vectors = self.domain.items_in(self.item_emb, items, domains, vectors)
        return embed_sequence(
            items,
            self.item_emb,
            self.pos_emb,
            cfg.positions,
            self.emb_scale,
            self.emb_dropout,
            vectors,
        )

    def _interleave(self, items: torch.Tensor, behaviors, domains=None) -> torch.Tensor:
        """[B, 2L, D] (item_1, action_1, ...): action tokens carry their item's position."""
        x, lengths = self.embed(items, domains=domains)
        pos = self.pos_emb(position_ids(items, lengths, self.cfg.positions))
        valid = (items != 0).unsqueeze(-1).to(x.dtype)
        return self.side.interleave(x, items, behaviors, pos, self.emb_dropout, valid)

    def _check(self, items: torch.Tensor) -> torch.Tensor:
        return check_width(items, self.max_len)

    def forward(self, batch: SeqBatch, reference: bool = False) -> torch.Tensor:
        """Hidden states [B, L, D]; ``reference`` uses an explicit mask instead of the causal kernel."""
        items = self._check(batch.items)
        if self.interleaved:
            x = self._interleave(items, batch.behaviors, batch.domains)
            mask = attention_mask(items.repeat_interleave(2, dim=1)) if reference else None
            for block in self.blocks:
                x = block(x, mask)
            return self._output(x[:, 1::2], batch.target_behaviors)  # states at action tokens
        mask = attention_mask(items) if reference else None
        x, _ = self.embed(items, batch.behaviors, batch.domains)
        for block in self.blocks:
            x = block(x, mask)
        return self._output(x, batch.target_behaviors)

    @staticmethod
    def flops_per_interaction(cfg: SASRecBlockConfig, n_items: int, seq_len: float) -> dict:
        return flops_per_interaction(cfg, n_items, seq_len)

    def last_hidden(self, batch: SeqBatch) -> torch.Tensor:
        """User representation [B, D] for next-item scoring: the state at the most recent item.

        The last block is evaluated for that one position only (its keys and values still cover
        the whole row), which cuts inference cost; the tests check it against ``forward``.
        """
        items = self._check(batch.items)
        if self.interleaved:  # every slot is computed; the user state is the last action token
            eval_batch = replace(batch, target_behaviors=None)
            return gather_last(self.forward(eval_batch), (items != 0).sum(1))
        x, lengths = self.embed(items, batch.behaviors, batch.domains)
        lengths = lengths.clamp(min=1)
        for block in self.blocks[:-1]:
            x = block(x)
        return self._output(self.blocks[-1].forward_last(x, lengths))


def flops_per_interaction(cfg: SASRecBlockConfig, n_items: int, seq_len: float) -> dict[str, float]:
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
