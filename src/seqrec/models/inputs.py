"""What a model needs from the data, checked and attached in one place.

The trainer, the run loader and the ranking task all call these two functions, so a model's
timestamps, behaviours and item features reach it one way only (its config's `Needs`, its
``attach_item_features``), and a dataset that cannot feed a model is refused with one line
before any step runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import numpy as np

from seqrec.data.features import load_item_features
from seqrec.errors import SeqrecError
from seqrec.models.base import SeqModel
from seqrec.models.domain_inputs import DomainOptions, check_domain_config
from seqrec.models.side_info import SideOptions, check_side_config


@dataclass
class DataInputs:
    """The per-event arrays training and evaluation batches must carry for this model, and a
    report of the item features attached (written to the run log)."""

    timestamps: np.ndarray | None = None
    behaviors: np.ndarray | None = None
    item_features: dict[str, Any] = field(default_factory=dict)
    domains: np.ndarray | None = None
    """Each event's domain code (multi-domain data), for a model whose `Needs` has
    ``domains``: its batches carry ``SeqBatch.domains`` / ``target_domains``."""


def _features(cfg, ids):
    """The configured item features aligned to ``ids`` (a store, or a run's item ids)."""
    features = load_item_features(cfg.data, ids)
    if features is None:
        raise SeqrecError(
            f"model.name={cfg.model.name} reads item features; set data.item_features=auto "
            "(the dataset's metadata file) or a metadata file path"
        )
    return features


def prepare_inputs(model: SeqModel, cfg, store) -> DataInputs:
    """Check that ``store`` can feed ``model`` (built from ``cfg.model``), attach the item
    features it reads, and return the arrays its batches must carry."""
    needs = cfg.model.needs()
    features = None
    if isinstance(cfg.model, SideOptions):
        features = load_item_features(cfg.data, store) if needs.item_features else None
        check_side_config(cfg.model, features, store.n_behaviors, store.has_behaviors)
    out = DataInputs(behaviors=store.behaviors if needs.behaviors else None)
    if needs.domains:
        if not store.has_domains:
            raise SeqrecError(
                f"model.name={cfg.model.name} reads each event's domain, but dataset "
                f"'{store.name}' has none; set data.domain_map (or data.domain_col), or use "
                "a model without domain inputs"
            )
        if isinstance(cfg.model, DomainOptions):
            check_domain_config(cfg.model, store.domain_names)
        out.domains = store.domains
    if needs.timestamps:
        if store.timestamps is None:
            raise SeqrecError(
                f"model.name={cfg.model.name} with model.time_bias=true needs timestamps, "
                f"but dataset '{store.name}' has none; set model.time_bias=false"
            )
        out.timestamps = store.timestamps
    if needs.item_features:
        report = model.attach_item_features(features or _features(cfg, store))
        out.item_features = report or {}
    return out


def attach_for_catalogue(model: SeqModel, cfg, item_ids: np.ndarray) -> None:
    """Before a trained model's weights load (evaluation, serving, packages): re-attach the
    item features it was trained with, aligned to its own ``item_ids``.

    Side-information tables are data, not weights, so they are re-read from
    ``data.item_features`` (the file must still be reachable, under the same path or
    $SEQREC_DATA_DIR). A model whose weights already hold its catalogue (SRT's token buffer)
    needs nothing here.
    """
    if isinstance(cfg.model, SideOptions) and cfg.model.side_needs().item_features:
        ids = SimpleNamespace(item_ids=item_ids, user_ids=None)
        model.attach_item_features(_features(cfg, ids))
