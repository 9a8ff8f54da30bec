"""The SASRec paper's loss: binary cross-entropy with one uniformly sampled negative per position.

Kept as a faithful-reproduction mode (it is much weaker than full CE, see ANCHORS.md 1). The
official sampler draws negatives outside the user's whole training sequence; here a negative is
redrawn (a few vectorised rounds) while it collides with any item in the user's training window,
which is the part of the history the model sees. Collisions left after the last round are rare
(< 1e-4 on ML-1M) and simply count as negatives.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

_REDRAW_ROUNDS = 4


def sample_negatives(
    items: torch.Tensor,
    targets: torch.Tensor,
    n_items: int,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """One negative per position [B, L], uniform on 1..n_items, avoiding the row's own items."""
    seen = torch.cat([items, targets], dim=1)
    neg = torch.randint(1, n_items + 1, targets.shape, generator=generator, device=targets.device)
    for _ in range(_REDRAW_ROUNDS):
        clash = (neg[:, :, None] == seen[:, None, :]).any(-1)
        if not bool(clash.any()):
            break
        redraw = torch.randint(
            1, n_items + 1, targets.shape, generator=generator, device=targets.device
        )
        neg = torch.where(clash, redraw, neg)
    return neg


def sampled_bce_loss(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    items: torch.Tensor,
    targets: torch.Tensor,
    generator: torch.Generator | None = None,
    sparse_rows: bool = False,
) -> torch.Tensor:
    """Mean over valid positions of -log s(h.e_pos) - log(1 - s(h.e_neg)). ``sparse_rows``:
    read the table through a sparse-gradient gather (``train.item_updates=sparse``)."""
    valid = targets != 0
    neg = sample_negatives(items, targets, weight.shape[0] - 1, generator)
    h = hidden[valid]
    pos_w = F.embedding(targets[valid], weight, sparse=sparse_rows)
    neg_w = F.embedding(neg[valid], weight, sparse=sparse_rows)
    pos_logit = (h * pos_w).sum(-1)
    neg_logit = (h * neg_w).sum(-1)
    loss = F.softplus(-pos_logit) + F.softplus(neg_logit)
    return loss.mean() if loss.numel() else hidden.sum() * 0.0
