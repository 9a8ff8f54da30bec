"""What `prepare` does to a built store before splitting it: the order of same-time events,
and one domain's events for a single-domain baseline on multi-domain data.

Both are cheap numpy passes over the cached store, so they never enter its cache key and every
variant of one file shares one parse.

**Same-time order** (``data.same_day_order``). A file's order among one user's events with
equal timestamps can carry information the real world did not: the ABXI / MERIT files list a
user's same-day items by ascending item index, so domain A always comes before domain B within
a day, and 32% of Food-Kitchen test targets share a day with the event before them. A model
learns that order and scores it. ``shuffle`` permutes every group of equal timestamps of a
user with a fixed seed: the order the model sees then holds no signal, and the artefact's
size is the difference between the two orders (docs/CROSS_DOMAIN.md). The permutation is a
function of the store alone (users in sorted id order, events in time then file order), so a
file with its users in another order gives the same data.

**One domain** (``data.domain``). ``domain_split=merged`` splits the merged sequence first,
then keeps the domain's events: train = the domain's events before the validation event;
valid / test = the rows whose target is in the domain, with the domain's events before the
target as history. Those are exactly the joint models' per-domain rows, so a single-domain
baseline and a joint model can be compared user by user. ``domain_split=domain`` splits the
domain's own events instead (its last event is the test), a single-domain dataset in its own
right. Either way the catalogue shrinks to the domain's items (renumbered 1..N_d in the joint
store's order) and the domain keeps its code and name.
"""

from __future__ import annotations

import logging
from dataclasses import replace

import numpy as np

from seqrec.data.split import Split, SplitView, make_split
from seqrec.data.store import SequenceStore
from seqrec.errors import SeqrecError
from seqrec.options import DataConfig

log = logging.getLogger(__name__)


def _event_rows(store: SequenceStore) -> np.ndarray:
    """The user row of every event."""
    return np.repeat(np.arange(store.n_users, dtype=np.int64), store.lengths())


def tie_report(store: SequenceStore, order: str) -> dict:
    """How much of the data shares a timestamp within a user, and (with domains) how often
    the listed order of a tied pair of different domains goes from the lower domain code to
    the higher (1.0 in the ABXI files; about 0.5 once shuffled)."""
    ts, row = np.asarray(store.timestamps), _event_rows(store)
    same = (row[1:] == row[:-1]) & (ts[1:] == ts[:-1])
    tied = np.zeros(len(ts), dtype=bool)
    tied[1:] |= same
    tied[:-1] |= same
    ends = store.offsets[1:][store.lengths() >= 2]
    report = {
        "order": order,
        "tied_events": int(tied.sum()),
        "tied_last_events": int(same[ends - 2].sum()),
    }
    if store.domains is not None:
        dom = np.asarray(store.domains)
        mixed = same & (dom[1:] != dom[:-1])
        rising = mixed & (dom[1:] > dom[:-1])
        report["tied_pairs_across_domains"] = int(mixed.sum())
        report["rising_share"] = float(rising.sum() / mixed.sum()) if mixed.any() else None
    return report


def order_same_time(store: SequenceStore, order: str, seed: int) -> SequenceStore:
    """``store`` with each user's equal-timestamp events shuffled (``order="shuffle"``), and
    the tie report in its metadata whenever the order can matter to a reader of results."""
    if order == "shuffle" and store.timestamps is None:
        raise SeqrecError(
            f"data.same_day_order=shuffle reorders events that share a timestamp, but dataset "
            f"'{store.name}' has no timestamps (its order is the file's); set "
            "data.same_day_order=file"
        )
    if store.timestamps is None or (order != "shuffle" and store.domains is None):
        return store
    arrays = {}
    if order == "shuffle":
        key = np.random.default_rng(seed).random(len(store.items))
        perm = np.lexsort((key, np.asarray(store.timestamps), _event_rows(store)))
        arrays = {
            name: np.asarray(value)[perm]
            for name in ("items", "timestamps", "behaviors", "domains")
            if (value := getattr(store, name)) is not None
        }
    moved = replace(store, **arrays)
    label = f"shuffle (seed {seed})" if order == "shuffle" else "file"
    return replace(moved, meta={**store.meta, "same_day_order": tie_report(moved, label)})


def domain_code(store: SequenceStore, name: str) -> int:
    """The code of domain ``name`` (1..K), or one line saying which domains there are."""
    if not store.has_domains:
        raise SeqrecError(
            f"data.domain={name} keeps one domain's events, but dataset '{store.name}' has no "
            "domains; set data.domain_map (or data.domain_col), or drop data.domain"
        )
    names = store.domain_names
    if name not in names:
        raise SeqrecError(
            f"data.domain={name}: dataset '{store.name}' has the domains {', '.join(names)}; "
            "use one of them"
        )
    return names.index(name) + 1


def keep_domain(store: SequenceStore, code: int) -> tuple[SequenceStore, np.ndarray, np.ndarray]:
    """(the store of domain ``code``'s events and items, joint flat index -> its index there
    (a cumulative count, so slices map by their ends), joint item id -> its id there)."""
    keep = np.asarray(store.domains) == code
    present = store.item_domains == code
    new_id = np.zeros(store.n_items + 1, dtype=np.int32)
    new_id[present] = np.arange(1, int(present.sum()) + 1, dtype=np.int32)
    counts = np.bincount(_event_rows(store)[keep], minlength=store.n_users)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    name = store.domain_names[code - 1]

    def kept(values):
        return None if values is None else np.asarray(values)[keep]

    sub = SequenceStore(
        offsets,
        new_id[np.asarray(store.items)[keep]],
        kept(store.timestamps),
        int(present.sum()),
        store.user_ids,
        np.concatenate([store.item_ids[:1], store.item_ids[present]]),
        f"{store.name}:{name}",
        {**store.meta, "domain_view": {"domain": name, "items": int(present.sum())}},
        kept(store.behaviors),
        kept(store.domains),
    )
    cumulative = np.concatenate([[0], np.cumsum(keep)]).astype(np.int64)
    return sub, cumulative, new_id


def _restricted(view: SplitView, sub: SequenceStore, to_sub, new_id, code, evaluated):
    """``view``'s rows in ``sub``: every row (train), or the rows whose target is in the
    domain and that have a history in it (valid, test); and how many of the latter lacked one."""
    item_domains = view.store.item_domains
    rows = np.flatnonzero(item_domains[view.targets] == code) if evaluated else np.arange(len(view))
    starts, ends = to_sub[view.starts[rows]], to_sub[view.ends[rows]]
    empty = 0
    if evaluated:
        has = ends > starts
        empty = int((~has).sum())
        rows, starts, ends = rows[has], starts[has], ends[has]
    targets = new_id[view.targets[rows]] if evaluated else np.zeros(len(rows))
    return SplitView(sub, view.users[rows], starts, ends, targets.astype(np.int64)), empty


def restrict_split(split: Split, sub: SequenceStore, to_sub, new_id, code: int) -> Split:
    """The merged split's rows for one domain (``domain_split=merged``; module docstring)."""
    train, _ = _restricted(split.train, sub, to_sub, new_id, code, False)
    valid, empty_v = _restricted(split.valid, sub, to_sub, new_id, code, True)
    test, empty_t = _restricted(split.test, sub, to_sub, new_id, code, True)
    if empty_v or empty_t:
        log.warning(
            "data.domain: %d validation and %d test rows have no earlier event in the domain "
            "and leave the evaluation",
            empty_v,
            empty_t,
        )
    protocol = {
        **split.protocol,
        "domain": sub.domain_names[code - 1],
        "domain_split": "merged sequence split, then the domain's events and targets",
        "rows_without_domain_history": {"valid": empty_v, "test": empty_t},
    }
    return Split(train, valid, test, protocol)


def _covered(view: SplitView, n: int) -> np.ndarray:
    """Flat events inside any of ``view``'s [start, end) slices."""
    marks = np.bincount(view.starts, minlength=n + 1) - np.bincount(view.ends, minlength=n + 1)
    return np.cumsum(marks[:n]) > 0


def check_trained_domains(store: SequenceStore, split: Split) -> None:
    """Refuse a domain that has evaluation targets but no training event: its items are never
    trained, so its metrics would measure the initialisation (a domain seen only at inference)."""
    trained = set(np.unique(np.asarray(store.domains)[_covered(split.train, len(store.items))]))
    item_domains = store.item_domains
    for part in ("valid", "test"):
        view = getattr(split, part)
        codes, counts = np.unique(item_domains[view.targets], return_counts=True)
        for code, count in zip(codes, counts, strict=True):
            if code not in trained:
                name = store.domain_names[int(code) - 1]
                raise SeqrecError(
                    f"domain '{name}' has {int(count):,} {part} target(s) but no training "
                    "event (a domain seen only at inference), so its items would be scored "
                    "untrained; use data with earlier events of it, or leave it out with "
                    "data.domain=<another domain>"
                )


def split_store(store: SequenceStore, cfg: DataConfig) -> tuple[SequenceStore, Split]:
    """The store as the run sees it and its split: same-time order, then ``data.domain``."""
    order = "file" if cfg.same_day_order == "auto" else cfg.same_day_order
    if cfg.same_day_seed and order != "shuffle":
        raise SeqrecError(
            f"data.same_day_seed seeds data.same_day_order=shuffle, but dataset "
            f"'{store.name}' keeps the file's order; set data.same_day_order=shuffle or drop "
            "data.same_day_seed"
        )
    store = order_same_time(store, order, cfg.same_day_seed)
    if cfg.domain is None:
        split = make_split(store, cfg)
    else:
        code = domain_code(store, cfg.domain)
        sub, to_sub, new_id = keep_domain(store, code)
        if cfg.domain_split == "domain":
            split = make_split(sub, cfg)
            split = replace(
                split,
                protocol={**split.protocol, "domain": cfg.domain, "domain_split": "own events"},
            )
        else:
            split = restrict_split(make_split(store, cfg), sub, to_sub, new_id, code)
        store = sub
    if store.has_domains:
        check_trained_domains(store, split)
    if ties := store.meta.get("same_day_order"):  # shuffled, or multi-domain: say which order
        split = replace(split, protocol={**split.protocol, "same_day_order": ties["order"]})
    return store, split
