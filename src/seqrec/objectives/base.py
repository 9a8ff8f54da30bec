"""Objective = (model, batch) -> scalar loss, chosen by config."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from seqrec.data.batches import SeqBatch
from seqrec.objectives.bce import sampled_bce_loss
from seqrec.objectives.cloze import cloze_loss
from seqrec.objectives.gbce import gbce_loss
from seqrec.objectives.rows import sparse_item_table, touched_rows
from seqrec.objectives.sampled_softmax import (
    sample_negatives,
    sampled_softmax_loss,
    shared_sampled_softmax,
)
from seqrec.ops.cross_entropy import chunked_cross_entropy
from seqrec.options import ObjectiveConfig

Objective = Callable[[nn.Module, SeqBatch], torch.Tensor]


def build_objective(cfg: ObjectiveConfig) -> Objective:
    """The recommendation loss plus, when the model defines one, its ``auxiliary_loss(batch)``.

    Auxiliary terms (contrastive losses, an augmenter's own training signal) live with the
    model that owns their parameters, so they compose with any recommendation loss and the
    trainer stays one loop.
    """
    main = _main_objective(cfg)

    def objective(model: nn.Module, batch: SeqBatch) -> torch.Tensor:
        loss = main(model, batch)
        aux = model.auxiliary_loss(batch)
        return loss if aux is None else loss + aux

    return objective


def _main_objective(cfg: ObjectiveConfig) -> Objective:
    if cfg.name == "ce":

        def ce(model: nn.Module, batch: SeqBatch) -> torch.Tensor:
            hidden = model(batch)
            valid = batch.targets != 0
            return chunked_cross_entropy(
                hidden[valid], model.item_weights, batch.targets[valid], cfg.chunk_size
            )

        return ce

    if cfg.name == "cloze":

        def cloze(model: nn.Module, batch: SeqBatch) -> torch.Tensor:
            return cloze_loss(model, batch, cfg.mask_prob, cfg.chunk_size)

        return cloze

    if cfg.name == "ssm":

        def ssm(model: nn.Module, batch: SeqBatch) -> torch.Tensor:
            # cosine scoring (cfg.normalize) is done by the model (model.l2_norm_output,
            # enforced equal in RunConfig), so evaluation scores what the loss trained
            hidden = model(batch)
            valid = batch.targets != 0
            weight, targets = model.item_weights, batch.targets[valid]
            neg, lq_pos, lq_neg = sample_negatives(
                targets,
                weight.shape[0] - 1,
                cfg.n_negatives,
                cfg.sampling,
                cfg.logq_correction,
                shared=cfg.shared_negatives,
            )
            sparse = sparse_item_table(model)
            if cfg.shared_negatives:  # one [N, R] matmul against the batch's R negatives
                return shared_sampled_softmax(
                    hidden[valid], weight, targets, neg[0], cfg.temperature, lq_pos,
                    None if lq_neg is None else lq_neg[0], sparse=sparse,
                )  # fmt: skip
            if sparse:  # score the touched rows only (objectives/rows.py)
                weight, (targets, neg) = touched_rows(weight, targets, neg, sparse=True)
            return sampled_softmax_loss(
                hidden[valid], weight, targets, neg, cfg.temperature, lq_pos, lq_neg
            )

        return ssm

    if cfg.name == "gbce":

        def gbce(model: nn.Module, batch: SeqBatch) -> torch.Tensor:
            hidden = model(batch)
            valid = batch.targets != 0
            weight, targets = model.item_weights, batch.targets[valid]
            n_items = weight.shape[0] - 1
            neg, _, _ = sample_negatives(targets, n_items, cfg.n_negatives, "global")
            if sparse_item_table(model):  # gbce's calibration reads the catalogue size, not C
                weight, (targets, neg) = touched_rows(weight, targets, neg, sparse=True)
            return gbce_loss(hidden[valid], weight, targets, neg, cfg.gbce_t, n_items=n_items)

        return gbce

    def bce(model: nn.Module, batch: SeqBatch) -> torch.Tensor:
        sparse = sparse_item_table(model)
        return sampled_bce_loss(
            model(batch), model.item_weights, batch.items, batch.targets, sparse_rows=sparse
        )

    return bce
