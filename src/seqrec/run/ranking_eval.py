"""Re-evaluating a trained ranking run: its weights (or its baseline) on one split again.

`Run.evaluate` of a ranking-task run calls this; it rebuilds the task as the
trainer did (same threads and seed, so the same floating-point sums) and scores real events.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from seqrec.eval.ctr import ctr_metrics
from seqrec.recipe import RunConfig
from seqrec.tasks.ranking.baselines import baseline_probs, untrained
from seqrec.tasks.ranking.inputs import load_ranking_data
from seqrec.tasks.ranking.task import RankingTask
from seqrec.trainer.checkpoint import load_weights
from seqrec.trainer.distributed import DistContext


@dataclass
class RankingEval:
    """AUC, GAUC, log loss and calibration of one split, with the split's protocol."""

    metrics: dict[str, Any]
    protocol: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"metrics": self.metrics, "protocol": self.protocol}


def evaluate_ranking(cfg: RunConfig, weights: Path, split: str) -> RankingEval:
    """Score ``split`` ('valid' | 'test') with the run's weights file (or its baseline)."""
    store, data = load_ranking_data(cfg)
    examples = data.valid if split == "valid" else data.test
    protocol = {**data.protocol, "evaluated": split}
    if untrained(cfg):
        probs = baseline_probs(cfg, store, data)[split]
        return RankingEval(ctr_metrics(probs, examples.labels, examples.users), protocol)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    torch.manual_seed(cfg.train.seed)
    one = DistContext()
    device = one.device(cfg.train.device)
    task = RankingTask(cfg, store, data, device, one)
    task.model.to(device)
    load_weights(weights, task.model)
    return RankingEval(task.evaluate(examples), protocol)
