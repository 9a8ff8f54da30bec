"""Raw records -> feature fields aligned to the store's ids (vocabularies, padding,
standardisation); see the package docstring for the conventions."""

from __future__ import annotations

import numpy as np

from seqrec.data.features.fields import FeatureField, Features
from seqrec.data.features.records import TITLE_BUCKETS, RawRecords


def _align_rows(file_ids: list[str], target_ids: np.ndarray) -> np.ndarray:
    """For every target id, its record index in the file, or -1. Duplicate ids: last wins."""
    ids = np.asarray(file_ids, dtype=str)
    if not len(ids):
        return np.full(len(target_ids), -1, dtype=np.int64)
    order = np.argsort(ids, kind="stable")
    keys = ids[order]
    # last occurrence of each key in sorted-stable order = the file's last record of that id
    last = np.r_[keys[1:] != keys[:-1], True]
    keys, order = keys[last], order[last]
    q = np.asarray(target_ids, dtype=str)
    pos = np.minimum(np.searchsorted(keys, q), len(keys) - 1)
    return np.where(keys[pos] == q, order[pos], -1).astype(np.int64)


def _vocab(values: list) -> dict[str, int]:
    """Sorted distinct values -> 1..n (0 stays unknown), independent of file order."""
    return {v: i + 1 for i, v in enumerate(sorted(set(values)))}


def _pad_lists(lists: list[list[int]]) -> np.ndarray:
    width = max((len(x) for x in lists), default=0) or 1
    out = np.zeros((len(lists), width), dtype=np.int64)
    lens = np.fromiter((len(x) for x in lists), dtype=np.int64, count=len(lists))
    mask = np.arange(width)[None, :] < lens[:, None]
    out[mask] = np.fromiter((v for x in lists for v in x), dtype=np.int64, count=int(lens.sum()))
    return out


def align(raw: RawRecords, target_ids: np.ndarray, pad_row: bool, source: str) -> Features:
    """Raw records -> fields aligned to ``target_ids`` (the store's original ids as text; for
    items ``store.item_ids`` whose row 0 is the PAD placeholder)."""
    rows = _align_rows(raw.ids, target_ids)
    if pad_row:
        rows[0] = -1
    have = rows >= 0
    n = len(target_ids)
    real = have[1:] if pad_row else have
    coverage = float(real.mean()) if len(real) else 0.0
    fields: dict[str, FeatureField] = {}
    for name, vals in raw.categorical.items():
        voc = _vocab([v for v in vals if v is not None])
        codes = np.array([voc.get(v, 0) if v is not None else 0 for v in vals] + [0], np.int64)
        fields[name] = FeatureField(
            name, "categorical", codes[rows], len(voc) + 1, ("<unknown>", *voc)
        )
    for name, lists in raw.multi.items():
        voc = _vocab([v for x in lists for v in x])
        coded = _pad_lists([sorted({voc[v] for v in x}) for x in lists] + [[]])
        fields[name] = FeatureField(name, "multi", coded[rows], len(voc) + 1, ("<unknown>", *voc))
    for name, lists in raw.hashed.items():
        coded = _pad_lists([*lists, []])
        fields[name] = FeatureField(name, "multi", coded[rows], TITLE_BUCKETS + 1)
    for name, vals in raw.numeric.items():
        x = np.array([np.nan if v is None else v for v in vals] + [np.nan], dtype=np.float64)[rows]
        known = ~np.isnan(x)
        mean = x[known].mean() if known.any() else 0.0
        std = x[known].std() if known.sum() > 1 else 1.0
        z = np.where(known, (x - mean) / (std or 1.0), 0.0).astype(np.float32)
        fields[name] = FeatureField(name, "numeric", z, 1, raw=x.astype(np.float32))
    for name, mat in raw.vectors.items():
        padded = np.concatenate([mat, np.zeros((1, mat.shape[1]), np.float32)])
        fields[name] = FeatureField(name, "vector", padded[rows], mat.shape[1])
    return Features(fields, n, source, coverage, {"matched": int(real.sum())})
