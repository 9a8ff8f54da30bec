"""benchmarks/gpu/jobs: every job still builds the config its result file records.

The jobs files are how the GPU-trained numbers in RESULTS.md are reproduced; presets keep
changing, so a job that silently picked up a new preset default would no longer rerun what it
measured. Fields added to seqrec after a run are not differences (seqrec.comparison).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from seqrec.comparison import config_differences
from seqrec.recipe import load_config

ROOT = Path(__file__).resolve().parents[1]
# how many rows the CE scores at once changes float rounding only; its unset default (auto) is
# the 2,048 rows these runs recorded on a GPU
BLOCKING_ONLY = frozenset({"objective.chunk_size"})
JOBS = [(f.name, job) for f in sorted((ROOT / "benchmarks/gpu/jobs").glob("*.yaml"))
        for job in yaml.safe_load(f.read_text())]  # fmt: skip


def test_job_names_are_unique_across_files():
    names = [job["name"] for _, job in JOBS]
    assert len(names) == len(set(names))


@pytest.mark.parametrize(
    ("file", "job"),
    [j for j in JOBS if "preset" in j[1]],
    ids=lambda j: j if isinstance(j, str) else j["name"],
)
def test_a_job_builds_the_config_its_result_recorded(file, job):
    budget = f"train.time_budget_s={job.get('budget_s', 400)}"
    cfg = load_config(job["preset"], [*job.get("set", []), budget]).model_dump(mode="json")
    result = ROOT / "benchmarks/results" / f"{job['name']}.json"
    if not result.is_file():
        return  # a ranking job: benchmarks/ranking_ml1m.py records it under another name
    recorded = json.loads(result.read_text())["config"]
    assert config_differences(recorded, cfg, BLOCKING_ONLY) == {}
