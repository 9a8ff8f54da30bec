"""Sparse item-table updates: AdamW whose cost follows the rows a step touches.

With ``train.item_updates=sparse`` the item table's gradient is a sparse tensor over the rows
the step read (objectives/rows.py, ``nn.Embedding(sparse=True)``). Dense AdamW would still
decay, re-normalise and move all V rows every step (at 1M items that is most of a step's time,
benchmarks/large_catalog.py); `RowAdamW` moves only the touched rows, with per-row step counts
for the bias correction, as TorchRec's row-wise optimisers and TF's LazyAdam do. A row's
moments and weights are left alone on steps that do not touch it, so the update equals dense
AdamW exactly when every row is touched every step (the test's check) and is "lazy" otherwise.

The other parameters are dense and go through torch's own AdamW unchanged: `RowAdamW` is an
``AdamW`` whose step hides the sparse gradients from it and applies them row by row.
"""

from __future__ import annotations

import torch
from torch import nn

from seqrec.errors import SeqrecError


def enable_sparse_item_table(model: nn.Module) -> nn.Parameter:
    """Switch the model's item table to sparse gradients; its parameter, for the optimiser.

    Only a model whose output table *is* its input table can: anything computed from the
    whole table each step (side-information sums, cosine normalisation, a separate head)
    would hand the table a dense gradient anyway.
    """
    name = type(model).__name__
    emb = getattr(model, "item_emb", None)
    if not isinstance(emb, nn.Embedding):
        raise SeqrecError(
            f"train.item_updates=sparse needs a model with an item_emb table; {name} has none; "
            "use train.item_updates=dense"
        )
    if model.item_weights is not emb.weight:
        raise SeqrecError(
            f"train.item_updates=sparse: {name}'s output table is computed from the whole item "
            "table (side information, cosine outputs or a separate head), so every row would "
            "update each step anyway; use train.item_updates=dense"
        )
    ddp = torch.distributed.is_available() and torch.distributed.is_initialized()
    if ddp and torch.distributed.get_world_size() > 1:
        raise SeqrecError(
            "train.item_updates=sparse trains in one process (DDP all-reduces dense "
            "gradients of the whole table); drop torchrun or use train.item_updates=dense"
        )
    emb.sparse = True
    return emb.weight


class RowAdamW(torch.optim.AdamW):
    """AdamW for the dense parameters, row-wise lazy AdamW for the groups marked ``rows``."""

    @torch.no_grad()
    def step(self, closure=None):
        held = []  # the sparse groups' gradients, out of AdamW's sight
        for group in self.param_groups:
            if group.get("rows"):
                for p in group["params"]:
                    if p.grad is not None:
                        held.append((group, p, p.grad))
                        p.grad = None
        try:
            loss = super().step(closure)
        finally:
            for _, p, grad in held:
                p.grad = grad
        for group, p, grad in held:
            self._row_step(group, p, grad)
        return loss

    def _row_step(self, group: dict, p: torch.Tensor, grad: torch.Tensor) -> None:
        if not grad.is_sparse:
            raise SeqrecError(
                "train.item_updates=sparse: the item table received a dense gradient (the "
                "objective or the model reads every row each step, e.g. objective.name=ce); "
                "use a sampled objective (ssm, gbce, bce) or train.item_updates=dense"
            )
        grad = grad.coalesce()
        rows, g = grad.indices()[0], grad.values()
        if rows.numel() == 0:
            return
        state = self.state[p]
        if not state:
            state["exp_avg"] = torch.zeros_like(p)
            state["exp_avg_sq"] = torch.zeros_like(p)
            state["step"] = torch.zeros(p.shape[0], dtype=torch.int64, device=p.device)
        beta1, beta2 = group["betas"]
        lr, eps, decay = group["lr"], group["eps"], group["weight_decay"]
        state["step"][rows] += 1
        t = state["step"][rows].to(p.dtype)[:, None]
        m = state["exp_avg"][rows].lerp_(g, 1 - beta1)
        v = state["exp_avg_sq"][rows].mul_(beta2).addcmul_(g, g, value=1 - beta2)
        state["exp_avg"][rows], state["exp_avg_sq"][rows] = m, v
        w = p[rows]
        if decay:
            w.mul_(1 - lr * decay)
        # AdamW's own arithmetic: p -= (lr / bc1) * m / (sqrt(v) / sqrt(bc2) + eps)
        denom = v.sqrt().div_((1 - beta2**t).sqrt()).add_(eps)
        p[rows] = w.sub_(m / denom * (lr / (1 - beta1**t)))


def reference_row_adamw(p, grads, lr, betas, eps, decay):
    """Plain per-row loop over steps (the tests' check): ``grads`` a list of dicts {row: g}."""
    m, v = torch.zeros_like(p), torch.zeros_like(p)
    steps = [0] * p.shape[0]
    for step_grads in grads:
        for r, g in step_grads.items():
            steps[r] += 1
            m[r] = betas[0] * m[r] + (1 - betas[0]) * g
            v[r] = betas[1] * v[r] + (1 - betas[1]) * g * g
            p[r] = p[r] * (1 - lr * decay)
            mhat = m[r] / (1 - betas[0] ** steps[r])
            vhat_sqrt = v[r].sqrt() / (1 - betas[1] ** steps[r]) ** 0.5
            p[r] = p[r] - lr * mhat / (vhat_sqrt + eps)
    return p
