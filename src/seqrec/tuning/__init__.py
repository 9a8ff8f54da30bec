"""Hyper-parameter tuning (`seqrec tune`): an Optuna study over config overrides, scored on
validation NDCG@10 only (study.py), over a declared or built-in search space (space.py).

Optuna is an optional dependency (``pip install 'seqrec[tune]'``), imported when a study
runs; `read_budget` (what `seqrec leaderboard run` records for a tuned preset) reads only
the study's tune.json, so it works where optuna is not installed.
"""

from __future__ import annotations

from seqrec.tuning.space import DEFAULT_SPACE, Param, load_space
from seqrec.tuning.study import TuneResult, read_budget, tune

__all__ = ["DEFAULT_SPACE", "Param", "TuneResult", "load_space", "read_budget", "tune"]
