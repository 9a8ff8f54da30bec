"""Train / valid / test views over a SequenceStore, as index arrays only.

A view never copies items: each row is ``store.items[starts[i]:ends[i]]`` (the history, or the
whole training sequence) plus one held-out ``targets[i]``. That keeps a 20M-interaction split at a
few arrays of ``n_users`` integers, and makes leakage easy to audit: train slices end strictly
before the positions used as valid/test targets.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from seqrec.data.store import SequenceStore
from seqrec.errors import SeqrecError
from seqrec.options import DataConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class SplitView:
    """Per-user [start, end) slices into store.items, plus one target per row (0 in the train view)."""

    store: SequenceStore
    users: np.ndarray
    starts: np.ndarray
    ends: np.ndarray
    targets: np.ndarray

    def __len__(self) -> int:
        return len(self.users)

    def lengths(self) -> np.ndarray:
        return self.ends - self.starts

    def history(self, i: int) -> np.ndarray:
        """Row ``i``'s slice (a view into ``store.items``), handy for inspection and tests."""
        return self.store.items[self.starts[i] : self.ends[i]]


@dataclass(frozen=True, eq=False)
class Split:
    train: SplitView
    valid: SplitView
    test: SplitView
    protocol: dict


def _view(store: SequenceStore, users, starts, ends, targets=None) -> SplitView:
    users = np.asarray(users, dtype=np.int64)
    targets = np.zeros(len(users), dtype=np.int64) if targets is None else targets
    return SplitView(
        store,
        users,
        np.asarray(starts, dtype=np.int64),
        np.asarray(ends, dtype=np.int64),
        np.asarray(targets, dtype=np.int64),
    )


def leave_one_out(store: SequenceStore, valid_users: int | None = None) -> Split:
    """Last item -> test, second-to-last -> valid, the rest -> train (SASRec / BERT4Rec protocol).

    Valid history is the train slice; test history is train + the valid item, so the model sees
    the valid interaction at test time, as in the papers. A user needs 3 items for all three
    parts; shorter users are dropped from every view (with a warning) rather than leaking a
    target into training.

    ``valid_users=k`` validates on k users only (drawn with a fixed seed, so every run and
    every model sees the same ones); the others' second-to-last item moves into training,
    which is what protocols that validate on a user sample do. Nothing about the test changes.
    """
    lengths = store.lengths()
    users = np.flatnonzero(lengths >= 3)
    dropped = store.n_users - len(users)
    if not len(users):
        raise SeqrecError(
            f"leave-one-out needs >= 3 interactions per user (train, valid, test) but none of the "
            f"{store.n_users} users has that many; use data.split=temporal or longer histories"
        )
    if dropped:
        log.warning(
            "leave-one-out: dropped %d of %d users with fewer than 3 interactions "
            "(set data.min_user_count=3 to filter them up front)",
            dropped,
            store.n_users,
        )
    start = store.offsets[users]
    end = store.offsets[users + 1]
    items = store.items
    protocol = {
        "split": "leave-one-out",
        "valid": "second-to-last item",
        "test": "last item",
        "test_history_includes_valid": True,
        "dropped_users": int(dropped),
    }
    rows = np.arange(len(users))
    train_end = end - 2
    if valid_users is not None and valid_users < len(users):
        rows = np.sort(np.random.default_rng(0).choice(len(users), valid_users, replace=False))
        train_end = end - 1
        train_end[rows] -= 1
        protocol["valid"] = f"second-to-last item of {valid_users} fixed random users"
        protocol["valid_users"] = int(valid_users)
        protocol["others_train_on_second_to_last"] = True
    return Split(
        train=_view(store, users, start, train_end),
        valid=_view(store, users[rows], start[rows], end[rows] - 2, items[end[rows] - 2]),
        test=_view(store, users, start, end - 1, items[end - 1]),
        protocol=protocol,
    )


def temporal_split(store: SequenceStore, valid_frac: float, test_frac: float) -> Split:
    """Global time cut: no training interaction happens after any evaluated one.

    ``t_valid`` and ``t_test`` are quantiles of all timestamps so that about ``valid_frac`` and
    ``test_frac`` of the interactions fall in [t_valid, t_test) and [t_test, inf).

    - train: each user's interactions before ``t_valid`` (users with none are absent);
    - valid: users with >= 1 interaction before ``t_valid`` and one in [t_valid, t_test):
      history = everything before ``t_valid``, target = the first one in [t_valid, t_test);
    - test: users with >= 1 interaction before ``t_test`` and one at/after it:
      history = everything before ``t_test`` (including the valid period),
      target = the first interaction at/after ``t_test``.
    Only the first interaction after a cut is a target, so every user counts once per view.
    """
    if store.timestamps is None:
        raise SeqrecError(
            f"temporal split needs real timestamps but dataset '{store.name}' has none "
            "(its order comes from the file); use data.split=loo"
        )
    if valid_frac + test_frac >= 1:
        raise SeqrecError(
            f"temporal_valid_frac + temporal_test_frac = {valid_frac + test_frac} "
            "leaves no training data; make their sum < 1"
        )
    ts = np.asarray(store.timestamps)
    t_valid, t_test = np.quantile(ts, [1 - valid_frac - test_frac, 1 - test_frac], method="higher")
    if not t_valid < t_test:
        raise SeqrecError(
            f"timestamps are too coarse for a temporal split (both cuts fall at {t_valid}); "
            "raise data.temporal_valid_frac or use data.split=loo"
        )
    lengths = store.lengths()
    row = np.repeat(np.arange(store.n_users), lengths)
    start, end = store.offsets[:-1], store.offsets[1:]
    # Rows are sorted by time, so "count before t" is also "index of the first at/after t".
    cut_v = start + np.bincount(row, weights=ts < t_valid, minlength=store.n_users).astype(np.int64)
    cut_t = start + np.bincount(row, weights=ts < t_test, minlength=store.n_users).astype(np.int64)
    items = store.items
    train_u = np.flatnonzero(cut_v > start)
    valid_u = np.flatnonzero((cut_v > start) & (cut_v < cut_t))
    test_u = np.flatnonzero((cut_t > start) & (cut_t < end))
    if not len(train_u) or not len(test_u):
        raise SeqrecError(
            "temporal split left no train or no test users; "
            "adjust data.temporal_*_frac or use data.split=loo"
        )
    protocol = {
        "split": "temporal",
        "t_valid": int(t_valid),
        "t_test": int(t_test),
        "valid": "first interaction in [t_valid, t_test)",
        "test": "first interaction at/after t_test",
        "test_history_includes_valid": True,
    }
    return Split(
        train=_view(store, train_u, start[train_u], cut_v[train_u]),
        valid=_view(store, valid_u, start[valid_u], cut_v[valid_u], items[cut_v[valid_u]]),
        test=_view(store, test_u, start[test_u], cut_t[test_u], items[cut_t[test_u]]),
        protocol=protocol,
    )


def make_split(store: SequenceStore, cfg: DataConfig) -> Split:
    if cfg.split == "loo":
        return leave_one_out(store, cfg.valid_users)
    if cfg.valid_users is not None:
        raise SeqrecError(
            "data.valid_users applies to data.split=loo only; the temporal split validates on "
            "every user with an interaction in the validation period (drop data.valid_users)"
        )
    return temporal_split(store, cfg.temporal_valid_frac, cfg.temporal_test_frac)
