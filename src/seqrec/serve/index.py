"""Top-K index choices for the server: exact (default, `score_chunks`) or faiss HNSW.

The faiss index only replaces the item scan; the user representation is the model's own
`last_hidden` on the same `history_batch` window the evaluator uses. Exclusions stay exact: the
index is asked for k + |history| items, seen items and PAD are dropped afterwards, and any row
that cannot be filled that way (or that carries a candidate filter) is answered by the exact
path instead.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from seqrec.data.batches import history_batch
from seqrec.errors import SeqrecError

if TYPE_CHECKING:
    from seqrec.run.recommender import Recommender

INDEX_KINDS = ("exact", "faiss")


def build_index(kind: str, rec: Recommender, threads: int | None = None):
    """None for exact (the recommender's own path), a `FaissIndex` for faiss."""
    if kind == "exact":
        return None
    if kind != "faiss":
        raise SeqrecError(f"--index must be one of {', '.join(INDEX_KINDS)}, not '{kind}'")
    return FaissIndex(rec, threads=threads)


class FaissIndex:
    """HNSW inner-product index over the item table (rows 1..N; faiss id = internal id - 1)."""

    def __init__(self, rec: Recommender, m: int = 32, ef_search: int = 128, threads=None):
        try:
            import faiss
        except ImportError:
            raise SeqrecError(
                "--index faiss needs faiss-cpu, which is not installed; "
                "`pip install 'seqrec[ann]'` or use --index exact"
            ) from None
        if threads:
            faiss.omp_set_num_threads(int(threads))
        weights = rec.model.item_weights.detach().float().cpu().numpy()[1:]
        self.faiss = faiss
        self.index = faiss.IndexHNSWFlat(weights.shape[1], m, faiss.METRIC_INNER_PRODUCT)
        self.index.hnsw.efConstruction = 200
        self.index.add(np.ascontiguousarray(weights, dtype=np.float32))
        self.ef_search = ef_search
        self.fallbacks = 0  # rows answered by the exact path

    @torch.inference_mode()
    def user_vectors(self, rec: Recommender, histories: list[np.ndarray]) -> np.ndarray:
        lens = np.array([len(h) for h in histories], dtype=np.int64)
        ends = np.cumsum(lens)
        flat = np.concatenate(histories).astype(np.int64)
        rows = np.arange(len(histories))
        batch = history_batch(flat, None, rows, ends - lens, ends, np.zeros(len(rows)), rec.max_len)
        return rec.model.last_hidden(batch.to(rec.device)).float().cpu().numpy()

    def search(
        self,
        rec: Recommender,
        histories: list[np.ndarray],
        k: int,
        exclude_seen: bool,
        candidates: list[np.ndarray | None],
    ) -> tuple[np.ndarray, np.ndarray]:
        n = len(histories)
        items = np.zeros((n, k), dtype=np.int64)
        scores = np.full((n, k), -np.inf, dtype=np.float32)
        exact_rows = [i for i in range(n) if candidates[i] is not None]
        ann_rows = [i for i in range(n) if candidates[i] is None]
        if ann_rows:
            vecs = self.user_vectors(rec, [histories[i] for i in ann_rows])
            extra = max(len(np.unique(histories[i])) for i in ann_rows) if exclude_seen else 0
            fetch = min(k + extra, rec.n_items)
            self.index.hnsw.efSearch = max(self.ef_search, fetch)
            dist, ids = self.index.search(np.ascontiguousarray(vecs, dtype=np.float32), fetch)
            for j, i in enumerate(ann_rows):
                got = ids[j] + 1  # faiss ids are internal - 1; -1 (missing) becomes 0
                keep = got > 0
                if exclude_seen:
                    keep &= ~np.isin(got, histories[i])
                got, val = got[keep][:k], dist[j][keep][:k]
                want = min(k, rec.n_items - (len(np.unique(histories[i])) if exclude_seen else 0))
                if len(got) < want:
                    exact_rows.append(i)
                    continue
                items[i, : len(got)] = got
                scores[i, : len(got)] = val
        if exact_rows:
            self.fallbacks += len(exact_rows)
            sub = [candidates[i] for i in exact_rows]
            ex_items, ex_scores = rec.top_k(
                [histories[i] for i in exact_rows],
                k,
                exclude_seen,
                candidates=sub if any(c is not None for c in sub) else None,
            )
            items[exact_rows] = ex_items
            scores[exact_rows] = ex_scores
        return items, scores
