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

``task.knn_feature`` feeds the same score to the transformer ranker (``Ranker``) as an input,
with each training example's own rating left out of its similarities (``ItemKNN``).

The co-rating matrix is dense (items^2 float32), so both refuse catalogues above ``MAX_ITEMS``.
"""

from __future__ import annotations

import numpy as np

from seqrec.data.store import SequenceStore
from seqrec.errors import SeqrecError
from seqrec.tasks.ranking.examples import Examples, RankingData

MAX_ITEMS = 30_000  # 3.6 GB of float32 co-ratings


class ItemKNN:
    """The training period's co-rating statistics and the score above, for any examples.

    Keeps the Gram matrix G = M^T M of the centred user x item matrix M (events before
    ``t_valid``) rather than the normalised similarities, so the similarity of a training
    example can leave out the example's own rating: for user u, candidate c and history
    item j, s(c, j) = (G[c, j] - m_uc m_uj) / sqrt((G[c, c] - m_uc^2) G[j, j]). At validation
    and test time u never rated c in the training period, so the statistics hold no term of
    (u, c) there; the correction gives a training example exactly that view, and a ranker
    fed the score cannot learn to read its own label through it. (u's mean, which centres
    m_u., keeps the own rating: one rating among a user's training events.)
    """

    def __init__(self, store: SequenceStore, values: np.ndarray, t_valid: int) -> None:
        n = store.n_items + 1
        if n > MAX_ITEMS:
            raise SeqrecError(
                f"item-kNN keeps a dense {n:,} x {n:,} co-rating matrix; it supports up to "
                f"{MAX_ITEMS:,} items (filter the catalogue with data.min_item_count)"
            )
        offsets = np.asarray(store.offsets, dtype=np.int64)
        users = np.repeat(np.arange(store.n_users), np.diff(offsets))
        self.items = np.asarray(store.items, dtype=np.int64)
        self.values = np.asarray(values, dtype=np.float64)
        self.in_train = np.asarray(store.timestamps) < t_valid  # per event of the store
        u, i = users[self.in_train], self.items[self.in_train]
        v = self.values[self.in_train]
        count = np.bincount(u, minlength=store.n_users)
        self.mean = np.bincount(u, weights=v, minlength=store.n_users) / np.maximum(count, 1)
        # imported here: every `seqrec train` imports this module, few runs build the matrix
        import scipy.sparse as sp

        m = sp.csr_matrix((v - self.mean[u], (u, i)), shape=(store.n_users, n))
        self.gram = np.asarray((m.T @ m).todense(), dtype=np.float32)
        self.gram[0, :] = 0.0
        self.gram[:, 0] = 0.0
        self.sq = np.diag(self.gram).astype(np.float64)

    def similarity(self) -> np.ndarray:
        """[n_items + 1, n_items + 1] positive adjusted cosines (padding row/column and the
        diagonal 0): the similarities every validation and test example sees."""
        norm = np.sqrt(self.sq)
        norm[norm == 0] = 1.0
        sim = self.gram / norm[:, None] / norm[None, :]
        np.fill_diagonal(sim, 0.0)
        return np.clip(sim, 0.0, None).astype(np.float32)

    def scores(self, ex: Examples, history: int, chunk: int | None = None) -> np.ndarray:
        """[len(ex), 2]: the score above over the last ``history`` events of each history,
        and log(1 + the sum of its similarities), how much co-rating evidence it rests on.
        Examples go in chunks of about a million (example, event) cells, a few MB each."""
        chunk = chunk or max(64, (1 << 20) // history)
        back = np.arange(history, dtype=np.int64)
        out = np.zeros((len(ex), 2))
        for a in range(0, len(ex), chunk):
            sl = slice(a, a + chunk)
            idx = ex.ends[sl, None] - 1 - back[None, :]  # newest first
            real = idx >= ex.starts[sl, None]
            idx = np.where(real, idx, 0)
            v = self.values[idx] * real
            centred = (v - v.sum(1, keepdims=True) / real.sum(1, keepdims=True)) * real
            cand, hist = ex.items[sl], self.items[idx]
            num = self.gram[cand[:, None], hist].astype(np.float64)
            den_c = self.sq[cand]
            event = ex.events[sl]
            own = (event >= 0) & self.in_train[np.maximum(event, 0)]  # u's rating of c counted
            if own.any():
                mean = self.mean[ex.users[sl]][own]
                m_c = self.values[event[own]] - mean
                m_j = (self.values[idx[own]] - mean[:, None]) * real[own]
                num[own] -= m_c[:, None] * m_j
                den_c = den_c.copy()
                den_c[own] -= m_c**2
            den = np.clip(den_c, 0.0, None)[:, None] * self.sq[hist]
            ok = real & (den > 1e-12) & (hist != cand[:, None])
            w = np.where(ok, np.clip(num, 0.0, None) / np.sqrt(np.where(ok, den, 1.0)), 0.0)
            out[sl, 0] = (w * centred).sum(1) / (w.sum(1) + 1e-3)
            out[sl, 1] = np.log1p(w.sum(1))
        return out


def item_similarity(store: SequenceStore, values: np.ndarray, t_valid: int) -> np.ndarray:
    """``ItemKNN(...).similarity()``: the similarities from events before ``t_valid``."""
    return ItemKNN(store, values, t_valid).similarity()


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
    store: SequenceStore, data: RankingData, prior_logit: np.ndarray, history: int
) -> dict[str, np.ndarray]:
    """Validation and test probabilities; ``prior_logit``: the popularity baseline's logit per
    item (``popularity.popularity_logit``)."""
    if store.behaviors is None:
        raise SeqrecError("task.baseline=itemknn reads behaviour values; set data.behavior_col")
    if not len(data.valid) or data.valid.labels.min() == data.valid.labels.max():
        raise SeqrecError(
            "task.baseline=itemknn fits its calibration on the validation split, which has no "
            "examples of both labels; raise data.temporal_valid_frac"
        )
    knn = ItemKNN(store, np.asarray(store.behaviors), data.protocol["t_valid"])
    feats = {}
    for part in ("valid", "test"):
        ex = getattr(data, part)
        feats[part] = np.stack([prior_logit[ex.items], knn.scores(ex, history)[:, 0]], 1)
    w = fit_stack(feats["valid"], data.valid.labels.astype(np.float64))
    return {k: 1.0 / (1.0 + np.exp(-(f @ w[:2] + w[2]))) for k, f in feats.items()}
