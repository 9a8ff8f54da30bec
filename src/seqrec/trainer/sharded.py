"""Training with the item table sharded row-wise across processes (``train.item_sharding``).

Under torchrun every process keeps only its block of the item table's rows, with their AdamW
moments, in a TorchRec ``DistributedModelParallel`` (trainer/sharded_table.py); the rest of
the model (SASRec's position table, blocks and norms) stays data-parallel under DDP as in
trainer/distributed.py. A step then goes:

1. this rank's slice of the global batch, as in `Trainer._step`;
2. the ids the loss reads: the inputs, the targets and one shared set of R negatives drawn on
   rank 0 (from the stream a single process would draw them from) and broadcast;
3. one sharded lookup of those distinct ids: a small table whose rows stand in for the model's
   ``item_emb`` while it runs (ids renumbered into it, PAD kept at 0), so the model and the
   sampled softmax run unchanged on a few thousand rows;
4. backward: DDP averages the layers' gradients, TorchRec sends each row's gradient to its
   owner (averaged the same way), the loss scaling of `Trainer._step` makes both the
   single-process gradient; clipping takes the norm over every rank's rows; AdamW moves this
   rank's rows.

So the optimisation is the single-process one (tests/trainer/test_sharded.py: the losses,
the layers and the gathered table equal one process's to float rounding, dropout off), for
the one combination that needs no more than the rows it reads: SASRec with a sampled softmax
over shared, uniformly drawn negatives (``objective.name=ssm``, ``shared_negatives=true``).
Anything else is refused in one line. Validation, the weights file and checkpoints gather
the table into the ordinary model first (`_pull`), so they are a single-process run's files,
and a resume with any number of processes takes its rows of them (`_push`).
"""

from __future__ import annotations

import math
import time
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from seqrec.data.batches import SeqBatch
from seqrec.data.store import SequenceStore
from seqrec.errors import SeqrecError
from seqrec.objectives.sampled_softmax import sampled_softmax_loss
from seqrec.recipe import RunConfig
from seqrec.trainer.distributed import DistContext
from seqrec.trainer.loop import Trainer
from seqrec.trainer.sharded_table import ShardedTable, require_torchrec

OPTION = "train.item_sharding=rowwise"
MOMENTS = ("exp_avg", "exp_avg_sq")  # AdamW's per-element state, sharded like the rows
FULL_TABLE = "item_emb.weight"


def check_sharding(cfg: RunConfig, dist_ctx: DistContext) -> None:
    """Every refusal, one line each, before any work."""
    m, obj, tr = cfg.model, cfg.objective, cfg.train
    problems = [
        (
            not dist_ctx.enabled,
            "splits the item table across processes; launch with torchrun "
            "--nproc_per_node N (N >= 2), or use train.item_sharding=none",
        ),
        (
            cfg.task.name != "retrieval" or m.name != "sasrec",
            f"trains the retrieval task with model.name=sasrec (got task.name={cfg.task.name}, "
            f"model.name={m.name}); use train.item_sharding=none",
        ),
        (
            obj.name != "ssm" or not obj.shared_negatives or obj.sampling != "global",
            "needs objective.name=ssm with objective.shared_negatives=true and "
            "objective.sampling=global, so a step reads only the rows it scores; set them "
            "or use train.item_sharding=none",
        ),
        (
            getattr(m, "side_fusion", "none") != "none"
            or getattr(m, "behavior_tokens", "none") != "none"
            or getattr(m, "domain_embedding", False),
            "reads item ids only; drop model.side_fusion, model.behavior_tokens and "
            "model.domain_embedding, or use train.item_sharding=none",
        ),
        (
            tr.item_updates != "dense",
            "moves each process's rows with AdamW itself; use train.item_updates=dense",
        ),
        (tr.compile, "does not run under torch.compile; set train.compile=false"),
        (
            dist_ctx.device(tr.device).type != "cpu",
            "runs on CPU processes over gloo (the only setup tested); use train.device=cpu",
        ),
    ]
    for bad, why in problems:
        if bad:
            raise SeqrecError(f"{OPTION} {why}")
    require_torchrec()


class RowsView(nn.Module):
    """Stands in for the model's ``item_emb`` during a step: the looked-up rows, indexed by
    the renumbered ids (``weight`` is what ``item_weights`` reads)."""

    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        self.weight = weight

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return F.embedding(ids, self.weight)


@contextmanager
def rows_in(model: nn.Module, rows: torch.Tensor):
    """``model.item_emb`` is ``RowsView(rows)`` inside the block, the real table after."""
    table = model.item_emb
    model.item_emb = RowsView(rows)
    try:
        yield
    finally:
        model.item_emb = table


class ShardedTrainer(Trainer):
    """`Trainer` with the item table in a `ShardedTable`; the loop, validation, logging and
    files are the inherited ones.

    ``_fresh`` says which copy of the table is current: ``model`` (the ordinary
    ``item_emb``, after construction, a resume, ``train.init_from`` or loading the selected
    weights), ``shards`` (after a step) or ``both``. A step first pushes a fresher model copy
    into the shards (the first push also moves the optimiser onto this rank's rows:
    ``_pushed``); whatever reads the model (validation, weights, checkpoints) first pulls
    fresher shards into it.
    """

    def __init__(
        self,
        cfg: RunConfig,
        store: SequenceStore,
        data: Any,
        run_dir: Path,
        progress: bool = True,
        dist: DistContext | None = None,
    ) -> None:
        check_sharding(cfg, dist or DistContext())
        super().__init__(cfg, store, data, run_dir, progress, dist)
        with torch.random.fork_rng(devices=[]):  # TorchRec's own initialisation draws
            self.table = ShardedTable(*self.model.item_emb.weight.shape)  # filled at the push
        # the layers under DDP without the table (the inherited wrapper, which held it too,
        # is dropped); the optimiser swaps the table for this rank's rows at the first push
        DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(
            self.model, [FULL_TABLE]
        )
        self.net = self.dist.wrap(self.model)
        self._fresh, self._pushed = "model", False

    # ----------------------------------------------------------------- the two copies
    def _push(self) -> None:
        """Model copy -> shards, and the optimiser onto this rank's rows (with this rank's
        rows of any moments a resumed or continued run loaded for the whole table)."""
        if self._fresh != "model":
            return
        full, shard = self.model.item_emb.weight, self.table.param
        self.table.load(full.detach())
        for group in self.opt.param_groups:
            group["params"] = [shard if p is full else p for p in group["params"]]
        state = self.opt.state.pop(full, None)
        if state:
            lo, hi = self.table.rows
            self.opt.state[shard] = {
                k: v[lo:hi].clone() if k in MOMENTS else v for k, v in state.items()
            }
        self._fresh, self._pushed = "both", True

    @torch.no_grad()
    def _pull(self) -> None:
        """Shards -> model copy, on every rank (evaluation scores every item everywhere)."""
        if self._fresh == "shards":
            self.model.item_emb.weight.copy_(self.table.gather(self.table.local))
            self._fresh = "both"

    @contextmanager
    def _whole_moments(self):
        """Rank 0's optimiser state holds the whole table's moments inside the block, so
        ``opt.state_dict()`` is the one a single process would save."""
        state = self.opt.state.get(self.table.param) or {}
        own = {k: state[k] for k in MOMENTS if k in state}
        whole = {k: self.table.gather(v, everywhere=False) for k, v in own.items()}
        if self.dist.is_main:
            state.update(whole)
        try:
            yield
        finally:
            state.update(own)

    # ----------------------------------------------------------------- inherited hooks
    def resume(self, extension=None) -> None:
        super().resume(extension)
        self._fresh = "model"

    def checkpoint(self, collective: bool = True) -> None:
        """A single-process checkpoint (whole table and moments). After Ctrl-C under torchrun
        the ranks are not in step and nothing can be gathered: the last checkpoint stays."""
        if not self._pushed:  # no sharded step yet: model and optimiser are the ordinary ones
            return super().checkpoint(collective)
        if not collective:
            return None
        self._pull()
        with self._whole_moments():
            super().checkpoint(collective)
        return None

    def _validate(self, epoch_seconds: float, bar) -> bool:
        self._pull()
        return super()._validate(epoch_seconds, bar)

    def _load_selected(self) -> None:
        self._pull()  # train.select=last saves the model as it is now
        super()._load_selected()
        self._fresh = "model"  # the selected weights: newer than the shards

    # ----------------------------------------------------------------- one step
    def _loss(self, batch: SeqBatch) -> torch.Tensor:
        """Sampled softmax over shared negatives, reading only the rows it needs (module
        docstring, steps 2-3); the same value `objectives.base`'s ssm gives on one process."""
        cfg = self.cfg.objective
        valid = batch.targets != 0
        targets = batch.targets[valid]
        # rank 0 makes `sample_negatives(shared=True, sampling="global")`'s draw, from the
        # stream a single process would draw it from
        shape = (1, cfg.n_negatives)
        if self.dist.is_main:
            neg = torch.randint(1, self.store.n_items + 1, shape)
        else:
            neg = torch.empty(shape, dtype=torch.long)
        dist.broadcast(neg, src=0)
        pad = torch.zeros(1, dtype=torch.long, device=batch.items.device)
        ids = torch.cat([pad, batch.items.reshape(-1), targets, neg.to(pad.device).reshape(-1)])
        unique, inverse = torch.unique(ids, return_inverse=True)  # unique[0] = 0: PAD stays 0
        rows = self.table.lookup(unique)
        n_in = batch.items.numel()
        items = inverse[1 : 1 + n_in].view_as(batch.items)
        targets = inverse[1 + n_in : 1 + n_in + len(targets)]
        negatives = inverse[1 + n_in + len(targets) :][None].expand(len(targets), -1)
        with rows_in(self.model, rows):
            hidden = self.net(replace(batch, items=items))
            weight = self.model.item_weights
        return sampled_softmax_loss(hidden[valid], weight, targets, negatives, cfg.temperature)

    def _clip(self, max_norm: float) -> None:
        """`optim.clip_grad_norm` over the layers (identical on every rank after DDP) and
        every rank's rows (summed over ranks)."""
        layers = [p.grad for p in self.model.parameters() if p.grad is not None]
        shard = self.table.param.grad
        own = float(shard.pow(2).sum()) if shard is not None else 0.0
        total = math.sqrt(sum(float(g.pow(2).sum()) for g in layers) + self.dist.all_sum([own])[0])
        factor = min(max_norm / (total + 1e-6), 1.0)
        for g in [*layers, *([shard] if shard is not None else [])]:
            g.mul_(factor)

    def _step(self, rows: np.ndarray) -> tuple[float, int, int, float]:
        """`Trainer._step` with the sharded loss and clipping (same loss scaling)."""
        self._push()
        local = self.dist.shard(rows)
        placeholder = len(local) == 0
        batch = self.task.batch(rows[:1] if placeholder else local, self.state["epoch"])
        t0 = time.perf_counter()
        loss = self.fast.loss(self._loss, batch)
        n_local = 0 if placeholder else self.task.count(batch)
        loss_sum, n_all = self.dist.all_sum([float(loss.detach()) * n_local, n_local])
        value = loss_sum / max(n_all, 1.0)
        if not math.isfinite(value):
            raise SeqrecError(
                f"loss became {value} at step {self.state['global_step']}; "
                "lower train.lr or enable train.grad_clip"
            )
        self.opt.zero_grad(set_to_none=True)
        (loss * (n_local * self.dist.world_size / max(n_all, 1.0))).backward()
        if self.cfg.train.grad_clip:
            self._clip(self.cfg.train.grad_clip)
        self.opt.step()
        self.sched.step()
        self._fresh = "shards"
        return value, int(n_all), n_local, time.perf_counter() - t0
