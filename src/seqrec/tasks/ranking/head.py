"""The ranking task's heads: a sequence encoder with a target-aware head, and a logistic baseline.

These are the ranking task's own classes, not registered models: they score (history,
candidate) pairs, not the catalogue. Both derive from `RankingHead`, which states explicitly
what the task needs to know of a head (its encoder, whether it carries the popularity prior),
so the task never probes a model's attributes.

``Ranker`` wraps a SASRec or HSTU encoder (any registered model with ``forward`` -> [B, L, D]
and ``item_weights``). The head reads, for candidate c with embedding e (a row of the
encoder's item table, so retrieval and ranking share item vectors):

* history keys k_j = encoder state h_j (+ an embedding of event j's behaviour value, e.g. its
  rating, with ``task.history_behaviors``: how the user rated the past is the strongest
  signal of how they will rate the next item, and the encoder itself reads item ids only);
* target attention (DIN, Zhou et al. 2018): weights from an MLP on [k_j, e, k_j*e, k_j-e], or
  a scaled dot product with W_q e as the query; normalised by a softmax over real slots;
  pooled p = sum_j a_j k_j;
* the encoder's last state s (the retrieval user vector);
* with ``task.behavior_pool``, a signed pool q = mean_j (v_j - mean v) h_j, v_j a learned
  scalar of event j's behaviour code (see ``BehaviorPool``);
* with ``task.knn_feature``, the item-kNN score of the candidate and the log of its
  similarity mass (``feats["knn"]``, [B, 2], computed outside: tasks/ranking/itemknn.py);
* MLP([p, s, e, p*e, s*e] (+ mean behaviour embedding of the history, + q*e, + user
  features, + the kNN pair)) + a per-item bias (+ w . (q*e) with the behaviour pool; + a
  learned weight (from 1) x the kNN score; + with ``task.item_prior``, the fixed logit of the
  popularity baseline's rate for the candidate) -> logit.

``LogisticRanker`` is the baseline: logit = b + w_user + w_item (+ sum of feature weights),
i.e. logistic regression on one-hot user and item ids, read through the same interface so the
same trainer, early stopping and evaluation serve both.
"""

from __future__ import annotations

import itertools
import math

import torch
from torch import nn

from seqrec.data.batches import SeqBatch
from seqrec.models.common import gather_last
from seqrec.ops.dropout import Dropout
from seqrec.options import TaskConfig


def mlp(sizes: list[int], dropout: float) -> nn.Sequential:
    """Linear layers of the given widths, ReLU + dropout between them, none after the last."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers += [nn.ReLU(), Dropout(dropout)]
    return nn.Sequential(*layers)


def masked_softmax(scores: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Softmax over the real slots of each row (every row has at least one)."""
    return torch.softmax(scores.masked_fill(~valid, float("-inf")), dim=-1)


class TargetAttention(nn.Module):
    """Pool history keys [B, L, D] with weights that depend on the candidate e [B, D]."""

    def __init__(self, hidden: int, kind: str, width: int) -> None:
        super().__init__()
        self.kind = kind
        if kind == "din":
            self.score = mlp([4 * hidden, width, 1], 0.0)
        else:
            self.query = nn.Linear(hidden, hidden, bias=False)

    def weights(self, keys: torch.Tensor, e: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        if self.kind == "din":
            ee = e[:, None, :].expand_as(keys)
            scores = self.score(torch.cat([keys, ee, keys * ee, keys - ee], -1)).squeeze(-1)
        else:
            q = self.query(e)
            scores = (keys @ q[:, :, None]).squeeze(-1) / math.sqrt(keys.shape[-1])
        return masked_softmax(scores, valid)

    def forward(self, keys: torch.Tensor, e: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        return (self.weights(keys, e, valid)[:, :, None] * keys).sum(1)


class BehaviorPool(nn.Module):
    """Signed, unnormalised attention with behaviour values as the values: q = mean_j
    (v_j - v_mean) h_j over the real history slots, and a bilinear score w . (q * e).

    With h_j ~ the item of event j and v_j its rating, w . (q * e) = mean_j (v_j - v_mean)
    sim(e, h_j): item-based collaborative filtering on the user's centred ratings, with a
    learned similarity. A softmax attention pool is a convex average of the keys and cannot
    express this sum of signed terms. v starts at the standardised code (codes are ordered
    levels such as ratings) and is learned, so unordered behaviour codes work too; w starts
    at zero, so the term adds nothing until training finds it useful.
    """

    def __init__(self, n_behaviors: int, hidden: int) -> None:
        super().__init__()
        codes = torch.arange(n_behaviors + 1, dtype=torch.float32)
        real = codes[1:]
        value = (codes - real.mean()) / real.std().clamp(min=1.0)
        value[0] = 0.0
        self.value = nn.Embedding(n_behaviors + 1, 1)
        with torch.no_grad():
            self.value.weight.copy_(value[:, None])
        self.out = nn.Linear(hidden, 1, bias=False)
        nn.init.zeros_(self.out.weight)

    def forward(
        self, states: torch.Tensor, levels: torch.Tensor, valid: torch.Tensor
    ) -> torch.Tensor:
        """``states`` [B, L, D], ``levels`` [B, L] behaviour codes, ``valid`` [B, L] -> q."""
        mask = valid.to(states.dtype)
        n = mask.sum(1, keepdim=True).clamp(min=1)
        v = self.value(levels).squeeze(-1) * mask
        centred = (v - v.sum(1, keepdim=True) / n) * mask
        return (centred[:, :, None] * states).sum(1) / n

    def score(self, q: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        return self.out(q * e).squeeze(-1)


class FeatureEncoder(nn.Module):
    """Side features of one entity -> [B, D]: mean of the embeddings of its categorical ids
    (0 = none, ignored) + a linear map of its dense values (standardised year, text vectors)."""

    def __init__(self, n_ids: int, n_dense: int, hidden: int) -> None:
        super().__init__()
        self.emb = nn.Embedding(n_ids, hidden, padding_idx=0) if n_ids > 1 else None
        self.dense = nn.Linear(n_dense, hidden) if n_dense else None
        if self.emb is not None:
            nn.init.normal_(self.emb.weight, std=0.02)
            with torch.no_grad():
                self.emb.weight[0].zero_()

    def forward(self, ids: torch.Tensor | None, dense: torch.Tensor | None) -> torch.Tensor:
        out = 0.0
        if self.emb is not None and ids is not None:
            count = (ids != 0).sum(1, keepdim=True).clamp(min=1)
            out = out + self.emb(ids).sum(1) / count
        if self.dense is not None and dense is not None:
            out = out + self.dense(dense)
        return out


class RankingHead(nn.Module):
    """What the ranking task trains: ``forward(histories, candidates, feats) -> logits [B]``.

    The task reads only what is declared here: ``encoder``, the sequence model inside (whose
    data needs go through ``models.inputs.prepare_inputs`` and which ``train.init_from`` may
    start from a retrieval run; None for a head without one), and ``item_prior``, whether the
    head adds the popularity baseline's fixed logit (set by the task with `set_prior_logit`).
    """

    encoder: nn.Module | None
    item_prior: bool = False

    def set_prior_logit(self, logit: torch.Tensor) -> None:
        """Store the popularity baseline's logit per item (``item_prior`` heads only)."""
        raise TypeError(f"{type(self).__name__} has no item prior")


class Ranker(RankingHead):
    """Encoder + target-aware ranking head; ``forward`` returns logits [B]."""

    def __init__(
        self,
        encoder: nn.Module,
        hidden: int,
        dropout: float,
        task: TaskConfig,
        n_items: int,
        n_behaviors: int = 0,
        item_features: tuple[int, int] | None = None,
        user_features: tuple[int, int] | None = None,
    ) -> None:
        """``hidden`` / ``dropout``: the encoder's width and dropout (the head's MLP uses it);
        ``n_behaviors``: behaviour codes 1..n (0 = none) or 0 for no behaviour input;
        ``item_features`` / ``user_features``: (number of categorical ids, dense width)."""
        super().__init__()
        d = hidden
        self.encoder = encoder
        self.n_items = n_items
        self.behavior_emb = nn.Embedding(n_behaviors + 1, d) if n_behaviors else None
        self.item_feat = FeatureEncoder(*item_features, d) if item_features else None
        self.user_feat = FeatureEncoder(*user_features, d) if user_features else None
        self.attention = TargetAttention(d, task.attention, task.attention_hidden)
        self.pool = BehaviorPool(n_behaviors, d) if task.behavior_pool else None
        if self.pool is not None and not n_behaviors:
            raise ValueError("task.behavior_pool needs history behaviours (n_behaviors > 0)")
        parts = 5 + (self.behavior_emb is not None) + (self.user_feat is not None)
        parts += self.pool is not None
        self.knn_weight = nn.Parameter(torch.ones(())) if task.knn_feature else None
        width = parts * d + (2 if task.knn_feature else 0)
        self.head = mlp([width, *task.head_hidden, 1], dropout)
        self.item_bias = nn.Embedding(n_items + 1, 1)
        nn.init.zeros_(self.item_bias.weight)
        # task.item_prior: logit of the popularity baseline per item, set by the task; a
        # buffer, so it is saved with the weights
        self.item_prior = task.item_prior
        self.register_buffer("prior_logit", torch.zeros(n_items + 1) if task.item_prior else None)
        if task.item_prior:  # start exactly at the baseline: the head adds nothing yet
            nn.init.zeros_(self.head[-1].weight)
            nn.init.zeros_(self.head[-1].bias)
        if self.behavior_emb is not None:
            nn.init.normal_(self.behavior_emb.weight, std=0.02)

    def set_prior_logit(self, logit: torch.Tensor) -> None:
        with torch.no_grad():
            self.prior_logit.copy_(logit)

    def forward(
        self, batch: SeqBatch, candidates: torch.Tensor, feats: dict | None = None
    ) -> torch.Tensor:
        """``batch``: right-padded histories (>= 1 item each; ``batch.behaviors`` the history
        events' behaviour codes, read when the ranker has a behaviour table); ``candidates``
        [B] item ids; ``feats``: optional user_ids / user_dense / item_ids / item_dense rows."""
        feats = feats or {}
        states = self.encoder(batch)  # [B, L, D]
        valid = batch.items != 0
        keys, beh_mean = states, None
        if self.behavior_emb is not None:
            if batch.behaviors is None:
                raise ValueError("this ranker reads history behaviours; the batch has none")
            level = batch.behaviors.clamp(0, self.behavior_emb.num_embeddings - 1)
            beh = self.behavior_emb(level) * valid[..., None].to(keys.dtype)
            keys = keys + beh
            # the plain mean too: the user's overall rating level, whatever the candidate
            beh_mean = beh.sum(1) / valid.sum(1, keepdim=True).clamp(min=1).to(keys.dtype)
        e = self.encoder.item_weights[candidates]
        if self.item_feat is not None:
            e = e + self.item_feat(feats.get("item_ids"), feats.get("item_dense"))
        pooled = self.attention(keys, e, valid)
        last = gather_last(states, valid.sum(1))
        parts = [pooled, last, e, pooled * e, last * e]
        if beh_mean is not None:
            parts.append(beh_mean)
        cf = None
        if self.pool is not None:
            q = self.pool(states, level, valid)
            parts.append(q * e)
            cf = self.pool.score(q, e)
        if self.user_feat is not None:
            parts.append(self.user_feat(feats.get("user_ids"), feats.get("user_dense")))
        if self.knn_weight is not None:
            if "knn" not in feats:
                raise ValueError("this ranker reads the item-kNN score; feats has no 'knn'")
            knn = feats["knn"].to(e.dtype)
            parts.append(knn)
            cf = (0.0 if cf is None else cf) + self.knn_weight * knn[:, 0]
        x = torch.cat(parts, -1)
        logit = self.head(x).squeeze(-1) + self.item_bias(candidates).squeeze(-1)
        if cf is not None:
            logit = logit + cf
        return logit if self.prior_logit is None else logit + self.prior_logit[candidates]


class LogisticRanker(RankingHead):
    """Logistic regression on one-hot user id, item id and categorical feature ids (one weight
    each) plus a linear term on dense features: the baseline of the ranking task."""

    def __init__(
        self,
        n_users: int,
        n_items: int,
        item_features: tuple[int, int] | None = None,
        user_features: tuple[int, int] | None = None,
    ) -> None:
        super().__init__()
        self.encoder = None
        self.bias = nn.Parameter(torch.zeros(()))
        self.user_w = nn.Embedding(n_users, 1)
        self.item_w = nn.Embedding(n_items + 1, 1)
        self.item_feat = FeatureEncoder(*item_features, 1) if item_features else None
        self.user_feat = FeatureEncoder(*user_features, 1) if user_features else None
        for emb in (self.user_w, self.item_w):
            nn.init.zeros_(emb.weight)

    def forward(
        self, batch: SeqBatch, candidates: torch.Tensor, feats: dict | None = None
    ) -> torch.Tensor:
        """Reads only the user (``batch.users``), the candidate and their features."""
        feats = feats or {}
        logit = self.bias + self.user_w(batch.users).squeeze(-1)
        logit = logit + self.item_w(candidates).squeeze(-1)
        if self.item_feat is not None:
            logit = logit + self.item_feat(feats.get("item_ids"), feats.get("item_dense"))[:, 0]
        if self.user_feat is not None:
            logit = logit + self.user_feat(feats.get("user_ids"), feats.get("user_dense"))[:, 0]
        return logit
