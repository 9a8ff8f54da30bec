"""Side information and behaviour tokens for the input item representation (issue 7).

`SideInputs` is one submodule a backbone owns (SASRec and HSTU use it); it is empty, with no
parameters and an unchanged state dict, unless a side option is on. It provides:

* **Item features** (``model.side_fusion`` = sum | concat | gated, after `attach_features`):
  every field of a `data.features.Features` table is embedded to the model width
  (categorical: an embedding row, 0 = unknown; multi-valued: the mean of the non-zero ids'
  rows, EmbeddingBag-style; numeric: Linear(1, D); text vectors: Linear(d, D)) and fused with
  the item-id vector e:  sum  e + Σ f_k;  concat  W [e; f_1; ...; f_F] (back to D);
  gated  g ⊙ e + (1 − g) ⊙ Σ f_k with g = σ(W_g [e; Σ f_k] + b) per dimension.
  Fields are embedded for the distinct items of a batch only (``torch.unique``), so the cost is
  min(batch slots, catalogue) × fields, never batch × catalogue.
* **Output table.** `item_weights` stays the id table by default, so scoring every item is
  still one [B, D] × [D, V+1] matmul over a stored matrix (evaluation, serving and faiss need
  no change). ``model.side_output=true`` fuses the output table too (recomputed for the whole
  catalogue on each access: costlier, but cold items then get feature-informed scores).
* **Behaviour tokens** (``model.behavior_tokens``): ``embedding`` adds a learned vector per
  behaviour code (``batch.behaviors``, 0 = PAD) to each input item. ``interleave`` is done by
  the backbone (see `interleave`).
* **Target-behaviour conditioning** (``model.target_behavior``): a learned vector per behaviour
  is added to the output state. Training adds the *true* behaviour of each position's target
  (``batch.target_behaviors``), so the model learns p(next item | history, next behaviour);
  evaluation and serving add ``model.target_behavior`` (e.g. 5 = "an item the user will rate
  5"). The target's behaviour is never an input of any position, so nothing leaks.

The feature tables are data, not weights: they are non-persistent buffers (moved by ``.to``,
left out of state dicts and safetensors). A model is rebuilt by `build_model`, then
`attach_features` with the same tables, then `load_weights`.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import nn

from seqrec.errors import SeqrecError
from seqrec.models.base import Needs
from seqrec.options import Strict


class SideOptions(Strict):
    """Side information and behaviours (issue 7), for the backbones that own a `SideInputs`."""

    side_fusion: Literal["none", "sum", "concat", "gated"] = "none"
    """How item features (data.item_features) join the input item-id vector: sum, concat +
    Linear back to hidden, or a learned per-dimension sigmoid gate."""
    side_output: bool = False
    """Fuse the output item table too (default: the id table only, so scoring stays one matmul
    over a stored matrix)."""
    behavior_tokens: Literal["none", "embedding", "interleave"] = "none"
    """Behaviours (data.behavior_col) in the input: a behaviour embedding added to each item,
    or item and action tokens interleaved (sasrec only; the sequence doubles in length)."""
    behavior_vocab: int = Field(6, ge=2)
    """Behaviour codes 0..behavior_vocab-1 (0 = PAD; MovieLens ratings 1-5: 6)."""
    target_behavior: int | None = None
    """Condition next-item prediction on the target's behaviour: training uses each target's
    true behaviour, evaluation and serving this value (e.g. 5); None = unconditioned."""

    def side_needs(self) -> Needs:
        return Needs(
            behaviors=self.behavior_tokens != "none" or self.target_behavior is not None,
            item_features=self.side_fusion != "none",
        )


class FieldEncoder(nn.Module):
    """Embeds one feature field of the rows ``ids`` to [N, D]."""

    def __init__(self, kind: str, vocab: int, hidden: int) -> None:
        super().__init__()
        self.kind = kind
        if kind in ("categorical", "multi"):
            self.emb = nn.Embedding(vocab, hidden, padding_idx=0)
            nn.init.normal_(self.emb.weight, std=0.02)
            with torch.no_grad():
                self.emb.weight[0].zero_()
        else:
            self.proj = nn.Linear(vocab, hidden)
            nn.init.normal_(self.proj.weight, std=0.02)
            nn.init.zeros_(self.proj.bias)

    def forward(self, values: torch.Tensor) -> torch.Tensor:
        if self.kind == "categorical":
            return self.emb(values)
        if self.kind == "multi":  # mean over the present ids; an item with none gets zeros
            present = (values != 0).to(self.emb.weight.dtype)
            summed = (self.emb(values) * present.unsqueeze(-1)).sum(-2)
            return summed / present.sum(-1, keepdim=True).clamp(min=1.0)
        x = values.unsqueeze(-1) if self.kind == "numeric" else values
        return self.proj(x.to(self.proj.weight.dtype))


class SideInputs(nn.Module):
    """Feature fusion, behaviour embeddings and target-behaviour conditioning of one backbone."""

    def __init__(self, cfg: SideOptions, hidden: int, n_items: int) -> None:
        """``cfg``: the backbone's side options (a config without them passes SideOptions(),
        everything off)."""
        super().__init__()
        self.cfg, self.n_items, self.hidden = cfg, n_items, hidden
        self.fields: nn.ModuleDict | None = None
        self.names: list[str] = []
        d = hidden
        self.behavior_emb = None
        if cfg.behavior_tokens != "none":
            self.behavior_emb = nn.Embedding(cfg.behavior_vocab, d, padding_idx=0)
            nn.init.normal_(self.behavior_emb.weight, std=0.02)
        self.target_emb = None
        if cfg.target_behavior is not None:
            self.target_emb = nn.Embedding(cfg.behavior_vocab, d)
            nn.init.normal_(self.target_emb.weight, std=0.02)

    @property
    def active(self) -> bool:
        return self.fields is not None or self.behavior_emb is not None

    # ------------------------------------------------------------------ features
    def attach_features(self, features) -> None:
        """Build the field encoders for ``features`` (a `data.features.Features` with
        n_items + 1 rows) and keep its arrays as non-persistent buffers."""
        cfg = self.cfg
        if cfg.side_fusion == "none":
            raise SeqrecError(
                "item features were given but model.side_fusion=none; set it to sum, concat "
                "or gated, or drop data.item_features"
            )
        if features.n_rows != self.n_items + 1:
            raise SeqrecError(
                f"item features have {features.n_rows} rows but the model has "
                f"{self.n_items + 1} (items + PAD); they belong to another store"
            )
        if not features.fields:
            raise SeqrecError(f"no item feature fields were selected from {features.source}")
        d = self.hidden
        self.names = list(features.fields)
        self.fields = nn.ModuleDict(
            {n: FieldEncoder(f.kind, f.vocab, d) for n, f in features.fields.items()}
        )
        for n, f in features.fields.items():
            self.register_buffer(f"table_{n}", torch.as_tensor(f.values), persistent=False)
        if cfg.side_fusion == "concat":
            self.fuse = nn.Linear((len(self.names) + 1) * d, d)
        elif cfg.side_fusion == "gated":
            self.fuse = nn.Linear(2 * d, d)
            nn.init.zeros_(self.fuse.bias)  # g = 0.5 at start: half id, half features

    def _field_vectors(self, rows: torch.Tensor) -> list[torch.Tensor]:
        """One [N, D] vector per field for item rows ``rows`` [N] (ids above n_items, e.g. a
        mask token, read the unknown row 0)."""
        rows = torch.where(rows > self.n_items, torch.zeros_like(rows), rows)
        return [self.fields[n](getattr(self, f"table_{n}")[rows]) for n in self.names]

    def _fuse(self, e: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """Fused vectors [N, D] from id vectors ``e`` [N, D] of item rows ``rows`` [N]."""
        parts = self._field_vectors(rows)
        mode = self.cfg.side_fusion
        if mode == "sum":
            return e + torch.stack(parts).sum(0)
        if mode == "concat":
            return self.fuse(torch.cat([e, *parts], dim=-1))
        s = torch.stack(parts).sum(0)
        g = torch.sigmoid(self.fuse(torch.cat([e, s], dim=-1)))
        return g * e + (1 - g) * s

    def items_in(
        self, item_emb: nn.Embedding, items: torch.Tensor, behaviors: torch.Tensor | None
    ) -> torch.Tensor:
        """Input item vectors [B, L, D] (before any scale, positions or dropout)."""
        if self.fields is None:
            x = item_emb(items)
        else:
            uniq, inv = torch.unique(items, return_inverse=True)
            x = self._fuse(item_emb(uniq), uniq)[inv]
        if self.behavior_emb is not None and self.cfg.behavior_tokens == "embedding":
            x = x + self.behavior_emb(self._behaviors(items, behaviors))
        return x

    def _behaviors(self, items: torch.Tensor, behaviors: torch.Tensor | None) -> torch.Tensor:
        if behaviors is None or behaviors.shape != items.shape:
            raise SeqrecError(
                f"model.behavior_tokens={self.cfg.behavior_tokens} needs batch.behaviors aligned "
                "with the items; use data with data.behavior_col set"
            )
        return behaviors.clamp(0, self.cfg.behavior_vocab - 1) * (items != 0)

    def output_table(self, weight: torch.Tensor) -> torch.Tensor:
        """The scored item table: the id table, or its fused version with ``side_output``."""
        if self.fields is None or not self.cfg.side_output:
            return weight
        rows = torch.arange(weight.shape[0], device=weight.device)
        fused = self._fuse(weight, rows)
        return torch.cat([torch.zeros_like(fused[:1]), fused[1:]])  # PAD row stays zero

    # ------------------------------------------------------------------ behaviours
    def interleave(
        self,
        x: torch.Tensor,
        items: torch.Tensor,
        behaviors: torch.Tensor | None,
        pos: torch.Tensor,
        dropout: nn.Module,
        valid: torch.Tensor,
    ) -> torch.Tensor:
        """Item tokens x [B, L, D] -> [B, 2L, D] laid out (item_1, action_1, item_2, ...).

        action_t = Dropout(behaviour embedding of b_t + ``pos`` of slot t), zero at PAD. The
        state at action_t has seen items and behaviours up to t and predicts item t + 1 (the
        backbone reads states at the odd slots). Right padding is kept (PAD pairs come last),
        so causal attention still needs no mask."""
        a = dropout(self.behavior_emb(self._behaviors(items, behaviors)) + pos) * valid
        return torch.stack([x, a], dim=2).flatten(1, 2)

    def condition(self, h: torch.Tensor, target_behaviors: torch.Tensor | None) -> torch.Tensor:
        """Add the target-behaviour vector: the true one per position when given ([B, L],
        training), else ``model.target_behavior`` for every row (evaluation, serving)."""
        if self.target_emb is None:
            return h
        if target_behaviors is None or target_behaviors.shape != h.shape[:-1]:
            b = torch.full(h.shape[:-1], self.cfg.target_behavior, device=h.device)
        else:
            b = target_behaviors.clamp(0, self.cfg.behavior_vocab - 1)
        return h + self.target_emb(b)


def check_side_config(cfg: SideOptions, features, n_behaviors: int, has_behaviors: bool) -> None:
    """Refuse, before training, a side configuration the data cannot feed."""
    if cfg.side_fusion != "none" and features is None:
        raise SeqrecError(
            f"model.side_fusion={cfg.side_fusion} needs item features; set data.item_features "
            "(a metadata file or auto) or model.side_fusion=none"
        )
    wants = cfg.behavior_tokens != "none" or cfg.target_behavior is not None
    if wants and not has_behaviors:
        raise SeqrecError(
            "model.behavior_tokens / model.target_behavior need behaviours in the data; set "
            "data.behavior_col (e.g. rating) on a file that has them"
        )
    if wants and n_behaviors >= cfg.behavior_vocab:
        raise SeqrecError(
            f"the data has behaviour codes up to {n_behaviors} but model.behavior_vocab="
            f"{cfg.behavior_vocab}; set model.behavior_vocab={n_behaviors + 1}"
        )
    if cfg.target_behavior is not None and not 1 <= cfg.target_behavior < cfg.behavior_vocab:
        raise SeqrecError(
            f"model.target_behavior={cfg.target_behavior} is not a behaviour code 1.."
            f"{cfg.behavior_vocab - 1}"
        )
