"""AdamW with linear warm-up followed by a constant, cosine or linear schedule."""

from __future__ import annotations

import math

import torch
from torch import nn

from seqrec.options import TrainConfig
from seqrec.trainer.rowwise import RowAdamW, enable_sparse_item_table


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW; with ``train.item_updates=sparse`` the item table is a group of its own that
    `RowAdamW` updates row by row (trainer/rowwise.py)."""
    table = enable_sparse_item_table(model) if cfg.item_updates == "sparse" else None
    # No weight decay on biases, norms and the position table: decaying them only hurts.
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p is table:
            continue
        (decay if p.dim() > 1 and "pos_emb" not in name else no_decay).append(p)
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    if table is None:
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas)
    groups.append({"params": [table], "weight_decay": cfg.weight_decay, "rows": True})
    return RowAdamW(groups, lr=cfg.lr, betas=cfg.betas, foreach=False)


def warmup_length(cfg: TrainConfig, steps_per_epoch: int) -> int:
    """Warm-up steps: ``train.warmup_steps`` when set, else ``train.warmup_epochs`` of this
    data's epochs rounded up, so the warm-up scales with the data instead of being a fixed
    count that can outlast a small dataset's first epochs (ML-1M: 48 steps an epoch)."""
    if cfg.warmup_steps is not None:
        return cfg.warmup_steps
    return math.ceil(cfg.warmup_epochs * steps_per_epoch)


def lr_factor(step: int, cfg: TrainConfig, total_steps: int, warmup: int) -> float:
    if warmup and step < warmup:
        return (step + 1) / warmup
    if cfg.schedule == "constant" or total_steps <= warmup:
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
    if cfg.schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    return 1.0 - progress


def build_scheduler(
    opt: torch.optim.Optimizer, cfg: TrainConfig, total_steps: int, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LambdaLR:
    warmup = warmup_length(cfg, steps_per_epoch)
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, cfg, total_steps, warmup))


def clip_grad_norm(params, max_norm: float) -> torch.Tensor:
    """``clip_grad_norm_`` that also takes sparse gradients (torch's does not): a sparse
    gradient is coalesced first, so a row read twice counts once, with its summed gradient."""
    grads = []
    for p in params:
        if p.grad is None:
            continue
        if p.grad.is_sparse:
            p.grad = p.grad.coalesce()
            grads.append(p.grad._values())
        else:
            grads.append(p.grad)
    if not grads:
        return torch.zeros(())
    total = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
    factor = torch.clamp(max_norm / (total + 1e-6), max=1.0)
    for g in grads:
        g.mul_(factor)
    return total
