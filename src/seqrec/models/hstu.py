"""HSTU (Zhai et al., ICML'24, "Actions Speak Louder than Words"): Hierarchical Sequential
Transduction Units, following generative-recommenders' research code (METHODS.md 6).

One layer, with X the layer input (METHODS.md 6.1):

    U, V, Q, K = Split(SiLU(LN(X) W_uvqk))          one fused projection, no bias, LN without affine
    A_ij       = SiLU(q_i . k_j + rab_ij) / n  for j <= i, else 0   point-wise, **no softmax**
    Y          = X + Dropout(U * LN(A V)) W_o + b_o  gated output, no separate FFN

Choices and why:

* **Normaliser n** (``model.hstu_normalizer``): ``length`` (default) divides by the row's true
  length, as the NetEase TF port does; ``max_len`` divides by the padded length, as the research
  code does, which makes the attention scale depend on ``data.max_len``. Because LN(A V) removes
  any per-row scale, the two differ only through LN's epsilon; padding a row never changes it.
  Measured on ML-1M (HSTU, 101 epochs, 2 seeds paired per user): +0.0024 [-0.0004, +0.0051]
  NDCG@10 for ``max_len``, not significant (benchmarks/RESULTS.md).
* **Relative attention bias** (``model.hstu_rab``, METHODS.md 6.2), one module per layer shared
  by all heads: a learned scalar per causal offset i - j (``max_len`` of them; the research
  code allocates 2N - 1, of which the N - 1 for future keys are always masked) plus, with
  ``model.time_bias``, a learned scalar per log-bucketed time gap,
  bucket = clamp(floor(ln(max(|t_i - t_j|, 1)) / 0.301), 0, 128) (0.301 kept for parity).
  The query side uses its *own* timestamp t_i by default (``model.time_query=own``): the
  history alone decides the score. ``time_query=next`` uses the next event's time t_{i+1}
  as the research code does: in training the target's time, in evaluation the held-out
  item's (the request time; `SeqBatch.next_timestamps`), and where no request time is
  known (recommend, serving) the last slot's own time, the research code's final-slot rule.
* **Dropout**: on the embeddings, on the attention weights (``model.attn_dropout``, None =
  ``model.dropout``; the research code stores this rate but never applies it, so presets that
  match it set 0) and before the output projection (``model.dropout``).
* **Output**: no final LN (none in the research stack). With ``model.l2_norm_output`` the user
  states and the item table are L2-normalised, so evaluation scores the cosine the sampled
  softmax trained.

Two attention paths: `forward(reference=True)` builds an explicit [B, H, L, L] bias and a
boolean [B, 1, L, L] mask in every layer and normalises the attention matrix itself. The fast
path computes the bucket indices once per forward, broadcasts each layer's [L, L] position bias
over the batch and heads, uses one shared [L, L] causal mask (right padding means a real query
never sees a PAD key) and divides the [B, H, L, d_v] output instead of the [B, H, L, L] matrix.
`last_hidden` runs the last layer for the final real position only. Tests check both against
the reference.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import nn

from seqrec.data.batches import SeqBatch
from seqrec.errors import SeqrecError
from seqrec.models.base import (
    AttentionDropoutOption,
    CosineOutputOption,
    EmbeddingScaleOption,
    HeadsConfig,
    Needs,
    PositionsOption,
    SeqModel,
)
from seqrec.models.common import check_width, embed_sequence
from seqrec.models.domain_inputs import DomainInputs, DomainOptions
from seqrec.models.hstu_layer import LN_EPS, HSTULayer, dims, time_buckets
from seqrec.models.side_info import SideInputs, SideOptions
from seqrec.ops.dropout import Dropout


class HSTUConfig(
    HeadsConfig,
    AttentionDropoutOption,
    PositionsOption,
    EmbeddingScaleOption,
    CosineOutputOption,
    SideOptions,
    DomainOptions,
):
    """Defaults give the published ML-1M shapes from ``hidden`` and ``heads`` (METHODS.md 6)."""

    name: Literal["hstu"]
    ranking_encoder = True
    cosine_output = True
    attn_dim: int | None = Field(None, ge=1)
    """Per-head query/key width d_qk (HSTU); None = hidden / heads (ML-1M: 50, large: 25)."""
    hstu_value_dim: int | None = Field(None, ge=1)
    """HSTU per-head value (and gate U) width d_v; None = the query/key width."""
    hstu_rab: bool = True
    """HSTU relative attention bias on positions (one learned scalar per offset and layer)."""
    time_bias: bool = False
    """HSTU: add a learned bias per log-bucketed time gap; refused for data without timestamps."""
    time_query: Literal["own", "next"] = "own"
    """HSTU time bias, the query side's timestamp: ``own`` (t_i, the history alone) or ``next``
    (t_{i+1}, the time of the event being predicted, as generative-recommenders does). With
    ``next`` evaluation gives the last slot the held-out item's time (the request time; the
    ranking task: the candidate's time); where none is known (recommend, serving) the last
    slot keeps its own time, the research code's rule for its final slot."""
    hstu_normalizer: Literal["length", "max_len"] = "length"
    """HSTU attention normaliser n: each row's true length, or the padded length (research code)."""
    hstu_pos_init: Literal["trunc_normal", "xavier"] = "trunc_normal"
    """HSTU position table init: N(0, 1/hidden) truncated at 2 std (what the research code's
    preprocessor sets), or xavier-normal (what that table ends up with there: HSTU.reset_params
    re-initialises every parameter outside the HSTU stack and the item table). Measured on
    the 2-block model (2 CPU seeds, paired): -0.0022 [-0.0068, +0.0023] NDCG@10 for xavier."""

    @model_validator(mode="after")
    def _time_query_fits(self) -> HSTUConfig:
        if self.time_query == "next" and not self.time_bias:
            raise ValueError(
                "model.time_query=next picks the time-gap bias's query timestamp, but "
                "model.time_bias=false; set model.time_bias=true or leave time_query=own"
            )
        return self

    def needs(self) -> Needs:
        side = self.side_needs()
        return Needs(
            timestamps=self.time_bias,
            behaviors=side.behaviors,
            item_features=side.item_features,
            domains=self.domain_embedding,
        )


class HSTU(SeqModel):
    """HSTU encoder; ``forward`` returns states [B, L, D] (L2-normalised if asked)."""

    config_class = HSTUConfig

    @staticmethod
    def flops_per_interaction(cfg: HSTUConfig, n_items: int, seq_len: float) -> dict:
        return flops_per_interaction(cfg, n_items, seq_len)

    def __init__(self, cfg: HSTUConfig, n_items: int, max_len: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.n_items = n_items
        self.max_len = max_len
        self.item_emb = nn.Embedding(n_items + 1, cfg.hidden, padding_idx=0)
        self.pos_emb = nn.Embedding(max_len, cfg.hidden)
        self.emb_dropout = Dropout(cfg.dropout)
        self.layers = nn.ModuleList(HSTULayer(cfg, max_len) for _ in range(cfg.layers))
        self.emb_scale = math.sqrt(cfg.hidden) if cfg.scale_embeddings else 1.0
        if cfg.behavior_tokens == "interleave":
            raise SeqrecError(
                "model.behavior_tokens=interleave is implemented for sasrec only; use "
                "model.behavior_tokens=embedding with hstu"
            )
        self.side = SideInputs(cfg, cfg.hidden, n_items)  # features / behaviours (side_info.py)
        self.domain = DomainInputs(cfg, cfg.hidden)  # domain embeddings (domain_inputs.py)
        self.reset_parameters()

    def attach_item_features(self, features) -> None:  # no report: the run log has none
        """Item side information (`data.features.Features`); see models/side_info.py."""
        self.side.attach_features(features)

    def reset_parameters(self) -> None:
        """Research-code init: items N(0, 0.02) truncated at 2 std; positions N(0, 1/d)
        truncated at 2 std or, with ``model.hstu_pos_init=xavier``, xavier-normal (the research
        code's effective init, see the config field); W_uvqk N(0, 0.02); W_o Xavier-uniform;
        rab scalars N(0, 0.02)."""
        d = self.cfg.hidden
        nn.init.trunc_normal_(self.item_emb.weight, std=0.02, a=-0.04, b=0.04)
        if self.cfg.hstu_pos_init == "xavier":
            nn.init.xavier_normal_(self.pos_emb.weight)
        else:
            std = math.sqrt(1.0 / d)
            nn.init.trunc_normal_(self.pos_emb.weight, std=std, a=-2 * std, b=2 * std)
        for layer in self.layers:
            layer.reset_parameters()
        with torch.no_grad():
            self.item_emb.weight[0].zero_()
        self.domain.reset_parameters()

    @property
    def item_weights(self) -> torch.Tensor:
        """Output item table [n_items + 1, D] (the input table, tied); row 0 is PAD (zero)."""
        w = self.side.output_table(self.item_emb.weight)
        return F.normalize(w, dim=-1, eps=LN_EPS) if self.cfg.l2_norm_output else w

    def _output(
        self, h: torch.Tensor, target_behaviors: torch.Tensor | None = None
    ) -> torch.Tensor:
        h = self.side.condition(h, target_behaviors)
        return F.normalize(h, dim=-1, eps=LN_EPS) if self.cfg.l2_norm_output else h

    def _inputs(self, batch: SeqBatch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(items, embedded x [B, L, D], true lengths [B]); refuses a time-bias forward
        without timestamps."""
        items = check_width(batch.items, self.max_len)
        if self.cfg.time_bias and batch.timestamps is None:
            raise SeqrecError(
                "model.time_bias=true needs timestamps in every batch, but this one has none; "
                "use data with a timestamp column or set model.time_bias=false"
            )
        cfg = self.cfg
        vectors = None
        if self.side.active:
            vectors = self.side.items_in(self.item_emb, items, batch.behaviors)
        vectors = self.domain.items_in(self.item_emb, items, batch.domains, vectors)
        x, lengths = embed_sequence(
            items,
            self.item_emb,
            self.pos_emb,
            cfg.positions,
            self.emb_scale,
            self.emb_dropout,
            vectors,
        )
        return items, x, lengths

    @staticmethod
    def _slots(length: int, device: torch.device, dtype: torch.dtype):
        """Shared by every layer: slot ids [L], offsets i - j clamped to >= 0 [L, L] (indices
        into each layer's position bias) and the float causal mask [L, L]."""
        slots = torch.arange(length, device=device)
        rel = (slots[:, None] - slots[None, :]).clamp_(min=0)
        return slots, rel, (slots[None, :] <= slots[:, None]).to(dtype)

    def _norm(self, lengths: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """The attention normaliser n as [B, 1, 1, 1]."""
        if self.cfg.hstu_normalizer == "max_len":
            n = torch.full_like(lengths, self.max_len)
        else:
            n = lengths.clamp(min=1)
        return n.to(dtype).view(-1, 1, 1, 1)

    def _query_times(self, batch: SeqBatch) -> torch.Tensor | None:
        """The query side's timestamps: the history's own, or each position's next event's."""
        if not self.cfg.time_bias:
            return None
        if self.cfg.time_query == "own":
            return batch.timestamps
        if batch.next_timestamps is None:
            raise SeqrecError(
                "model.time_query=next needs each position's next-event time, which this batch "
                "lacks; build it with seqrec.data.batches (training_batch / history_batch)"
            )
        return batch.next_timestamps

    def _buckets(self, batch: SeqBatch) -> torch.Tensor | None:
        query = self._query_times(batch)
        return None if query is None else time_buckets(query, batch.timestamps)

    def forward(self, batch: SeqBatch, reference: bool = False) -> torch.Tensor:
        """States [B, L, D]; ``reference`` runs the explicit-bias, explicit-mask layers."""
        items, x, lengths = self._inputs(batch)
        if reference:
            n = self._norm(lengths, x.dtype).view(-1)
            query = self._query_times(batch)
            for layer in self.layers:
                x = layer.forward_reference(x, items, batch.timestamps, n, query)
            return self._output(x, batch.target_behaviors)
        _, rel, causal = self._slots(items.shape[1], items.device, x.dtype)
        buckets, norm = self._buckets(batch), self._norm(lengths, x.dtype)
        for layer in self.layers:
            x = layer(x, rel, buckets, causal, norm)
        return self._output(x, batch.target_behaviors)

    def last_hidden(self, batch: SeqBatch) -> torch.Tensor:
        """User representation [B, D]: the state at each row's most recent item; the last
        layer is evaluated at that slot only."""
        items, x, lengths = self._inputs(batch)
        slots, rel, causal = self._slots(items.shape[1], items.device, x.dtype)
        buckets, norm = self._buckets(batch), self._norm(lengths, x.dtype)
        for layer in self.layers[:-1]:
            x = layer(x, rel, buckets, causal, norm)
        last = (lengths - 1).clamp(min=0)
        rows = torch.arange(items.shape[0], device=items.device)
        rel_last = (last[:, None] - slots[None, :]).clamp_(min=0)
        b_last = None if buckets is None else buckets[rows, last]
        return self._output(self.layers[-1].forward_last(x, last, rel_last, b_last, norm))


def flops_per_interaction(cfg: HSTUConfig, n_items: int, seq_len: float) -> dict[str, float]:
    """Forward FLOPs per scored position (multiply-add = 2), same conventions as SASRec's:
    ``seq_len`` is the average attended length and the output term is the full catalogue."""
    h, dqk, dv = dims(cfg)
    d = cfg.hidden
    per_layer = 2 * d * (2 * h * dv + 2 * h * dqk) + 2 * seq_len * h * (dqk + dv) + 2 * h * dv * d
    forward = cfg.layers * per_layer + 2 * d * (n_items + 1)
    return {"forward": float(forward), "train": float(3 * forward)}
