"""Training losses on top of a backbone's hidden states."""

from seqrec.objectives.base import build_objective
from seqrec.objectives.bce import sampled_bce_loss
from seqrec.objectives.cloze import cloze_loss
from seqrec.objectives.sampled_softmax import sampled_softmax_loss
from seqrec.ops.cross_entropy import chunked_cross_entropy, reference_cross_entropy

__all__ = [
    "build_objective",
    "chunked_cross_entropy",
    "cloze_loss",
    "reference_cross_entropy",
    "sampled_bce_loss",
    "sampled_softmax_loss",
]
