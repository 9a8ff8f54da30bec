"""The popularity baseline of the ranking task: each item's smoothed positive rate.

It is a baseline on its own (``task.baseline=popularity``), the fixed offset a ``Ranker``
learns its residual on (``task.item_prior``), and one input of the item-kNN baseline's
stack; the last two read it as a logit, clipped so that an item with only positive (or only
negative) training events does not get an infinite one.
"""

from __future__ import annotations

import numpy as np

from seqrec.tasks.ranking.examples import RankingData

RATE_CLIP = 1e-4  # logit(1e-4) = -9.2: a certainty the training counts never justify


def popularity_scores(data: RankingData, prior: float) -> np.ndarray:
    """P(positive | item) from the real training events, shrunk toward the global rate:
    (positives + prior * rate) / (events + prior); an item unseen in training gets the rate."""
    tr = data.train
    n = np.bincount(tr.items, minlength=data.n_items + 1).astype(np.float64)
    pos = np.bincount(tr.items, weights=tr.labels, minlength=data.n_items + 1)
    rate = float(tr.labels.mean())
    return (pos + prior * rate) / np.maximum(n + prior, 1e-12)


def popularity_logit(rates: np.ndarray) -> np.ndarray:
    """log(p / (1 - p)) of rates clipped to [RATE_CLIP, 1 - RATE_CLIP]."""
    p = np.clip(rates, RATE_CLIP, 1 - RATE_CLIP)
    return np.log(p / (1 - p))
