"""The scoring loop shared by the sampled losses: each position against its own candidates.

A sampled loss (ssm, gbce) scores every position with a next item against a row of candidates,
[target, R negatives], and reduces the [N, R+1] logits to a scalar. Gathering the [N, R+1, D]
candidate embeddings is what the plain autograd version spends its time on: on ML-1M at length
200 with R = 256 (gSASRec's setting) that is a 3 GB tensor per step, read forward and
scatter-added backward, ~85% of the step. `ChunkedCandidateLoss` walks over blocks of positions
instead and, the loss being a scalar at the end of the graph, computes the gradients in the same
pass (as the chunked CE does). A block scores its candidates in one of two ways, which give the
same numbers: *dense*, one [chunk, V+1] matmul against the whole item table from which the
candidate columns are picked, and gradients by two more matmuls; or *gather*, the [chunk, R+1,
D] candidate embeddings, for catalogues much larger than R. Dense wins while V is within
`DENSE_ITEMS_PER_NEGATIVE` x (R+1).

What the loss does with the logits is a *head*: ``head(block, logits, want_grad)`` takes one
block's [chunk, R+1] logits (column 0 the target, accumulation dtype, which it may overwrite)
and returns the block's summed loss and, when ``want_grad``, d(summed loss)/d(logits).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from seqrec.ops.cross_entropy import stash_gradients, stashed_gradients

Head = Callable[[slice, torch.Tensor, bool], tuple[torch.Tensor, torch.Tensor | None]]

DENSE_ITEMS_PER_NEGATIVE = 40
"""Score a block densely against all V+1 items while V+1 <= this x (R+1). With R = 128 and
width 50-64 on one core, dense was faster at ML-1M's 3,707 rows and gather at Beauty's 12,102
(console timings while another run shared the CPU); 40 x 129 = 5,160 splits them. For gBCE's
R = 256 on ML-1M (3,417 rows, width 128, 2 threads) dense is 7x faster than the plain
gather (4.6 s -> 0.66 s for the loss of one batch of 128 x 200 positions, forward and backward)."""


class ChunkedCandidateLoss(torch.autograd.Function):
    """Sum over N positions of ``head``'s loss, divided by N; gradients computed in forward."""

    @staticmethod
    def forward(ctx, hidden, weight, candidates, head: Head, chunk: int):
        n, dim = hidden.shape
        acc = torch.promote_types(hidden.dtype, torch.float32)  # fp32 at least, fp64 if given
        need_h, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        grad_h = torch.empty_like(hidden, dtype=acc) if need_h else None
        grad_w = torch.zeros_like(weight, dtype=acc) if need_w else None
        dense = weight.shape[0] <= DENSE_ITEMS_PER_NEGATIVE * candidates.shape[1]
        if dense:  # one [D, V+1] copy and two reused [chunk, V+1] blocks (no fresh pages each)
            weight_t = weight.T.contiguous()
            shape = (min(chunk, n), weight.shape[0])
            scores = torch.empty(shape, dtype=weight.dtype, device=hidden.device)
            g = torch.empty(shape, dtype=weight.dtype, device=hidden.device)
        total = torch.zeros((), dtype=acc, device=hidden.device)
        for s in range(0, n, chunk):
            block = slice(s, s + chunk)
            h, c = hidden[block], candidates[block]
            if dense:
                logits = torch.mm(h, weight_t, out=scores[: h.shape[0]]).gather(1, c).to(acc)
            else:
                cw = weight[c]  # [chunk, R+1, D]
                logits = torch.einsum("nrd,nd->nr", cw, h).to(acc)
            loss, dz = head(block, logits, need_h or need_w)
            total += loss
            if dz is None:
                continue
            dz = dz.to(weight.dtype)
            if dense:
                gc = g[: h.shape[0]].zero_().scatter_add_(1, c, dz)
                if need_h:
                    grad_h[block] = gc @ weight
                if need_w:
                    grad_w += (gc.T @ h).to(acc)
            else:
                if need_h:
                    grad_h[block] = torch.einsum("nr,nrd->nd", dz, cw)
                if need_w:
                    rows = (dz[:, :, None] * h[:, None, :]).reshape(-1, dim)
                    grad_w.index_add_(0, c.reshape(-1), rows.to(acc))
        stash_gradients(ctx, grad_h, grad_w, n, hidden, weight)
        return total / n

    @staticmethod
    def backward(ctx, grad_out):
        return *stashed_gradients(ctx, grad_out), None, None, None


def candidate_loss(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    negatives: torch.Tensor,
    head: Head,
    chunk: int = 2048,
) -> torch.Tensor:
    """Mean over N positions of ``head`` applied to the logits of [target, negatives]:
    hidden [N, D], weight [V+1, D] (item table), targets [N], negatives [N, R]. No positions
    give a zero loss that still has gradients (0 for every input)."""
    if hidden.shape[0] == 0:
        return hidden.sum() * 0.0
    candidates = torch.cat([targets[:, None], negatives], 1)  # [N, R+1], column 0 = target
    return ChunkedCandidateLoss.apply(hidden, weight, candidates, head, chunk)
