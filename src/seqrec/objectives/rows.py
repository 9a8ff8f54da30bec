"""The rows of the item table a sampled objective reads, as a small table of their own.

A sampled loss (ssm, gbce, bce) reads a few thousand rows of a table that may hold millions.
`touched_rows` gathers those rows once, through ``F.embedding`` with ``sparse=True`` when the
run updates the item table sparsely (``train.item_updates=sparse``), and renumbers the
loss's item ids into that sub-table. The losses then run unchanged on the sub-table, the
gradient that reaches the whole table is a sparse tensor over the touched rows only, and the
row-wise optimiser (trainer/optim.py) moves just those rows. With dense updates the same
renumbering turns a shared-negatives sampled softmax into one small dense matmul instead of a
gather of [N, R, D] candidate rows.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def sparse_item_table(model: nn.Module) -> bool:
    """Whether the run asked for sparse item-table gradients (the trainer sets
    ``item_emb.sparse``; a DDP or compile wrapper forwards the attribute)."""
    emb = getattr(model, "item_emb", None)
    return isinstance(emb, nn.Embedding) and emb.sparse


def touched_rows(
    weight: torch.Tensor, *ids: torch.Tensor, sparse: bool
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """(sub-table [C, D] of the distinct ids, each ``ids`` tensor renumbered into it).

    Row j of the sub-table is ``weight[unique[j]]``, so a score against a renumbered id equals
    the score against the original one, and equal ids stay equal (accidental-hit masks hold).
    """
    # a batch-shared negative set arrives as an expanded view [N, R] of one row: renumber
    # that row once instead of N copies of it
    stored = [x[:1] if x.dim() == 2 and x.shape[0] > 1 and x.stride(0) == 0 else x for x in ids]
    flat = torch.cat([x.reshape(-1) for x in stored])
    unique, inverse = torch.unique(flat, return_inverse=True)
    sub = F.embedding(unique, weight, sparse=sparse)
    out, start = [], 0
    for x, kept in zip(ids, stored, strict=True):
        out.append(inverse[start : start + kept.numel()].view(kept.shape).expand(x.shape))
        start += kept.numel()
    return sub, out
