"""Full softmax cross-entropy over every item, without ever holding all [N, V] logits.

A plain ``F.cross_entropy(h @ W.T, t)`` keeps the whole logit matrix alive for the backward pass
(ML-1M, batch 128 x 200 positions x 3,417 items = 350 MB in fp32; larger catalogues do not fit).
`ChunkedCrossEntropy` walks over [chunk, V] blocks and, because the loss is a scalar at the end
of the graph, computes the gradients w.r.t. hidden states and the item table in the same pass
(softmax - one_hot is all the backward needs). The backward pass then only rescales them by the
incoming gradient. That is three matmuls per block instead of four for recompute-in-backward,
and peak extra memory is one block. `reference_cross_entropy` is the plain version the tests
compare against.

Item 0 is PAD and is excluded from the softmax (its logit is -inf).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


class ChunkedCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, chunk: int):
        n = hidden.shape[0]
        acc = torch.promote_types(hidden.dtype, torch.float32)  # fp32 at least, fp64 if given
        need_h, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        grad_h = torch.empty_like(hidden, dtype=acc) if need_h else None
        grad_w = torch.zeros_like(weight, dtype=acc) if need_w else None
        total = torch.zeros((), dtype=acc, device=hidden.device)
        for s in range(0, n, chunk):
            h, t = hidden[s : s + chunk], targets[s : s + chunk]
            rows = torch.arange(h.shape[0], device=h.device)
            logits = (h @ weight.T).to(acc)
            logits[:, 0] = float("-inf")
            top = logits.amax(dim=1, keepdim=True)
            target_logit = logits[rows, t]
            probs = logits.sub_(top).exp_()  # in place: the block is reused as the softmax
            norm = probs.sum(dim=1, keepdim=True)
            total += (top.squeeze(1) + norm.squeeze(1).log() - target_logit).sum()
            if need_h or need_w:
                probs.div_(norm)
                probs[rows, t] -= 1.0
                p = probs.to(weight.dtype)
                if need_h:
                    grad_h[s : s + chunk] = p @ weight
                if need_w:
                    grad_w += (p.T @ h).to(acc)
        stash_gradients(ctx, grad_h, grad_w, n, hidden, weight)
        return total / n

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        return *stashed_gradients(ctx, grad_out), None, None


def stash_gradients(ctx, grad_h, grad_w, n: int, hidden, weight) -> None:
    """Keep the summed gradients a loss computed in its forward pass (None where not needed)
    for `stashed_gradients`; the loss is their mean over ``n`` rows."""
    if grad_h is not None or grad_w is not None:
        ctx.save_for_backward(
            torch.empty(0) if grad_h is None else grad_h,
            torch.empty(0) if grad_w is None else grad_w,
        )
    ctx.n = n
    ctx.dtypes = (hidden.dtype, weight.dtype)


def stashed_gradients(ctx, grad_out: torch.Tensor) -> tuple:
    """The backward of a loss whose gradients w.r.t. (hidden, weight) were stashed in forward:
    scale them by the incoming gradient and the mean's 1/n, in the inputs' dtypes."""
    grad_h, grad_w = ctx.saved_tensors
    scale = grad_out / ctx.n
    gh = (grad_h * scale).to(ctx.dtypes[0]) if ctx.needs_input_grad[0] else None
    gw = (grad_w * scale).to(ctx.dtypes[1]) if ctx.needs_input_grad[1] else None
    return gh, gw


def chunked_cross_entropy(
    hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, chunk: int = 2048
) -> torch.Tensor:
    """Mean CE of ``targets`` [N] under softmax(hidden [N, D] @ weight[V, D].T) over items 1..V-1."""
    if hidden.shape[0] == 0:
        return hidden.sum() * 0.0
    return ChunkedCrossEntropy.apply(hidden, weight, targets, chunk)


def reference_cross_entropy(
    hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor
) -> torch.Tensor:
    logits = (hidden @ weight.T).float() if hidden.dtype != torch.float64 else hidden @ weight.T
    logits[:, 0] = float("-inf")
    return F.cross_entropy(logits, targets)
