"""Model + id maps -> top-K recommendations for histories given in original item ids.

A `Recommender` holds an already-loaded model; it never reads a folder (that is `Run`, the
one loader: ``Run(path).recommender()`` or ``seqrec.load(path)``), so it depends only on the
evaluator below it. It lives in the run layer because `Run` returns it; the server, batch
inference and the API use it from here.

Uses the evaluator's `score_chunks`, so what is served is scored exactly as it was evaluated.
`answer` is the one entry point for online requests (the HTTP server's micro-batches): it maps
ids, groups requests so that each group is one `score_chunks` pass, applies candidate filters
exactly (as a mask, before top-K), and answers empty histories from training popularity.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import polars as pl
import torch
from torch import nn

from seqrec.errors import SeqrecError
from seqrec.eval.ranking import score_chunks


@dataclass
class Query:
    """One request in original item ids. ``candidates`` (if given) restricts what may be returned."""

    history: Sequence[str]
    k: int = 10
    exclude_seen: bool = True
    candidates: Sequence[str] | None = None


@dataclass
class Answer:
    """One query's recommendations, best first, and what the caller should know about them.

    ``returned`` and ``short`` are derived from ``items`` and ``k`` so they can never disagree
    with the list: fewer than ``k`` items come back when the history (with ``exclude_seen``)
    and the candidate filter leave fewer than ``k`` items to choose from, e.g. ``k = n_items``
    with any seen item, or a history that covers the whole catalogue (0 items).
    """

    items: list[str]
    scores: list[float]
    unknown_items: list[str] = field(default_factory=list)
    unknown_candidates: list[str] = field(default_factory=list)
    fallback: str | None = None  # "popularity" when the history had no known item
    k: int = 0  # how many items were asked for

    @property
    def returned(self) -> int:
        """How many items this answer holds (at most ``k``)."""
        return len(self.items)

    @property
    def short(self) -> bool:
        """True when fewer than ``k`` items could be returned."""
        return len(self.items) < self.k


@dataclass
class Recommender:
    model: nn.Module
    item_ids: np.ndarray  # internal id -> original id (str); index 0 = PAD
    max_len: int
    device: torch.device
    popularity: np.ndarray | None = None  # [n_items + 1] training counts (packages only)
    metadata: pl.DataFrame | None = None  # item_id + metadata columns (packages only)
    info: dict[str, Any] = field(default_factory=dict)  # package manifest / run summary
    index: Any = None  # optional approximate index (serve.index.FaissIndex)
    config: Any = None  # the run's RunConfig (what the model needs from the data)

    @property
    def n_items(self) -> int:
        return len(self.item_ids) - 1

    @cached_property
    def _index_of(self) -> dict[str, int]:
        return {str(x): i for i, x in enumerate(self.item_ids[1:].tolist(), 1)}

    def lookup(self, ids: Sequence[Any]) -> tuple[np.ndarray, list[str]]:
        """Original ids -> (known internal ids in order, unknown ids in first-seen order)."""
        index = self._index_of
        known, unknown = [], []
        for x in ids:
            i = index.get(str(x))
            if i is None:
                unknown.append(str(x))
            else:
                known.append(i)
        return np.asarray(known, dtype=np.int64), list(dict.fromkeys(unknown))

    def encode(self, histories: list[list[str]], skip_unknown: bool = False) -> list[np.ndarray]:
        """Original item ids -> internal ids (vectorised over all histories at once)."""
        lookup = pl.DataFrame(
            {
                "orig": self.item_ids[1:].astype(str),
                "idx": np.arange(1, len(self.item_ids), dtype=np.int64),
            }
        )
        lens = np.array([len(h) for h in histories], dtype=np.int64)
        flat = pl.DataFrame(
            {"orig": [str(x) for h in histories for x in h]}, schema={"orig": pl.Utf8}
        )  # typed, so that histories holding no item at all still join
        idx = flat.join(lookup, on="orig", how="left", maintain_order="left")["idx"].to_numpy()
        unknown = np.isnan(idx) if idx.dtype.kind == "f" else np.zeros(len(idx), bool)
        if unknown.any() and not skip_unknown:
            bad = sorted(set(flat["orig"].to_numpy()[unknown].tolist()))[:5]
            raise SeqrecError(
                f"{int(unknown.sum())} history items are not in the model's catalogue "
                f"(e.g. {', '.join(bad)}); remove them or pass --skip-unknown"
            )
        idx = np.where(unknown, 0, np.nan_to_num(idx)).astype(np.int64)
        return [a[a != 0] for a in np.split(idx, np.cumsum(lens)[:-1])]

    def check_k(self, k: int) -> None:
        if not isinstance(k, int | np.integer) or isinstance(k, bool):  # else a torch TypeError
            raise SeqrecError(f"k must be an integer from 1 to {self.n_items}, not {k!r}")
        if k < 1 or k > self.n_items:
            raise SeqrecError(f"k={k} must be between 1 and the catalogue size {self.n_items}")

    @torch.inference_mode()
    def top_k(
        self,
        histories: list[np.ndarray],
        k: int = 10,
        exclude_seen: bool = True,
        chunk: int = 1024,
        candidates: list[np.ndarray | None] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (internal item ids [n, k], scores [n, k]) for each history of internal ids.

        ``candidates[i]`` (internal ids), when not None, is the only set row i may be served
        from. A history that leaves fewer than k candidates (unseen, allowed items) gets item 0
        (PAD) with score -inf in the slots it cannot fill.
        """
        self.check_k(k)
        lens = np.array([len(h) for h in histories], dtype=np.int64)
        if (lens == 0).any():
            raise SeqrecError(
                f"{int((lens == 0).sum())} histories are empty after id mapping; "
                "every history needs at least one known item"
            )
        flat = np.concatenate(histories).astype(np.int64)
        ends = np.cumsum(lens)
        starts = ends - lens
        top_items = np.zeros((len(histories), k), dtype=np.int64)
        top_scores = np.zeros((len(histories), k), dtype=np.float32)
        for pos, scores, allowed in score_chunks(
            self.model, flat, starts, ends, self.max_len, chunk, self.device, exclude_seen
        ):
            if candidates is not None:
                allowed &= self._candidate_mask([candidates[p] for p in pos], allowed.device)
            scores = scores.masked_fill(~allowed, float("-inf"))
            val, idx = scores.topk(k, dim=1)
            idx = idx.masked_fill(val == float("-inf"), 0)  # never serve a masked (seen) item
            top_items[pos] = idx.cpu().numpy()
            top_scores[pos] = val.cpu().numpy()
        return top_items, top_scores

    def _candidate_mask(self, rows: list[np.ndarray | None], device: torch.device) -> torch.Tensor:
        """[b, V+1] True where the row may be served; rows without a filter allow everything."""
        mask = torch.ones(len(rows), self.n_items + 1, dtype=torch.bool, device=device)
        filtered = [i for i, c in enumerate(rows) if c is not None]
        if filtered:
            mask[filtered] = False
            r = np.concatenate([np.full(len(rows[i]), i) for i in filtered]).astype(np.int64)
            c = np.concatenate([rows[i] for i in filtered]).astype(np.int64)
            mask[torch.from_numpy(r).to(device), torch.from_numpy(c).to(device)] = True
        return mask

    def popular(
        self, k: int, candidates: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k internal ids by training popularity (ties: lower internal id first)."""
        if self.popularity is None:
            raise SeqrecError(
                "this model has no item popularity (a run folder, not a package); "
                "export it with `seqrec export` to answer empty histories"
            )
        pool = np.arange(1, self.n_items + 1) if candidates is None else np.unique(candidates)
        pop = self.popularity[pool]
        order = np.lexsort((pool, -pop))[:k]
        return pool[order], pop[order].astype(np.float32)

    def answer(self, queries: Sequence[Query], chunk: int = 1024) -> list[Answer]:
        """Answer many requests with as few scoring passes as possible (one per exclude_seen)."""
        answers: list[Answer | None] = [None] * len(queries)
        encoded, cands, groups = [], [], {True: [], False: []}
        for i, q in enumerate(queries):
            self.check_k(q.k)
            hist, unknown = self.lookup(q.history)
            cand, unknown_c = (None, []) if q.candidates is None else self.lookup(q.candidates)
            encoded.append(hist)
            cands.append(cand)
            answers[i] = Answer([], [], unknown, unknown_c, k=q.k)
            if len(hist) == 0:
                items, scores = self.popular(q.k, cand)
                self._fill(answers[i], items, scores, "popularity")
            else:
                groups[bool(q.exclude_seen)].append(i)
        for exclude_seen, rows in groups.items():
            if not rows:
                continue
            kmax = max(queries[i].k for i in rows)
            hists = [encoded[i] for i in rows]
            row_cands = [cands[i] for i in rows]
            if self.index is not None:
                items, scores = self.index.search(self, hists, kmax, exclude_seen, row_cands)
            else:
                has_filter = any(c is not None for c in row_cands)
                items, scores = self.top_k(
                    hists, kmax, exclude_seen, chunk, row_cands if has_filter else None
                )
            for j, i in enumerate(rows):
                k = queries[i].k
                self._fill(answers[i], items[j, :k], scores[j, :k])
        return answers  # type: ignore[return-value]

    def _fill(
        self, ans: Answer, items: np.ndarray, scores: np.ndarray, fallback: str | None = None
    ) -> None:
        keep = items != 0
        ans.items = self.item_ids[items[keep]].astype(str).tolist()
        ans.scores = [float(s) for s in scores[keep]]
        ans.fallback = fallback

    def recommend(
        self, histories: Sequence[Sequence[Any]], k: int = 10, exclude_seen: bool = True
    ) -> list[Answer]:
        """Top-k original item ids for each history of original item ids (the Python API's
        entry point: ``seqrec.load(path).recommend([["50", "172"], ["1"]], k=10)``).

        Unknown ids are reported in each `Answer` (``unknown_items``), not fatal; a history
        with no known item is answered from training popularity where the model has it. An
        answer that holds fewer than ``k`` items says so (``short``, ``returned``).
        """
        return self.answer([Query(list(h), k, exclude_seen) for h in histories])

    def recommend_ids(
        self,
        history: Sequence[Any],
        k: int = 10,
        exclude_seen: bool = True,
        candidates: Sequence[Any] | None = None,
    ) -> Answer:
        """One history of original item ids -> top-k original ids (see `answer`)."""
        return self.answer([Query(list(history), k, exclude_seen, candidates)])[0]

    def decode(self, internal: np.ndarray) -> np.ndarray:
        return self.item_ids[internal]

    def item_info(self, item_id: str) -> dict[str, Any] | None:
        """Popularity + metadata of one original item id, or None when it is not in the catalogue."""
        idx = self._index_of.get(str(item_id))
        if idx is None:
            return None
        meta = None
        if self.metadata is not None:
            row = self._metadata_rows.get(str(item_id))
            meta = None if row is None else _json_safe(self.metadata.row(row, named=True))
            if meta is not None:
                meta.pop("item_id", None)
        pop = None if self.popularity is None else int(self.popularity[idx])
        return {"item_id": str(item_id), "popularity": pop, "metadata": meta}

    @cached_property
    def _metadata_rows(self) -> dict[str, int]:
        assert self.metadata is not None
        return {str(x): i for i, x in enumerate(self.metadata["item_id"].to_list())}


def _json_safe(value: Any) -> Any:
    """NaN / inf (valid in parquet, not in JSON) -> None, recursively."""
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value
