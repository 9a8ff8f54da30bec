"""Every preset computes what it computed when last recorded (tests/golden/golden_runs.py,
whose docstring lists each deliberate re-recording and why).

Four seeded steps per preset on MovieLens-100K: the loss after each step, the validation and
test metrics, and the scores of fixed histories must match the record (presets.json for the
presets that predate the redesign, added.json for those added since) to 1e-6. A failure lists
every value that moved.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent / "golden"
DATA = Path(os.environ.get("SEQREC_DATA_DIR") or HERE.parents[2] / "shared" / "data")
sys.path.insert(0, str(HERE))

import golden_runs  # noqa: E402

pytestmark = [
    pytest.mark.realdata,
    pytest.mark.slow,
    pytest.mark.skipif(
        not (DATA / "movielens" / "ml-100k").is_dir(), reason="needs ../shared/data (ml-100k)"
    ),
]

BEFORE = json.loads((HERE / "presets.json").read_text())  # the presets before the redesign
ADDED = json.loads((HERE / "added.json").read_text())  # presets added since, as first recorded
GOLD = {**BEFORE, **ADDED}


def test_golden_file_covers_every_preset():
    assert not set(BEFORE) & set(ADDED)
    assert sorted(GOLD) == sorted(golden_runs.presets())


@pytest.mark.parametrize("name", golden_runs.presets())
def test_preset_matches_golden(name, tmp_path, monkeypatch):
    monkeypatch.setenv("SEQREC_DATA_DIR", str(DATA))
    if name == "srt-ml-100k-finetune":
        golden_runs.record("srt-ml-1m", tmp_path)
    new = golden_runs.record(name, tmp_path)
    problems = golden_runs.compare(GOLD[name], new)
    assert not problems, f"{name} moved:\n" + "\n".join(problems[:20])
