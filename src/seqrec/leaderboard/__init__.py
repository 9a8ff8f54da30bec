"""The leaderboard (`seqrec leaderboard run|table`): every registered model with a preset for
a dataset, trained over several seeds, and one table per dataset with CIs and paired tests.

plan.py decides the cells (model x dataset x seed, from configs/<model>-<dataset>.yaml),
runner.py trains them resumably into DIR/runs/ (with the scaling sweep's runner),
collect.py turns finished runs (and benchmarks/quality.py result files) into boards of rows
with their statistics, tables.py and plot.py write leaderboard.md, leaderboard.json and a
PNG per board, and files.py keeps all of it from replacing files seqrec did not write.
"""

from __future__ import annotations

from seqrec.leaderboard.collect import build, collect
from seqrec.leaderboard.plan import DATASETS, Cell, parse_datasets, parse_models, parse_seeds, plan
from seqrec.leaderboard.runner import Outcome, run_cells
from seqrec.leaderboard.tables import write_table

__all__ = [
    "DATASETS",
    "Cell",
    "Outcome",
    "build",
    "collect",
    "parse_datasets",
    "parse_models",
    "parse_seeds",
    "plan",
    "run_cells",
    "write_table",
]
