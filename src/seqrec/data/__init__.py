"""Data pipeline: raw log -> SequenceStore (CSR, cached, memory-mapped) -> Split views.

``prepare`` is the one call most code needs; the pieces stay importable for tools and tests.
"""

from __future__ import annotations

from seqrec.data.catalog import DatasetSpec, list_datasets, resolve, with_catalog_defaults
from seqrec.data.split import Split, SplitView, leave_one_out, make_split, temporal_split
from seqrec.data.store import SequenceStore, build_store
from seqrec.data.views import split_store
from seqrec.options import DataConfig

__all__ = [
    "DatasetSpec",
    "SequenceStore",
    "Split",
    "SplitView",
    "build_store",
    "leave_one_out",
    "list_datasets",
    "load_store",
    "make_split",
    "prepare",
    "resolve",
    "temporal_split",
    "with_catalog_defaults",
]


def prepare(cfg: DataConfig) -> tuple[SequenceStore, Split]:
    """Store + split for ``cfg``, with the catalogue's literature preprocessing filled in for
    fields left at their defaults (``dataset=ml-1m`` -> items with < 5 ratings dropped once).
    The store is the cached one, with same-time events reordered (``data.same_day_order``)
    and only one domain kept (``data.domain``) where asked (data/views.py); ``data.updates``
    files are appended to the base data as an update appends them."""
    cfg = with_catalog_defaults(cfg)
    return split_store(load_store(cfg), cfg)


def load_store(cfg: DataConfig) -> SequenceStore:
    """The (unsplit) store of ``cfg``: the cached base data, plus the ``data.updates`` files
    appended as an update appends them (an update's data, retrained from scratch)."""
    cfg = with_catalog_defaults(cfg)
    if cfg.updates:
        from seqrec.data.update import updated_store

        return updated_store(cfg)
    return build_store(cfg)
