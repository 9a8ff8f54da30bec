"""New events appended to a store without renumbering it: the data side of an update
(`seqrec train --continue-from RUN --events FILE`, docs/INCREMENTAL.md).

A trained model's item table is indexed by internal id, so an update may not renumber
anything: an item the run knew keeps its id, items first seen in the events take the next ids
in sorted original-id order (the order preprocess.py gives a whole log), users the run knew
keep their row, new users are appended the same way, and each user's new events go after its
old ones, in (timestamp, file line) order.

An events file *contradicts* the run's data, and is refused with one line, when it holds an
event older than its user's last event in the data (it could only be inserted into a history
the model already trained on), an event the data already holds (same user, item and time: a
batch sent twice), timestamps where the data has none or none where it has them, or, under
``data.dedupe=last``, a repeat of a (user, item) pair the data holds (keeping the last would
delete a trained event). Preprocessing is not re-run on the events: no k-core (it would drop
users or items the model has rows for), and ``data.dedupe=first`` drops a repeat of a known
pair, as a rebuild of the whole log would.

A continued run's data is its config's base data plus every events file of its `Lineage`, in
order, each checked against its recorded sha256, so `Run.evaluate` and `Run.export` rebuild
exactly the data it trained on.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import numpy as np
import polars as pl
from pydantic import Field

from seqrec.data.catalog import sha256_file, with_catalog_defaults
from seqrec.data.ingest import read_interactions
from seqrec.data.preprocess import dedupe
from seqrec.data.split import Split
from seqrec.data.store import SequenceStore, build_store
from seqrec.data.views import split_store
from seqrec.errors import SeqrecError
from seqrec.options import DataConfig, Strict


class EventsFile(Strict):
    """One events file of an update: where it was, its bytes' sha256, and what it added."""

    path: str
    sha256: str
    events: int = 0
    new_users: int = 0
    new_items: int = 0


class Lineage(Strict):
    """What a continued run was made from, kept in its manifest and results.json."""

    source: str
    """The run it continued (its weights and optimiser state at the start)."""
    events: list[EventsFile]
    """Every events file since the base data (``data.dataset``), oldest first."""
    update_files: int = 0
    """How many of ``events``, the last ones, this update added (the others its source's)."""
    train_rows: Literal["all", "changed"] = "all"
    """The update's training rows: every user's, or only those of users with new events."""
    repeat_changed: int = Field(1, ge=1)
    """With train_rows=all: the rows of users with new events come this many times an epoch."""
    new_items: Literal["model", "mean", "features", "context"] = "model"
    """How the new items' rows started (trainer/grow.py)."""


@dataclass(frozen=True)
class Added:
    """What one events file added: counts, and the store rows of users with new events."""

    events: int
    new_users: int
    new_items: int
    changed_users: np.ndarray


def _id_text(values: pl.Series) -> np.ndarray:
    return values.cast(pl.Utf8).to_numpy().astype(str)


def _find(known: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Index of each ``query`` id in ``known`` (text ids), -1 where absent."""
    order = np.argsort(known, kind="stable")
    keys = known[order]
    if not len(keys):
        return np.full(len(query), -1, dtype=np.int64)
    pos = np.minimum(np.searchsorted(keys, query), len(keys) - 1)
    return np.where(keys[pos] == query, order[pos], -1).astype(np.int64)


def _assign(frame: pl.DataFrame, col: str, known: np.ndarray, first: int):
    """Each row's id: its index in ``known`` when the data has it, else ``first`` plus its
    rank among the new ids, which are sorted as preprocess.py sorts a whole log's (numbers
    numerically). Returns (the ids, the new ids' text in id order)."""
    text = _id_text(frame[col])
    idx = _find(known, text)
    fresh = idx < 0
    new_ids = _id_text(frame.filter(pl.Series(fresh))[col].unique().sort())
    if len(new_ids):
        idx[fresh] = first + _find(new_ids, text[fresh])
    return idx, new_ids


def read_events(path: str | Path, cfg: DataConfig) -> tuple[pl.DataFrame, bool, EventsFile]:
    """An events file read like the run's data (its column names and behaviour setting; the
    format detected): the ``user, item, ts, order`` frame, whether it had timestamps, and its
    record (path and sha256)."""
    path = Path(path).expanduser().resolve()
    if not path.is_file():
        raise SeqrecError(f"events file {path} does not exist; pass a file of new events")
    events_cfg = cfg.model_copy(update={"dataset": str(path), "format": "auto", "sep": None})
    inter = read_interactions(path, "auto", events_cfg)
    return inter.frame, inter.has_timestamps, EventsFile(path=str(path), sha256=sha256_file(path))


def _refuse(what: str, count: int, example: str, fix: str, name: str) -> SeqrecError:
    return SeqrecError(f"events file {name} {what} ({count:,} events, e.g. {example}); {fix}")


def _check_order(store, rows, items, ts, name) -> None:
    """No event before its user's last event in the data; no event the data already holds."""
    old = rows < store.n_users
    if store.timestamps is None or not old.any():
        return
    ends = store.offsets[1:] - 1
    last = np.asarray(store.timestamps)[ends]
    r, t, i = rows[old], ts[old], items[old]
    early = t < last[r]
    if early.any():
        j = int(np.flatnonzero(early)[0])
        raise _refuse(
            "holds events older than their user's last event in the run's data",
            int(early.sum()),
            f"user {store.user_ids[r[j]]} at {t[j]} < {last[r[j]]}",
            "an update appends to histories: pass only later events, or retrain",
            name,
        )
    # a repeat can only share the user's last timestamp: compare with those events
    lengths = np.diff(store.offsets)
    tail = np.asarray(store.timestamps) == np.repeat(last, lengths)
    old_rows = np.repeat(np.arange(store.n_users), lengths)[tail]
    width = store.n_items + 1
    held = old_rows * width + np.asarray(store.items)[tail]
    same = (t == last[r]) & (i < width)  # a new item repeats nothing
    same[same] = np.isin(r[same] * width + i[same], held)
    if same.any():
        j = int(np.flatnonzero(same)[0])
        raise _refuse(
            "repeats events the run's data already holds",
            int(same.sum()),
            f"user {store.user_ids[r[j]]}, item {store.item_ids[i[j]]} at {t[j]}",
            "pass only the events after the run's data",
            name,
        )


def _known_pairs(store: SequenceStore, rows, items) -> np.ndarray:
    """Whether each (row, item) pair already occurs in the data."""
    lengths = np.diff(store.offsets)
    width = store.n_items + 1
    held = np.repeat(np.arange(store.n_users), lengths) * width + np.asarray(store.items)
    inside = (rows < store.n_users) & (items <= store.n_items)
    out = np.zeros(len(rows), dtype=bool)
    out[inside] = np.isin(rows[inside] * width + items[inside], held)
    return out


def merge_csr(offsets, old_arrays: list, rows, new_arrays: list, n_users: int):
    """CSR with each row's new values after its old ones; ``rows`` (sorted) are the new
    values' rows, which may reach past the old rows (new users). One gather, no loops."""
    old_counts = np.diff(offsets)
    counts = np.bincount(rows, minlength=n_users)
    counts[: len(old_counts)] += old_counts
    out_offsets = np.zeros(n_users + 1, dtype=np.int64)
    np.cumsum(counts, out=out_offsets[1:])
    old_rows = np.repeat(np.arange(len(old_counts)), old_counts)
    at_old = out_offsets[old_rows] + (np.arange(len(old_rows)) - offsets[old_rows])
    first_new = np.searchsorted(rows, np.arange(n_users))  # rows is sorted
    before = np.zeros(n_users, dtype=np.int64)
    before[: len(old_counts)] = old_counts
    at_new = out_offsets[rows] + before[rows] + (np.arange(len(rows)) - first_new[rows])
    merged = []
    for old, new in zip(old_arrays, new_arrays, strict=True):
        out = np.empty(out_offsets[-1], dtype=old.dtype)
        out[at_old], out[at_new] = old, new
        merged.append(out)
    return out_offsets, merged


def reference_merge_csr(offsets, old_arrays, rows, new_arrays, n_users):
    """`merge_csr` written row by row (the tests' check)."""
    per_row = [[[] for _ in old_arrays] for _ in range(n_users)]
    for u in range(len(offsets) - 1):
        for k, a in enumerate(old_arrays):
            per_row[u][k].extend(a[offsets[u] : offsets[u + 1]].tolist())
    for j, u in enumerate(rows):
        for k, a in enumerate(new_arrays):
            per_row[u][k].append(a[j].item())
    lengths = [len(p[0]) for p in per_row]
    out_offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    merged = [
        np.array([v for p in per_row for v in p[k]], dtype=old.dtype)
        for k, old in enumerate(old_arrays)
    ]
    return out_offsets, merged


def _check_pairs(store, rows, items, policy: str, name: str) -> np.ndarray:
    """``data.dedupe`` across the data and the events: which events to keep."""
    keep = np.ones(len(rows), dtype=bool)
    if policy == "keep":
        return keep
    known = _known_pairs(store, rows, items)
    if policy == "last" and known.any():
        j = int(np.flatnonzero(known)[0])
        raise _refuse(
            "repeats (user, item) pairs of the run's data, which data.dedupe=last would move "
            "out of the history the model trained on",
            int(known.sum()),
            f"user {store.user_ids[rows[j]]}, item {store.item_ids[items[j]]}",
            "drop those events, or retrain",
            name,
        )
    return ~known


def extend_store(
    store: SequenceStore, frame: pl.DataFrame, timed: bool, policy: str, name: str
) -> tuple[SequenceStore, Added]:
    """``store`` with the events of ``frame`` (ingest's ``user, item, ts, order`` columns)
    appended: old ids unchanged, new users and items after them (module docstring)."""
    if timed != store.has_timestamps:
        have, lack = ("has", "no") if store.has_timestamps else ("has no", "")
        raise SeqrecError(
            f"events file {name} has {'timestamps' if timed else 'no timestamps'} but the run's "
            f"data {have} timestamps; give the events {lack or 'no'} timestamp column "
            "(data.time_col) like the run's data"
        )
    frame = dedupe(frame, policy)
    rows, new_users = _assign(frame, "user", np.asarray(store.user_ids).astype(str), store.n_users)
    items, new_items = _assign(
        frame, "item", np.asarray(store.item_ids[1:]).astype(str), store.n_items
    )
    items += 1  # row 0 is PAD
    ts, order = frame["ts"].to_numpy(), frame["order"].to_numpy()
    _check_order(store, rows, items, ts, name)
    keep = _check_pairs(store, rows, items, policy, name)
    perm = np.lexsort((order[keep], ts[keep], rows[keep]))
    rows, items, ts = rows[keep][perm], items[keep][perm], ts[keep][perm]
    n_users = store.n_users + len(new_users)
    old = [np.asarray(store.items)]
    new = [items.astype(np.int32)]
    if store.timestamps is not None:
        old.append(np.asarray(store.timestamps))
        new.append(ts.astype(np.int64))
    offsets, merged = merge_csr(np.asarray(store.offsets), old, rows, new, n_users)
    added = Added(len(rows), len(new_users), len(new_items), np.unique(rows))
    report = {"events": added.events, "new_users": added.new_users, "new_items": added.new_items}
    meta = {**store.meta, "updates": [*store.meta.get("updates", []), {"file": name, **report}]}
    grown = replace(
        store,
        offsets=offsets,
        items=merged[0],
        timestamps=merged[1] if store.timestamps is not None else None,
        n_items=store.n_items + len(new_items),
        user_ids=np.concatenate([np.asarray(store.user_ids).astype(str), new_users]),
        item_ids=np.concatenate([np.asarray(store.item_ids).astype(str), new_items]),
        meta=meta,
    )
    return grown, added


def _supported(cfg: DataConfig) -> None:
    for bad, what in (
        (cfg.behavior_col, "behaviours (data.behavior_col)"),
        (cfg.domain_map or cfg.domain_col, "domains (data.domain_map / data.domain_col)"),
    ):
        if bad:
            raise SeqrecError(
                f"updating a run whose data has {what} is not supported yet; retrain on the "
                "whole log instead"
            )


def append_events(
    store: SequenceStore, cfg: DataConfig, record: EventsFile
) -> tuple[SequenceStore, Added, EventsFile]:
    """Read ``record``'s file and append it; a file whose sha256 differs from the one
    recorded (when one is) is refused: it is not the file the run trained on."""
    frame, timed, now = read_events(record.path, cfg)
    if record.sha256 and record.sha256 != now.sha256:
        raise SeqrecError(
            f"events file {record.path} changed since the run used it (sha256 differs); "
            "restore the file the run was updated with"
        )
    grown, added = extend_store(store, frame, timed, cfg.dedupe, Path(record.path).name)
    counts = {"events": added.events, "new_users": added.new_users, "new_items": added.new_items}
    return grown, added, now.model_copy(update=counts)


def _grow(
    cfg: DataConfig, events: list[EventsFile]
) -> tuple[SequenceStore, list[Added], list[EventsFile]]:
    """The base data of ``cfg`` (its ``data.updates`` ignored: ``events`` say what follows it)
    plus ``events`` in order."""
    cfg = with_catalog_defaults(cfg).model_copy(update={"updates": []})
    _supported(cfg)
    store = build_store(cfg)
    added, records = [], []
    for record in events:
        store, one, done = append_events(store, cfg, record)
        added.append(one)
        records.append(done)
    return store, added, records


def named_events(paths: list[str] | list[Path]) -> list[EventsFile]:
    """Records of events files known by path only (their sha256 is read when appended)."""
    return [EventsFile(path=str(Path(p).expanduser().resolve()), sha256="") for p in paths]


def updated_store(cfg: DataConfig) -> SequenceStore:
    """``data.dataset`` plus the ``data.updates`` files in order: the data an update trained
    on, for a run that trains from scratch on it (``seqrec train -c UPDATE/config.yaml``)."""
    return _grow(cfg, named_events(cfg.updates))[0]


def prepare_continued(
    cfg: DataConfig, events: list[EventsFile]
) -> tuple[SequenceStore, Split, list[Added], list[EventsFile]]:
    """The base data of ``cfg`` plus ``events`` in order, split as ``cfg`` says: the store,
    the split, what each file added and the files' records (with their sha256 and counts)."""
    store, added, records = _grow(cfg, events)
    store, split = split_store(store, with_catalog_defaults(cfg))
    return store, split, added, records


def _train_rows(split: Split, pick: np.ndarray, what: str) -> Split:
    """``split`` whose training rows are ``pick`` (indices into them, repeats allowed);
    validation and test unchanged."""
    train = split.train
    view = replace(
        train,
        users=train.users[pick],
        starts=train.starts[pick],
        ends=train.ends[pick],
        targets=train.targets[pick],
    )
    return replace(split, train=view, protocol={**split.protocol, "train_rows": what})


def repeat_train(split: Split, users: np.ndarray, times: int) -> Split:
    """``split`` with the training rows of ``users`` (store rows) ``times`` times and every
    other row once: an update that weighs the users with new events up without dropping the
    rest (each epoch replays them). Validation and test are unchanged."""
    count = np.where(np.isin(split.train.users, users), times, 1)
    pick = np.repeat(np.arange(len(split.train.users)), count)
    return _train_rows(split, pick, f"all, users with new events x{times}")


def restrict_train(split: Split, users: np.ndarray) -> Split:
    """``split`` training only the rows of ``users`` (store rows): an update that trains on
    the users with new events. Validation and test are unchanged."""
    keep = np.flatnonzero(np.isin(split.train.users, users))
    return _train_rows(split, keep, "users with new events")
