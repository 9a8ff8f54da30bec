"""benchmarks/incremental_table.py on hand-made records: the pick is the best validation
NDCG@10 among the updates within the time goal, never the best test; records without a
validation number show a dash and are never picked. Nothing here trains."""

from __future__ import annotations

import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCH))
import incremental_table as T  # noqa: E402


def _rec(name, time, test, valid=None, **settings):
    metrics = {
        "update/NDCG@10": test, "retrain/NDCG@10": 0.02,
        "retrain/NDCG@10, target first seen in P2": 0.07,
        "update/NDCG@10, target first seen in P2": 0.05,
        "ndcg_ratio_update_over_retrain": test / 0.02, "ndcg_ratio_ci": [0.8, 1.1],
        "time_ratio_update_over_retrain": time,
    }  # fmt: skip
    if valid is not None:
        metrics["update/valid NDCG@10"] = valid
    return {"name": name, "metrics": metrics, "command": f"python incremental.py --name {name}",
            "settings": {"new_items": "context", "train_rows": "all", "update_epochs": 5,
                         "repeat_changed": 1, **settings}}  # fmt: skip


def test_the_pick_is_the_best_validation_within_the_time_goal():
    by_name = {
        r["name"]: r
        for r in [
            _rec("incremental_a", 0.15, 0.0190, valid=0.060),
            _rec("incremental_b", 0.18, 0.0170, valid=0.062, repeat_changed=3),  # best valid
            _rec("incremental_c", 0.35, 0.0220, valid=0.070),  # too slow
            _rec("incremental_d", 0.10, 0.0230),  # best test, no validation number
            _rec("incremental_smoke", 0.10, 0.0300, valid=0.090),  # the smoke run
            {
                **_rec("incremental_dev", 0.10, 0.0300, valid=0.090),  # a development window
                "protocol": {"shares": {"p2": 0.1, "p3": 0.1, "dropped last": 0.1}},
            },
        ]
    }
    assert T.selected(by_name)["name"] == "incremental_b"
    text = T.table(by_name)
    assert "| **incremental_b** | context | all, changed x3 | 5 |" in text
    assert "incremental_smoke" not in text and "incremental_dev" not in text
    assert "| incremental_d |" in text and "| - |" in text  # shown, not picked
    assert "85.0% of the retrain's test NDCG@10 in 18.0% of its time" in text
    assert "is not met" in text


def test_no_record_within_the_time_goal_picks_nothing():
    by_name = {"incremental": _rec("incremental", 0.21, 0.0192, valid=0.06, new_items="auto")}
    assert T.selected(by_name) is None
    text = T.table(by_name)
    assert "model (auto)" in text and "Picked on validation" not in text
    assert T.table({}) == ""
