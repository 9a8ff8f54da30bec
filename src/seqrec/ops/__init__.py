"""Shared math with no knowledge of models or objectives: the chunked cross-entropy kernel and
attention, each with the plain reference its tests compare it to. Models and objectives both
import from here, never from each other."""

from seqrec.ops.attention import causal_sdpa, reference_causal_attention
from seqrec.ops.cross_entropy import chunked_cross_entropy, reference_cross_entropy

__all__ = [
    "causal_sdpa",
    "chunked_cross_entropy",
    "reference_causal_attention",
    "reference_cross_entropy",
]
