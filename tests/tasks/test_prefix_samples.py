"""train.samples=prefixes: every prefix of every training sequence is one row whose only
target is the item after its last slot, each exactly once per epoch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import tiny_config
from seqrec.errors import SeqrecError
from seqrec.recipe import build_config
from seqrec.tasks import RetrievalTask, load_task_data
from seqrec.trainer.distributed import DistContext


def _task(cycle_log, **train) -> RetrievalTask:
    cfg = build_config(tiny_config(cycle_log, train=train))
    store, split = load_task_data(cfg)
    return RetrievalTask(cfg, store, split, torch.device("cpu"), DistContext())


def test_every_prefix_once_with_its_next_item(cycle_log):
    task = _task(cycle_log, samples="prefixes")
    tr = task.split.train
    expected = set()  # (user row, tuple of inputs, target) by brute force
    for r in task.train_rows:
        seq = task.store.items[tr.starts[r] : tr.ends[r]]
        for end in range(2, len(seq) + 1):
            inputs = seq[: end - 1][-task.cfg.data.max_len :]
            expected.add((int(r), tuple(int(i) for i in inputs), int(seq[end - 1])))
    order = task.epoch_order(0)
    assert sorted(order) == list(range(len(expected)))  # one unit per prefix
    assert task.steps_per_epoch == int(np.ceil(len(expected) / task.cfg.train.batch_size))
    seen = set()
    for rows in np.array_split(order, 7):
        batch = task.batch(rows, 0)
        targets = batch.targets.numpy()
        items = batch.items.numpy()
        lengths = batch.lengths.numpy()
        assert ((targets != 0).sum(1) == 1).all()  # one target per row ...
        assert (targets[np.arange(len(rows)), lengths - 1] != 0).all()  # ... after its last slot
        for k, row in enumerate(task.prefix_rows[rows]):
            seen.add(
                (int(row), tuple(int(i) for i in items[k, : lengths[k]]), int(targets[k].max()))
            )
    assert seen == expected


def test_prefix_order_is_a_seeded_permutation(cycle_log):
    a, b = _task(cycle_log, samples="prefixes"), _task(cycle_log, samples="prefixes")
    assert np.array_equal(a.epoch_order(3), b.epoch_order(3))
    assert not np.array_equal(a.epoch_order(3), a.epoch_order(4))


@pytest.mark.parametrize(
    ("sections", "message"),
    [
        ({"train": {"samples": "prefixes", "window": "random"}}, "drop train.window"),
        ({"model": {"name": "bsarec", "hidden": 16, "heads": 2}}, "train.samples=prefixes"),
        (
            {"model": {"name": "bert4rec"}, "objective": {"name": "cloze"},
             "train": {"samples": "prefixes"}},
            "train.samples=sequences",
        ),
    ],
)  # fmt: skip
def test_samples_that_cannot_train_are_refused(cycle_log, sections, message):
    with pytest.raises((SeqrecError, ValueError), match=message):
        build_config(tiny_config(cycle_log, **sections))
