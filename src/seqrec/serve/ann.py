"""Approximate top-K over the item table with faiss (HNSW and IVF), tuned to a recall target.

Both indexes only propose candidates. Every proposed item is re-scored exactly (user vector .
item row, the product the exact path computes) and re-sorted, so a served score equals the
exact one to float rounding; what an index can get wrong is only which items reach the top-K.
How often it does is measured when the index is built: recall@10 against the exact top-10 for a
sample of user vectors, raising the search effort (HNSW's efSearch, IVF's nprobe) until a target
is met or a cap is hit (`AnnIndex.tune`).

* HNSW (`IndexHNSWFlat`, METRIC_INNER_PRODUCT): a graph walk of ~log N hops. faiss supports
  inner product in the graph, but inner product is not a metric and the walk may never reach
  some items: on the clustered 200k table of `benchmarks/ann_serving.py` (M 32,
  efConstruction 200) recall@10 stalls at 0.936 with efSearch 4096 (17 ms a query), where
  IVF reaches 0.988 at nprobe 16 (0.05 ms).
* IVF (`IndexIVFFlat`): k-means cells, of which a query scans the ``nprobe`` nearest. Inner
  product is turned into L2 by the standard MIPS augmentation (Bachrach et al., RecSys'14):
  item x -> [x, sqrt(M^2 - |x|^2)] with M the largest item norm, query q -> [q, 0], so
  |q - x'|^2 = |q|^2 + M^2 - 2 q.x ranks items exactly as q.x does. The k-means cells are then
  cells of the very distance the search uses (IVF with METRIC_INNER_PRODUCT clusters by L2 but
  assigns by inner product, which disagree where norms vary, as they do with popularity), and
  nprobe = nlist is an exhaustive scan: any recall target is reachable, only latency grows.
  That guarantee is why `--index auto` picks IVF.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import torch

from seqrec.data.batches import history_batch
from seqrec.errors import SeqrecError

if TYPE_CHECKING:
    from seqrec.run.recommender import Recommender

log = logging.getLogger(__name__)

RECALL_K = 10
"""Recall is measured at 10, the cut the issue's target (recall@10 >= 0.98) names."""
_ADD_CHUNK = 1 << 20  # rows augmented and added at once: bounds the temporary copy


def import_faiss(kind: str):
    try:
        import faiss
    except ImportError:
        raise SeqrecError(
            f"--index {kind} needs faiss-cpu, which is not installed; "
            "`pip install 'seqrec[ann]'` or use --index exact"
        ) from None
    return faiss


# ------------------------------------------------------------------ exact reference, recall


def exact_top_k(queries: np.ndarray, vectors: np.ndarray, k: int, block: int = 1 << 18):
    """Rows [n, k] of ``vectors`` with the largest inner products, best first.

    One [n, block] score block at a time, merged into a running top-k, so a 10M-row table
    never becomes one [n, 10M] matrix. `reference_top_k` is the plain version it is tested
    against."""
    q = torch.from_numpy(np.ascontiguousarray(queries, dtype=np.float32))
    best_v = torch.empty(len(q), 0)
    best_i = torch.empty(len(q), 0, dtype=torch.int64)
    for s in range(0, len(vectors), block):
        scores = q @ torch.from_numpy(np.ascontiguousarray(vectors[s : s + block])).T
        val, idx = scores.topk(min(k, scores.shape[1]), dim=1)
        cand_v, cand_i = torch.cat([best_v, val], 1), torch.cat([best_i, idx + s], 1)
        best_v, pos = cand_v.topk(min(k, cand_v.shape[1]), dim=1)
        best_i = cand_i.gather(1, pos)
    return best_i.numpy()


def reference_top_k(queries: np.ndarray, vectors: np.ndarray, k: int) -> np.ndarray:
    """Every score in float64, one full sort: the definition `exact_top_k` must match."""
    scores = queries.astype(np.float64) @ vectors.astype(np.float64).T
    return np.argsort(-scores, axis=1, kind="stable")[:, :k]


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean share of each row's true top-k that ``found`` holds (ids are unique per row;
    faiss's -1 for a slot it could not fill matches nothing)."""
    hits = (found[:, :, None] == truth[:, None, :]).any(axis=2).sum(axis=1)
    return float(hits.mean() / truth.shape[1])


def sample_histories(
    rec: Recommender, n: int, seed: int = 0, histories: list[np.ndarray] | None = None
) -> tuple[list[np.ndarray], str]:
    """Histories (internal ids) whose user vectors measure recall, and where they came from.

    Given histories (real users) are sampled when there are any. A package holds none, so the
    fallback draws each item in proportion to training popularity, which is what real histories
    are mostly made of; without popularity (a run folder), uniformly."""
    rng = np.random.default_rng(seed)
    if histories:
        pick = np.sort(rng.choice(len(histories), min(n, len(histories)), replace=False))
        sample = [np.asarray(histories[i], dtype=np.int64) for i in pick]
        return sample, f"{len(sample)} of {len(histories)} given user histories"
    pop = None if rec.popularity is None else np.asarray(rec.popularity[1:], dtype=np.float64)
    if pop is not None and pop.sum() > 0:
        probs, source = pop / pop.sum(), "synthetic: items drawn by training popularity"
    else:
        probs, source = None, "synthetic: items drawn uniformly"
    lens = rng.integers(1, rec.max_len + 1, n)
    flat = rng.choice(rec.n_items, int(lens.sum()), p=probs).astype(np.int64) + 1
    return np.split(flat, np.cumsum(lens)[:-1]), f"{n} histories, {source}"


@torch.inference_mode()
def user_vectors(rec: Recommender, histories: list[np.ndarray], chunk: int = 256) -> np.ndarray:
    """[n, D] float32: the model's ``last_hidden`` on the evaluator's window of each history."""
    out = []
    for s in range(0, len(histories), chunk):
        part = histories[s : s + chunk]
        lens = np.array([len(h) for h in part], dtype=np.int64)
        ends = np.cumsum(lens)
        flat = np.concatenate(part).astype(np.int64)
        rows = np.arange(len(part))
        batch = history_batch(flat, None, rows, ends - lens, ends, np.zeros(len(rows)), rec.max_len)
        out.append(rec.model.last_hidden(batch.to(rec.device)).float().cpu().numpy())
    return np.ascontiguousarray(np.concatenate(out), dtype=np.float32)


# ---------------------------------------------------------------------------- the indexes


class AnnIndex:
    """An index over the item table (rows 1..N; faiss id = internal id - 1). Subclasses build
    it (`_build`), search it (`raw_search`) and name their effort knob."""

    kind: ClassVar[str]
    effort_name: ClassVar[str]
    first_effort: ClassVar[int]

    def __init__(self, rec: Recommender, effort: int, threads: int | None = None) -> None:
        self.faiss = import_faiss(self.kind)
        if threads:
            self.faiss.omp_set_num_threads(int(threads))
        # rows 1..N; shares memory with the model's table when that is float32 on the CPU
        self.vectors = np.ascontiguousarray(
            rec.model.item_weights.detach().float().cpu().numpy()[1:], dtype=np.float32
        )
        self.effort = effort
        self.fallbacks = 0  # rows answered by the exact path
        t0 = time.perf_counter()
        self._build()
        self.build_seconds = time.perf_counter() - t0
        self.report: dict = {}

    def _build(self) -> None:
        raise NotImplementedError

    def raw_search(self, vecs: np.ndarray, fetch: int) -> np.ndarray:
        """faiss ids [n, fetch] at the current effort, best first; -1 where none was found."""
        raise NotImplementedError

    @property
    def max_effort(self) -> int:
        """The effort cap `tune` stops at."""
        raise NotImplementedError

    def params(self) -> dict:
        return {}

    def nbytes(self) -> int:
        """Memory the faiss index holds (its own copy of the vectors included)."""
        raise NotImplementedError

    def candidates(self, vecs: np.ndarray, fetch: int) -> tuple[np.ndarray, np.ndarray]:
        """(internal ids, exact scores) [n, fetch], best first; id 0 / -inf where none."""
        raw = self.raw_search(vecs, fetch)
        rows = torch.from_numpy(self.vectors[np.maximum(raw, 0)])  # [n, fetch, D]
        scores = torch.bmm(rows, torch.from_numpy(vecs)[:, :, None])[:, :, 0].numpy()
        scores[raw < 0] = -np.inf
        order = np.argsort(-scores, axis=1, kind="stable")
        return np.take_along_axis(raw + 1, order, 1), np.take_along_axis(scores, order, 1)

    def search(
        self,
        rec: Recommender,
        histories: list[np.ndarray],
        k: int,
        exclude_seen: bool,
        candidates: list[np.ndarray | None],
    ) -> tuple[np.ndarray, np.ndarray]:
        """`Recommender.top_k`'s answer from the index. Exclusions stay exact: the index is
        asked for k + |history| items and seen ones are dropped; a row that cannot be filled
        that way, or that carries a candidate filter, goes to the exact path."""
        n = len(histories)
        items = np.zeros((n, k), dtype=np.int64)
        scores = np.full((n, k), -np.inf, dtype=np.float32)
        exact_rows = [i for i in range(n) if candidates[i] is not None]
        ann_rows = [i for i in range(n) if candidates[i] is None]
        if ann_rows:
            hists = [histories[i] for i in ann_rows]
            uniq = [np.unique(h) for h in hists] if exclude_seen else [np.empty(0)] * len(hists)
            fetch = min(k + max(len(u) for u in uniq), rec.n_items)
            got_all, val_all = self.candidates(user_vectors(rec, hists), fetch)
            for j, i in enumerate(ann_rows):
                keep = (got_all[j] > 0) & ~np.isin(got_all[j], uniq[j])
                got, val = got_all[j][keep][:k], val_all[j][keep][:k]
                if len(got) < min(k, rec.n_items - len(uniq[j])):
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

    def tune(self, queries: np.ndarray, target: float, cap: int | None = None) -> dict:
        """Double the effort from `first_effort` until recall@10 against the exact top-10 of
        ``queries`` reaches ``target`` or the effort reaches ``cap``; keep the last effort."""
        t0 = time.perf_counter()
        cap = min(cap or self.max_effort, self.max_effort)
        truth = exact_top_k(queries, self.vectors, min(RECALL_K, len(self.vectors)))
        effort, tried = min(self.first_effort, cap), []
        while True:
            self.effort = effort
            recall = recall_at_k(self.raw_search(queries, truth.shape[1]), truth)
            tried.append([effort, round(recall, 4)])
            if recall >= target or effort >= cap:
                break
            effort = min(2 * effort, cap)
        lat = []
        for q in queries[: min(len(queries), 200)]:
            t1 = time.perf_counter()
            self.raw_search(q[None], RECALL_K)
            lat.append(time.perf_counter() - t1)
        return {
            "effort": {self.effort_name: self.effort, "cap": cap},
            "recall_at_10": round(recall, 4),
            "target_recall": target,
            "met": recall >= target,
            "tried": tried,
            "search_ms_p50": round(float(np.median(lat)) * 1e3, 4),
            "tune_seconds": round(time.perf_counter() - t0, 2),
        }


class HnswIndex(AnnIndex):
    """faiss HNSW over raw inner products (what `--index faiss` has always built)."""

    kind = "faiss-hnsw"
    effort_name = "efSearch"
    first_effort = 16

    def __init__(
        self,
        rec: Recommender,
        m: int = 32,
        ef_search: int = 128,
        threads: int | None = None,
        ef_construction: int = 200,
    ) -> None:
        self.m, self.ef_construction = m, ef_construction
        super().__init__(rec, ef_search, threads)

    @property
    def ef_search(self) -> int:  # the name the first version of this class used
        return self.effort

    @property
    def max_effort(self) -> int:
        return 4096

    def params(self) -> dict:
        return {"M": self.m, "efConstruction": self.ef_construction, "metric": "inner product"}

    def nbytes(self) -> int:
        n, d = self.vectors.shape
        hnsw = self.index.hnsw
        return n * d * 4 + hnsw.neighbors.size() * 4 + hnsw.offsets.size() * 8 + n * 4

    def _build(self) -> None:
        faiss = self.faiss
        self.index = faiss.IndexHNSWFlat(self.vectors.shape[1], self.m, faiss.METRIC_INNER_PRODUCT)
        self.index.hnsw.efConstruction = self.ef_construction
        for s in range(0, len(self.vectors), _ADD_CHUNK):
            self.index.add(self.vectors[s : s + _ADD_CHUNK])

    def raw_search(self, vecs: np.ndarray, fetch: int) -> np.ndarray:
        self.index.hnsw.efSearch = max(self.effort, fetch)
        return self.index.search(np.ascontiguousarray(vecs, dtype=np.float32), fetch)[1]


def default_nlist(n: int) -> int:
    """4 sqrt(N) cells (faiss's guideline is 4-16 sqrt(N); the low end keeps k-means and the
    assignment of 10M rows to a few minutes on 2 cores), and at least 39 rows per cell, the
    fewest faiss's k-means accepts without a warning."""
    return int(max(1, min(round(4 * np.sqrt(n)), n // 39)))


class IvfIndex(AnnIndex):
    """faiss IVF-Flat over MIPS-augmented vectors (L2), see the module docstring."""

    kind = "faiss-ivf"
    effort_name = "nprobe"
    first_effort = 4

    def __init__(
        self,
        rec: Recommender,
        nlist: int | None = None,
        nprobe: int = 16,
        threads: int | None = None,
        train_per_list: int = 64,
        seed: int = 0,
    ) -> None:
        n = len(rec.item_ids) - 1
        self.nlist = nlist or default_nlist(n)
        if not 1 <= self.nlist <= n:
            raise SeqrecError(f"IVF needs 1 <= nlist <= {n} (the catalogue), not {self.nlist}")
        self.train_per_list, self.seed = train_per_list, seed
        super().__init__(rec, nprobe, threads)

    @property
    def max_effort(self) -> int:
        return self.nlist  # every cell: an exact scan

    def params(self) -> dict:
        return {
            "nlist": self.nlist,
            "train_rows": self.train_rows,
            "metric": "L2 on MIPS-augmented vectors (ranks as the inner product)",
        }

    def nbytes(self) -> int:
        n, d = self.vectors.shape
        return (n + self.nlist) * (d + 1) * 4 + n * 8  # lists' vectors and ids, centroids

    def _augment(self, x: np.ndarray) -> np.ndarray:
        extra = np.sqrt(np.maximum(self.max_norm**2 - np.einsum("nd,nd->n", x, x), 0))
        return np.ascontiguousarray(np.hstack([x, extra[:, None]]), dtype=np.float32)

    def _build(self) -> None:
        faiss, n, d = self.faiss, *self.vectors.shape
        self.max_norm = float(np.sqrt(np.einsum("nd,nd->n", self.vectors, self.vectors).max()))
        self.quantizer = faiss.IndexFlatL2(d + 1)  # kept: the IVF index does not own it
        self.index = faiss.IndexIVFFlat(self.quantizer, d + 1, self.nlist)
        self.index.cp.seed = self.seed
        rng = np.random.default_rng(self.seed)
        self.train_rows = min(n, self.train_per_list * self.nlist)
        rows = np.sort(rng.choice(n, self.train_rows, replace=False))
        self.index.train(self._augment(self.vectors[rows]))
        for s in range(0, n, _ADD_CHUNK):
            self.index.add(self._augment(self.vectors[s : s + _ADD_CHUNK]))

    def raw_search(self, vecs: np.ndarray, fetch: int) -> np.ndarray:
        self.index.nprobe = self.effort
        q = np.hstack([vecs, np.zeros((len(vecs), 1), dtype=np.float32)])
        return self.index.search(np.ascontiguousarray(q, dtype=np.float32), fetch)[1]
