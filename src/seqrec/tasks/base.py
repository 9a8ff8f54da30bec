"""The task contract: what the one trainer asks of a learning problem.

Why a contract: next-item retrieval and CTR ranking share everything about *how* a model is
trained (device, seeding, AdamW + schedule, gradient clipping, the step loop, logging,
checkpoints and exact resume, early stopping, the time budget, DDP, testing once on the best
weights: ``trainer/loop.py``) and differ only in *what* is trained: what a batch is, what its
loss is, what is monitored and how a split is scored. A `Task` holds exactly that difference,
so the trainer has one step loop and never branches on the task's name.

A task is built by the trainer right after it seeded torch, because building the task builds
its model and the model's initial weights come from that seed. It is built on the CPU; the
trainer then moves ``task.model`` to the device, wraps it for DDP and builds the optimiser.

Batches are described by *rows*: ``epoch_order(epoch)`` lists the epoch's training units
(users, examples) in training order, a function of (seed, epoch) only, so a resumed run
replays the same batches; the trainer cuts it into global batches of ``train.batch_size``,
gives each DDP rank its contiguous slice, and asks ``batch(rows, epoch)`` for the tensors.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn


@dataclass(frozen=True)
class Counting:
    """What one training unit is called in a run's state and log.

    The epoch's mean loss is weighted by these units (targets, examples), and results.json /
    metrics.jsonl name them; the names are a task's, so existing runs and checkpoints keep
    theirs."""

    total: str
    """State key: units trained on over all epochs (also a results.json key)."""
    epoch: str
    """State key: units of the current epoch so far."""
    rate: str
    """metrics.jsonl key of a training line's units per second."""


@dataclass
class Validation:
    """One validation: the number early stopping compares, and what is logged about it."""

    value: float
    """The monitored metric (higher is better)."""
    fields: dict[str, Any]
    """The task's fields of the ``valid`` event in metrics.jsonl."""
    metrics: dict[str, Any]
    """Every metric computed, for the progress line."""


class Task(ABC):
    """One learning problem the trainer drives (see the module docstring)."""

    name: ClassVar[str]
    counting: ClassVar[Counting]
    model: nn.Module
    """What is trained, checkpointed, saved as best.safetensors and tested."""
    steps_per_epoch: int
    """Optimiser steps of one epoch: the schedule's length, the progress bar's total."""

    # ------------------------------------------------------------------ identity
    @property
    @abstractmethod
    def tag(self) -> str:
        """The model name a checkpoint and the weights file carry; a resume checks it."""

    @abstractmethod
    def accounting(self) -> dict[str, Any]:
        """Parameter (and FLOP) counts: the start event's and results.json's."""

    @abstractmethod
    def init_module(self) -> nn.Module:
        """The module ``train.init_from`` loads a retrieval run's weights into."""

    # ------------------------------------------------------------------ training
    @abstractmethod
    def epoch_order(self, epoch: int) -> np.ndarray:
        """The epoch's training rows in training order, a function of (seed, epoch) only."""

    @abstractmethod
    def batch(self, rows: np.ndarray, epoch: int) -> Any:
        """The tensors of ``rows`` (some of `epoch_order(epoch)`), on the task's device."""

    @abstractmethod
    def loss(self, net: Any, batch: Any) -> torch.Tensor:
        """The batch's mean loss over its `count` units. ``net`` is the model, or under DDP a
        view of the wrapped model whose calls synchronise gradients."""

    @abstractmethod
    def count(self, batch: Any) -> int:
        """Units the batch's mean loss averages over: the weight of its loss in the epoch's
        mean, and under DDP in the global gradient."""

    # ------------------------------------------------------------------ monitoring
    @abstractmethod
    def validate(self, state: dict) -> Validation:
        """Score the validation split (under DDP: every rank, with the same result)."""

    def after_validation(self, state: dict) -> list[dict[str, Any]]:
        """Further metrics.jsonl events of a validation (written after the ``valid`` one)."""
        return []

    @abstractmethod
    def report(
        self, bar: Any, state: dict, val: Validation, improved: bool, epoch_seconds: float
    ) -> None:
        """Print one line per validation (rank 0 only), even without a live progress bar."""

    @abstractmethod
    def start_fields(self, acct: dict, extra: dict) -> dict[str, Any]:
        """The ``start`` event of metrics.jsonl, after its name; ``extra`` holds the trainer's
        own facts (e.g. ``init``: what ``train.init_from`` loaded)."""

    @abstractmethod
    def start_line(self, acct: dict, processes: str) -> str:
        """The line printed before training (``processes``: ", N processes" under DDP)."""

    # ------------------------------------------------------------------ the end
    @abstractmethod
    def final(self) -> dict[str, Any]:
        """Valid and test results of the weights in ``model`` (the selected ones), as
        results.json holds them, plus the per-unit test output under a ``_``-prefixed key
        that the run folder writes to its own file."""

    def summary(self, state: dict, throughput: dict) -> dict[str, Any]:
        """The task's own results.json keys beside the trainer's."""
        return {}

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        """State beyond the model, optimiser, schedule, counters and torch RNG that a resume
        needs (none for the tasks here: their randomness derives from (seed, epoch) or the
        checkpointed torch RNG); saved as ``task_state`` only when non-empty."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Put back what `state_dict` saved (a task that keeps none accepts none)."""
        if state:
            raise ValueError(f"{type(self).__name__} keeps no state; got {sorted(state)}")
