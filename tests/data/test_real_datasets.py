"""End-to-end on the shared benchmark files: counts must match the published preprocessing."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

from seqrec.data import prepare
from seqrec.options import DataConfig

pytestmark = pytest.mark.realdata

DATA_DIR = Path(
    os.environ.get("SEQREC_DATA_DIR") or Path(__file__).resolve().parents[3] / "shared" / "data"
)


@pytest.fixture(scope="module")
def data_dir():
    if not (DATA_DIR / "movielens").is_dir():
        pytest.skip(f"shared benchmark data not found at {DATA_DIR}; set SEQREC_DATA_DIR to run")
    return DATA_DIR


@pytest.mark.parametrize(
    ("name", "users", "items", "interactions"),
    [("ml-1m", 6040, 3416, 999_611), ("amazon-beauty", 22_363, 12_101, 198_502)],
)
def test_catalogue_counts(data_dir, tmp_path, monkeypatch, name, users, items, interactions):
    monkeypatch.setenv("SEQREC_DATA_DIR", str(data_dir))
    cfg = DataConfig(dataset=name, cache_dir=str(tmp_path))
    t0 = time.perf_counter()
    store, split = prepare(cfg)
    t1 = time.perf_counter()
    cached, _ = prepare(cfg)
    t2 = time.perf_counter()
    print(f"\n{name}: parse+preprocess+split {t1 - t0:.2f}s, cached load+split {t2 - t1:.3f}s")
    assert (store.n_users, store.n_items, len(store.items)) == (users, items, interactions)
    assert isinstance(cached.items, np.memmap)
    np.testing.assert_array_equal(cached.items, store.items)
    assert len(split.test) == users and store.items.min() == 1 and store.items.max() == items
    assert (split.train.ends < split.test.ends).all()
