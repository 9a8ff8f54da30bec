"""Ranking (CTR) examples from a SequenceStore: one per event, split by a global time cut.

An example is (user, history, candidate item, label, time). The history is a CSR slice
``store.items[start:end)`` of the user's chronological sequence that ends strictly before the
candidate's timestamp: events that share the candidate's timestamp (MovieLens users rate in
bursts) are excluded too, so neither the candidate's own rating nor anything rated in the same
second is ever an input. Nothing is copied per example: an example is a handful of integers.

Split (the retrieval temporal split's cuts, ``data.split.temporal_split``): t_valid and t_test
are quantiles of all event times. Train = events before t_valid; valid = [t_valid, t_test);
test = at/after t_test. A valid/test history may include events of earlier evaluation periods
(they happened before the candidate, as in online serving); the model never trains on them.
Events with an empty history (the user's first timestamp) are dropped from every split, since a
history-based ranker has nothing to read; their count is in the protocol.

Training adds ``task.sampled_negatives`` random items per positive with label 0, drawn from
(seed, epoch) among items the user never interacted with (anywhere in the log), with the
positive's history and time.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import numpy as np

from seqrec.data.split import temporal_split
from seqrec.data.store import SequenceStore
from seqrec.errors import SeqrecError


@dataclass(frozen=True, eq=False)
class Examples:
    """Parallel arrays, one entry per example."""

    users: np.ndarray  # int64 store rows
    starts: np.ndarray  # int64 history start (flat index into store.items)
    ends: np.ndarray  # int64 history end, exclusive: first event at/after the candidate's time
    items: np.ndarray  # int64 candidate item
    labels: np.ndarray  # float32 0/1
    times: np.ndarray  # int64 candidate timestamp
    events: np.ndarray  # int64 flat index of the candidate's event in the store, -1 for a
    # sampled negative (not an event of the log)

    def __len__(self) -> int:
        return len(self.users)

    def take(self, idx: np.ndarray) -> Examples:
        return Examples(**{f.name: getattr(self, f.name)[idx] for f in fields(self)})

    @staticmethod
    def concat(parts: list[Examples]) -> Examples:
        return Examples(
            **{
                f.name: np.concatenate([getattr(p, f.name) for p in parts])
                for f in fields(Examples)
            }
        )


@dataclass(frozen=True, eq=False)
class RankingData:
    train: Examples
    valid: Examples
    test: Examples
    seen_keys: np.ndarray  # sorted unique user * (n_items + 1) + item over the whole log
    n_items: int
    protocol: dict


def history_ends(offsets: np.ndarray, timestamps: np.ndarray) -> np.ndarray:
    """For every event (flat index i), the first flat index of its user's run of events with
    the same timestamp: the history of event i is [offsets[u], that index).

    Rows are sorted by time, so a run starts where the user starts or the time changes; a
    running maximum carries each run's start forward."""
    n = len(timestamps)
    idx = np.arange(n, dtype=np.int64)
    new = np.ones(n, dtype=bool)
    new[1:] = timestamps[1:] != timestamps[:-1]
    new[offsets[:-1][offsets[:-1] < n]] = True
    return np.maximum.accumulate(np.where(new, idx, 0))


def history_ends_reference(offsets: np.ndarray, timestamps: np.ndarray) -> np.ndarray:
    """Per-event loop version of ``history_ends`` (tests only)."""
    out = np.empty(len(timestamps), dtype=np.int64)
    for u in range(len(offsets) - 1):
        for i in range(offsets[u], offsets[u + 1]):
            j = offsets[u]
            while j < i and timestamps[j] < timestamps[i]:
                j += 1
            out[i] = j
    return out


def event_examples(store: SequenceStore, behaviors: np.ndarray, threshold: float) -> Examples:
    """One example per event of the log (label = behaviour >= threshold)."""
    if store.timestamps is None:
        raise SeqrecError(
            f"the ranking task splits by time but dataset '{store.name}' has no timestamps"
        )
    ts = np.asarray(store.timestamps, dtype=np.int64)
    offsets = np.asarray(store.offsets, dtype=np.int64)
    users = np.repeat(np.arange(store.n_users, dtype=np.int64), np.diff(offsets))
    return Examples(
        users=users,
        starts=offsets[users],
        ends=history_ends(offsets, ts),
        items=np.asarray(store.items, dtype=np.int64),
        labels=(np.asarray(behaviors) >= threshold).astype(np.float32),
        times=ts,
        events=np.arange(len(users), dtype=np.int64),
    )


def ranking_split(
    store: SequenceStore,
    behaviors: np.ndarray,
    threshold: float,
    valid_frac: float,
    test_frac: float,
) -> RankingData:
    """Events -> train / valid / test examples at the retrieval temporal split's time cuts."""
    cuts = temporal_split(store, valid_frac, test_frac).protocol
    t_valid, t_test = cuts["t_valid"], cuts["t_test"]
    ex = event_examples(store, behaviors, threshold)
    has_history = ex.ends > ex.starts
    parts = {
        "train": has_history & (ex.times < t_valid),
        "valid": has_history & (ex.times >= t_valid) & (ex.times < t_test),
        "test": has_history & (ex.times >= t_test),
    }
    split = {k: ex.take(np.flatnonzero(m)) for k, m in parts.items()}
    keys = np.unique(ex.users * (store.n_items + 1) + ex.items)
    protocol = {
        "task": "ranking",
        "split": "temporal, global time cut",
        "t_valid": int(t_valid),
        "t_test": int(t_test),
        "history": "the user's events strictly before the candidate's timestamp",
        "label": f"behaviour >= {threshold:g}",
        "dropped_without_history": int((~has_history).sum()),
        "evaluation": "real events only (no sampled negatives)",
        **{f"{k}_examples": len(v) for k, v in split.items()},
        **{f"{k}_positive_rate": float(v.labels.mean()) if len(v) else 0.0
           for k, v in split.items()},
    }  # fmt: skip
    for name in ("train", "test"):
        if not len(split[name]):
            raise SeqrecError(
                f"the ranking split left no {name} examples; adjust data.temporal_*_frac"
            )
    return RankingData(split["train"], split["valid"], split["test"], keys, store.n_items, protocol)


def returning_events(data: RankingData, store: SequenceStore, min_age_s: int) -> RankingData:
    """``data`` whose training examples are only the events at least ``min_age_s`` seconds
    after their user's first event (``task.train_min_age_s``); valid and test unchanged.

    The kept count goes into the protocol. Statistics of the whole training period (the
    popularity prior, item-kNN) are computed from the full ``data``, not from this."""
    if min_age_s <= 0:
        return data
    first = np.asarray(store.timestamps, dtype=np.int64)[np.asarray(store.offsets)[:-1]]
    tr = data.train
    keep = tr.times - first[tr.users] >= min_age_s
    if not keep.any():
        raise SeqrecError(
            f"task.train_min_age_s={min_age_s} leaves no training event (no user has events "
            "that long after their first); lower it"
        )
    protocol = {**data.protocol, "train_min_age_s": int(min_age_s),
                "train_examples_fitted": int(keep.sum())}  # fmt: skip
    return replace(data, train=tr.take(np.flatnonzero(keep)), protocol=protocol)


def sample_negatives(
    data: RankingData, k: int, rng: np.random.Generator, max_rounds: int = 50
) -> Examples:
    """``k`` unseen random items per training positive, label 0, the positive's history.

    Rejection sampling in whole-array rounds: draw for every open slot, keep the items the
    user never interacted with (membership in the sorted ``seen_keys``), redraw the rest. A
    slot still open after ``max_rounds`` (a user who saw almost every item) is dropped."""
    pos = data.train.take(np.flatnonzero(data.train.labels == 1))
    if k == 0 or not len(pos):
        return pos.take(np.zeros(0, dtype=np.int64))
    rep = np.repeat(np.arange(len(pos)), k)
    users = pos.users[rep]
    items = np.zeros(len(rep), dtype=np.int64)
    open_ = np.arange(len(rep))
    width = data.n_items + 1
    for _ in range(max_rounds):
        if not len(open_):
            break
        draw = rng.integers(1, data.n_items + 1, len(open_))
        key = users[open_] * width + draw
        at = np.minimum(np.searchsorted(data.seen_keys, key), len(data.seen_keys) - 1)
        seen = data.seen_keys[at] == key
        items[open_[~seen]] = draw[~seen]
        open_ = open_[seen]
    keep = items > 0
    out = pos.take(rep[keep])
    return Examples(
        users=out.users,
        starts=out.starts,
        ends=out.ends,
        items=items[keep],
        labels=np.zeros(int(keep.sum()), dtype=np.float32),
        times=out.times,
        events=np.full(int(keep.sum()), -1, dtype=np.int64),
    )


def epoch_examples(data: RankingData, k: int, seed: int, epoch: int) -> Examples:
    """This epoch's training examples in training order: the real train events plus freshly
    sampled negatives, shuffled; a function of (seed, epoch) only, so a resume replays it."""
    negatives = sample_negatives(data, k, np.random.default_rng([seed, epoch, 17]))
    both = Examples.concat([data.train, negatives])
    return both.take(np.random.default_rng([seed, epoch]).permutation(len(both)))


def group_by_user(ex: Examples, seed: int, epoch: int, group: int = 8) -> Examples:
    """The same examples in small same-user groups: each user's examples in a random order are
    cut into runs of ``group``, and the runs of all users are shuffled. A batch then holds many
    users (close to the i.i.d. batches log loss wants, where whole-user batches would hold a
    handful of users each) and still many same-user pairs for a within-user pairwise loss.
    A function of (seed, epoch) only, so a resume replays it."""
    if not len(ex):
        return ex
    rng = np.random.default_rng([seed, epoch, 29])
    order = np.lexsort((rng.random(len(ex)), ex.users))  # by user, random inside each
    users = ex.users[order]
    new_user = np.r_[True, users[1:] != users[:-1]]
    first = np.maximum.accumulate(np.where(new_user, np.arange(len(users)), 0))
    run = np.cumsum(new_user | ((np.arange(len(users)) - first) % group == 0)) - 1
    run_rank = rng.permutation(int(run[-1]) + 1)
    return ex.take(order[np.argsort(run_rank[run], kind="stable")])
