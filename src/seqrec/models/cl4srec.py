"""CL4SRec (Xie et al., ICDE'22): SASRec trained with an extra contrastive term.

L = L_rec + λ·L_cl. L_rec is whatever objective the run configures (full CE in the presets);
L_cl is NT-Xent between two augmented views of each training sequence (METHODS.md 4):

* **What is augmented.** A training row's ``targets`` are the last max_len items of the user's
  training sequence (its inputs lack only the most recent one), so the views are made from that
  full sequence, as CL4SRec augments the user's training sequence. Rows with no item are left
  out of the contrastive term.
* **Views.** Each view applies one operator drawn uniformly from ``model.aug_ops``
  (`seqrec.models.augment`), independently per view (ICLRec) or two different operators
  (``aug_distinct``, DuoRec). Draws use torch's global CPU RNG, which the trainer checkpoints,
  so a resumed run makes the same views.
* **Representation.** The final hidden state at each view's last real position (DuoRec): the
  same vector the model scores the next item with, no projection head. ICLRec/JamZheng contrast
  the flattened concatenation of all positions instead; that depends on left padding and is not
  offered.
* **Loss.** NT-Xent over the 2N views of a batch of N rows: for each view its partner is the
  positive and the other 2N − 2 views are negatives; similarity is a dot product (or cosine)
  divided by τ (dot and τ = 1 in all public code). With dot products the loss is minimised
  partly by growing the states, and the state contrasted here is the one the recommender
  scores with: on Beauty dot/τ 1 held CL4SRec at test NDCG@10 0.0326 against 0.0564 with
  cosine/τ 0.2 (SASRec 0.0566), so the presets use cosine.

The mask operator writes token ``n_items + 1``, so the item table has n_items + 2 rows;
``item_weights`` returns rows 0..n_items only, so the mask token is never scored or ranked.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import nn

from seqrec.data.batches import SeqBatch
from seqrec.models.augment import AugmentOptions, random_augment, two_view_choices
from seqrec.models.base import CosineOutputOption
from seqrec.models.pairs import info_nce as nt_xent
from seqrec.models.sasrec import SASRec
from seqrec.models.sasrec_blocks import SASRecBlockConfig


class CL4SRecConfig(SASRecBlockConfig, CosineOutputOption, AugmentOptions):
    """SASRec's options plus the contrastive term's (defaults: ICLRec's CL4SRec settings)."""

    name: Literal["cl4srec"]
    cosine_output = True
    cl_weight: float = Field(0.1, ge=0)
    """λ in L = L_rec + λ·L_cl (0.1 in DuoRec's, ICLRec's and JamZheng's CL4SRec code)."""
    cl_temperature: float = Field(1.0, gt=0)
    """τ of the NT-Xent loss (1.0 in all three public codes; "not studied" in ICLRec)."""
    cl_similarity: Literal["dot", "cos"] = "dot"
    """Similarity of two view representations: dot product (public code) or cosine."""


class CL4SRec(SASRec):
    """SASRec encoder + ``auxiliary_loss`` (λ·NT-Xent of two augmented views per row)."""

    config_class = CL4SRecConfig

    def __init__(self, cfg: CL4SRecConfig, n_items: int, max_len: int) -> None:
        super().__init__(cfg, n_items, max_len)
        # one more row for the mask token (id n_items + 1); re-initialise so it is drawn
        # exactly like the other rows
        self.item_emb = nn.Embedding(n_items + 2, cfg.hidden, padding_idx=0)
        self.reset_parameters()

    @property
    def item_weights(self) -> torch.Tensor:
        """Output table [n_items + 1, D] (PAD + items); the mask token row is never scored."""
        return self.item_emb.weight[: self.n_items + 1]

    def augment_views(self, sequences: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Two augmented right-padded views of each row of ``sequences`` [N, L]."""
        cfg = self.cfg
        ratios = {
            "crop": cfg.crop_ratio,
            "mask": cfg.mask_ratio,
            "reorder": cfg.reorder_ratio,
            "insert": cfg.insert_ratio,
            "substitute": cfg.substitute_ratio,
        }
        ops = list(cfg.aug_ops)
        first, second = two_view_choices(sequences.shape[0], len(ops), cfg.aug_distinct)
        dev = sequences.device
        v1 = random_augment(sequences, ops, ratios, self.n_items, choice=first.to(dev))
        v2 = random_augment(sequences, ops, ratios, self.n_items, choice=second.to(dev))
        return v1, v2

    def represent(self, views: torch.Tensor) -> torch.Tensor:
        """Final hidden state [N, D] at each row's last real position (full forward, so
        training-mode dropout applies everywhere, unlike the inference fast path)."""
        lengths = (views != 0).sum(1)
        width = int(lengths.max())
        views = views[:, :width]
        batch = SeqBatch(
            items=views,
            targets=torch.zeros_like(views),
            lengths=lengths,
            users=torch.arange(views.shape[0], device=views.device),
        )
        hidden = self(batch)
        return hidden[torch.arange(views.shape[0], device=views.device), lengths - 1]

    def auxiliary_loss(self, batch: SeqBatch) -> torch.Tensor:
        """λ·NT-Xent between two augmented views of every training row that has an item."""
        if batch.targets.dim() != 2:
            raise ValueError("CL4SRec.auxiliary_loss needs a training batch ([B, L] targets)")
        seqs = batch.targets[(batch.targets != 0).any(1)]
        if self.cfg.cl_weight == 0 or seqs.shape[0] < 2:  # no negatives without a second row
            return self.item_emb.weight.sum() * 0.0
        v1, v2 = self.augment_views(seqs)
        z = self.represent(torch.cat([v1, v2]))
        n = seqs.shape[0]
        loss = nt_xent(z[:n], z[n:], self.cfg.cl_temperature, self.cfg.cl_similarity)
        return self.cfg.cl_weight * loss
