"""Caser (Tang & Wang, WSDM'18): convolutional sequence embedding over the last L items.

The most recent ``window`` items form an L x d "image". Horizontal filters of every height
h = 1..L (``n_h`` each) slide over it and are max-pooled, catching union-level and skip
patterns of h consecutive items; ``n_v`` vertical filters (L x 1) take learned weighted sums of
the L rows. Both are concatenated, passed through dropout and a fully connected layer to the
user state z, scored against a separate output item table with a per-item bias.

Differences from the paper, stated because they are choices:

* **No per-user embedding.** The paper concatenates a learned user vector P_u before the output
  layer. Every seqrec model is a function of the history alone, so a new or anonymous user is
  served like any other and results compare across models; Caser here is that function.
* **Every position trains.** The paper draws (L items, next T items) windows per user. Here the
  state at each slot t is Caser applied to the L items ending at t (items before the row's
  start are zero embeddings, as the paper pads short users), so one batch trains every target
  with the library's objectives (full CE by default), and the state at the last slot is the
  user representation, exactly as for the causal Transformers.
* **Vectorised over positions.** A horizontal filter of height h is one ``conv1d`` over the
  whole row; max-pooling within each L-window is then a sliding max of width L - h + 1 over
  its outputs. The vertical filters are one ``conv1d`` of width L applied to every embedding
  dimension. ``forward(reference=True)`` cuts each window out explicitly and applies the
  paper's per-window formulas; the tests check the two agree.

The output bias is carried as one inner product, as BERT4Rec's head: states are [z, 1] and
``item_weights`` are [W', b'], so evaluation, serving and every objective score unchanged.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import nn

from seqrec.data.batches import SeqBatch
from seqrec.models.base import ModelConfig, SeqModel
from seqrec.models.common import check_width, last_from_forward
from seqrec.ops.dropout import Dropout


class CaserConfig(ModelConfig):
    """Paper defaults (MovieLens): L = 5, n_v = 4, n_h = 16, d = 50, dropout 0.5, ReLU."""

    name: Literal["caser"]
    window: int = Field(5, ge=1)
    """L: how many of the most recent items each state reads."""
    n_h: int = Field(16, ge=1)
    """Horizontal filters per height h = 1..L."""
    n_v: int = Field(4, ge=0)
    """Vertical filters (0 switches them off)."""
    conv_activation: Literal["relu", "tanh", "sigmoid", "identity"] = "relu"
    """phi_c, applied to the horizontal convolutions before pooling."""
    fc_activation: Literal["relu", "tanh", "sigmoid", "identity"] = "relu"
    """phi_a, applied to the fully connected layer's output (the user state)."""

    @model_validator(mode="after")
    def _no_layers(self) -> CaserConfig:
        if self.layers != 2:
            raise ValueError(
                "model.layers has no meaning for caser (one convolution layer and one fully "
                "connected layer); leave it at its default"
            )
        return self


_ACTIVATIONS = {"relu": F.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid}


def _act(name: str, x: torch.Tensor) -> torch.Tensor:
    return x if name == "identity" else _ACTIVATIONS[name](x)


class Caser(SeqModel):
    """Convolutional sequence embedding; ``forward`` returns states [B, L, D + 1]."""

    config_class = CaserConfig

    def __init__(self, cfg: CaserConfig, n_items: int, max_len: int) -> None:
        super().__init__()
        self.cfg, self.n_items, self.max_len = cfg, n_items, max_len
        d, window = cfg.hidden, cfg.window
        self.item_emb = nn.Embedding(n_items + 1, d, padding_idx=0)
        self.horizontal = nn.ModuleList(nn.Conv1d(d, cfg.n_h, h) for h in range(1, window + 1))
        self.vertical = nn.Conv1d(1, cfg.n_v, window) if cfg.n_v else None
        self.fc = nn.Linear(cfg.n_h * window + cfg.n_v * d, d)
        self.dropout = Dropout(cfg.dropout)
        self.out_item_emb = nn.Embedding(n_items + 1, d)
        self.out_bias = nn.Parameter(torch.zeros(n_items + 1))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The paper's init: item tables N(0, 1/d), convolution and FC weights as torch does."""
        d = self.cfg.hidden
        nn.init.normal_(self.item_emb.weight, std=d**-0.5)
        nn.init.normal_(self.out_item_emb.weight, std=d**-0.5)
        with torch.no_grad():
            self.item_emb.weight[0].zero_()
            self.out_item_emb.weight[0].zero_()
            self.out_bias.zero_()

    @staticmethod
    def flops_per_interaction(cfg: CaserConfig, n_items: int, seq_len: float) -> dict:
        return flops_per_interaction(cfg, n_items, seq_len)

    @property
    def item_weights(self) -> torch.Tensor:
        """Output table [n_items + 1, D + 1]: item vectors W' and the bias b' as a column."""
        return torch.cat([self.out_item_emb.weight, self.out_bias[:, None]], dim=1)

    def _state(self, features: torch.Tensor) -> torch.Tensor:
        """[..., n_h L + n_v d] pooled features -> [..., D + 1] = [phi_a(W z + b), 1]."""
        z = _act(self.cfg.fc_activation, self.fc(self.dropout(features)))
        return torch.cat([z, torch.ones_like(z[..., :1])], dim=-1)

    def forward(self, batch: SeqBatch, reference: bool = False) -> torch.Tensor:
        """States [B, L, D + 1]; slot t reads the ``window`` items ending at t."""
        items = check_width(batch.items, self.max_len)
        if reference:
            return self._state(self._reference_features(items))
        window = self.cfg.window
        x = self.item_emb(items)  # [B, T, d], PAD rows are zero
        padded = F.pad(x.transpose(1, 2), (window - 1, 0))  # [B, d, T + L - 1]
        parts = []
        for h, conv in enumerate(self.horizontal, start=1):
            act = _act(self.cfg.conv_activation, conv(padded))  # [B, n_h, T + L - h]
            # window t covers padded slots t .. t + L - 1: conv outputs t .. t + L - h
            parts.append(F.max_pool1d(act, window - h + 1, stride=1))  # [B, n_h, T]
        if self.vertical is not None:
            b, d, width = padded.shape
            v = self.vertical(padded.reshape(b * d, 1, width))  # [B d, n_v, T]
            parts.append(v.reshape(b, d * self.cfg.n_v, -1))
        return self._state(torch.cat(parts, dim=1).transpose(1, 2))

    def _reference_features(self, items: torch.Tensor) -> torch.Tensor:
        """The paper's formulas on explicitly cut windows (the tests' check on ``forward``)."""
        cfg, window = self.cfg, self.cfg.window
        x = F.pad(self.item_emb(items), (0, 0, window - 1, 0))  # [B, T + L - 1, d]
        windows = x.unfold(1, window, 1).transpose(2, 3)  # [B, T, L, d]
        parts = []
        for h, conv in enumerate(self.horizontal, start=1):
            rows = windows.unfold(2, h, 1)  # [B, T, L - h + 1, d, h]
            w = conv.weight  # [n_h, d, h]
            c = torch.einsum("btpdh,ndh->btpn", rows, w) + conv.bias
            parts.append(_act(cfg.conv_activation, c).amax(dim=2))  # [B, T, n_h]
        if self.vertical is not None:
            w = self.vertical.weight[:, 0, :]  # [n_v, L]
            v = torch.einsum("btld,vl->btdv", windows, w) + self.vertical.bias
            parts.append(v.reshape(*v.shape[:2], -1))  # d-major, as forward's reshape
        return torch.cat(parts, dim=-1)

    def last_hidden(self, batch: SeqBatch) -> torch.Tensor:
        return last_from_forward(self, batch)


def flops_per_interaction(cfg: CaserConfig, n_items: int, seq_len: float) -> dict[str, float]:
    """Per scored position: every horizontal filter at every window offset, the vertical
    filters over every dimension, the FC layer and the full-catalogue output (with bias)."""
    d, window = cfg.hidden, cfg.window
    horizontal = sum(2 * h * d * cfg.n_h * (window - h + 1) for h in range(1, window + 1))
    vertical = 2 * window * d * cfg.n_v
    fc = 2 * (cfg.n_h * window + cfg.n_v * d) * d
    forward = horizontal + vertical + fc + 2 * (d + 1) * (n_items + 1)
    return {"forward": float(forward), "train": float(3 * forward)}
