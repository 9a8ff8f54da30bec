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


def test_detection_agrees_with_the_catalogue_on_every_local_file(data_dir):
    """Every catalogue file present is detected as the format the catalogue gives it, and the
    gSASRec split file (items only, no user id column) is refused instead of misread."""
    from seqrec.data.catalog import CATALOG
    from seqrec.data.evidence import detect
    from seqrec.errors import SeqrecError

    seen = 0
    for spec in CATALOG.values():
        for rel, fmt in spec.local_candidates:
            if (data_dir / rel).is_file():
                seen += 1
                assert detect(data_dir / rel).format == fmt, rel
    assert seen
    split = data_dir / "movielens/ml-1m-sasrec-gsasrec-split/train_input.txt.gz"
    if split.is_file():
        with pytest.raises(SeqrecError, match=r"no format fits.*data.format=pairs.*seq"):
            detect(split)
