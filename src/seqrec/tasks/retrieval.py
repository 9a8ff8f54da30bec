"""Next-item retrieval: rank every item by how likely it comes next, scored by full ranking.

A training row is one user's training sequence (its window of ``data.max_len`` + 1 items:
inputs and next-item targets); one epoch is every training user once, in a (seed, epoch)
permutation. With ``train.samples=prefixes`` a row is one prefix of a training sequence with a
target after its last slot only, and an epoch is every prefix once. The loss is the configured objective (chunked full cross-entropy, BCE, sampled
softmax, cloze) plus the model's auxiliary loss, a mean over the batch's target positions.
Validation ranks each validation user's held-out item against the whole catalogue
(``eval.ranking.evaluate``); early stopping monitors NDCG@10; the test split is ranked once, and
its per-user ranks become the run's test_ranks.npy (confidence intervals, paired tests).

Under DDP, evaluation users are sharded: each rank ranks its contiguous slice with the
unchanged evaluator and the ranks are all-gathered in order, so every rank computes the same
metrics and takes the same early-stopping decision.
"""

from __future__ import annotations

import io
import math
import time
from dataclasses import replace
from typing import Any

import numpy as np
import torch
from torch import nn

from seqrec.data.batches import SeqBatch, training_batch
from seqrec.data.split import Split
from seqrec.data.store import SequenceStore
from seqrec.errors import SeqrecError
from seqrec.eval.domains import domain_labels, start_domain_ranks
from seqrec.eval.ranking import (
    EvalResult,
    evaluate,
    rank_rows,
    ranking_protocol,
    result_from_ranks,
    with_domain_metrics,
)
from seqrec.models import build_model
from seqrec.models.common import count_parameters
from seqrec.models.inputs import prepare_inputs
from seqrec.models.registry import flops_per_interaction
from seqrec.objectives import build_objective
from seqrec.recipe import RunConfig
from seqrec.tasks.base import Counting, Task, Validation

TEST_OUTPUT = "_test_ranks"
"""The results key of the per-user test ranks (the run folder writes them to test_ranks.npy)."""


def keep_fraction(rows: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """The first ``round(fraction * n)`` (at least 1) of a (seed)-derived permutation of
    ``rows``, sorted: nested across fractions, so a smaller data budget is a subset of a larger."""
    if fraction >= 1 or not len(rows):
        return rows
    n = max(1, round(fraction * len(rows)))
    order = np.random.default_rng([seed, 0x5EED]).permutation(len(rows))
    return rows[np.sort(order[:n])]


def last_target_only(batch: SeqBatch) -> SeqBatch:
    """A prefix row trains on the item after its last slot only: every other target is
    zeroed (and so is its target behaviour), so no loss reads a state at an earlier slot."""
    last = torch.zeros_like(batch.targets, dtype=torch.bool)
    rows = torch.arange(len(batch.lengths))
    last[rows, batch.lengths - 1] = True
    tbeh, tdom = batch.target_behaviors, batch.target_domains
    return replace(
        batch,
        targets=batch.targets * last,
        target_behaviors=None if tbeh is None else tbeh * last,
        target_domains=None if tdom is None else tdom * last,
    )


class RetrievalTask(Task):
    """Next-item prediction over a leave-one-out or temporal `Split` (module docstring)."""

    name = "retrieval"
    counting = Counting("train_interactions", "epoch_targets", "interactions_per_s")

    def __init__(
        self, cfg: RunConfig, store: SequenceStore, split: Split, device: torch.device, dist
    ) -> None:
        if not isinstance(split, Split):
            raise SeqrecError(
                f"task.name=retrieval trains on a retrieval split, got {type(split).__name__}; "
                "load the data with seqrec.tasks.load_task_data(cfg)"
            )
        self.cfg, self.store, self.split, self.device, self.dist = cfg, store, split, device, dist
        self.model = build_model(cfg.model, store.n_items, cfg.data.max_len)
        # item features (attached before the trainer moves the model and builds the
        # optimiser), and the per-event arrays (timestamps, behaviours) its batches carry
        inputs = prepare_inputs(self.model, cfg, store)
        self.timestamps, self.behaviors = inputs.timestamps, inputs.behaviors
        # multi-domain data: per-domain metrics always, the per-event codes for a model that
        # reads them (Needs.domains)
        self.domains = inputs.domains
        self.domain_labels = domain_labels(store, events=inputs.domains is not None)
        self.item_features = inputs.item_features or None
        self.objective = build_objective(cfg.objective)
        tr = split.train
        keep = (tr.ends - tr.starts) >= 2  # a training row needs one (input, next item) pair
        self.train_rows = keep_fraction(
            np.flatnonzero(keep), cfg.data.train_fraction, cfg.train.seed
        )
        if not len(self.train_rows):
            how = split.protocol.get("split", "chosen")
            raise SeqrecError(
                f"no training sequence has 2 or more items after the {how} split, so there is "
                "nothing to learn from; use data with longer histories"
            )
        self.prefix_rows, self.prefix_ends = self._prefixes()
        units = len(self.train_rows) if self.prefix_rows is None else len(self.prefix_rows)
        self.steps_per_epoch = max(1, math.ceil(units / cfg.train.batch_size))
        self._ends_epoch, self._ends = -1, None
        self.valid_rows = self._valid_subset()
        self.popularity = np.bincount(store.items, minlength=store.n_items + 1)

    # ------------------------------------------------------------------ identity
    @property
    def tag(self) -> str:
        return self.cfg.model.name

    def accounting(self) -> dict[str, Any]:
        lengths = np.minimum(self.split.train.lengths(), self.cfg.data.max_len)
        flops = flops_per_interaction(self.cfg.model, self.store.n_items, float(lengths.mean()) / 2)
        return {"params": count_parameters(self.model), "flops_per_interaction": flops}

    def init_module(self) -> nn.Module:
        return self.model

    # ------------------------------------------------------------------ training
    def _prefixes(self) -> tuple[np.ndarray | None, np.ndarray | None]:
        """``train.samples=prefixes``: (training row, window end) of every prefix with one
        input and its next item, i.e. ends start+2 .. end of each kept row; (None, None)
        otherwise. One repeat/cumsum, no loop over users."""
        if self.cfg.train.samples != "prefixes":
            return None, None
        tr = self.split.train
        rows = self.train_rows
        counts = (tr.ends[rows] - tr.starts[rows] - 1).astype(np.int64)
        first = np.cumsum(counts) - counts
        offset = np.arange(int(counts.sum()), dtype=np.int64) - np.repeat(first, counts)
        return np.repeat(rows, counts), np.repeat(tr.starts[rows] + 2, counts) + offset

    def epoch_order(self, epoch: int) -> np.ndarray:
        """Training rows (``sequences``) or prefix indices (``prefixes``) in a (seed, epoch)
        order."""
        rng = np.random.default_rng([self.cfg.train.seed, epoch])
        if self.prefix_rows is not None:
            return rng.permutation(len(self.prefix_rows))
        return self.train_rows[rng.permutation(len(self.train_rows))]

    def window_ends(self, epoch: int) -> np.ndarray:
        """End of each training row's window this epoch (``train.window``).

        ``random`` draws, per user and epoch from (seed, epoch), where a max_len + 1 window ends
        inside a longer training sequence, so a resumed run sees the same windows.
        """
        tr = self.split.train
        if self.cfg.train.window == "last":
            return tr.ends
        if self._ends_epoch != epoch:
            slack = np.maximum((tr.ends - tr.starts) - (self.cfg.data.max_len + 1), 0)
            rng = np.random.default_rng([self.cfg.train.seed, epoch, 1])
            self._ends = tr.ends - np.floor(rng.random(len(slack)) * (slack + 1)).astype(np.int64)
            self._ends_epoch = epoch
        return self._ends

    def batch(self, rows: np.ndarray, epoch: int) -> SeqBatch:
        tr = self.split.train
        if self.prefix_rows is None:
            ends = self.window_ends(epoch)[rows]
        else:  # ``rows`` index prefixes: their training row and where each one ends
            rows, ends = self.prefix_rows[rows], self.prefix_ends[rows]
        batch = training_batch(
            self.store.items,
            self.timestamps,
            tr.users[rows],
            tr.starts[rows],
            ends,
            self.cfg.data.max_len,
            self.behaviors,
            self.domains,
        )
        if self.prefix_rows is not None:
            batch = last_target_only(batch)
        return batch.to(self.device)

    def loss(self, net: Any, batch: SeqBatch) -> torch.Tensor:
        return self.objective(net, batch)

    def count(self, batch: SeqBatch) -> int:
        return int((batch.targets != 0).sum())

    # ------------------------------------------------------------------ evaluation
    def _valid_subset(self) -> np.ndarray:
        n = len(self.split.valid)
        cap = self.cfg.eval.valid_max_users
        if cap is None or cap >= n:
            return np.arange(n)
        return np.sort(np.random.default_rng(self.cfg.train.seed).choice(n, cap, replace=False))

    def evaluate_view(self, name: str, rows: np.ndarray | None = None) -> EvalResult:
        """Full-ranking metrics of the split ``name`` (valid / test), ``rows`` of it or all."""
        view = getattr(self.split, name)
        sel = np.arange(len(view)) if rows is None else rows
        if self.dist.enabled:
            return self._evaluate_sharded(name, view, sel)
        return evaluate(
            self.model,
            self.store.items,
            view.starts[sel],
            view.ends[sel],
            view.targets[sel],
            self.cfg.data.max_len,
            self.cfg.eval,
            self.device,
            popularity=self.popularity,
            split_protocol={**self.split.protocol, "evaluated": name},
            timestamps=self.timestamps,
            behaviors=self.behaviors,
            domains=self.domain_labels,
        )

    def _evaluate_sharded(self, name: str, view, sel: np.ndarray) -> EvalResult:
        """Each rank ranks its slice of the users; every rank gets all ranks and the metrics."""
        t0 = time.perf_counter()
        local = self.dist.shard(sel)
        ranks, repeats = np.empty(0, dtype=np.int64), 0
        max_len, items = self.cfg.data.max_len, self.store.items
        collect = start_domain_ranks(self.domain_labels, self.cfg.eval, items, view.starts[local],
                                     view.ends[local], view.targets[local], max_len,
                                     seed=self.dist.rank)  # fmt: skip
        if len(local):
            ranks, repeats = rank_rows(
                self.model,
                self.store.items,
                view.starts[local],
                view.ends[local],
                view.targets[local],
                self.cfg.data.max_len,
                self.cfg.eval,
                self.device,
                popularity=self.popularity,
                seed=self.dist.rank,  # sampled metrics: one negative stream per rank
                timestamps=self.timestamps,
                behaviors=self.behaviors,
                domains=self.domain_labels,
                collect=collect,
            )
        ranks = self.dist.gather_shards(ranks, len(sel))
        if collect is not None:
            gather = lambda a: self.dist.gather_shards(a, len(sel))  # noqa: E731
            collect = collect.merged(gather, view.targets[sel])
        share = self.dist.all_sum([float(repeats)])[0] / len(sel) if len(sel) else 0.0
        protocol = ranking_protocol(
            self.cfg.eval,
            self.cfg.data.max_len,
            {**self.split.protocol, "evaluated": name, "processes": self.dist.world_size,
             "repeat_share": share},
        )  # fmt: skip
        result = result_from_ranks(ranks, self.cfg.eval, protocol, time.perf_counter() - t0)
        return with_domain_metrics(result, ranks, collect, self.cfg.eval)

    def validate(self, state: dict) -> Validation:
        res = self.evaluate_view("valid", self.valid_rows)
        logged = {
            f"valid/{k}": v
            for k, v in res.metrics.items()
            if "@" in k and k.split("@")[1] in {"10", "20"}
        }
        return Validation(
            res.metrics["NDCG@10"], {"eval_seconds": res.seconds, **logged}, res.metrics
        )

    def after_validation(self, state: dict) -> list[dict[str, Any]]:
        """``train.log_test``: the test metrics of the current weights, a diagnostic that
        never selects or stops."""
        if not self.cfg.train.log_test:
            return []
        peek = self.evaluate_view("test")
        return [
            {
                "event": "test_peek",
                "epoch": state["epoch"],
                "step": state["global_step"],
                **{f"test/{k}": peek.metrics[k] for k in ("HR@10", "NDCG@10")},
            }
        ]

    def report(self, bar, state: dict, val: Validation, improved: bool, epoch_seconds: float):
        bar.report(state["epoch"], val.value, val.metrics["HR@10"], state["best"], improved)

    def start_fields(self, acct: dict, extra: dict) -> dict[str, Any]:
        features = {"item_features": self.item_features} if self.item_features else {}
        return {
            **acct,
            **features,
            **extra,
            "train_users": len(self.train_rows),
            "steps_per_epoch": self.steps_per_epoch,
        }

    def start_line(self, acct: dict, processes: str) -> str:
        p, f = acct["params"], acct["flops_per_interaction"]
        return (
            f"{self.cfg.model.name}: {p['total']:,} parameters ({p['embedding']:,} embedding, "
            f"{p['non_embedding']:,} other), {f['train'] / 1e6:.2f} MFLOPs per training "
            f"interaction, {len(self.train_rows):,} training users, "
            f"{self.steps_per_epoch} steps/epoch{processes}"
        )

    # ------------------------------------------------------------------ the end
    def final(self) -> dict[str, Any]:
        valid = self.evaluate_view("valid")
        test = self.evaluate_view("test")
        return {"valid": valid.to_json(), "test": test.to_json(), TEST_OUTPUT: test.ranks}

    def summary(self, state: dict, throughput: dict) -> dict[str, Any]:
        """Which weights were tested (``train.select``), the data trained on, throughput."""
        train = self.cfg.train
        last = train.select == "last"
        # the epoch counter ends one past the last epoch when every epoch ran
        final_epoch = state["epoch"] - (state["epoch"] >= train.epochs)
        return {
            "selected": "last epoch" if last else "best validation NDCG@10",
            "tested_epoch": final_epoch if last else state["best_epoch"],
            "train_data": {
                "users": len(self.train_rows),
                "interactions": int(self.split.train.lengths()[self.train_rows].sum()),
                "fraction": self.cfg.data.train_fraction,
            },
            "throughput": throughput,
        }


def output_files(results: dict) -> dict[str, bytes]:
    """Take the per-user test ranks out of ``results``: {file name: bytes} for the run folder."""
    buf = io.BytesIO()
    np.save(buf, results.pop(TEST_OUTPUT), allow_pickle=False)
    return {"test_ranks.npy": buf.getvalue()}
