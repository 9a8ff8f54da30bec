"""Scaling tools: Approximate Entropy of item sequences and the Performance Law fit.

Imports only numpy here; scipy is imported when a law is fitted.
"""

from __future__ import annotations

from seqrec.scaling.apen import (
    ApEnResult,
    apen_csr,
    apen_store,
    approximate_entropy,
    dataset_apen,
)
from seqrec.scaling.perf_law import (
    BestShape,
    PerfLawFit,
    best_shape,
    fit,
    predict,
)
from seqrec.scaling.perf_law_forms import data_term, performance_law
from seqrec.scaling.perf_law_table import fit_from_table

__all__ = [
    "ApEnResult",
    "BestShape",
    "PerfLawFit",
    "apen_csr",
    "apen_store",
    "approximate_entropy",
    "best_shape",
    "data_term",
    "dataset_apen",
    "fit",
    "fit_from_table",
    "performance_law",
    "predict",
]
