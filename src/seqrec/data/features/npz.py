"""Precomputed item text vectors (e.g. sentence embeddings of titles) stored as ``.npz``."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from seqrec.data.features.records import RawRecords, canon_id
from seqrec.errors import SeqrecError


def read_vectors_npz(path: Path) -> RawRecords:
    """Precomputed text vectors: an ``.npz`` with ``ids`` (original ids) and ``vectors`` [n, d]."""
    try:
        with np.load(path, allow_pickle=False) as z:
            ids, vectors = z["ids"], np.asarray(z["vectors"], dtype=np.float32)
    except (OSError, KeyError, ValueError) as err:
        raise SeqrecError(
            f"{path} must be an .npz with arrays 'ids' and 'vectors' [n, d] ({err})"
        ) from None
    if vectors.ndim != 2 or len(vectors) != len(ids):
        raise SeqrecError(f"{path}: 'vectors' must be [len(ids), d], got {vectors.shape}")
    return RawRecords([canon_id(str(i)) for i in ids], vectors={"text": vectors})
