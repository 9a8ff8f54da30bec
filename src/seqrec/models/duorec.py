"""DuoRec (Qiu, Huang, Yin & Wang, WSDM'22): SASRec trained with CE plus a contrastive regulariser.

L = L_CE + λ·L_reg. The paper's argument: trained with CE alone, item embeddings degenerate into
a narrow cone (anisotropy); contrasting sequence representations spreads those out (the
uniformity of contrastive learning), and since the same states are scored against the item
table by dot product, the item table spreads with them.

**The official loss** (RuihongQiu/DuoRec, ``recbole/model/sequential_recommender/duorec.py`` with
``contrast='us_x'``, the setting of its ``duorec.sh`` and ``seq.yaml``). A training sample is one
prefix (at most 50 items) and its next item. Besides the CE pass, two more passes run with
dropout on: the prefix itself (h', the model-level, "unsupervised" augmentation) and a
"semantic" positive h'_s, another training prefix with the same target item, drawn uniformly
from *all* training prefixes (``sequential_dataloader.duorec_aug``, ``semantic_augmentation``);
a prefix whose target no other prefix has is its own positive. L_reg is InfoNCE over the 2N
views of a batch of N prefixes: (h'_i, h'_s,i) is the positive pair, the other 2N − 2 views are
negatives (``info_nce`` with ``mask_correlated_samples``). Views of other prefixes with the same
target stay negatives: the code masks nothing else (``cl_mask_same_target`` offers that, off by
default). Similarity is a dot product (``sim='dot'``), τ = 1, λ = ``lmd_sem`` = 0.1; ``lmd``
weighs only the ``us``/``un`` variants and is unused by ``us_x``; the CE pass's state is not
contrasted. The paper's text could not be read here; the code is the reference.

**Adaptation to seqrec.** A training row is one user's whole right-padded sequence with a target
at every slot (`seqrec.data.batches.training_batch`), not one prefix per sample, so:

* every (row, slot) with a target is a prefix, and its representation is the hidden state at
  that slot (causal: it reads that prefix only), the state the recommender scores with;
* h' is that state in a second forward pass of the batch (the "twin"), and h'_s is the state
  of the positive in the objective's own pass, which has its own dropout masks: two dropout
  passes per step, as the official code's two contrastive passes (its CE pass is a third).
  When the objective has not just run ``forward`` on this very batch (or runs compiled), the
  first pass is recomputed here;
* the positive is drawn uniformly among the *other prefixes in the batch* with the same target
  (`same_target_partners`: sort by target, step a random 1..n−1 places round the group), not
  from the whole training set; a prefix whose target is unique in the batch is its own positive
  (the unsupervised one), as in the official fallback;
* at most ``cl_max_positions`` anchors are drawn per batch (uniformly among its prefixes),
  which bounds the 2K × 2K similarity matrix; the default 256 gives the official contrast size
  (2N − 2 = 510 negatives at its batch of 256 prefixes). Positives may be any batch prefix.

Protocol of the published numbers: RecBole (``seq.yaml``) with 5-core filtering, time-ordered
leave-one-out, full ranking with the user's earlier items masked, max length 50, Adam lr 1e-3,
batch 256 prefixes, at most 50 epochs, patience 10 on valid MRR@10. Encoder: RecBole's
Transformer (post-LN, GELU, inner 256, LN + dropout on the input embedding, an attention output
projection, N(0, 0.02) init, eps 1e-12, hidden and attention dropout 0.5), which this SASRec
encoder matches only in part (the presets list the differences). Reported by the paper, read
second-hand: Amazon Beauty HR@10 0.0845, NDCG@10 0.0443 (blondered/transformer_benchmark's
"Reported" column; RecSysDatasets' Amazon_Beauty, whose 5-core is the 22,363 × 12,101 data of
dataset amazon-beauty); ML-1M (6,040 × 3,416 after 5-core) HR@10 0.2946 ± 0.0018, NDCG@10
0.1680 ± 0.0032 (quoted in RuihongQiu/DuoRec issue #7).

Pitfalls of the public code: ``duorec.sh`` runs ML-1M at dropout 0.5, and users report HR@10
~0.256 from it (issues #6, #7); dropout 0.1 is reported to reach the paper's ML-1M numbers.
``duorec.sh`` writes ``lmd=0.1`` without ``--`` (harmless: us_x ignores it). The same-target
index is cached in ``data_path/semantic_augmentation.npy`` and reused whatever the preprocessing.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from seqrec.data.batches import SeqBatch
from seqrec.models.base import CosineOutputOption
from seqrec.models.pairs import info_nce, sample_pairs
from seqrec.models.sasrec import SASRec, flops_per_interaction
from seqrec.models.sasrec_blocks import SASRecBlockConfig


class DuoRecConfig(SASRecBlockConfig, CosineOutputOption):
    """SASRec's options plus the contrastive regulariser's (defaults: the official ``us_x``)."""

    name: Literal["duorec"]
    cosine_output = True
    cl_weight: float = Field(0.1, ge=0)
    """λ in L = L_rec + λ·L_reg (``lmd_sem`` = 0.1 in the official code)."""
    cl_temperature: float = Field(1.0, gt=0)
    """τ of the InfoNCE (``tau`` = 1 in the official code)."""
    cl_similarity: Literal["dot", "cos"] = "dot"
    """Similarity of two views: dot product (official ``sim='dot'``) or cosine."""
    cl_max_positions: int = Field(256, ge=2)
    """Anchor prefixes drawn per batch (a row holds many prefixes); 256 is the official contrast
    size, one batch of 256 prefixes."""
    cl_mask_same_target: bool = False
    """Leave views whose prefix has the anchor's target out of its negatives. The official code
    keeps them as negatives (False)."""


class DuoRec(SASRec):
    """SASRec encoder, presets and inference + ``auxiliary_loss`` (λ·InfoNCE of dropout views of
    same-target prefixes)."""

    config_class = DuoRecConfig

    def __init__(self, cfg: DuoRecConfig, n_items: int, max_len: int) -> None:
        super().__init__(cfg, n_items, max_len)
        self._main_pass: tuple[SeqBatch, torch.Tensor] | None = None
        """(batch, states) of the last training ``forward``: the objective's pass, which
        `auxiliary_loss` uses as the positives' dropout view instead of a third pass."""

    @staticmethod
    def flops_per_interaction(cfg: DuoRecConfig, n_items: int, seq_len: float) -> dict:
        """SASRec's count plus the twin pass: one more encoder forward and backward."""
        base = flops_per_interaction(cfg, n_items, seq_len)
        encoder = base["forward"] - 2 * cfg.hidden * (n_items + 1)
        return {"forward": base["forward"], "train": base["train"] + 3 * encoder}

    def forward(self, batch: SeqBatch, reference: bool = False) -> torch.Tensor:
        """SASRec's states; a training pass keeps them for `auxiliary_loss` (never when
        compiling: the traced graph stays free of the side effect, and the view is recomputed)."""
        hidden = super().forward(batch, reference)
        if self.training and torch.is_grad_enabled() and not torch.compiler.is_compiling():
            self._main_pass = (batch, hidden)
        return hidden

    def dropout_views(self, batch: SeqBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """Two dropout passes of ``batch``, states [B, L, D] each: the objective's own when it
        has just run on this batch (else a fresh one), and the twin."""
        main, self._main_pass = self._main_pass, None
        first = main[1] if main is not None and main[0] is batch else self(batch)
        twin = self(batch)
        self._main_pass = None
        return first, twin

    def auxiliary_loss(self, batch: SeqBatch) -> torch.Tensor:
        """λ·InfoNCE(h' of up to ``cl_max_positions`` anchor prefixes, h'_s of their positives)."""
        if batch.targets.dim() != 2:
            raise ValueError("DuoRec.auxiliary_loss needs a training batch ([B, L] targets)")
        cfg = self.cfg
        flat_targets = batch.targets.reshape(-1)
        prefixes = (flat_targets != 0).nonzero().squeeze(1)
        if cfg.cl_weight == 0 or prefixes.numel() < 2:  # no negatives without a second prefix
            self._main_pass = None
            return self.item_emb.weight.sum() * 0.0
        first, twin = self.dropout_views(batch)
        targets = flat_targets[prefixes]
        anchors, positives = sample_pairs(targets, cfg.cl_max_positions)
        width = first.shape[-1]
        z1 = twin.reshape(-1, width)[prefixes[anchors]]
        z2 = first.reshape(-1, width)[prefixes[positives]]
        groups = targets[anchors] if cfg.cl_mask_same_target else None
        loss = info_nce(z1, z2, cfg.cl_temperature, cfg.cl_similarity, groups)
        return cfg.cl_weight * loss
