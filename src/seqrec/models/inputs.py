"""What a model needs from the data, checked and attached in one place.

The trainer, the run loader and the ranking task all call these two functions, so a model's
timestamps, behaviours and item features reach it one way only, and a dataset that cannot feed
a model is refused with one line before any step runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from torch import nn

from seqrec.errors import SeqrecError


@dataclass
class DataInputs:
    """The per-event arrays training and evaluation batches must carry for this model, and a
    report of the item features attached (written to the run log)."""

    timestamps: np.ndarray | None = None
    behaviors: np.ndarray | None = None
    item_features: dict[str, Any] = field(default_factory=dict)


def prepare_inputs(model: nn.Module, cfg, store) -> DataInputs:
    """Check that ``store`` can feed ``model`` (built from ``cfg.model``), attach the item
    features it reads, and return the arrays its batches must carry."""
    from seqrec.models.side_info import setup_side

    _, behaviors = setup_side(model, cfg, store)
    out = DataInputs(behaviors=behaviors)
    if getattr(model, "needs_timestamps", False):
        if store.timestamps is None:
            raise SeqrecError(
                f"model.name={cfg.model.name} with model.time_bias=true needs timestamps, "
                f"but dataset '{store.name}' has none; set model.time_bias=false"
            )
        out.timestamps = store.timestamps
    if getattr(model, "needs_item_features", False):
        import torch

        from seqrec.data.item_tokens import catalogue_tokens

        tokens, out.item_features = catalogue_tokens(cfg.data, cfg.model, store)
        model.set_item_tokens(torch.from_numpy(tokens))
    return out


def attach_for_catalogue(model: nn.Module, cfg, item_ids: np.ndarray) -> None:
    """Before a trained model's weights load (evaluation, serving, packages): re-attach the
    item features it was trained with, aligned to its own ``item_ids``."""
    from seqrec.models.side_info import attach_run_features

    attach_run_features(model, cfg, item_ids)
