"""Sampled softmax: the target against R sampled negatives per position (METHODS.md 6.4).

As in generative-recommenders' research code, every position t with a next item is an example,
with logits s(u_t, e) / temperature for its target and for R negatives drawn for that position:

* ``global``: uniform over items 1..V with replacement, independently per position (the
  research code's "local" sampler, R = 128 on ML-1M);
* ``in_batch``: R draws from the batch's target items, i.e. proportional to each item's
  frequency among them, which is the popular-item bias that the logQ correction removes.

With the logQ correction (Yi et al., RecSys'19) every logit, the target's included, is lowered by
log q(item), the probability that one draw returns that item. It is a constant under uniform
sampling and is then skipped. A negative equal to the target (an "accidental hit") is dropped
from that position's softmax. Cosine scoring (``objective.normalize``) lives in the model
(``model.l2_norm_output``), so the evaluator scores exactly what the loss trained; the
function below can also normalise on its own (``normalize=True``) for callers without a model.

Memory is one gathered [N, R, D] block of negative embeddings; on ML-1M (N ~ 21k positions,
R = 128, D = 50) that is ~0.5 GB in fp32. `reference_sampled_softmax` is the per-position loop
the tests compare against.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def sample_negatives(
    targets: torch.Tensor,
    n_items: int,
    n_negatives: int,
    sampling: str = "global",
    logq: bool = True,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """Negatives [N, R] for targets [N] (all real items), and log q of the targets [N] and of
    the negatives [N, R] when a correction applies (None otherwise)."""
    n, dev = targets.shape[0], targets.device
    if sampling == "global":
        neg = torch.randint(1, n_items + 1, (n, n_negatives), device=dev, generator=generator)
        return neg, None, None  # log q = -log V for every item: no effect on the softmax
    if sampling != "in_batch":
        raise ValueError(f"unknown negative sampling '{sampling}'; use global or in_batch")
    pick = torch.randint(0, n, (n, n_negatives), device=dev, generator=generator)
    neg = targets[pick]
    if not logq:
        return neg, None, None
    log_q = torch.bincount(targets, minlength=n_items + 1).float().div_(n).log_()
    return neg, log_q[targets], log_q[neg]


def sampled_softmax_loss(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    negatives: torch.Tensor,
    temperature: float = 1.0,
    log_q_pos: torch.Tensor | None = None,
    log_q_neg: torch.Tensor | None = None,
    normalize: bool = False,
) -> torch.Tensor:
    """Mean over N positions of -log softmax([l+, l_1..l_R])_0 with l = s(h, e) / T - log q.

    hidden [N, D], weight [V+1, D] (item table), targets [N], negatives [N, R].
    """
    if hidden.shape[0] == 0:
        return hidden.sum() * 0.0
    pos_w, neg_w = weight[targets], weight[negatives]
    if normalize:
        hidden = F.normalize(hidden, dim=-1, eps=1e-6)
        pos_w, neg_w = F.normalize(pos_w, dim=-1, eps=1e-6), F.normalize(neg_w, dim=-1, eps=1e-6)
    pos = (hidden * pos_w).sum(-1) / temperature
    neg = torch.bmm(neg_w, hidden.unsqueeze(-1)).squeeze(-1) / temperature
    if log_q_pos is not None:
        pos = pos - log_q_pos
    if log_q_neg is not None:
        neg = neg - log_q_neg
    neg = neg.masked_fill(negatives == targets[:, None], float("-inf"))
    logits = torch.cat([pos[:, None], neg], dim=1)
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))  # fp32 at least
    return (torch.logsumexp(logits, dim=1) - logits[:, 0]).mean()


def reference_sampled_softmax(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    negatives: torch.Tensor,
    temperature: float = 1.0,
    log_q: torch.Tensor | None = None,
    normalize: bool = False,
) -> float:
    """Brute force, one position and one negative at a time; ``log_q`` [V+1] per item."""
    total = 0.0
    for h, t, negs in zip(hidden.tolist(), targets.tolist(), negatives.tolist(), strict=True):

        def logit(item: int, h=h) -> float:
            e = weight[item].tolist()
            s = sum(a * b for a, b in zip(h, e, strict=True))
            if normalize:
                s /= max(math.sqrt(sum(a * a for a in h)), 1e-6)
                s /= max(math.sqrt(sum(b * b for b in e)), 1e-6)
            return s / temperature - (float(log_q[item]) if log_q is not None else 0.0)

        pos = logit(t)
        denom = math.exp(pos) + sum(math.exp(logit(r)) for r in negs if r != t)
        total += math.log(denom) - pos
    return total / len(targets)
