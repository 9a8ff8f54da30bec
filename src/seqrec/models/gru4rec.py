"""GRU4Rec (Hidasi et al., ICLR'16) as a full-sequence next-item model (METHODS.md 3.5).

The original trains session-parallel mini-batches with sampled negatives (METHODS.md 3.2-3.3);
seqrec runs it the way the sequential-recommendation literature compares it with SASRec
(Klenitskiy & Vasilev, RecSys'23): whole right-padded user sequences, a prediction at every
position, and the same objectives as SASRec (full softmax CE by default, sampled BCE too).
That is the "full-sequence" mode, which is what a run of this model records (``model.name``).

Layout: item embedding -> dropout -> ``layers`` stacked GRU layers of width ``hidden``
(dropout between layers) -> dropout on the output (GRU4Rec's ``dropout_p_hidden``) ->
optional Linear to the item-table width -> dot product with the same item table (GRU4Rec's
``constrained_embedding``, which its README calls usually the best). No output bias, as in
[KV]. ``gru_embedding`` / ``gru_projection`` give RecBole's variant (64-wide items, wider GRU,
dense layer back).

Right padding makes the recurrence causal for free: a real position has only real items before
it, so one ``nn.GRU`` call over the padded batch computes every prefix state; PAD slots come
after the last real item and their states are never scored.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import nn

from seqrec.data.batches import SeqBatch
from seqrec.models.base import ModelConfig, SeqModel
from seqrec.models.common import (
    check_width,
    count_parameters,
    last_from_forward,
    output_flops,
)
from seqrec.ops.dropout import Dropout

__all__ = ["GRU4Rec", "count_parameters", "flops_per_interaction"]


class GRU4RecConfig(ModelConfig):
    name: Literal["gru4rec"]
    gru_embedding: int | None = Field(None, ge=1)
    """GRU4Rec item-table width (input and output); None = ``hidden``. A width other than
    ``hidden`` switches the final projection on (RecBole: 64-wide items, 128-wide GRU)."""
    gru_projection: bool = False
    """GRU4Rec: a final Linear from the GRU state to the item-table width (RecBole's dense
    layer); off = the GRU state is scored directly against the tied table ([KV])."""


def _widths(cfg: GRU4RecConfig) -> tuple[int, bool]:
    """(item-table width, whether the final projection exists)."""
    emb = cfg.gru_embedding or cfg.hidden
    return emb, cfg.gru_projection or emb != cfg.hidden


class GRU4Rec(SeqModel):
    """Recurrent next-item model; ``forward`` returns per-position states [B, L, D_item]."""

    config_class = GRU4RecConfig

    @staticmethod
    def flops_per_interaction(cfg: GRU4RecConfig, n_items: int, seq_len: float) -> dict:
        return flops_per_interaction(cfg, n_items, seq_len)

    def __init__(self, cfg: GRU4RecConfig, n_items: int, max_len: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.n_items = n_items
        self.max_len = max_len
        emb, projected = _widths(cfg)
        self.item_emb = nn.Embedding(n_items + 1, emb, padding_idx=0)
        self.emb_dropout = Dropout(cfg.dropout)
        self.gru = nn.GRU(
            emb,
            cfg.hidden,
            num_layers=cfg.layers,
            batch_first=True,
            dropout=cfg.dropout if cfg.layers > 1 else 0.0,
        )
        self.out_dropout = Dropout(cfg.dropout)
        self.proj = nn.Linear(cfg.hidden, emb, bias=False) if projected else nn.Identity()
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """GRU4Rec's init, uniform +-sqrt(6 / (fan_in + fan_out)), per gate of every GRU matrix
        (a stacked [3H, in] matrix would get a narrower range); zero biases; xavier-normal item
        table as SASRec's, with the PAD row zero."""
        for name, p in self.gru.named_parameters():
            if name.startswith("weight"):
                for gate in p.data.chunk(3, dim=0):
                    nn.init.xavier_uniform_(gate)
            else:
                nn.init.zeros_(p)
        if isinstance(self.proj, nn.Linear):
            nn.init.xavier_uniform_(self.proj.weight)
        nn.init.xavier_normal_(self.item_emb.weight)
        with torch.no_grad():
            self.item_emb.weight[0].zero_()

    @property
    def item_weights(self) -> torch.Tensor:
        """Output item table [n_items + 1, D_item] (shared with the input); row 0 is PAD."""
        return self.item_emb.weight

    def forward(self, batch: SeqBatch) -> torch.Tensor:
        """State after each prefix [B, L, D_item]; PAD slots hold states that are never read."""
        items = check_width(batch.items, self.max_len)
        x = self.emb_dropout(self.item_emb(items))
        self.gru.flatten_parameters()  # cuDNN wants one weight block; loading weights splits it
        h, _ = self.gru(x)
        return self.proj(self.out_dropout(h))

    def last_hidden(self, batch: SeqBatch) -> torch.Tensor:
        """State after each row's whole history [B, D_item]: the user representation."""
        return last_from_forward(self, batch)


def flops_per_interaction(cfg: GRU4RecConfig, n_items: int, seq_len: float) -> dict[str, float]:
    """Forward FLOPs per scored position (multiply-add = 2), training ~ 3x forward.

    Each GRU layer has three gates, each an input matmul (in x H) and a recurrent one (H x H);
    the first layer's input is the item-table width. A recurrence has no attention, so
    ``seq_len`` (kept for a common signature) does not enter. Elementwise gate arithmetic is
    not counted, as in the transformer counts.
    """
    emb, projected = _widths(cfg)
    h = cfg.hidden
    gru = sum(2 * 3 * ((emb if i == 0 else h) * h + h * h) for i in range(cfg.layers))
    proj = 2 * h * emb if projected else 0
    forward = gru + proj + output_flops(emb, n_items)
    return {"forward": float(forward), "train": float(3 * forward)}
