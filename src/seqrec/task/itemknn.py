"""Item-based collaborative filtering baseline for the ranking task (``task.baseline=itemknn``).

Nothing is trained by gradient descent; it measures how much of the within-user order
(GAUC) plain co-rating statistics explain, the signal a ranker has to learn beyond the item's
general appeal (the popularity baseline).

* Similarity: cosine between items' columns of the user x item matrix of training events
  (time < t_valid) holding each event's behaviour value minus the user's mean value (adjusted
  cosine, Sarwar et al. 2001); only positive similarities are used. Built from the training
  period alone, so no validation or test rating enters it.
* Score of candidate c for a history: sum_j s(c, j) (v_j - mean v) / (sum_j s(c, j) + 1e-3)
  over the last ``task.knn_history`` events of the history (v_j their behaviour values, the
  mean over those events): do the items like c that this user rated rate above or below
  their own average?
* Probability: sigmoid(a * popularity logit + b * score + c), (a, b, c) a logistic
  regression fitted on the validation split (three numbers, as a calibration step; the
  rankers use the validation split for early stopping).

The similarity matrix is dense (items^2 float32), so the baseline refuses catalogues above
``MAX_ITEMS``.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from seqrec.data.store import SequenceStore
from seqrec.errors import SeqrecError
from seqrec.task.examples import Examples, RankingData

MAX_ITEMS = 30_000  # 3.6 GB of float32 similarities


def item_similarity(store: SequenceStore, values: np.ndarray, t_valid: int) -> np.ndarray:
    """[n_items + 1, n_items + 1] positive adjusted-cosine similarities from events before
    ``t_valid`` (row/column 0, the padding id, and the diagonal are 0)."""
    n = store.n_items + 1
    if n > MAX_ITEMS:
        raise SeqrecError(
            f"task.baseline=itemknn keeps a dense {n:,} x {n:,} similarity matrix; it supports "
            f"up to {MAX_ITEMS:,} items (filter the catalogue with data.min_item_count)"
        )
    offsets = np.asarray(store.offsets, dtype=np.int64)
    users = np.repeat(np.arange(store.n_users), np.diff(offsets))
    keep = np.asarray(store.timestamps) < t_valid
    u, i, v = users[keep], np.asarray(store.items)[keep], np.asarray(values, float)[keep]
    count = np.bincount(u, minlength=store.n_users)
    mean = np.bincount(u, weights=v, minlength=store.n_users) / np.maximum(count, 1)
    m = sp.csr_matrix((v - mean[u], (u, i)), shape=(store.n_users, n))
    gram = np.asarray((m.T @ m).todense(), dtype=np.float64)
    norm = np.sqrt(np.diag(gram))
    norm[norm == 0] = 1.0
    sim = gram / norm[:, None] / norm[None, :]
    np.fill_diagonal(sim, 0.0)
    sim[0, :] = 0.0
    sim[:, 0] = 0.0
    return np.clip(sim, 0.0, None).astype(np.float32)


def knn_scores(
    store: SequenceStore,
    values: np.ndarray,
    sim: np.ndarray,
    ex: Examples,
    history: int,
    chunk: int = 4096,
) -> np.ndarray:
    """The score above for every example, over the last ``history`` events of its history."""
    items = np.asarray(store.items, dtype=np.int64)
    vals = np.asarray(values, dtype=np.float64)
    back = np.arange(history, dtype=np.int64)
    out = np.zeros(len(ex))
    for a in range(0, len(ex), chunk):
        sl = slice(a, a + chunk)
        idx = ex.ends[sl, None] - 1 - back[None, :]  # newest first
        real = idx >= ex.starts[sl, None]
        idx = np.where(real, idx, 0)
        v = vals[idx] * real
        centred = (v - v.sum(1, keepdims=True) / real.sum(1, keepdims=True)) * real
        w = sim[ex.items[sl, None], items[idx]] * real
        out[sl] = (w * centred).sum(1) / (w.sum(1) + 1e-3)
    return out


def fit_stack(features: np.ndarray, labels: np.ndarray, steps: int = 50) -> np.ndarray:
    """Logistic regression weights (no penalty) by Newton's method; features [N, k]."""
    x = np.concatenate([features, np.ones((len(features), 1))], 1)
    w = np.zeros(x.shape[1])
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-(x @ w)))
        grad = x.T @ (p - labels)
        hess = (x * (p * (1 - p))[:, None]).T @ x + 1e-6 * np.eye(x.shape[1])
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-9:
            break
    return w


def itemknn_probs(
    store: SequenceStore, data: RankingData, prior: np.ndarray, history: int
) -> dict[str, np.ndarray]:
    """Validation and test probabilities; ``prior`` is the popularity baseline's rate table."""
    if store.behaviors is None:
        raise SeqrecError("task.baseline=itemknn reads behaviour values; set data.behavior_col")
    if not len(data.valid) or data.valid.labels.min() == data.valid.labels.max():
        raise SeqrecError(
            "task.baseline=itemknn fits its calibration on the validation split, which has no "
            "examples of both labels; raise data.temporal_valid_frac"
        )
    values = np.asarray(store.behaviors)
    sim = item_similarity(store, values, data.protocol["t_valid"])
    rate = np.clip(prior, 1e-4, 1 - 1e-4)
    logit = np.log(rate / (1 - rate))
    feats = {}
    for part in ("valid", "test"):
        ex = getattr(data, part)
        feats[part] = np.stack([logit[ex.items], knn_scores(store, values, sim, ex, history)], 1)
    w = fit_stack(feats["valid"], data.valid.labels.astype(np.float64))
    return {k: 1.0 / (1.0 + np.exp(-(f @ w[:2] + w[2]))) for k, f in feats.items()}
