"""Out-of-core ingest: a partitioned log builds the store the in-memory path builds from the
same rows in one file, array for array, whatever the bucket and batch sizes; bad parts get one
line naming the part and row."""

from __future__ import annotations

import itertools

import numpy as np
import polars as pl
import pytest

from seqrec.data import outofcore, partitions, partitions_read
from seqrec.data.partitions import find_partitions
from seqrec.data.store import build_store
from seqrec.errors import SeqrecError
from seqrec.options import DataConfig

FIELDS = ("offsets", "items", "timestamps", "user_ids", "item_ids", "behaviors")


@pytest.fixture(autouse=True)
def _small_buckets(monkeypatch):
    """Several buckets and batches even on a few hundred rows."""
    monkeypatch.setattr(outofcore, "BUCKET_EVENTS", 40)
    monkeypatch.setattr(partitions_read, "BATCH_ROWS", 64)


def random_log(seed: int, n: int = 600, text_ids: bool = False) -> pl.DataFrame:
    """Few distinct timestamps, so most users have ties; repeats for dedupe; rare items for
    k-core; text ids mix digits and letters (sorted as text, not numbers)."""
    rng = np.random.default_rng(seed)
    users = rng.integers(0, 40, n)
    items = rng.zipf(1.5, n) % 60
    frame = pl.DataFrame(
        {
            "user_id": [f"u{u}" for u in users] if text_ids else users * 7 + 3,
            "item_id": [f"{i}x" if i % 3 else str(i) for i in items] if text_ids else items,
            "timestamp": rng.integers(1_000, 1_006, n) * 60,
            "rating": rng.choice(["click", "buy", "cart"], n),
        }
    )
    return frame


def write_parts(frame: pl.DataFrame, folder, cuts: list[int], fmt: str) -> list:
    folder.mkdir(parents=True, exist_ok=True)
    bounds = [0, *cuts, frame.height]
    paths = []
    for k, (a, b) in enumerate(itertools.pairwise(bounds)):
        path = folder / f"part-{k:05d}.{fmt}"
        part = frame.slice(a, b - a)
        part.write_parquet(path) if fmt == "parquet" else part.write_csv(path)
        paths.append(path)
    return paths


def one_file(frame: pl.DataFrame, path, fmt: str):
    frame.write_parquet(path) if fmt == "parquet" else frame.write_csv(path)
    return path


def assert_same_store(a, b) -> None:
    assert a.n_items == b.n_items
    for name in FIELDS:
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None) == (y is None), name
        if x is not None:
            assert np.array_equal(np.asarray(x), np.asarray(y)), name
    for key in ("dropped", "rows_read", "n_behaviors", "behavior_values"):
        assert a.meta.get(key) == b.meta.get(key), key


PREP = [
    {},
    {"dedupe": "first"},
    {"dedupe": "last", "min_user_count": 5, "min_item_count": 4},
    {"min_user_count": 8, "min_item_count": 6, "kcore": "once"},
    {"min_user_count": 3, "min_item_count": 9},
    {"time_col": None},
    {"behavior_col": "rating", "dedupe": "first"},
]


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
@pytest.mark.parametrize("prep", PREP)
@pytest.mark.parametrize("text_ids", [False, True])
def test_out_of_core_store_equals_in_memory_store(tmp_path, fmt, prep, text_ids):
    frame = random_log(seed=len(str(prep)), text_ids=text_ids)
    write_parts(frame, tmp_path / "log", [100, 101, 350, 500], fmt)
    single = one_file(frame, tmp_path / f"all.{fmt}", fmt)
    streamed = build_store(DataConfig(dataset=str(tmp_path / "log"), **prep))
    reference = build_store(DataConfig(dataset=str(single), **prep))
    assert streamed.meta["ingest"]["mode"] == "out-of-core"
    assert streamed.meta["ingest"]["buckets"] > 3
    assert "ingest" not in reference.meta
    assert_same_store(streamed, reference)


@pytest.mark.parametrize("seed", range(4))
def test_equal_for_any_partitioning_bucket_and_batch_size(tmp_path, monkeypatch, seed):
    rng = np.random.default_rng(seed)
    frame = random_log(seed, n=int(rng.integers(50, 800)))
    cuts = sorted(rng.choice(frame.height, int(rng.integers(0, 6)), replace=False).tolist())
    write_parts(frame, tmp_path / "log", cuts, "parquet")
    monkeypatch.setattr(outofcore, "BUCKET_EVENTS", int(rng.integers(1, 200)))
    monkeypatch.setattr(partitions_read, "BATCH_ROWS", int(rng.integers(1, 100)))
    prep = {"dedupe": "last", "min_user_count": 2, "min_item_count": 2}
    streamed = build_store(DataConfig(dataset=str(tmp_path / "log"), **prep))
    reference = build_store(
        DataConfig(dataset=str(one_file(frame, tmp_path / "a.parquet", "parquet")), **prep)
    )
    assert_same_store(streamed, reference)


def test_equal_times_keep_part_then_row_order(tmp_path):
    """The rule: a user's events with one timestamp stay in source order, the parts in sorted
    path order and rows in file order (the order of the concatenated parts)."""
    log = tmp_path / "log"
    log.mkdir()
    rows = {
        "day=2/part-0.parquet": [(1, "late", 50), (1, "b", 10), (2, "x", 5)],
        "day=1/part-1.parquet": [(1, "c", 10), (2, "y", 5)],
        "day=1/part-0.parquet": [(1, "a", 10), (1, "d", 10), (2, "z", 5)],
    }
    for name, records in rows.items():
        (log / name).parent.mkdir(exist_ok=True)
        users, items, ts = zip(*records, strict=True)
        pl.DataFrame({"user_id": users, "item_id": items, "timestamp": ts}).write_parquet(
            log / name
        )
    (log / "_SUCCESS").write_text("")  # Spark's marker and hidden files are not parts
    (log / ".part-9.parquet.crc").write_text("")
    store = build_store(DataConfig(dataset=str(log)))
    names = store.item_ids[np.asarray(store.items)]
    assert names[store.offsets[0] : store.offsets[1]].tolist() == ["a", "d", "c", "b", "late"]
    assert names[store.offsets[1] : store.offsets[2]].tolist() == ["z", "y", "x"]


def test_no_bucket_or_batch_holds_more_than_its_bound(tmp_path, monkeypatch):
    """Bounded memory, checked on what is held: a bucket is at most BUCKET_EVENTS events plus
    one user's, a batch at most BATCH_ROWS rows."""
    frame = random_log(3, n=2000)
    write_parts(frame, tmp_path / "log", [700, 1400], "parquet")
    longest = int(frame.group_by("user_id").len()["len"].max())
    loads, batches = [], []
    load, raw = outofcore.Buckets.load, partitions_read.PartLog.raw_batches

    def spy_load(self, b, columns=None):
        cols = load(self, b, columns)
        loads.append(len(cols["user"]))
        return cols

    def spy_raw(self):
        for batch, where in raw(self):
            batches.append(batch.height)
            yield batch, where

    monkeypatch.setattr(outofcore.Buckets, "load", spy_load)
    monkeypatch.setattr(partitions_read.PartLog, "raw_batches", spy_raw)
    store = build_store(DataConfig(dataset=str(tmp_path / "log")))
    assert len(store.items) == 2000 and max(batches) <= 64 and len(loads) > 10
    assert max(loads) <= 40 + longest


def test_a_large_single_file_goes_out_of_core(tmp_path, monkeypatch):
    frame = random_log(5)
    path = one_file(frame, tmp_path / "big.csv", "csv")
    reference = build_store(DataConfig(dataset=str(path), cache_dir=str(tmp_path / "c1")))
    monkeypatch.setattr(partitions, "STREAM_BYTES", 100)
    streamed = build_store(DataConfig(dataset=str(path), cache_dir=str(tmp_path / "c2")))
    assert streamed.meta["ingest"]["parts"] == 1 and "ingest" not in reference.meta
    assert_same_store(streamed, reference)
    assert streamed.meta["cache_key"] == reference.meta["cache_key"]  # the same data


def test_the_second_build_is_the_cached_memory_mapped_store(tmp_path, monkeypatch):
    write_parts(random_log(6), tmp_path / "log", [300], "parquet")
    cfg = DataConfig(dataset=str(tmp_path / "log"))
    first = build_store(cfg)

    def refuse(*_):
        raise AssertionError("rebuilt")

    monkeypatch.setattr(outofcore, "build_arrays", refuse)
    again = build_store(cfg)
    assert isinstance(again.items, np.memmap)
    assert_same_store(first, again)
    extra = pl.DataFrame({"user_id": [1], "item_id": [2], "timestamp": [3]})
    extra.write_parquet(tmp_path / "log" / "part-00009.parquet")  # a new part: a new log
    with pytest.raises(AssertionError, match="rebuilt"):
        build_store(cfg)


def test_glob_names_the_parts_and_relative_names_resolve_under_the_data_dir(tmp_path, monkeypatch):
    frame = random_log(7)
    write_parts(frame, tmp_path / "data" / "log", [200], "parquet")
    write_parts(frame.head(10), tmp_path / "data" / "log" / "skip", [], "csv")
    monkeypatch.setenv("SEQREC_DATA_DIR", str(tmp_path / "data"))
    store = build_store(DataConfig(dataset="log/*.parquet"))
    assert store.name == "log" and len(store.items) == frame.height
    parts = find_partitions("log/*.parquet")
    assert [p.name for p in parts.files] == ["part-00000.parquet", "part-00001.parquet"]


def test_a_folder_with_a_known_single_file_is_read_as_that_file(tmp_path):
    folder = tmp_path / "ml"
    write_parts(random_log(8), folder, [100], "parquet")
    random_log(8).write_csv(folder / "ratings.csv")
    assert find_partitions(str(folder)) is None
    assert find_partitions(str(tmp_path / "nothing")) is None


def _message(cfg: DataConfig) -> str:
    with pytest.raises(SeqrecError) as err:
        build_store(cfg)
    text = str(err.value)
    assert "\n" not in text
    return text


def test_a_bad_value_is_reported_at_its_part_and_row(tmp_path):
    frame = random_log(9).with_columns(pl.col("user_id").cast(pl.Utf8))
    bad = frame.with_columns(
        user_id=pl.when(pl.int_range(pl.len()) == 104).then(None).otherwise("user_id")
    )
    write_parts(bad, tmp_path / "a", [100], "parquet")
    assert _message(DataConfig(dataset=str(tmp_path / "a"))).startswith(
        "part-00001.parquet row 5: no user id"
    )
    late = frame.with_columns(
        timestamp=pl.when(pl.int_range(pl.len()) == 3).then(-5).otherwise("timestamp")
    )
    write_parts(late, tmp_path / "b", [2], "csv")
    assert _message(DataConfig(dataset=str(tmp_path / "b"))).startswith(
        "part-00001.csv line 3: timestamp -5 is negative"
    )
    rated = frame.with_columns(
        rating=pl.when(pl.int_range(pl.len()) == 7).then(None).otherwise("rating")
    )
    write_parts(rated, tmp_path / "c", [5], "parquet")
    text = _message(DataConfig(dataset=str(tmp_path / "c"), behavior_col="rating"))
    assert text.startswith("part-00001.parquet row 3: no behaviour value")


def test_parts_that_cannot_form_one_log_are_refused_in_one_line(tmp_path):
    frame = random_log(10)
    mixed = tmp_path / "mixed"
    write_parts(frame, mixed, [], "parquet")
    frame.write_csv(mixed / "more.csv")
    assert "mixes Parquet and CSV" in _message(DataConfig(dataset=str(mixed)))
    short = tmp_path / "short"
    write_parts(frame, short, [], "parquet")
    frame.drop("item_id").write_parquet(short / "part-00001.parquet")
    assert "has no column(s) ['item_id']" in _message(DataConfig(dataset=str(short)))
    assert "data.format=csv, but" in _message(DataConfig(dataset=str(short), format="csv"))
    text = _message(DataConfig(dataset=str(short), domain_col="rating"))
    assert "does not attach domains" in text
    (mixed / "notes.txt").write_text("")
    assert "matches no .parquet" in _message(DataConfig(dataset=str(mixed / "*.txt")))
    broken = tmp_path / "broken"
    write_parts(frame, broken, [], "parquet")
    (broken / "part-00001.parquet").write_bytes(b"not parquet at all")
    assert "part-00001.parquet is not a readable Parquet part" in _message(
        DataConfig(dataset=str(broken))
    )
