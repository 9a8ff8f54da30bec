"""Leave-one-out and global temporal splits: no leakage, right histories, right targets."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seqrec.data.split import leave_one_out, make_split, temporal_split
from seqrec.data.store import SequenceStore
from seqrec.errors import SeqrecError
from seqrec.options import DataConfig


def store_from(seqs: list[list[int]], times: list[list[int]] | None = None) -> SequenceStore:
    lengths = np.array([len(s) for s in seqs], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    items = np.array([i for s in seqs for i in s], dtype=np.int32)
    ts = None if times is None else np.array([t for s in times for t in s], dtype=np.int64)
    n_items = int(items.max()) if len(items) else 1
    item_ids = np.array(["<pad>"] + [str(i) for i in range(1, n_items + 1)])
    user_ids = np.array([str(u) for u in range(len(seqs))])
    return SequenceStore(offsets, items, ts, n_items, user_ids, item_ids, "t")


sequences = st.lists(st.lists(st.integers(1, 30), min_size=1, max_size=12), min_size=1, max_size=25)


@settings(max_examples=60, deadline=None)
@given(sequences)
def test_leave_one_out_properties(seqs):
    if all(len(s) < 3 for s in seqs):
        with pytest.raises(SeqrecError, match=r"needs >= 3 interactions per user"):
            leave_one_out(store_from(seqs))
        return
    store = store_from(seqs)
    split = leave_one_out(store)
    kept = [u for u, s in enumerate(seqs) if len(s) >= 3]
    for view in (split.train, split.valid, split.test):
        assert view.users.tolist() == kept
        assert np.array_equal(view.starts, store.offsets[view.users])
    assert not split.train.targets.any()
    for row, u in enumerate(kept):
        s = seqs[u]
        end = store.offsets[u + 1]
        assert split.train.history(row).tolist() == s[:-2]
        assert split.valid.history(row).tolist() == s[:-2]
        assert split.valid.targets[row] == s[-2] and split.test.targets[row] == s[-1]
        # test history = train slice + the valid item
        assert split.test.history(row).tolist() == [*s[:-2], s[-2]]
        # the target positions lie strictly after the train slice
        assert split.train.ends[row] <= end - 2 < end - 1
    np.testing.assert_array_equal(split.test.lengths(), split.valid.lengths() + 1)
    assert split.protocol["split"] == "leave-one-out"
    assert split.protocol["dropped_users"] == len(seqs) - len(kept)


@settings(max_examples=40, deadline=None)
@given(sequences, st.integers(1, 30))
def test_leave_one_out_valid_users_sample(seqs, k):
    """Only k users keep a validation target; the others train through their second-to-last
    item; the test view is the full split's, and no slice reaches a held-out position."""
    if all(len(s) < 3 for s in seqs):
        return
    store = store_from(seqs)
    full, part = leave_one_out(store), leave_one_out(store, valid_users=k)
    n = len(full.test)
    for a, b in ((full.test, part.test), (full.train, part.train)):
        np.testing.assert_array_equal(a.users, b.users)
    np.testing.assert_array_equal(full.test.ends, part.test.ends)
    np.testing.assert_array_equal(full.test.targets, part.test.targets)
    assert len(part.valid) == min(k, n)
    assert set(part.valid.users) <= set(part.test.users)
    validated = np.isin(part.train.users, part.valid.users)
    end = store.offsets[part.train.users + 1]
    # validation users: train ends before the valid target; the others: before the test target
    np.testing.assert_array_equal(part.train.ends, np.where(validated, end - 2, end - 1))
    for row, u in enumerate(part.valid.users):
        assert part.valid.targets[row] == seqs[u][-2]
        assert part.valid.history(row).tolist() == seqs[u][:-2]
    assert part.protocol.get("valid_users") == (k if k < n else None)
    # the sample is fixed: the same users every time
    np.testing.assert_array_equal(leave_one_out(store, valid_users=k).valid.users, part.valid.users)


def test_valid_users_needs_leave_one_out():
    store, _, _ = timed_store()
    cfg = DataConfig(split="temporal", valid_users=2, temporal_valid_frac=0.2,
                     temporal_test_frac=0.2)  # fmt: skip
    with pytest.raises(SeqrecError, match=r"valid_users applies to data\.split=loo only"):
        make_split(store, cfg)
    assert len(make_split(store, DataConfig(valid_users=1)).valid) == 1


def test_leave_one_out_warns_with_count(caplog):
    with caplog.at_level(logging.WARNING, logger="seqrec.data.split"):
        split = leave_one_out(store_from([[1, 2, 3], [4], [5, 6], [7, 8, 9, 1]]))
    assert len(split.test) == 2
    assert "dropped 2 of 4 users" in caplog.text and "min_user_count=3" in caplog.text


def test_split_views_share_the_store_items():
    store = store_from([[1, 2, 3, 4]])
    split = leave_one_out(store)
    assert np.shares_memory(split.test.history(0), store.items)


def timed_store():
    seqs = [[1, 2, 3, 4], [5, 6, 7], [8, 9], [1, 5, 9, 2]]
    times = [[1, 2, 8, 10], [3, 7, 9], [8, 9], [1, 4, 6, 9]]
    return store_from(seqs, times), seqs, times


def test_temporal_split_ordering():
    store, _, times = timed_store()
    split = temporal_split(store, valid_frac=0.3, test_frac=0.3)
    tv, tt = split.protocol["t_valid"], split.protocol["t_test"]
    assert tv < tt
    ts = store.timestamps
    for row in range(len(split.train)):
        assert (ts[split.train.starts[row] : split.train.ends[row]] < tv).all()
    for view, cut in ((split.valid, tv), (split.test, tt)):
        for row, u in enumerate(view.users):
            hist_ts = ts[view.starts[row] : view.ends[row]]
            assert len(hist_ts) and (hist_ts < cut).all()
            target_pos = view.ends[row]
            assert ts[target_pos] >= cut and store.items[target_pos] == view.targets[row]
            assert view.starts[row] == store.offsets[u]
    for row in range(len(split.valid)):
        assert store.timestamps[split.valid.ends[row]] < tt
    # every user with something before and after t_test is tested, with the valid period in history
    expected = [u for u, t in enumerate(times) if min(t) < tt <= max(t)]
    assert split.test.users.tolist() == expected


def test_temporal_split_needs_timestamps_and_distinct_cuts():
    with pytest.raises(SeqrecError, match=r"needs real timestamps.*data.split=loo"):
        temporal_split(store_from([[1, 2, 3]]), 0.1, 0.1)
    flat = store_from([[1, 2, 3], [2, 3, 1]], [[5, 5, 5], [5, 5, 5]])
    with pytest.raises(SeqrecError, match=r"too coarse"):
        temporal_split(flat, 0.1, 0.1)


def test_make_split_dispatch():
    store, _, _ = timed_store()
    assert make_split(store, DataConfig(split="loo")).protocol["split"] == "leave-one-out"
    cfg = DataConfig(split="temporal", temporal_valid_frac=0.3, temporal_test_frac=0.3)
    assert make_split(store, cfg).protocol["split"] == "temporal"
