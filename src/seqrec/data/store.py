"""SequenceStore: every user's chronological item sequence in CSR form, plus its on-disk cache.

CSR (one flat ``items`` array + ``offsets``) is what lets splits and batches be views: a user's
sequence is ``items[offsets[u]:offsets[u+1]]`` and no prefix is ever materialised. The arrays are
plain ``.npy`` files so a cached store opens with ``mmap_mode="r"`` in milliseconds and is shared
by the page cache between processes (DDP workers, dataloader workers) instead of being copied.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from seqrec.data.catalog import (
    cache_root,
    resolve,
    sha256_file,
    spec_by_sha256,
    with_catalog_defaults,
)
from seqrec.data.formats import FormatChoice, given
from seqrec.data.source import check_readable
from seqrec.data.store_dir import ARRAYS, OPTIONAL, STORE_VERSION, record, write_store_dir
from seqrec.errors import SeqrecError
from seqrec.options import DataConfig

log = logging.getLogger(__name__)

_KEY_FIELDS = (
    "format",
    "user_col",
    "item_col",
    "time_col",
    "sep",
    "dedupe",
    "min_user_count",
    "min_item_count",
    "kcore",
    "behavior_col",
)
_READ_REPORT = (
    "format",
    "format_evidence",
    "rows_read",
    "dropped",
    "skipped_lines",
    "domains",
    "same_day_order",
    "domain_view",
    "ingest",
)
"""Metadata stats() reports: how the file was read and what was dropped on the way."""


@dataclass(frozen=True, eq=False)
class SequenceStore:
    """Row ``u`` holds user ``u``'s items (1..n_items, 0 is PAD) in chronological order.

    ``behaviors`` (optional, int16, aligned with ``items``) is each event's behaviour code, e.g.
    the MovieLens rating 1-5 (``data.behavior_col``); 0 never occurs in it (0 = PAD in batches).
    ``domains`` (optional, int16, aligned with ``items``) is each event's domain code 1..K,
    named by ``meta["domains"]["names"]`` (data/domains.py); every item has one domain.
    """

    offsets: np.ndarray
    items: np.ndarray
    timestamps: np.ndarray | None
    n_items: int
    user_ids: np.ndarray
    item_ids: np.ndarray
    name: str
    meta: dict[str, Any] = field(default_factory=dict)
    behaviors: np.ndarray | None = None
    domains: np.ndarray | None = None

    @property
    def has_behaviors(self) -> bool:
        return self.behaviors is not None

    @property
    def has_domains(self) -> bool:
        return self.domains is not None

    @property
    def domain_names(self) -> list[str]:
        """Names of domain codes 1..K (code c is ``domain_names[c - 1]``); [] without domains."""
        return list(self.meta.get("domains", {}).get("names", [])) if self.has_domains else []

    @cached_property
    def item_domains(self) -> np.ndarray | None:
        """[n_items + 1] int16: each item's domain code, 0 for PAD (None without domains)."""
        if self.domains is None:
            return None
        out = np.zeros(self.n_items + 1, dtype=np.int16)
        out[self.items] = self.domains
        return out

    @property
    def n_behaviors(self) -> int:
        """Largest behaviour code (codes are 1..n_behaviors); 0 without behaviours."""
        if self.behaviors is None or not len(self.behaviors):
            return 0
        return int(self.meta.get("n_behaviors") or self.behaviors.max())

    @property
    def n_users(self) -> int:
        return len(self.offsets) - 1

    @property
    def has_timestamps(self) -> bool:
        return self.timestamps is not None

    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def sequence(self, u: int) -> np.ndarray:
        return self.items[self.offsets[u] : self.offsets[u + 1]]

    @cached_property
    def _item_lookup(self) -> tuple[np.ndarray, np.ndarray]:
        order = np.argsort(self.item_ids[1:], kind="stable")
        return self.item_ids[1:][order], order + 1

    @cached_property
    def _user_lookup(self) -> tuple[np.ndarray, np.ndarray]:
        order = np.argsort(self.user_ids, kind="stable")
        return self.user_ids[order], order

    def _lookup(self, ids: Any, table: tuple[np.ndarray, np.ndarray], what: str) -> np.ndarray:
        keys, values = table
        query = np.asarray(ids).astype(str)
        flat = query.ravel()
        pos = np.minimum(np.searchsorted(keys, flat), max(len(keys) - 1, 0))
        found = keys[pos] == flat if len(keys) else np.zeros(len(flat), dtype=bool)
        if not found.all():
            unknown = flat[~found]
            raise SeqrecError(
                f"{len(unknown)} unknown {what} id(s) for dataset '{self.name}', e.g. "
                f"{unknown[:5].tolist()}; use original ids that survived preprocessing"
            )
        return values[pos].astype(np.int64).reshape(query.shape)

    def item_index(self, original_ids: Any) -> np.ndarray:
        """Original item ids (str or int) -> internal ids 1..n_items."""
        return self._lookup(original_ids, self._item_lookup, "item")

    def user_index(self, original_ids: Any) -> np.ndarray:
        """Original user ids -> row indices 0..n_users-1."""
        return self._lookup(original_ids, self._user_lookup, "user")

    def stats(self) -> dict[str, Any]:
        lengths = self.lengths()
        nnz = len(self.items)
        return {
            "name": self.name,
            "users": self.n_users,
            "items": self.n_items,
            "interactions": nnz,
            "density": nnz / max(self.n_users * self.n_items, 1),
            "length_min": int(lengths.min()) if len(lengths) else 0,
            "length_median": float(np.median(lengths)) if len(lengths) else 0.0,
            "length_mean": float(lengths.mean()) if len(lengths) else 0.0,
            "length_max": int(lengths.max()) if len(lengths) else 0,
            "has_timestamps": self.has_timestamps,
            "has_behaviors": self.has_behaviors,
            **({"has_domains": True} if self.has_domains else {}),
            **{k: self.meta[k] for k in _READ_REPORT if k in self.meta},
        }

    def save(self, directory: str | os.PathLike) -> Path:
        """Write into a temp dir next to ``directory`` and rename it into place, so readers never
        see a half-written store (a crash leaves only a dot-prefixed temp dir)."""

        def fill(tmp: Path) -> dict[str, Any]:
            for name in ARRAYS:
                value = getattr(self, name)
                if value is not None:
                    np.save(tmp / f"{name}.npy", np.ascontiguousarray(value), allow_pickle=False)
            flags = (self.has_timestamps, self.has_behaviors, self.has_domains)
            return record(self.name, self.n_items, flags, self.meta)

        return write_store_dir(Path(directory), fill)

    @classmethod
    def load(cls, directory: str | os.PathLike, mmap: bool = True) -> SequenceStore:
        path = Path(directory)
        try:
            meta = json.loads((path / "meta.json").read_text())
        except (OSError, ValueError) as err:
            raise SeqrecError(
                f"no readable store at {path} ({err}); rebuild it or fix the path"
            ) from None
        if meta.get("version") != STORE_VERSION:
            raise SeqrecError(
                f"store at {path} has format version {meta.get('version')}, expected "
                f"{STORE_VERSION}; delete it so it is rebuilt"
            )
        mode = "r" if mmap else None
        try:
            arrays = {
                n: np.load(path / f"{n}.npy", mmap_mode=mode, allow_pickle=False)
                for n in ARRAYS
                if n not in OPTIONAL or meta.get(OPTIONAL[n])
            }
        except (OSError, ValueError) as err:
            raise SeqrecError(
                f"store at {path} is damaged ({err}); delete it so it is rebuilt"
            ) from None
        return cls(
            arrays["offsets"],
            arrays["items"],
            arrays.get("timestamps"),
            meta["n_items"],
            arrays["user_ids"],
            arrays["item_ids"],
            meta["name"],
            meta.get("meta", {}),
            arrays.get("behaviors"),
            arrays.get("domains"),
        )


_FILE_SUFFIXES = {"gz", "zip", "txt", "seq", "csv", "tsv", "dat", "inter", "parquet", "jsonl"}


def _store_name(path: Path) -> str:
    """The file name without its format and compression suffixes, so two copies of a dataset
    (``ml-1m.seq.txt.gz``, ``ml-1m.fileorder.seq.txt.gz``) keep distinct names in results."""
    parts = path.name.split(".")
    while len(parts) > 1 and parts[-1].lower() in _FILE_SUFFIXES:
        parts.pop()
    return ".".join(parts) or path.name


def _choose_format(cfg: DataConfig, path: Path, fmt: str, spec: Any) -> FormatChoice:
    """data.format when set, else the catalogue's format for its file, else detection (which
    refuses rather than guesses)."""
    if cfg.format != "auto":
        return given(cfg.format, f"data.format={cfg.format}")
    if fmt != "auto":
        return given(fmt, f"the catalogue entry {spec.name} lists {path.name} as {fmt}")
    from seqrec.data.evidence import detect  # needs polars, which a given format does not

    return detect(path, cfg)


def _domain_source(cfg: DataConfig, path: Path, spec: Any):
    """data/domains.py's source of the events' domains (None for single-domain data)."""
    if cfg.domain_map is None and cfg.domain_col is None:
        return None
    from seqrec.data.domains import domain_source

    return domain_source(cfg, path, spec)


class _Source(NamedTuple):
    """The log a DataConfig names; ``parts`` (read out of core): a folder, a glob, a big file."""

    path: Path
    parts: Any  # partitions.Partitions | None
    choice: FormatChoice
    digest: str
    name: str
    spec: Any
    domains: Any


def _source(cfg: DataConfig) -> _Source:
    from seqrec.data.partitions import choose, find_partitions, single_part, streams

    parts = find_partitions(cfg.dataset)
    if parts is not None:
        name = _store_name(parts.source)
        return _Source(parts.source, parts, choose(parts, cfg), parts.digest(), name, None, None)
    path, fmt, spec = resolve(cfg.dataset, cache_dir=cfg.cache_dir)
    check_readable(path)
    choice = _choose_format(cfg, path, fmt, spec)
    digest = sha256_file(path)
    # a catalogue file passed by path keeps its catalogue name (results say what data they used)
    named = spec or spec_by_sha256(digest)
    name = named.name if named else _store_name(path)
    domains = _domain_source(cfg, path, named)
    checked = domains is not None or bool(spec and spec.expected_interactions)
    parts = single_part(path, choice.format) if streams(path, choice.format, checked) else None
    return _Source(path, parts, choice, digest, name, spec, domains)


def _cached(cached: Path, src: _Source) -> SequenceStore | None:
    if not (cached / "meta.json").is_file():
        return None
    try:
        store = SequenceStore.load(cached)
    except SeqrecError as err:
        log.warning("ignoring cached store: %s", err)
        return None
    if "rows_read" not in store.meta:
        log.info("rebuilding the cached store of %s: it predates read reports", src.name)
        return None
    # the evidence is this call's: the key may have been built from an explicit format
    log.info("%s: cached store, read as %s (%s)", src.name, src.choice.format, src.choice.evidence)
    return replace(store, meta={**store.meta, "format_evidence": src.choice.evidence})


def build_store(cfg: DataConfig) -> SequenceStore:
    """Resolve, parse and preprocess ``cfg.dataset``, or load the identical cached result.

    The cache key hashes the raw bytes (of every part, for a partitioned log) plus every
    option that changes the output, so an edited file or a different k-core can never be served
    a stale store, and an unchanged one is never parsed twice. The store's metadata says how the
    file was read (the format and the evidence for it) and how many rows were read and dropped,
    and why; ``stats()`` reports it, so results.json does. A cache written before those reports
    existed is rebuilt in place. Partitioned and very large logs are built out of core.
    The base data only: ``prepare`` appends ``data.updates`` (data/update.py builds on this).
    """
    cfg = with_catalog_defaults(cfg)
    src = _source(cfg)
    fields = {k: getattr(cfg, k) for k in _KEY_FIELDS}
    fields.update(format=src.choice.format, name=src.name, version=STORE_VERSION, file=src.digest)
    if src.domains is not None:  # only then: single-domain stores keep their keys
        fields.update(src.domains.key)
    key = hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:32]
    cached = cache_root(cfg.cache_dir) / "stores" / key
    store = _cached(cached, src)
    if store is not None:
        return store
    head = {"source": str(src.path), "format": src.choice.format}
    head["format_evidence"] = src.choice.evidence
    tail = {"preprocessing": {k: getattr(cfg, k) for k in _KEY_FIELDS}, "cache_key": key}
    if src.parts is None:
        return _build_in_memory(cfg, src, cached, head, tail)
    from seqrec.data.outofcore import write_store

    write_store(src.parts, cfg, cached, src.name, head, tail)
    return SequenceStore.load(cached)


def _build_in_memory(
    cfg: DataConfig, src: _Source, cached: Path, head: dict, tail: dict
) -> SequenceStore:
    # parsing needs polars; a cached store does not, so a prepared cache opens without it
    from seqrec.data.ingest import read_interactions
    from seqrec.data.preprocess import preprocess

    path, spec, domains = src.path, src.spec, src.domains
    inter = read_interactions(path, src.choice.format, cfg, src.choice)
    if domains is not None:
        from seqrec.data.domains import attach_domains

        inter = attach_domains(inter, domains)
    expected = spec.expected_interactions if spec else None
    if expected and inter.frame.height != expected:
        raise SeqrecError(
            f"{path} has {inter.frame.height:,} interactions but the complete {spec.name} has "
            f"{expected:,} (a partial or different copy?); replace it with the full file, or pass "
            "the file path as data.dataset to use it as it is"
        )
    prep = preprocess(inter.frame, cfg.dedupe, cfg.min_user_count, cfg.min_item_count, cfg.kcore)
    meta = {
        **head,
        "format": inter.format,
        "format_evidence": inter.evidence,
        "raw_interactions": inter.frame.height,
        "rows_read": inter.frame.height,
        "dropped": prep.dropped,
        **tail,
    }
    if inter.skipped and any(inter.skipped.values()):
        meta["skipped_lines"] = inter.skipped
    if prep.behaviors is not None:
        meta["n_behaviors"] = int(prep.behaviors.max()) if len(prep.behaviors) else 0
        meta["behavior_values"] = inter.behavior_values
    if prep.domains is not None:
        meta["domains"] = {"names": inter.domain_values, "source": domains.describe()}
    store = SequenceStore(
        prep.offsets,
        prep.items,
        prep.timestamps if inter.has_timestamps else None,
        len(prep.item_ids) - 1,
        prep.user_ids,
        prep.item_ids,
        src.name,
        meta,
        prep.behaviors,
        prep.domains,
    )
    try:
        store.save(cached)
    except OSError as err:
        log.warning(
            "could not write the store cache at %s (%s); continuing without it", cached, err
        )
    return store
