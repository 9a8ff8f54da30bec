"""End to end on the real MovieLens-100K file from ../shared/data (skipped when absent)."""

import json
import os
from pathlib import Path

import pytest
import torch

from seqrec.recipe import load_config
from seqrec.trainer.run import train_run

pytestmark = pytest.mark.realdata
DATA = Path(
    os.environ.get("SEQREC_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "data")
)


@pytest.fixture
def real_data(monkeypatch, tmp_path):
    if not (DATA / "movielens" / "ml-100k" / "u.data.gz").is_file():
        pytest.skip(f"real data not found under {DATA}; set SEQREC_DATA_DIR to run this test")
    monkeypatch.setenv("SEQREC_DATA_DIR", str(DATA))
    monkeypatch.setenv("SEQREC_CACHE_DIR", str(tmp_path / "cache"))
    torch.set_num_threads(1)


def test_sasrec_learns_on_movielens_100k(real_data, tmp_path):
    cfg = load_config("quickstart", ["train.epochs=8", "model.hidden=32", "eval.ks=[10]"])
    res = train_run(cfg, tmp_path / "run", progress=False)
    test = res["test"]
    assert res["dataset"]["users"] == 943
    assert test["protocol"]["ranking"] == "full" and test["protocol"]["mask_seen"]
    assert test["protocol"]["split"] == "leave-one-out"
    # random ranking gives HR@10 ~ 10 / 1,650 = 0.006; eight short epochs are far above that
    assert test["metrics"]["HR@10"] > 0.05
    assert json.loads((tmp_path / "run" / "results.json").read_text())["test"] == test
