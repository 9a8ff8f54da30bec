"""gBCE (Petrov & Macdonald, gSASRec, RecSys'23): binary cross-entropy with k sampled negatives
whose positive term is raised to a power beta, so that the model's scores stay calibrated when
it sees only a small sample of the negatives. Any backbone can train with it
(``objective.name=gbce``).

With negatives drawn uniformly from the catalogue of V items, alpha = k / (V - 1) is the
sampling rate, and for a calibration ``t`` in [0, 1]

    beta = alpha * (t * (1 - 1 / alpha) + 1 / alpha)
    loss = -(beta * log s(s+) + sum_i log(1 - s(s_i-))) / (k + 1)

per position (s = sigmoid), averaged over the positions with a target. t = 0 gives beta = 1,
plain BCE with k negatives (SASRec's loss for k = 1); t = 1 gives beta = alpha. The division by
k + 1 is the mean over each position's k + 1 logits, as the published training code takes it
(``BCEWithLogitsLoss`` over [positive, negatives]); it only rescales the gradient. That code
feeds the positive to BCE as the logit log(1 / (s(s+)^-beta - 1)), whose BCE is exactly
-beta log s(s+): `reference_gbce` computes it that way, the tests check both agree.

Negatives are uniform over all items, independently per position, and may hit the target, as
in the published code (with V in the thousands that is rare and only adds noise).
Reproduction notes: ML-1M (SASRec's ml-1m.txt), length 200, k = 256, t = 0.75, width 128, 2
blocks, 1 head, dropout 0 reaches NDCG@10 0.1726 / HR@10 0.3003 with their released checkpoint
(ANCHORS.md 6; their evaluation filters rated items), after 86,064 steps of batch 128. Here
(`sasrec-gbce-ml-1m`, 2 CPU threads, 3,792 steps in ~1 hour): test NDCG@10 0.1450 / HR@10
0.2614, validation still creeping up; the first ~1,000 steps sit at the popularity ranking
(validation NDCG@10 ~0.02) before the sequence is learned (benchmarks/RESULTS.md).

`gbce_loss` is the fast path (the chunked scoring loop of objectives/candidates.py, dense
against the whole table on ML-1M: 7x faster than `plain_gbce`, the autograd version over the
gathered [N, k, D] negatives); `reference_gbce` is the published per-position form.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from seqrec.objectives.candidates import Head, candidate_loss


def gbce_beta(n_negatives: int, n_items: int, t: float) -> float:
    """beta for k = ``n_negatives`` uniform negatives out of ``n_items`` items at calibration t."""
    alpha = n_negatives / max(1, n_items - 1)
    return alpha * (t * (1.0 - 1.0 / alpha) + 1.0 / alpha)


def _k_and_beta(weight, negatives, t: float, n_items: int | None) -> tuple[int, float]:
    """k negatives per position and their beta; the catalogue is ``n_items`` where given (a
    table of only the touched rows), else the table's rows less PAD."""
    k = negatives.shape[1]
    return k, gbce_beta(k, weight.shape[0] - 1 if n_items is None else n_items, t)


def gbce_head(beta: float, k: int) -> Head:
    """-(beta log s(s+) + sum_i log(1 - s(s_i-))) / (k + 1) per position, as a head for
    `candidate_loss`. Its gradient: -beta s(-s+) / (k + 1) for the positive, s(s_i-) / (k + 1)
    for each negative."""

    def head(block: slice, logits: torch.Tensor, want_grad: bool):
        pos, neg = logits[:, 0], logits[:, 1:]
        loss = -(beta * F.logsigmoid(pos).sum() + F.logsigmoid(-neg).sum()) / (k + 1)
        if not want_grad:
            return loss, None
        dz = torch.sigmoid(logits)
        dz[:, 0] = torch.sigmoid(-pos).mul_(-beta)
        return loss, dz.div_(k + 1)

    return head


def gbce_loss(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    negatives: torch.Tensor,
    t: float,
    n_items: int | None = None,
    chunk: int = 2048,
) -> torch.Tensor:
    """Mean gBCE of hidden [N, D] against targets [N] and negatives [N, k] (item table
    ``weight`` [V + 1, D], row 0 = PAD). ``n_items``: the catalogue size V when ``weight`` is
    only the rows the batch touches (objectives/rows.py), since beta depends on it. The fast
    path (objectives/candidates.py, ``chunk`` positions at a time); same value as `plain_gbce`."""
    k, beta = _k_and_beta(weight, negatives, t, n_items)
    return candidate_loss(hidden, weight, targets, negatives, gbce_head(beta, k), chunk)


def plain_gbce(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    negatives: torch.Tensor,
    t: float,
    n_items: int | None = None,
) -> torch.Tensor:
    """The same loss in plain autograd over the gathered [N, k, D] negatives."""
    if hidden.shape[0] == 0:
        return hidden.sum() * 0.0
    k, beta = _k_and_beta(weight, negatives, t, n_items)
    pos = (hidden * weight[targets]).sum(-1)  # [N]
    neg = torch.einsum("nd,nkd->nk", hidden, weight[negatives])  # [N, k]
    per_position = beta * F.logsigmoid(pos) + F.logsigmoid(-neg).sum(-1)
    return -(per_position / (k + 1)).mean()


def reference_gbce(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    negatives: torch.Tensor,
    t: float,
) -> torch.Tensor:
    """gBCE the published way, one position at a time: BCE with logits over [positive,
    negatives] with labels [1, 0, ...], the positive's logit replaced by
    log(1 / (s(s+)^-beta - 1)); the tests' check on `gbce_loss`."""
    k = negatives.shape[1]
    beta = gbce_beta(k, weight.shape[0] - 1, t)
    losses = []
    for h, target, negs in zip(hidden, targets, negatives, strict=True):
        logits = torch.stack([h @ weight[target], *(h @ weight[j] for j in negs)])
        p = torch.sigmoid(logits[0]).double()
        logits = logits.double().clone()
        logits[0] = torch.log(1.0 / (p.pow(-beta) - 1.0))
        labels = torch.zeros(k + 1, dtype=torch.float64)
        labels[0] = 1.0
        losses.append(F.binary_cross_entropy_with_logits(logits, labels))
    return torch.stack(losses).mean()
