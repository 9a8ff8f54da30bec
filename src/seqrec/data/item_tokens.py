"""Item features -> hashed token rows: the catalogue-independent input of SRT (models/srt.py).

Every feature value becomes a token string ``field=value`` (``genres=Comedy``, ``year=1995``,
``year~1990``), hashed with blake2b into 1..buckets. Hashing by *name* is what lets weights
trained on one dataset read another: ML-1M and ML-100K number their movies differently (ML-1M
2 is Jumanji, ML-100K 2 is GoldenEye) and their metadata files may order vocabularies
differently, but "Comedy", "1995" and a title word hash to the same row everywhere.

Field kinds (``data/features/``):

* categorical: one token per item;
* multi-valued: up to ``slots`` tokens (genres, Amazon attributes, hashed title words);
* numeric: the integer value and its decade, so near years share a token;
* vector: not used (SRT embeds discrete tokens).

Value names come from ``field.labels`` (the vocabulary, id -> name) when the loader provides
it; a field without labels is taken to be in a fixed id space already (the loader's hashed
title words) and its ids are hashed as ``field#id``. Numeric values come from ``field.raw``
(un-standardised) when present, else from the standardised values in quarter-std bins, which
are only approximately comparable across datasets; `token_report` says which path each field
took, and the trainer logs it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from seqrec.errors import SeqrecError


def hash_tokens(strings: Sequence[str], buckets: int) -> np.ndarray:
    """Stable token ids 1..buckets for ``strings`` (blake2b, the same on every machine and in
    every process, unlike Python's salted ``hash``)."""
    out = np.empty(len(strings), dtype=np.int64)
    for i, s in enumerate(strings):
        digest = hashlib.blake2b(s.encode("utf-8"), digest_size=8).digest()
        out[i] = int.from_bytes(digest, "little") % buckets + 1
    return out


def _vocab_tokens(name: str, field: Any, buckets: int) -> tuple[np.ndarray, str]:
    """Token id of every vocabulary id (index 0 -> 0 = empty) and how names were found."""
    labels = getattr(field, "labels", None)
    vocab = int(getattr(field, "vocab", 0) or int(np.max(field.values, initial=0)) + 1)
    if labels is not None:
        if len(labels) < vocab:
            raise SeqrecError(f"feature '{name}' has {vocab} ids but only {len(labels)} labels")
        strings = [f"{name}={labels[i]}" for i in range(1, vocab)]
        how = "by name"
    else:
        strings = [f"{name}#{i}" for i in range(1, vocab)]
        how = "by id (fixed id space)"
    return np.concatenate([[0], hash_tokens(strings, buckets)]), how


def _numeric_tokens(name: str, field: Any, slots: int, buckets: int) -> tuple[np.ndarray, str]:
    """[R, slots] tokens of a numeric field: the value, then its decade (raw values), or
    quarter-std bins of the standardised value when the loader kept no raw values."""
    raw = getattr(field, "raw", None)
    if raw is not None:
        x = np.asarray(raw, dtype=np.float64)
        known = ~np.isnan(x)
        fine = np.rint(np.where(known, x, 0)).astype(np.int64)
        coarse = np.floor(np.where(known, x, 0) / 10).astype(np.int64) * 10
        forms = [(fine, "{}={}"), (coarse, "{}~{}")]
        how = "value + decade"
    else:
        z = np.asarray(field.values, dtype=np.float64)
        known = z != 0  # the loader writes unknown as 0 (the mean)
        fine = np.rint(z * 4).astype(np.int64)
        forms = [(fine, "{}~z{}")]
        how = "standardised quarter-std bins (approximate across datasets)"
    cols = []
    for codes, fmt in forms[:slots]:
        uniq, inverse = np.unique(codes, return_inverse=True)
        ids = hash_tokens([fmt.format(name, int(u)) for u in uniq], buckets)
        cols.append(np.where(known, ids[inverse.reshape(-1)], 0))
    out = np.zeros((len(known), slots), dtype=np.int64)
    out[:, : len(cols)] = np.stack(cols, axis=1)
    return out, how


def item_tokens(
    features: Any, fields: dict[str, int], buckets: int
) -> tuple[np.ndarray, dict[str, str]]:
    """``features`` (data/features/ ``Features``, rows aligned to internal item ids, row 0 =
    PAD) -> (tokens [rows, sum(slots)] int64, 0 = empty slot; report field -> how it was read).

    Columns follow ``fields`` order, ``fields[f]`` slots per field; multi-valued fields keep
    their first ``slots`` values. Row 0 (PAD) is all zeros.
    """
    available = list(features.fields)
    missing = [f for f in fields if f not in features.fields]
    if missing:
        raise SeqrecError(
            f"model.srt_fields names {missing}, which the item features do not provide; "
            f"they have {available}: set model.srt_fields to some of them"
        )
    rows = features.n_rows
    blocks, report = [], {}
    for name, slots in fields.items():
        field = features.fields[name]
        if field.kind == "numeric":
            block, how = _numeric_tokens(name, field, slots, buckets)
        elif field.kind in ("categorical", "multi"):
            table, how = _vocab_tokens(name, field, buckets)
            ids = np.asarray(field.values, dtype=np.int64).reshape(rows, -1)[:, :slots]
            block = np.zeros((rows, slots), dtype=np.int64)
            block[:, : ids.shape[1]] = table[ids]
        else:
            raise SeqrecError(
                f"feature '{name}' is a {field.kind} field; srt embeds categorical, "
                "multi-valued and numeric fields only: drop it from model.srt_fields"
            )
        blocks.append(block)
        report[name] = how
    tokens = np.concatenate(blocks, axis=1)
    tokens[0] = 0
    return tokens, report
