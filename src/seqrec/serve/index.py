"""Which top-K index the server uses: exact (`score_chunks`), faiss HNSW or faiss IVF.

``auto`` (the server's default) is exact below `AUTO_EXACT_BELOW` items and IVF above. Measured
on this 2-core CPU (SASRec width 64, 2 blocks, 1 thread, `Recommender.top_k` for one history,
encoder included): exact top-10 p50 is 0.8 ms at 50k items, 2.2 ms at 100k, 3.8 ms at 200k and
9.7 ms at 500k, growing linearly with the catalogue (~19 ns per item). Up to 200k items the
exact answer fits the issue's 5 ms budget, so an approximate one buys nothing; above it the
exact scan is what grows. IVF rather than HNSW because IVF's effort knob ends in an exhaustive,
exact scan, so the recall target is always reachable, while HNSW's inner-product graph can
stall below it (measured in `seqrec.serve.ann`'s docstring).

The faiss indexes only replace the item scan: the user representation is the model's own
`last_hidden` on the evaluator's window, scores are recomputed exactly, and seen items, PAD and
candidate filters stay exact (see `AnnIndex.search`). At build time recall@10 against the exact
top-10 is measured on a sample of user vectors and the search effort raised until it meets
``target_recall`` (`choose_index` returns that report; the server shows it under /metadata).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import Field, ValidationError

from seqrec.errors import SeqrecError
from seqrec.options import Strict
from seqrec.serve.ann import (
    AnnIndex,
    HnswIndex,
    IvfIndex,
    import_faiss,
    sample_histories,
    user_vectors,
)

if TYPE_CHECKING:
    from seqrec.run.recommender import Recommender

log = logging.getLogger(__name__)

INDEX_KINDS = ("auto", "exact", "faiss-hnsw", "faiss-ivf", "faiss")
"""``faiss`` is the name HNSW had before IVF existed, kept as its alias."""
AUTO_EXACT_BELOW = 200_000
"""``auto`` serves exactly below this many items (module docstring: where exact top-10 p50
passes a few ms on this CPU)."""
FaissIndex = HnswIndex  # the first name of the HNSW index
_CLASSES: dict[str, type[AnnIndex]] = {"faiss-hnsw": HnswIndex, "faiss-ivf": IvfIndex}


class IndexConfig(Strict):
    """How `choose_index` picks, builds and tunes the index."""

    kind: str = "auto"
    exact_below: int = Field(AUTO_EXACT_BELOW, ge=0)
    """``auto`` is exact for catalogues smaller than this."""
    target_recall: float = Field(0.98, gt=0, le=1)
    """Search effort rises until recall@10 against exact reaches this (or the cap)."""
    max_effort: int | None = Field(None, ge=1)
    """Cap on efSearch / nprobe; None = the index's own (HNSW 4096, IVF nlist = exact)."""
    sample_users: int = Field(500, ge=1)
    """User vectors recall is measured on."""
    seed: int = 0


def resolve_kind(cfg: IndexConfig, n_items: int) -> tuple[str, str]:
    """(the kind to build, why) for ``cfg.kind``; an unknown kind is one clear error."""
    if cfg.kind not in INDEX_KINDS:
        raise SeqrecError(f"--index must be one of {', '.join(INDEX_KINDS)}, not '{cfg.kind}'")
    if cfg.kind == "auto":
        if n_items < cfg.exact_below:
            return "exact", f"auto: {n_items:,} items < {cfg.exact_below:,}"
        return "faiss-ivf", f"auto: {n_items:,} items >= {cfg.exact_below:,}"
    if cfg.kind == "faiss":
        return "faiss-hnsw", "faiss = faiss-hnsw"
    return cfg.kind, "asked for"


def choose_index(
    rec: Recommender,
    cfg: IndexConfig | None = None,
    threads: int | None = None,
    histories: list[np.ndarray] | None = None,
) -> tuple[AnnIndex | None, dict[str, Any]]:
    """(the index, or None for the exact path; its build report). ``histories`` (internal
    ids, real users) are what recall is measured on when given; otherwise synthetic ones
    (`seqrec.serve.ann.sample_histories`), and the report says which."""
    cfg = cfg or IndexConfig()
    kind, reason = resolve_kind(cfg, rec.n_items)
    report: dict[str, Any] = {"requested": cfg.kind, "kind": kind, "reason": reason}
    report["n_items"] = rec.n_items
    if kind == "exact":
        report["recall_at_10"] = 1.0
        log.info(describe(report))
        return None, report
    import_faiss(cfg.kind)  # the missing extra is named before any work
    index = _CLASSES[kind](rec, threads=threads)
    t0 = time.perf_counter()
    sample, source = sample_histories(rec, cfg.sample_users, cfg.seed, histories)
    queries = user_vectors(rec, sample)
    report.update(params=index.params(), build_seconds=round(index.build_seconds, 2))
    report["index_gib"] = round(index.nbytes() / 2**30, 4)
    report["sample"] = {"users": len(sample), "source": source, "seen items masked": False}
    report.update(index.tune(queries, cfg.target_recall, cfg.max_effort))
    report["tune_seconds"] = round(time.perf_counter() - t0, 2)
    index.report = report
    log.info(describe(report))
    return index, report


def build_index(kind: str, rec: Recommender, threads: int | None = None, **options):
    """None for exact (the recommender's own path), else the built and tuned faiss index;
    ``options`` are `IndexConfig` fields."""
    try:
        cfg = IndexConfig(kind=kind, **options)
    except ValidationError as err:
        first = err.errors()[0]
        raise SeqrecError(f"index option {first['loc'][0]}: {first['msg']}") from None
    return choose_index(rec, cfg, threads)[0]


def describe(report: dict[str, Any]) -> str:
    """The build report as one log line."""
    head = f"index {report['kind']} ({report['reason']}) over {report['n_items']:,} items"
    if report["kind"] == "exact":
        return head
    name = next(k for k in report["effort"] if k != "cap")
    verdict = "meets" if report["met"] else "MISSES"
    return (
        f"{head}: built in {report['build_seconds']:.1f}s; {name}={report['effort'][name]} gives recall@10 "
        f"{report['recall_at_10']:.4f} against exact ({verdict} target "
        f"{report['target_recall']}) on {report['sample']['source']}; "
        f"search p50 {report['search_ms_p50']:.3f} ms"
    )
