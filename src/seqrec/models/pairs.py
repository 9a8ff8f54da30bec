"""Same-target pairs and InfoNCE: the contrastive pieces DuoRec, ICSRec and CL4SRec share.

A training row holds many prefixes (one per slot with a target); contrastive methods that pair
prefixes by their next item (DuoRec's supervised positives, ICSRec's cross-subsequence
positives) draw those pairs from the batch with `same_target_partners`, and every contrastive
model in the zoo scores its pairs with `info_nce` (tests/models/test_duorec.py and
test_icsrec.py check both against per-anchor loops).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def same_target_partners(targets: torch.Tensor) -> torch.Tensor:
    """For each prefix (``targets`` [P], its next items), the index of another prefix with the
    same target, uniform among them; its own index where no other prefix has that target.

    Sorting groups equal targets; a member k places round its group of n then steps
    1 + ⌊u·(n − 1)⌋ places on (u uniform in [0, 1)), which lands on each other member with
    probability 1/(n − 1) and on itself when n = 1.
    """
    p = targets.shape[0]
    order = torch.argsort(targets, stable=True)
    _, counts = torch.unique_consecutive(targets[order], return_counts=True)
    size = counts.repeat_interleave(counts)
    start = (counts.cumsum(0) - counts).repeat_interleave(counts)
    place = torch.arange(p, device=targets.device) - start
    step = 1 + (torch.rand(p, device=targets.device) * (size - 1)).long()
    partner = torch.empty_like(order)
    partner[order] = order[start + (place + step) % size]
    return partner


def sample_pairs(targets: torch.Tensor, max_anchors: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(anchors [K], their positives [K]) as indices into ``targets`` [P]: K = min(max_anchors,
    P) distinct anchors drawn uniformly, each with its `same_target_partners` partner."""
    partners = same_target_partners(targets)
    anchors = torch.randperm(targets.shape[0], device=targets.device)[:max_anchors]
    return anchors, partners[anchors]


def info_nce(
    z1: torch.Tensor,
    z2: torch.Tensor,
    temperature: float = 1.0,
    similarity: str = "dot",
    groups: torch.Tensor | None = None,
) -> torch.Tensor:
    """InfoNCE of paired views z1[i] ↔ z2[i] ([N, D] each), mean over all 2N anchors.

    A view's negatives are the other 2N − 2 views (the official ``info_nce``). ``groups`` [N]
    (pair i's target) also removes views of other pairs in the anchor's group.
    """
    n = z1.shape[0]
    z = torch.cat([z1, z2])
    if similarity == "cos":
        z = F.normalize(z, dim=-1)
    sim = (z @ z.T) / temperature
    view = torch.arange(2 * n, device=z.device)
    partner = (view + n) % (2 * n)
    drop = view[:, None] == view[None, :]
    if groups is not None:
        g = torch.cat([groups, groups])
        same = g[:, None] == g[None, :]
        drop = drop | (same & (view[None, :] != partner[:, None]))
    return F.cross_entropy(sim.masked_fill(drop, float("-inf")), partner)
