"""Appending events to a store (data/update.py): old ids keep their rows, new users and items
come after them, histories grow at their end, and events that contradict the data are refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from badinput.harness import check_message
from conftest import cycle_sequences, write_csv_log
from seqrec.data import prepare
from seqrec.data.store import build_store
from seqrec.data.update import (
    EventsFile,
    append_events,
    merge_csr,
    prepare_continued,
    reference_merge_csr,
    repeat_train,
    restrict_train,
)
from seqrec.errors import SeqrecError
from seqrec.options import DataConfig

BASE_TIME = 1_000_000  # write_csv_log's times: BASE_TIME + 1000 * user index + position


def write_events(path: Path, rows: list[tuple], header: str = "user_id,item_id,timestamp") -> Path:
    path.write_text("\n".join([header, *(",".join(map(str, r)) for r in rows)]) + "\n")
    return path


def sequences(store) -> dict[str, list[str]]:
    """Every user's history in original ids: what any two stores of the same data share."""
    ids = np.asarray(store.item_ids)
    return {str(store.user_ids[u]): ids[store.sequence(u)].tolist() for u in range(store.n_users)}


@pytest.fixture
def base(tmp_path):
    log = write_csv_log(tmp_path / "log.csv", cycle_sequences())
    cfg = DataConfig(dataset=str(log))
    return cfg, build_store(cfg)


def new_events(tmp_path: Path) -> Path:
    """Later events of two known users (one with a new item), two new users, new items whose
    numeric and text orders differ (999 < 1000 but "1000" < "999"), in shuffled file order."""
    rows = [
        ("501", "1000", 3_000_002),
        ("900", "999", 3_000_000),
        ("500", "105", 3_000_000),
        ("1000", "105", 3_000_001),
        ("500", "999", 3_000_001),
        ("900", "1000", 3_000_001),
        ("501", "101", 3_000_000),
    ]
    return write_events(tmp_path / "events.csv", rows)


def test_merge_csr_matches_the_row_by_row_reference():
    rng = np.random.default_rng(3)
    lengths = rng.integers(1, 6, 7)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    old = [rng.integers(1, 50, offsets[-1]).astype(np.int32), np.arange(offsets[-1]) * 10]
    rows = np.sort(rng.integers(0, 10, 15))  # rows 7..9 are new users
    new = [rng.integers(1, 50, 15).astype(np.int32), 10_000 + np.arange(15)]
    got_offsets, got = merge_csr(offsets, old, rows, new, 10)
    want_offsets, want = reference_merge_csr(offsets, old, rows, new, 10)
    np.testing.assert_array_equal(got_offsets, want_offsets)
    for a, b in zip(got, want, strict=True):
        np.testing.assert_array_equal(a, b)
        assert a.dtype == b.dtype


def test_old_ids_keep_their_rows_and_new_ones_are_appended(base, tmp_path):
    cfg, store = base
    grown, added, record = append_events(
        store, cfg, EventsFile(path=str(new_events(tmp_path)), sha256="")
    )
    n, users = store.n_items, store.n_users
    np.testing.assert_array_equal(grown.item_ids[: n + 1], store.item_ids)
    np.testing.assert_array_equal(grown.user_ids[:users], store.user_ids)
    assert grown.item_ids[n + 1 :].tolist() == ["999", "1000"]  # numeric order, as preprocess
    assert grown.user_ids[users:].tolist() == ["900", "1000"]
    assert (added.events, added.new_users, added.new_items) == (7, 2, 2)
    assert (record.events, record.new_users, record.new_items) == (7, 2, 2)
    assert len(record.sha256) == 64
    np.testing.assert_array_equal(
        added.changed_users, np.sort([*store.user_index(["500", "501"]).tolist(), users, users + 1])
    )
    want = sequences(store)
    want["500"] += ["105", "999"]
    want["501"] += ["101", "1000"]
    want["900"] = ["999", "1000"]
    want["1000"] = ["105"]
    assert sequences(grown) == want
    # timestamps travel with their events
    u = int(store.user_index("500"))
    assert grown.timestamps[grown.offsets[u + 1] - 2 : grown.offsets[u + 1]].tolist() == [
        3_000_000,
        3_000_001,
    ]


def test_an_update_holds_what_a_rebuild_of_the_whole_log_holds(base, tmp_path):
    cfg, store = base
    events = new_events(tmp_path)
    whole = tmp_path / "whole.csv"
    lines = Path(cfg.dataset).read_text().splitlines() + events.read_text().splitlines()[1:]
    whole.write_text("\n".join(lines) + "\n")
    grown, _, _ = append_events(store, cfg, EventsFile(path=str(events), sha256=""))
    rebuilt = build_store(DataConfig(dataset=str(whole)))
    assert sequences(grown) == sequences(rebuilt)


def test_data_updates_append_events_as_an_update_does(base, tmp_path):
    cfg, store = base
    events = new_events(tmp_path)
    grown, _, _ = append_events(store, cfg, EventsFile(path=str(events), sha256=""))
    retrain, _ = prepare(cfg.model_copy(update={"updates": [str(events)]}))
    np.testing.assert_array_equal(retrain.item_ids, grown.item_ids)
    np.testing.assert_array_equal(retrain.offsets, grown.offsets)
    np.testing.assert_array_equal(retrain.items, grown.items)
    # prepare_continued takes its events from the lineage, never twice from data.updates
    merged, _, _, _ = prepare_continued(
        cfg.model_copy(update={"updates": [str(events)]}), [EventsFile(path=str(events), sha256="")]
    )
    np.testing.assert_array_equal(merged.items, grown.items)
    with pytest.raises(SeqrecError) as err:
        prepare(cfg.model_copy(update={"updates": [str(tmp_path / "gone.csv")]}))
    check_message(str(err.value), ["gone.csv", "does not exist"])


def test_prepare_continued_splits_the_merged_data_and_restricts_training(base, tmp_path):
    cfg, store = base
    record = EventsFile(path=str(new_events(tmp_path)), sha256="")
    merged, split, added, records = prepare_continued(cfg, [record])
    assert merged.n_items == store.n_items + 2 and len(records) == 1
    u = int(store.user_index("500"))
    row = int(np.flatnonzero(split.test.users == u)[0])
    assert merged.item_ids[split.test.targets[row]] == "999"  # the new last event is the test
    only = restrict_train(split, added[0].changed_users)
    assert set(only.train.users) <= set(added[0].changed_users)
    assert len(only.valid) == len(split.valid) and len(only.test) == len(split.test)
    twice = repeat_train(split, added[0].changed_users, 2)
    changed = np.isin(split.train.users, added[0].changed_users)
    assert len(twice.train) == len(split.train) + changed.sum()
    for u, start, end in zip(split.train.users, split.train.starts, split.train.ends, strict=True):
        same = (twice.train.users == u) & (twice.train.starts == start) & (twice.train.ends == end)
        assert same.sum() == (2 if u in added[0].changed_users else 1)
    assert len(twice.valid) == len(split.valid) and len(twice.test) == len(split.test)


@pytest.mark.parametrize(
    "rows, header, dedupe, says",
    [
        ([("500", "999", 1_000_001)], None, "keep", ["older than their user's last event", "500"]),
        ([("500", "104", 1_000_009)], None, "keep", ["repeats events", "item 104"]),
        ([("500", "999")], "user_id,item_id", "keep", ["has no timestamps", "timestamp"]),
        ([("500", "104", 3_000_000)], None, "last", ["data.dedupe=last", "item 104"]),
    ],
    ids=["older-than-history", "duplicate-event", "no-timestamps", "dedupe-last-repeat"],
)
def test_events_that_contradict_the_data_are_refused(base, tmp_path, rows, header, dedupe, says):
    cfg, store = base
    cfg = cfg.model_copy(update={"dedupe": dedupe})
    store = build_store(cfg)
    # user 500 (cycle_sequences' first) ends with item 104 at BASE_TIME + 9
    assert store.timestamps[store.offsets[1] - 1] == BASE_TIME + 9
    assert store.item_ids[store.sequence(0)[-1]] == "104"
    path = write_events(tmp_path / "bad.csv", rows, header or "user_id,item_id,timestamp")
    with pytest.raises(SeqrecError) as err:
        append_events(store, cfg, EventsFile(path=str(path), sha256=""))
    check_message(str(err.value), says)


def test_dedupe_first_drops_repeats_of_known_pairs(base, tmp_path):
    cfg, _ = base
    cfg = cfg.model_copy(update={"dedupe": "first"})
    store = build_store(cfg)
    path = write_events(tmp_path / "ev.csv", [("500", "104", 3_000_000), ("500", "999", 3_000_001)])
    grown, added, _ = append_events(store, cfg, EventsFile(path=str(path), sha256=""))
    assert added.events == 1
    assert sequences(grown)["500"] == sequences(store)["500"] + ["999"]


def test_a_changed_events_file_is_refused(base, tmp_path):
    cfg, store = base
    path = new_events(tmp_path)
    with pytest.raises(SeqrecError) as err:
        append_events(store, cfg, EventsFile(path=str(path), sha256="0" * 64))
    check_message(str(err.value), ["changed since the run used it"])


def test_same_time_events_on_new_items_are_not_repeats(base, tmp_path):
    """Keys of (row, item) pairs must not wrap into the next row for new items: user 500 (row
    0) gets 23 new items at its last time; the 23rd's id is 31 + 22, which as a raw pair key
    (row * 31 + item) would name row 1's last event (item 121, id 22) and read as a repeat."""
    cfg, store = base
    assert store.item_index("121") == 22 and store.item_ids[store.sequence(1)[-1]] == "121"
    rows = [("500", str(200 + k), BASE_TIME + 9) for k in range(23)]
    grown, added, _ = append_events(
        store, cfg, EventsFile(path=str(write_events(tmp_path / "ev.csv", rows)), sha256="")
    )
    assert added.events == 23 and grown.n_items == store.n_items + 23
