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

`sampled_softmax_loss` is the fast path: `softmax_head` run by the chunked scoring loop of
objectives/candidates.py, which scores a block of positions densely against the whole table or
by gathering the candidates, and computes the gradients in the same pass (profiled on ML-1M,
HSTU's SSM step: the plain autograd version spent ~80% of the step in batched matrix-vector
products and gathers over [N, R, D]).
`plain_sampled_softmax` is that autograd version and `reference_sampled_softmax` the
per-position loop; the tests check all of them against each other.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from seqrec.objectives.candidates import Head, candidate_loss
from seqrec.objectives.rows import touched_rows


def sample_negatives(
    targets: torch.Tensor,
    n_items: int,
    n_negatives: int,
    sampling: str = "global",
    logq: bool = True,
    generator: torch.Generator | None = None,
    shared: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """Negatives [N, R] for targets [N] (all real items), and log q of the targets [N] and of
    the negatives [N, R] when a correction applies (None otherwise). ``shared``: one set of R
    draws for the whole batch, every row of the result a view of it."""
    n, dev = targets.shape[0], targets.device
    rows = 1 if shared else n
    if sampling == "global":
        neg = torch.randint(1, n_items + 1, (rows, n_negatives), device=dev, generator=generator)
        return neg.expand(n, -1), None, None  # log q = -log V for every item: no effect
    if sampling != "in_batch":
        raise ValueError(f"unknown negative sampling '{sampling}'; use global or in_batch")
    pick = torch.randint(0, n, (rows, n_negatives), device=dev, generator=generator)
    neg = targets[pick].expand(n, -1)
    if not logq:
        return neg, None, None
    log_q = torch.bincount(targets, minlength=n_items + 1).float().div_(n).log_()
    return neg, log_q[targets], log_q[neg]


def softmax_head(
    targets: torch.Tensor,
    negatives: torch.Tensor,
    temperature: float,
    lq_pos: torch.Tensor | None,
    lq_neg: torch.Tensor | None,
) -> Head:
    """-log softmax([l+, l_1..l_R])_0 per position, as a head for `candidate_loss`: logits
    divided by the temperature, lowered by log q where given, accidental hits masked out."""
    hit = torch.cat([torch.zeros_like(targets[:, None], dtype=torch.bool),
                     negatives == targets[:, None]], 1)  # fmt: skip
    shift = None
    if lq_pos is not None or lq_neg is not None:
        shift = torch.cat([lq_pos[:, None], lq_neg], 1)

    def head(block: slice, logits: torch.Tensor, want_grad: bool):
        logits = logits.div_(temperature)
        if shift is not None:
            logits -= shift[block].to(logits.dtype)
        logits.masked_fill_(hit[block], float("-inf"))
        lse = torch.logsumexp(logits, dim=1)
        loss = (lse - logits[:, 0]).sum()
        if not want_grad:
            return loss, None
        dz = logits.sub_(lse[:, None]).exp_()  # softmax; masked hits are exactly 0
        dz[:, 0] -= 1.0
        return loss, dz.div_(temperature)

    return head


def sampled_softmax_loss(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    negatives: torch.Tensor,
    temperature: float = 1.0,
    log_q_pos: torch.Tensor | None = None,
    log_q_neg: torch.Tensor | None = None,
    normalize: bool = False,
    chunk: int = 2048,
) -> torch.Tensor:
    """Mean over N positions of -log softmax([l+, l_1..l_R])_0 with l = s(h, e) / T - log q.

    hidden [N, D], weight [V+1, D] (item table), targets [N], negatives [N, R]. The fast path
    (`candidate_loss`, ``chunk`` positions at a time); same value as
    `plain_sampled_softmax`.
    """
    if normalize:
        hidden = F.normalize(hidden, dim=-1, eps=1e-6)
        weight = F.normalize(weight, dim=-1, eps=1e-6)
    head = softmax_head(targets, negatives, temperature, log_q_pos, log_q_neg)
    return candidate_loss(hidden, weight, targets, negatives, head, chunk)


def shared_sampled_softmax(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    negatives: torch.Tensor,
    temperature: float = 1.0,
    log_q_pos: torch.Tensor | None = None,
    log_q_neg: torch.Tensor | None = None,
    sparse: bool = False,
) -> torch.Tensor:
    """The same loss when one set of R negatives [R] serves all N positions
    (``objective.shared_negatives``): [N, R] scores from one matmul against the R rows, the
    targets' scores from their own rows, so the cost grows with N x R. (The per-position path
    would score every position against every distinct row of the batch, targets included,
    which grows with N squared.) ``log_q_neg`` is [R]; ``sparse``: read the table through a
    sparse-gradient gather (objectives/rows.py)."""
    if hidden.shape[0] == 0:
        return hidden.sum() * 0.0
    rows, (t, n) = touched_rows(weight, targets, negatives, sparse=sparse)
    pos = (hidden * rows[t]).sum(-1) / temperature  # [N]
    neg = (hidden @ rows[n].T) / temperature  # [N, R]
    if log_q_pos is not None:
        pos, neg = pos - log_q_pos, neg - log_q_neg[None, :]
    neg = neg.masked_fill(n[None, :] == t[:, None], float("-inf"))  # accidental hits
    logits = torch.cat([pos[:, None], neg], dim=1)
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
    return (torch.logsumexp(logits, dim=1) - logits[:, 0]).mean()


def plain_sampled_softmax(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    negatives: torch.Tensor,
    temperature: float = 1.0,
    log_q_pos: torch.Tensor | None = None,
    log_q_neg: torch.Tensor | None = None,
    normalize: bool = False,
) -> torch.Tensor:
    """The same loss in plain autograd over the gathered [N, R, D] negatives (the reference
    the fast path is tested against)."""
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
