"""Tasks: what the one trainer trains (``trainer/loop.py``), chosen by ``cfg.task.name``.

``retrieval`` ranks the whole catalogue for the next item; ``ranking`` scores (history,
candidate) pairs. Each is a `Task` (``base.py``); this module is the one place that maps a
config to its task, its data and its run-folder outputs, so callers never branch on the name.
"""

from __future__ import annotations

from typing import Any

import torch

from seqrec.data import prepare
from seqrec.data.store import SequenceStore
from seqrec.recipe import RunConfig
from seqrec.tasks.base import Counting, Task, Validation
from seqrec.tasks.ranking import baselines
from seqrec.tasks.ranking.inputs import load_ranking_data
from seqrec.tasks.ranking.task import RankingTask
from seqrec.tasks.retrieval import RetrievalTask
from seqrec.tasks.retrieval import output_files as retrieval_files

__all__ = [
    "Counting",
    "RankingTask",
    "RetrievalTask",
    "Task",
    "Validation",
    "build_task",
    "load_task_data",
    "output_files",
    "trains",
    "untrained_results",
]

TASKS: dict[str, type[Task]] = {"retrieval": RetrievalTask, "ranking": RankingTask}


def load_task_data(cfg: RunConfig) -> tuple[SequenceStore, Any]:
    """The store and what ``cfg``'s task trains and evaluates on: a retrieval `Split`, or the
    ranking task's `RankingData`."""
    if cfg.task.name == "ranking":
        return load_ranking_data(cfg)
    return prepare(cfg.data)


def build_task(cfg: RunConfig, store: SequenceStore, data: Any, device: torch.device, dist) -> Task:
    """``cfg``'s task over ``data`` (from `load_task_data`); builds its model on the CPU."""
    return TASKS[cfg.task.name](cfg, store, data, device, dist)


def trains(cfg: RunConfig) -> bool:
    """Whether ``cfg`` trains weights (a trainer runs) or is a baseline scored directly."""
    return not baselines.untrained(cfg)


def untrained_results(cfg: RunConfig, store: SequenceStore, data: Any) -> dict[str, Any]:
    """The results of a configuration that trains nothing (`trains` is False)."""
    return baselines.untrained_results(cfg, store, data)


def output_files(cfg: RunConfig, data: Any, results: dict) -> dict[str, bytes]:
    """Take the per-unit test output out of ``results``: {file name: bytes} for the run
    folder (retrieval: test_ranks.npy; ranking: test_predictions.npz)."""
    if cfg.task.name == "ranking":
        return baselines.output_files(data, results)
    return retrieval_files(results)
