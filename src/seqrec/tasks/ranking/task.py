"""The ranking (CTR) task: P(positive action | history, candidate), scored by AUC / GAUC.

A training row is one example (user, history, candidate, label). One epoch is the real
training events plus ``task.sampled_negatives`` unseen items per positive, drawn from (seed,
epoch), in a (seed, epoch) permutation (or in shuffled same-user runs with
``task.pairwise_weight``), so a resumed run replays the same batches. The loss is BCE with
logits (+ the weighted within-user pairwise BPR term), a mean over the batch's examples.
Validation scores the validation split's real events; early stopping monitors
``task.monitor`` (AUC or GAUC); the test split is scored once, and its per-example
probabilities become the run's test_predictions.npz.

Under DDP each rank scores its contiguous slice of the examples and the probabilities are
all-gathered in order, so every rank computes the same metrics. The BCE term's gradient is
then exactly the single-process one; the pairwise term counts the pairs inside each rank's
slice (same-user runs stay together, except where a slice boundary cuts one).
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import torch
from torch import nn

from seqrec.data.store import SequenceStore
from seqrec.errors import SeqrecError
from seqrec.eval.ctr import ctr_metrics
from seqrec.models import build_model
from seqrec.models.common import count_parameters
from seqrec.models.inputs import prepare_inputs
from seqrec.recipe import RunConfig
from seqrec.tasks.base import Counting, Task, Validation
from seqrec.tasks.ranking.baselines import TEST_OUTPUT, ranker_name, split_results, untrained
from seqrec.tasks.ranking.examples import (
    Examples,
    RankingData,
    epoch_examples,
    group_by_user,
    returning_events,
)
from seqrec.tasks.ranking.head import LogisticRanker, Ranker, RankingHead
from seqrec.tasks.ranking.inputs import RankingBatch, RankingInputs
from seqrec.tasks.ranking.itemknn import ItemKNN
from seqrec.tasks.ranking.popularity import popularity_logit, popularity_scores


def pairwise_loss(logits: torch.Tensor, labels: torch.Tensor, users: torch.Tensor) -> torch.Tensor:
    """Mean of softplus(s_neg − s_pos) over every (positive, negative) pair of the same user in
    the batch (BPR on the within-user order, the order GAUC scores); 0 without such a pair."""
    pos, neg = labels > 0.5, labels <= 0.5
    pairs = (users[:, None] == users[None, :]) & pos[:, None] & neg[None, :]
    if not bool(pairs.any()):
        return logits.sum() * 0.0
    margin = logits[None, :] - logits[:, None]  # [i, j] = s_j - s_i, i positive, j negative
    return torch.nn.functional.softplus(margin[pairs]).mean()


def build_head(cfg: RunConfig, store: SequenceStore, inputs: RankingInputs) -> RankingHead:
    """The configured head: the logistic baseline, or the encoder + ranking head."""
    item_shape, user_shape = inputs.shapes()
    if cfg.task.baseline == "logistic":
        return LogisticRanker(store.n_users, store.n_items, item_shape, user_shape)
    encoder = build_model(cfg.model, store.n_items, cfg.data.max_len)
    n_beh = store.n_behaviors if cfg.task.history_behaviors else 0
    return Ranker(
        encoder, cfg.model.hidden, cfg.model.dropout, cfg.task, store.n_items, n_beh,
        item_shape, user_shape,
    )  # fmt: skip


class RankingTask(Task):
    """A trained ranker over `RankingData` (module docstring)."""

    name = "ranking"
    counting = Counting("train_examples", "epoch_examples", "examples_per_s")

    def __init__(
        self, cfg: RunConfig, store: SequenceStore, data: RankingData, device: torch.device, dist
    ) -> None:
        if not isinstance(data, RankingData):
            raise SeqrecError(
                f"task.name=ranking trains on ranking examples, got {type(data).__name__}; "
                "load the data with seqrec.tasks.load_task_data(cfg)"
            )
        if untrained(cfg):
            raise SeqrecError(
                f"the {cfg.task.baseline} baseline trains nothing; score it with "
                "seqrec.tasks.untrained_results (or `seqrec train`)"
            )
        self.cfg, self.store, self.data, self.device, self.dist = cfg, store, data, device, dist
        # what the weights are fitted on (task.train_min_age_s); statistics use all of data
        self.fit_data = returning_events(data, store, cfg.task.train_min_age_s)
        self.inputs = RankingInputs(cfg, store)
        self.model: RankingHead = build_head(cfg, store, self.inputs)
        if self.model.item_prior:
            logit = popularity_logit(popularity_scores(data, cfg.task.popularity_prior))
            self.model.set_prior_logit(torch.from_numpy(logit).float())
        if cfg.task.knn_feature:
            if store.behaviors is None:
                raise SeqrecError("task.knn_feature reads behaviour values; set data.behavior_col")
            values = np.asarray(store.behaviors)
            self.inputs.knn = ItemKNN(store, values, data.protocol["t_valid"])
        if self.model.encoder is not None:  # the encoder's own data needs, as in retrieval
            needs = prepare_inputs(self.model.encoder, cfg, store)
            self.inputs.timestamps = needs.timestamps
            if needs.behaviors is not None:
                self.inputs.behaviors = needs.behaviors
        k = cfg.task.sampled_negatives
        fit = self.fit_data.train
        per_epoch = len(fit) + k * int(fit.labels.sum())
        self.steps_per_epoch = max(1, math.ceil(per_epoch / cfg.train.batch_size))
        self.loss_fn = nn.BCEWithLogitsLoss()
        self._epoch_cache: tuple[int, Examples] | None = None

    # ------------------------------------------------------------------ identity
    @property
    def tag(self) -> str:
        return f"ranking-{ranker_name(self.cfg)}"

    def accounting(self) -> dict[str, Any]:
        return {"params": count_parameters(self.model)}

    def init_module(self) -> nn.Module:
        if self.model.encoder is None:
            raise SeqrecError("train.init_from loads an encoder; the baselines have none")
        # a retrieval run of the same encoder over the same data: its item table and blocks
        # start the ranker (retrieval and ranking share item vectors)
        return self.model.encoder

    # ------------------------------------------------------------------ training
    def examples(self, epoch: int) -> Examples:
        """This epoch's training examples in training order (cached for the epoch)."""
        if self._epoch_cache is None or self._epoch_cache[0] != epoch:
            k, seed = self.cfg.task.sampled_negatives, self.cfg.train.seed
            ex = epoch_examples(self.fit_data, k, seed, epoch)
            if self.cfg.task.pairwise_weight > 0:
                ex = group_by_user(ex, seed, epoch)
            self._epoch_cache = (epoch, ex)
        return self._epoch_cache[1]

    def epoch_order(self, epoch: int) -> np.ndarray:
        return np.arange(len(self.examples(epoch)))

    def batch(self, rows: np.ndarray, epoch: int) -> RankingBatch:
        return self.inputs.batch(self.examples(epoch).take(rows), self.device)

    def loss(self, net: Any, batch: RankingBatch) -> torch.Tensor:
        logits = net(batch.seq, batch.candidates, batch.feats)
        loss = self.loss_fn(logits, batch.labels)
        if self.cfg.task.pairwise_weight > 0:
            users = torch.from_numpy(batch.users).to(self.device)
            loss = loss + self.cfg.task.pairwise_weight * pairwise_loss(logits, batch.labels, users)
        return loss

    def count(self, batch: RankingBatch) -> int:
        return len(batch.labels)

    # ------------------------------------------------------------------ evaluation
    @torch.inference_mode()
    def _predict(self, ex: Examples, batch_size: int) -> np.ndarray:
        was = self.model.training
        self.model.eval()
        out = np.empty(len(ex), dtype=np.float64)
        for s in range(0, len(ex), batch_size):
            part = ex.take(np.arange(s, min(s + batch_size, len(ex))))
            b = self.inputs.batch(part, self.device)
            out[s : s + len(part)] = (
                torch.sigmoid(self.model(b.seq, b.candidates, b.feats)).double().cpu()
            )
        self.model.train(was)
        return out

    def predict(self, ex: Examples, batch_size: int | None = None) -> np.ndarray:
        """Probabilities for ``ex`` (eval mode), in the examples' order; under DDP every rank
        scores its slice and receives all of them."""
        bs = batch_size or max(self.cfg.train.batch_size, 1024)
        if not self.dist.enabled:
            return self._predict(ex, bs)
        local = self._predict(ex.take(self.dist.shard(np.arange(len(ex)))), bs)
        return self.dist.gather_shards(local, len(ex))

    def evaluate(self, ex: Examples) -> dict[str, Any]:
        """AUC, GAUC, log loss and calibration of ``ex``, with the seconds they took."""
        t0 = time.perf_counter()
        probs = self.predict(ex)
        return {**ctr_metrics(probs, ex.labels, ex.users), "seconds": time.perf_counter() - t0}

    def validate(self, state: dict) -> Validation:
        res = self.evaluate(self.data.valid)
        fields = {"train_loss": state["train_loss"], **{f"valid/{k}": v for k, v in res.items()}}
        return Validation(res[self.cfg.task.monitor], fields, res)

    def report(self, bar, state: dict, val: Validation, improved: bool, epoch_seconds: float):
        res = val.metrics
        bar.console.print(
            f"epoch {state['epoch']:3d}  loss {state['train_loss'] or float('nan'):.4f}  valid "
            f"AUC {res['AUC']:.4f}  GAUC {res['GAUC']:.4f}  logloss {res['LogLoss']:.4f}  best "
            f"{state['best']:.4f}{' *' if improved else ''}  ({epoch_seconds:.0f}s train)",
            highlight=False,
        )

    def start_fields(self, acct: dict, extra: dict) -> dict[str, Any]:
        return {**acct, "steps_per_epoch": self.steps_per_epoch,
                "protocol": self.fit_data.protocol, **extra}  # fmt: skip

    def start_line(self, acct: dict, processes: str) -> str:
        return (
            f"ranking {self.tag}: {acct['params']['total']:,} parameters, "
            f"{len(self.fit_data.train):,} training events (+{self.cfg.task.sampled_negatives} "
            f"sampled negatives per positive), {self.steps_per_epoch} steps/epoch{processes}"
        )

    # ------------------------------------------------------------------ the end
    def final(self) -> dict[str, Any]:
        test_probs = self.predict(self.data.test)
        valid = self.evaluate(self.data.valid)
        test = ctr_metrics(test_probs, self.data.test.labels, self.data.test.users)
        protocol = self.fit_data.protocol
        return {
            "valid": split_results(valid, protocol, "valid"),
            "test": split_results(test, protocol, "test"),
            TEST_OUTPUT: test_probs,
        }

    def summary(self, state: dict, throughput: dict) -> dict[str, Any]:
        return {"task": "ranking", "ranker": ranker_name(self.cfg)}
