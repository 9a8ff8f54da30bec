"""New items' rows from the contexts that lead to them (``new_items=context``).

Why: on Amazon Beauty (benchmarks/incremental.py) an update whose new items started from the
model's init matched the full retrain on test targets it already knew (NDCG@10 0.0185 vs
0.0184) and lost the whole gap on the targets first seen in the new events (0.0425 vs 0.0722
after 10 epochs): a fresh row needs about as many epochs as a retrain gives it. The
trained model already says where such an item belongs. A next-item model scores the hidden
state at each position against the item table, so the states at the positions whose next item
is the new one are what its row is pulled towards; their mean, scaled to the old rows' mean
norm, starts the row there (a prototype, as in few-shot classification). The pass is one
forward over the last windows of the training rows that hold a new item, before the first step.

Needs a causal next-item objective (the hidden state at t predicts item t+1: ce, ssm, gbce,
bce) and a scoring table that is a parameter of the model (its item embedding, tied); a new
item that is never a training target (only ever a first event, or only valid/test) keeps the
model's init. `reference_context_rows` is the same per position, in a loop (the tests' check).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from seqrec.data.batches import SeqBatch, training_batch
from seqrec.errors import SeqrecError

CAUSAL = ("ce", "ssm", "gbce", "bce")


def scoring_parameter(model: nn.Module) -> nn.Parameter:
    """The parameter ``model.item_weights`` is (the same storage and shape), or a clear error."""
    table = model.item_weights
    for p in model.parameters():
        if p.shape == table.shape and p.data_ptr() == table.data_ptr():
            return p
    raise SeqrecError(
        f"new_items=context writes new items' rows into the scoring table, but "
        f"{type(model).__name__}'s is computed from its parameters, not one of them; use "
        "new_items=model or mean"
    )


def rows_with_new_items(task, n_old: int) -> np.ndarray:
    """The training rows that hold a new item (id > n_old) anywhere, each slice once (an
    update with ``repeat_changed`` lists the rows of users with new events several times)."""
    tr = task.split.train
    _, first = np.unique(tr.starts[task.train_rows], return_index=True)
    rows = task.train_rows[np.sort(first)]
    seen = np.concatenate([[0], np.cumsum(task.store.items > n_old)])
    return rows[seen[tr.ends[rows]] - seen[tr.starts[rows]] > 0]


def last_windows(task, rows: np.ndarray, device: torch.device) -> SeqBatch:
    """The training batch of ``rows``' last windows (what `task.batch` gives with
    ``train.window=last`` and ``train.samples=sequences``, whatever the run's settings)."""
    tr = task.split.train
    batch = training_batch(
        task.store.items, task.timestamps, tr.users[rows], tr.starts[rows], tr.ends[rows],
        task.cfg.data.max_len, task.behaviors, task.domains,
    )  # fmt: skip
    return batch.to(device)


@torch.no_grad()
def context_means(task, model: nn.Module, n_old: int, n_new: int, batch_rows: int = 256):
    """(sum of hidden states [n_new - n_old, D], count [n_new - n_old]) over the training
    positions whose next item is each new item."""
    dim = model.item_weights.shape[1]
    sums = torch.zeros(n_new - n_old, dim, dtype=torch.float64)
    counts = torch.zeros(n_new - n_old, dtype=torch.float64)
    rows = rows_with_new_items(task, n_old)
    device = model.item_weights.device
    was_training = model.training
    model.eval()
    try:
        for s in range(0, len(rows), batch_rows):
            batch = last_windows(task, rows[s : s + batch_rows], device)
            hidden, targets = model(batch), batch.targets
            pick = targets > n_old
            where = (targets[pick] - n_old - 1).cpu()
            sums.index_add_(0, where, hidden[pick].double().cpu())
            counts.index_add_(0, where, torch.ones(len(where), dtype=torch.float64))
    finally:
        model.train(was_training)
    return sums, counts


@torch.no_grad()
def fill_context_rows(task, model: nn.Module, n_old: int, n_new: int) -> int:
    """Set the new items' rows of the scoring table to their context means, scaled to the old
    rows' mean norm; returns how many new items had a context."""
    if task.cfg.objective.name not in CAUSAL:
        raise SeqrecError(
            f"new_items=context reads the hidden state before each new item, which a "
            f"{task.cfg.objective.name} objective does not train to predict it; use "
            "new_items=model or mean"
        )
    table = scoring_parameter(model)
    sums, counts = context_means(task, model, n_old, n_new)
    have = counts > 0
    if not have.any():
        return 0
    means = sums[have] / counts[have, None]
    old_norm = table[1 : n_old + 1].double().norm(dim=1).mean()
    rows = means / means.norm(dim=1, keepdim=True).clamp(min=1e-12) * old_norm
    index = torch.arange(n_old + 1, n_new + 1, device=table.device)[have.to(table.device)]
    table[index] = rows.to(dtype=table.dtype, device=table.device)
    return int(have.sum())


@torch.no_grad()
def reference_context_rows(
    task, model: nn.Module, n_old: int, n_new: int
) -> dict[int, torch.Tensor]:
    """Each new item's unscaled context mean, one training row and one position at a time."""
    model.eval()
    found: dict[int, list[torch.Tensor]] = {}
    for row in task.train_rows:
        batch = last_windows(task, np.array([row]), model.item_weights.device)
        hidden = model(batch)[0]
        for t, item in enumerate(batch.targets[0].tolist()):
            if item > n_old:
                found.setdefault(item, []).append(hidden[t].double())
    return {item: torch.stack(v).mean(0) for item, v in found.items()}
