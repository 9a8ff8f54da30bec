"""The ranking baselines that train no weights: popularity and item-kNN, scored directly.

They are the ranking task's path with no steps: nothing to optimise, checkpoint or resume, so
no trainer runs; their results have the trained rankers' shape (valid/test metrics and
protocol, parameter counts, the per-example test probabilities).
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np

from seqrec.data.store import SequenceStore
from seqrec.eval.ctr import ctr_metrics
from seqrec.recipe import RunConfig
from seqrec.tasks.ranking.examples import RankingData
from seqrec.tasks.ranking.itemknn import itemknn_probs
from seqrec.tasks.ranking.popularity import popularity_logit, popularity_scores

UNTRAINED = ("popularity", "itemknn")
"""``task.baseline`` values scored directly, with no trainer."""

TEST_OUTPUT = "_test_probs"
"""The results key of the per-example test probabilities (written to test_predictions.npz)."""


def untrained(cfg: RunConfig) -> bool:
    """Whether ``cfg`` is a ranking baseline that trains nothing."""
    return cfg.task.name == "ranking" and cfg.task.baseline in UNTRAINED


def ranker_name(cfg: RunConfig) -> str:
    """The ranking run's model: the baseline, or the encoder under the ranking head."""
    return cfg.task.baseline or cfg.model.name


def split_results(metrics: dict, protocol: dict, part: str) -> dict[str, Any]:
    """One split's results.json section."""
    return {"metrics": metrics, "protocol": {**protocol, "evaluated": part}}


def baseline_probs(cfg: RunConfig, store: SequenceStore, data: RankingData) -> dict:
    """Validation and test probabilities of the baselines that train no weights."""
    table = popularity_scores(data, cfg.task.popularity_prior)
    if cfg.task.baseline == "itemknn":
        return itemknn_probs(store, data, popularity_logit(table), cfg.task.knn_history)
    return {k: table[getattr(data, k).items] for k in ("valid", "test")}


def untrained_results(cfg: RunConfig, store: SequenceStore, data: RankingData) -> dict:
    """A baseline's results: as a trained ranker's, with no step taken."""
    probs = baseline_probs(cfg, store, data)
    metrics = {k: ctr_metrics(probs[k], getattr(data, k).labels, getattr(data, k).users)
               for k in ("valid", "test")}  # fmt: skip
    return {
        "best_epoch": None,
        "steps": 0,
        **{k: split_results(metrics[k], data.protocol, k) for k in ("valid", "test")},
        "params": {"total": 0, "embedding": 0, "non_embedding": 0},
        TEST_OUTPUT: probs["test"],
        "task": "ranking",
        "ranker": ranker_name(cfg),
    }


def output_files(data: RankingData, results: dict) -> dict[str, bytes]:
    """Take the test probabilities out of ``results``: test_predictions.npz (user, item, label,
    probability per test example, for paired comparisons)."""
    test = data.test
    buf = io.BytesIO()
    np.savez(
        buf, users=test.users, items=test.items, labels=test.labels, probs=results.pop(TEST_OUTPUT)
    )
    return {"test_predictions.npz": buf.getvalue()}
