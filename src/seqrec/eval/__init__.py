"""Evaluation: full-ranking (default) and sampled metrics from exact ranks."""

from seqrec.eval.metrics import confidence_interval, per_user_metrics, summarize
from seqrec.eval.ranking import EvalResult, evaluate, score_chunks

__all__ = [
    "EvalResult",
    "confidence_interval",
    "evaluate",
    "per_user_metrics",
    "score_chunks",
    "summarize",
]
