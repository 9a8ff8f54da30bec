"""Dedupe, k-core, chronological order, id remap, the CSR store and its cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from seqrec.data.preprocess import dedupe, kcore, preprocess
from seqrec.data.store import SequenceStore, _store_name, build_store
from seqrec.errors import SeqrecError
from seqrec.options import DataConfig


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SEQREC_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("SEQREC_DATA_DIR", raising=False)


def frame(records: list[tuple]) -> pl.DataFrame:
    """(user, item, ts) records in file order."""
    users, items, ts = zip(*records, strict=True)
    return pl.DataFrame(
        {
            "user": list(users),
            "item": list(items),
            "ts": list(ts),
            "order": list(range(len(records))),
        },
        schema={"user": None, "item": None, "ts": pl.Int64, "order": pl.Int64},
    )


def pairs(df: pl.DataFrame) -> list[tuple]:
    return sorted(df.select("user", "item", "ts").iter_rows())


def test_dedupe_policies_follow_time_not_file_order():
    df = frame([(1, "a", 30), (1, "b", 20), (1, "a", 10), (2, "a", 5)])
    assert dedupe(df, "keep").height == 4
    assert pairs(dedupe(df, "first")) == [(1, "a", 10), (1, "b", 20), (2, "a", 5)]
    assert pairs(dedupe(df, "last")) == [(1, "a", 30), (1, "b", 20), (2, "a", 5)]


def test_kcore_iterative_and_once_differ():
    # Once: counts on the raw data drop item z and user C, leaving B with a single item.
    # Iterative: a second pass then drops B as well.
    df = frame(
        [
            ("A", "x", 1),
            ("A", "y", 2),
            ("B", "x", 1),
            ("B", "z", 2),
            ("C", "y", 1),
            ("D", "x", 1),
            ("D", "y", 2),
        ]
    )
    once = kcore(df, 2, 2, "once")
    iterative = kcore(df, 2, 2, "iterative")
    assert sorted(set(once["user"])) == ["A", "B", "D"]
    assert sorted(set(iterative["user"])) == ["A", "D"]
    assert iterative.group_by("item").len()["len"].min() >= 2


def test_kcore_that_leaves_nothing_says_how_to_fix():
    df = frame([(1, 1, 0), (2, 2, 0)])
    with pytest.raises(SeqrecError, match=r"left no interactions.*lower data.min_user_count"):
        kcore(df, 2, 0)


def test_chronological_sort_is_stable_on_ties():
    df = frame([(1, "b", 100), (1, "a", 100), (1, "c", 50), (1, "d", 100)])
    prep = preprocess(df)
    assert prep.item_ids[prep.items].tolist() == ["c", "b", "a", "d"]
    assert prep.timestamps.tolist() == [50, 100, 100, 100]


def test_remap_numeric_and_lexicographic_order_and_round_trip():
    df = frame([(10, 100, 0), (10, 9, 1), (2, 10, 0), (2, 9, 1)])
    prep = preprocess(df)
    assert prep.user_ids.tolist() == ["2", "10"]  # numeric, not "10" < "2"
    assert prep.item_ids.tolist() == ["<pad>", "9", "10", "100"]
    assert prep.items.min() == 1 and prep.items.dtype == np.int32
    assert prep.offsets.tolist() == [0, 2, 4]
    assert prep.item_ids[prep.items].tolist() == ["10", "9", "100", "9"]
    text = preprocess(frame([("u", "b10", 0), ("u", "b9", 1)]))
    assert text.item_ids.tolist() == ["<pad>", "b10", "b9"]


def small_store(timestamps: bool = True) -> SequenceStore:
    prep = preprocess(
        frame([("u1", "x", 1), ("u1", "y", 2), ("u2", "y", 3), ("u2", "z", 4), ("u2", "x", 5)])
    )
    return SequenceStore(
        prep.offsets,
        prep.items,
        prep.timestamps if timestamps else None,
        len(prep.item_ids) - 1,
        prep.user_ids,
        prep.item_ids,
        "small",
    )


@pytest.mark.parametrize(
    ("file", "name"),
    [
        ("ml-1m.seq.txt.gz", "ml-1m"),
        ("ml-1m.fileorder.seq.txt.gz", "ml-1m.fileorder"),  # copies keep distinct names
        ("ratings.dat", "ratings"),
        ("events.v2.parquet", "events.v2"),
        ("log", "log"),
    ],
)
def test_store_name_drops_only_format_suffixes(file, name):
    assert _store_name(Path(file)) == name


@pytest.mark.parametrize("timestamps", [True, False])
def test_store_save_load_mmap_round_trip(tmp_path, timestamps):
    store = small_store(timestamps)
    store.save(tmp_path / "s")
    store.save(tmp_path / "s")  # replacing an existing store is atomic too
    loaded = SequenceStore.load(tmp_path / "s")
    assert isinstance(loaded.items, np.memmap)
    for name in ("offsets", "items", "user_ids", "item_ids"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(store, name))
    assert (loaded.timestamps is None) == (not timestamps)
    assert loaded.n_items == 3 and loaded.name == "small" and loaded.n_users == 2
    assert [p.name for p in tmp_path.iterdir()] == ["s"]  # no temp dirs left behind
    assert loaded.sequence(1).tolist() == [2, 3, 1]
    assert loaded.stats()["interactions"] == 5 and loaded.stats()["length_max"] == 3


def test_store_load_errors(tmp_path):
    with pytest.raises(SeqrecError, match=r"no readable store.*rebuild it"):
        SequenceStore.load(tmp_path / "missing")


def test_item_and_user_index():
    store = small_store()
    np.testing.assert_array_equal(store.item_index(["z", "x"]), [3, 1])
    assert store.user_index("u2") == 1
    with pytest.raises(SeqrecError, match=r"2 unknown item id\(s\).*\['nope', 'q'\]"):
        store.item_index(["x", "nope", "q"])


def write_pairs(path, n_users: int = 6, n_items: int = 5):
    lines = [f"{u} {(u + k) % n_items} {100 * u + k}" for u in range(n_users) for k in range(4)]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_build_store_cache_hit_skips_parsing(tmp_path, monkeypatch):
    path = write_pairs(tmp_path / "log.txt")
    cfg = DataConfig(dataset=str(path), cache_dir=str(tmp_path / "c"))
    first = build_store(cfg)
    assert first.has_timestamps and first.n_users == 6 and first.n_items == 5

    def boom(*args, **kwargs):
        raise AssertionError("parsed again")

    monkeypatch.setattr("seqrec.data.ingest.read_interactions", boom)  # imported lazily
    second = build_store(cfg)
    assert isinstance(second.items, np.memmap)
    np.testing.assert_array_equal(second.items, first.items)
    with pytest.raises(AssertionError, match=r"parsed again"):  # other options -> other key
        build_store(cfg.model_copy(update={"min_item_count": 2}))
    path.write_text(path.read_text() + "9 9 1\n")  # edited file -> other key
    with pytest.raises(AssertionError, match=r"parsed again"):
        build_store(cfg)
