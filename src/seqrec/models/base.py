"""The model contract: what every sequence model is, and what it declares about itself.

Everything outside ``models/`` (trainer, evaluator, server, packaging, ``train.init_from``)
talks to a model only through this contract, so a new model is one file plus one registry line.
The contract has two halves:

* ``ModelConfig`` — the model's typed options. Each model file subclasses it with its own
  fields and a ``name`` literal; the run config's model section is the union of the registered
  subclasses, keyed on ``name``. The class also declares, without building anything, what the
  model needs from the data (`Needs`) and what it offers (objectives it trains with, whether it
  can encode histories for the ranking task, cosine output).
* ``SeqModel`` — the ``nn.Module``: ``forward(batch) -> hidden [B, L, D]`` for training,
  ``last_hidden(batch) -> [B, D]`` (the user state ranked at inference), ``item_weights``
  ([n_items + 1, D], the table every state is scored against), and optional hooks with safe
  defaults (an auxiliary loss, item features, catalogue-bound state).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from pydantic import Field, model_validator
from torch import nn

from seqrec.data.batches import SeqBatch
from seqrec.errors import SeqrecError
from seqrec.options import Strict


@dataclass(frozen=True)
class Needs:
    """What a configured model reads from the data beyond item ids."""

    timestamps: bool = False
    """Batches carry each event's timestamp (HSTU's time-gap bias)."""
    behaviors: bool = False
    """Batches carry each event's behaviour code (behaviour tokens, target behaviour)."""
    item_features: bool = False
    """The catalogue's item features are attached before training and before loading weights
    (side-information fusion, SRT's feature-built item table)."""
    domains: bool = False
    """Batches carry each event's domain code (``SeqBatch.domains``, multi-domain data): a model
    with domain embeddings reads them; every model gets per-domain metrics without it."""


class ModelConfig(Strict):
    """Options every model has. Subclasses add their own and narrow ``name`` to a literal."""

    name: str
    """Model family (``seqrec models`` lists them)."""
    hidden: int = Field(64, ge=1)
    layers: int = Field(2, ge=1)
    dropout: float = Field(0.2, ge=0, lt=1)

    objectives: ClassVar[tuple[str, ...]] = ("ce", "bce", "ssm", "gbce")
    """objective.name values the model trains with (BERT4Rec: cloze only)."""
    training_samples: ClassVar[tuple[str, ...]] = ("sequences", "prefixes")
    """train.samples values the model trains on; the first is what tests build it with. A
    model whose state at a slot reads later slots of its window (BSARec) lists only
    ``prefixes``, where each row's one target follows its last slot."""
    ranking_encoder: ClassVar[bool] = False
    """The ranking task's head can be built on this model's history states."""
    cosine_output: ClassVar[bool] = False
    """The model implements ``l2_norm_output`` (cosine scores, for the normalised sampled
    softmax); such a config class has that field."""

    def needs(self) -> Needs:
        """What this configuration reads from the data (some needs depend on options)."""
        return Needs()


class HeadsConfig(ModelConfig):
    """Attention models: heads must divide the width."""

    heads: int = Field(1, ge=1)

    @model_validator(mode="after")
    def _heads_divide_width(self) -> HeadsConfig:
        if self.hidden % self.heads:
            raise ValueError(
                f"model.hidden={self.hidden} is not divisible by model.heads={self.heads}; "
                "pick heads that divide the width"
            )
        return self


# Option groups several model families share. A family's config lists exactly the groups its
# code reads, so an option a family would ignore is an unknown key for it, not a silent no-op.


class FeedForwardOption(Strict):
    ffn_mult: float = Field(1.0, gt=0)
    """FFN inner width = ffn_mult * hidden (the SASRec paper uses 1)."""


class AttentionDropoutOption(Strict):
    attn_dropout: float | None = None
    """Dropout on attention probabilities; None = same as ``dropout``."""


class LayerNormOption(Strict):
    ln_eps: float = Field(1e-5, gt=0)
    """LayerNorm epsilon (the official SASRec code uses 1e-8)."""


class PositionsOption(Strict):
    positions: Literal["from_start", "from_end"] = "from_start"
    """Position index of a slot: counted from the oldest item of the window (a query knows only
    how many items precede it, the same at training and inference), or back from the most
    recent one (the official code's fixed left-padded window, where a training query's index
    also says how many window items follow it)."""


class EmbeddingScaleOption(Strict):
    scale_embeddings: bool = True
    """Multiply item embeddings by sqrt(hidden) before adding positions (official SASRec code)."""


class CosineOutputOption(Strict):
    l2_norm_output: bool = False
    """L2-normalise user states and the item table, so scores are cosines; must match
    objective.normalize of the sampled softmax (training and evaluation then score alike)."""


class SeqModel(nn.Module):
    """Base class of every registered model (see the module docstring)."""

    config_class: ClassVar[type[ModelConfig]]
    cfg: ModelConfig
    """The validated config the model was built from (every model keeps it)."""
    causal: ClassVar[bool] = True
    """The state at slot t reads slots <= t only, so every slot trains on its next item (the
    conformance suite checks it). A bidirectional model (BERT4Rec) sets False and trains with
    its own objective."""
    transferable_items: ClassVar[bool] = False
    """Items are encoded from shared features, not per-id rows, so ``train.init_from`` may
    start from a run over another catalogue (SRT)."""

    @property
    def needs(self) -> Needs:
        """What this model reads from the data (its config's `ModelConfig.needs`)."""
        return self.cfg.needs()

    @property
    def catalogue_keys(self) -> tuple[str, ...]:
        """State entries bound to one catalogue, which ``train.init_from`` leaves to the target."""
        return ()

    @property
    def item_weights(self) -> torch.Tensor:
        raise NotImplementedError

    def last_hidden(self, batch: SeqBatch) -> torch.Tensor:
        raise NotImplementedError

    def auxiliary_loss(self, batch: SeqBatch) -> torch.Tensor | None:
        """A training loss term the model owns (contrastive views, an augmenter); None = none.
        The objective adds it to the recommendation loss."""
        return None

    def attach_item_features(self, features) -> dict | None:
        """Receive the catalogue's item features (``Needs.item_features``), before the first
        step and before weights load; may return a report for the run log. Models that declare
        the need override this."""
        raise SeqrecError(
            f"model {type(self).__name__} does not take item features; drop data.item_features"
        )

    @staticmethod
    def flops_per_interaction(cfg: ModelConfig, n_items: int, seq_len: float) -> dict[str, float]:
        """Forward / training FLOPs per scored position (parameter-count estimate by default)."""
        raise NotImplementedError
