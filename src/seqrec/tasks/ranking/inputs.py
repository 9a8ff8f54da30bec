"""The ranking task's data: the store and its temporal example split, and batches of examples.

``load_ranking_data`` builds the store (whose behaviour values label the events) and the
leak-free temporal split of examples (tasks/ranking/examples.py). `RankingInputs` turns
examples into a `RankingBatch`: the histories as a right-padded `SeqBatch` (with their
behaviours and, for an encoder that reads them, timestamps), the candidates, the side-feature
rows of the candidate and the user, the item-kNN feature, and the labels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from seqrec.data import load_store
from seqrec.data.batches import SeqBatch, history_batch
from seqrec.data.features import Features, load_item_features, load_user_features
from seqrec.data.store import SequenceStore
from seqrec.errors import SeqrecError
from seqrec.recipe import RunConfig
from seqrec.tasks.ranking.examples import Examples, RankingData, ranking_split
from seqrec.tasks.ranking.itemknn import ItemKNN


def load_ranking_data(cfg: RunConfig) -> tuple[SequenceStore, RankingData]:
    """The store of ``cfg.data`` and its ranking examples; refuses data without behaviours
    (nothing to label) and a threshold that gives every training event the same label."""
    store = load_store(cfg.data)
    if store.behaviors is None:
        raise SeqrecError(
            "task.name=ranking labels events by their behaviour value, but the data has none; "
            "set data.behavior_col (e.g. rating) to the column holding it"
        )
    data = ranking_split(
        store,
        np.asarray(store.behaviors),
        cfg.task.positive_threshold,
        cfg.data.temporal_valid_frac,
        cfg.data.temporal_test_frac,
    )
    if not data.train.labels.any() or data.train.labels.all():
        raise SeqrecError(
            f"every training label is {int(data.train.labels[0])} at task.positive_threshold="
            f"{cfg.task.positive_threshold:g}; pick a threshold inside the behaviour values"
        )
    return store, data


def feature_table(feats: Features | None) -> tuple[np.ndarray | None, np.ndarray | None, int]:
    """Features -> (categorical ids [R, K] in one id space, 0 = none; dense [R, Dd]; id count).

    Each categorical / multi-valued field's ids are shifted past the previous fields', so one
    embedding table (or one weight vector) holds every field's values."""
    if feats is None:
        return None, None, 0
    cols, dense, offset = [], [], 0
    for f in feats.fields.values():
        if f.kind in ("categorical", "multi"):
            ids = f.values.reshape(len(f.values), -1).astype(np.int64)
            cols.append(np.where(ids > 0, ids + offset, 0))
            offset += f.vocab - 1
        else:
            dense.append(f.values.reshape(len(f.values), -1).astype(np.float32))
    ids = np.concatenate(cols, 1) if cols else None
    return ids, (np.concatenate(dense, 1) if dense else None), offset + 1


@dataclass
class RankingBatch:
    """One batch of examples on the device."""

    seq: SeqBatch
    """The histories, right-padded (``seq.targets``: the candidates)."""
    candidates: torch.Tensor
    feats: dict[str, torch.Tensor]
    """Side-feature rows (item_ids, item_dense, user_ids, user_dense) and the kNN pair."""
    labels: torch.Tensor
    users: np.ndarray
    """Store rows of the examples' users (the within-user pairwise loss groups by them)."""


class RankingInputs:
    """Everything a batch is gathered from: the store, its behaviours, feature tables."""

    def __init__(self, cfg: RunConfig, store: SequenceStore) -> None:
        self.store = store
        self.max_len = cfg.data.max_len
        use_feats = cfg.task.features
        self.item_ids, self.item_dense, self.n_item_ids = feature_table(
            load_item_features(cfg.data, store) if use_feats else None
        )
        self.user_ids, self.user_dense, self.n_user_ids = feature_table(
            load_user_features(cfg.data, store) if use_feats else None
        )
        if use_feats and self.shapes() == (None, None):
            raise SeqrecError(
                "task.features=true but no features are configured; set "
                "data.item_features / data.user_features (e.g. auto)"
            )
        self.behaviors = store.behaviors if cfg.task.history_behaviors else None
        self.timestamps = None  # set by the task when its encoder reads them
        self.knn: ItemKNN | None = None  # task.knn_feature, set by the task
        self.knn_history = cfg.task.knn_history

    def shapes(self) -> tuple[tuple[int, int] | None, tuple[int, int] | None]:
        """(item, user) feature shapes the head is built for: (id count, dense width)."""

        def one(ids, dense, n):
            if ids is None and dense is None:
                return None
            return (n, 0 if dense is None else dense.shape[1])

        return (
            one(self.item_ids, self.item_dense, self.n_item_ids),
            one(self.user_ids, self.user_dense, self.n_user_ids),
        )

    def batch(self, ex: Examples, device: torch.device) -> RankingBatch:
        """The examples ``ex`` as tensors on ``device``."""
        seq = history_batch(
            self.store.items, self.timestamps, ex.users, ex.starts, ex.ends, ex.items,
            self.max_len, behaviors=self.behaviors, request_times=ex.times,
        )  # fmt: skip
        feats = {}
        for name, table, rows in (
            ("item_ids", self.item_ids, ex.items),
            ("item_dense", self.item_dense, ex.items),
            ("user_ids", self.user_ids, ex.users),
            ("user_dense", self.user_dense, ex.users),
        ):
            if table is not None:
                feats[name] = torch.from_numpy(np.ascontiguousarray(table[rows])).to(device)
        if self.knn is not None:
            knn = self.knn.scores(ex, self.knn_history).astype(np.float32)
            feats["knn"] = torch.from_numpy(knn).to(device)
        labels = torch.from_numpy(ex.labels).to(device)
        seq = seq.to(device)
        return RankingBatch(seq, seq.targets, feats, labels, ex.users)
