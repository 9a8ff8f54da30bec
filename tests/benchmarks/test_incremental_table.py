"""benchmarks/incremental_table.py on hand-made records: without a development window the
pick is the best validation NDCG@10 among the updates within the time goal, never the best
test; with one, the pick is the reported run with the settings that did best on the earlier
window's test. Records without a validation number are never picked on validation. Nothing
here trains."""

from __future__ import annotations

import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCH))
import incremental_table as T  # noqa: E402


def _rec(name, time, test, valid=None, dev=False, **settings):
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
            "protocol": {"shares": {"p2": 0.1, "p3": 0.1, "dropped last": 0.1 if dev else 0.0}},
            "settings": {"new_items": "context", "train_rows": "all", "update_epochs": 5,
                         "update_patience": 2, "repeat_changed": 1, **settings}}  # fmt: skip


REPORTED = [
    _rec("incremental_a", 0.15, 0.0190, valid=0.060),
    _rec("incremental_b", 0.18, 0.0170, valid=0.062, repeat_changed=3),  # best valid
    _rec("incremental_c", 0.35, 0.0220, valid=0.070, update_epochs=9),  # too slow
    _rec("incremental_d", 0.10, 0.0230, repeat_changed=4),  # best test, no validation number
    _rec("incremental_smoke", 0.10, 0.0300, valid=0.090),  # the smoke run
]


def _by_name(records):
    return {r["name"]: r for r in records}


def test_without_a_development_window_the_pick_is_the_best_validation_in_time():
    by_name = _by_name(REPORTED)
    assert T.selected(by_name)["name"] == "incremental_b"
    assert T.development_pick(by_name) == (None, None)
    text = T.table(by_name)
    assert "| **incremental_b** | context | all, changed x3 | 5 |" in text
    assert "incremental_smoke" not in text
    assert "| incremental_d |" in text and "| - |" in text  # shown, not picked
    assert "Picked on validation: `incremental_b`, 85.0% of the retrain's test NDCG@10 in " \
           "18.0% of its time: the goal (>= 98% in <= 20%) is not met" in text  # fmt: skip


def test_a_development_window_picks_the_settings_that_did_best_there():
    dev = [
        _rec("incremental_dev_a", 0.15, 0.0180, dev=True),
        _rec("incremental_dev_d", 0.12, 0.0210, dev=True, repeat_changed=4),  # best in time
        _rec("incremental_dev_c", 0.30, 0.0250, dev=True, update_epochs=9),  # too slow
    ]
    by_name = _by_name(REPORTED + dev)
    picked_dev, reported = T.development_pick(by_name)
    assert picked_dev["name"] == "incremental_dev_d" and reported["name"] == "incremental_d"
    assert T.selected(by_name)["name"] == "incremental_d"
    text = T.table(by_name)
    assert "| **incremental_d** |" in text and "| **incremental_dev_d** |" in text
    assert "Picked on the development window: `incremental_d`, 115.0%" in text
    assert "goal (>= 98% in <= 20%) is met" in text
    assert "Picked on validation: `incremental_b`" in text  # still shown beside it


def test_no_record_within_the_time_goal_picks_nothing():
    by_name = {"incremental": _rec("incremental", 0.21, 0.0192, valid=0.06, new_items="auto")}
    assert T.selected(by_name) is None
    text = T.table(by_name)
    assert "model (auto)" in text and "Picked on" not in text
    assert T.table({}) == ""
