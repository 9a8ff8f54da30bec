"""benchmarks/quality.py: the test-peek summary of a train.log_test run."""

from __future__ import annotations

import json
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCH))
import quality  # noqa: E402


def test_test_peeks_reports_the_best_peek_and_ignores_other_events(tmp_path):
    events = [
        {"event": "valid", "epoch": 0, "valid/NDCG@10": 0.9},
        {"event": "test_peek", "epoch": 0, "test/NDCG@10": 0.10, "test/HR@10": 0.20},
        {"event": "test_peek", "epoch": 1, "test/NDCG@10": 0.15, "test/HR@10": 0.25},
        {"event": "test_peek", "epoch": 2, "test/NDCG@10": 0.12, "test/HR@10": 0.30},
        {"step": 9, "epoch": 2, "loss": 1.0},
    ]
    (tmp_path / "metrics.jsonl").write_text("\n".join(json.dumps(e) for e in events) + "\n")
    assert quality.test_peeks(tmp_path) == {
        "test-peek/evaluations": 3,
        "test-peek/max NDCG@10": 0.15,
        "test-peek/HR@10 at that epoch": 0.25,
        "test-peek/epoch of the max": 1,
        "test-peek/last NDCG@10": 0.12,
    }
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "metrics.jsonl").write_text(json.dumps(events[0]) + "\n")
    assert quality.test_peeks(plain) == {} and quality.test_peeks(tmp_path / "missing") == {}
