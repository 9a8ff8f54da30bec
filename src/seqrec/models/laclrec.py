"""LACLRec (Wang et al., arXiv 2503.20232): learnable augmentation + triplet contrastive learning.

The paper's text and code are not available; everything follows METHODS.md 5, which reads the
authors' follow-up `[TCLA]` (same operations; hyper-parameters marked there as not verified
for LACLRec). Parts:

* **Recommender**: a SASRec encoder (``model.*`` shape) with one extra item row, the mask token
  ``n_items + 1`` of the random view; ``item_weights`` leaves it out, so it is never ranked. The
  recommendation loss is whatever objective the run sets (full CE in the presets) over every
  position, which covers `[TCLA]`'s "every prefix of length >= 2" samples.
* **Augmenter** (`seqrec.models.lacl_augmenter`): keep / delete / insert per position plus a
  reverse generator that inserts whole sub-sequences, trained to restore randomly corrupted
  sequences. It owns a separate encoder (`[TCLA]` shares it, see the drift pitfall there).
* **Three views per training row** (the row's full training sequence, ``batch.targets``, as
  CL4SRec in this library uses): raw s, learned s⁺ = augmenter(s) (no gradient), random
  s⁻ = one operator drawn uniformly from ``lacl_random_ops`` (`seqrec.models.augment`,
  `[TCLA]`: crop 0.6 / mask 0.3 / reorder 0.6). h, h⁺, h⁻ = final hidden state at each view's
  last real position (full forward, dropout on, as CL4SRec).
* **Losses**: fine-grained triplet L_tri = mean_b softplus(h·h⁻ − h·h⁺ + margin) (a ranking
  loss: sim(raw, learned) above sim(raw, random)); coarse-grained L_cl = NT-Xent(h⁺, h⁻) with
  2(N−1) in-batch negatives (`seqrec.models.cl4srec.nt_xent`). `[TCLA]` *sums* L_tri over the
  batch with β = 0.001; here it is a mean (so the gradient scale does not depend on the batch
  size, and DDP's per-rank rescaling holds) and ``lacl_triplet_weight`` = 0.256 = 0.001 × 256
  reproduces `[TCLA]` at its batch size 256.

**Schedule** (a persistent step counter buffer ``lacl_step``, saved in the state dict, so a
resumed run continues in the same phase at the same step):

1. steps [0, ``lacl_augmenter_pretrain_steps``): augmenter pre-training. The auxiliary loss is
   the restore loss only. The recommender is trained by the recommendation loss at the same
   time (`[TCLA]` trains only the augmenter in its first 50 epochs): the two share no
   parameter, so this changes nothing for the augmenter, and it keeps validation NDCG moving so
   early stopping cannot end a run during pre-training.
2. afterwards, joint training: aux = ``lacl_cl_weight`` · L_cl + ``lacl_triplet_weight`` · L_tri,
   plus the restore loss if ``lacl_augmenter_joint`` (default; `[TCLA]` freezes the augmenter
   instead, which ``lacl_augmenter_joint=false`` reproduces).

The counter advances once per ``auxiliary_loss`` call in training mode (= once per optimiser
step in the trainer). ``last_stats`` holds the latest restore accuracy and the keep / delete /
insert ratios of the learned views (`[TCLA]` logs them).

Ablations: ``lacl_view="random"`` replaces the learned view by a second independent random
augmentation (no augmenter training at all: what the augmenter adds over random views);
``lacl_triplet_weight=0`` / ``lacl_cl_weight=0`` drop one contrastive term;
``lacl_similarity`` picks dot products ([TCLA]) or cosine for both terms.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator

from seqrec.data.batches import SeqBatch
from seqrec.models.augment import random_augment
from seqrec.models.base import SeqModel
from seqrec.models.cl4srec import nt_xent
from seqrec.models.lacl_augmenter import LearnableAugmenter, corrupt
from seqrec.models.sasrec import SASRec, flops_per_interaction
from seqrec.models.sasrec_blocks import SASRecBlockConfig


class LACLRecConfig(SASRecBlockConfig):
    """SASRec's options plus LACLRec's (METHODS.md 5; values from [TCLA], the authors'
    follow-up, unless marked "guess")."""

    name: Literal["laclrec"]
    lacl_cl_weight: float = Field(0.1, ge=0)
    """α: weight of the coarse-grained NT-Xent between the learned and the random view ([TCLA])."""
    lacl_temperature: float = Field(1.0, gt=0)
    """τ of that NT-Xent, dot similarity ([TCLA] uses DuoRec's: τ = 1)."""
    lacl_view: Literal["learned", "random"] = "learned"
    """The triplet's positive view: the augmenter's edit (LACLRec) or, as an ablation of the
    augmenter, a second independent random augmentation (no restore task, no pre-training)."""
    lacl_similarity: Literal["dot", "cos"] = "dot"
    """Similarity in both LACLRec terms: dot ([TCLA]) or cosine (each view's state L2-normalised
    first, so the contrastive gradient cannot grow the states the recommender scores with)."""
    lacl_triplet_weight: float = Field(0.256, ge=0)
    """Weight of the batch-mean triplet loss: [TCLA]'s β = 0.001 on a batch *sum* at batch 256."""
    lacl_triplet_margin: float = 0.0
    """Margin inside softplus(h·h⁻ − h·h⁺ + margin); [TCLA] has none (0)."""
    lacl_random_ops: list[Literal["crop", "mask", "reorder", "insert", "substitute"]] = Field(
        default_factory=lambda: ["crop", "mask", "reorder"]
    )
    """Operators of the random view, one drawn uniformly per row ([TCLA]: CL4SRec's three)."""
    lacl_random_ratios: dict[str, float] = Field(
        default_factory=lambda: {"crop": 0.6, "mask": 0.3, "reorder": 0.6}
    )
    """Ratio of each random-view operator ([TCLA]: crop η 0.6, mask γ 0.3, reorder β 0.6)."""
    lacl_augmenter_pretrain_steps: int = Field(2000, ge=0)
    """Optimiser steps of augmenter pre-training (restore loss only, no contrastive terms).
    Guess: [TCLA] pre-trains 50 epochs over every prefix; 2000 steps are ~23 Beauty epochs."""
    lacl_augmenter_joint: bool = True
    """Keep training the restore loss after pre-training (guess; [TCLA] freezes the augmenter)."""
    lacl_max_insert: int = Field(5, ge=1)
    """Longest inserted sub-sequence = longest deleted run of the corruption ([TCLA])."""
    lacl_corrupt_delete_prob: float = Field(0.45, ge=0, lt=1)
    """Per-item deletion probability of the corruption ([TCLA]'s delete band (0.4, 0.85])."""
    lacl_corrupt_noise_prob: float = Field(0.15, ge=0, le=1)
    """Probability of a random item inserted before each item ([TCLA]'s u > 0.85)."""
    lacl_op_temperature: float = Field(1.0, gt=0)
    """T of the sampled keep/delete/insert decision softmax(logits / T) (guess; [TCLA] multiplies
    logits by U(0, 1) noise instead, which is not a calibrated sampler)."""
    lacl_augmenter_bidirectional: bool = True
    """Augmenter encoder attends both ways (our choice: it edits whole sequences and must tell a
    noise item from a gap before it); false = causal, as [TCLA]'s shared encoder."""
    lacl_generator_layers: int = Field(1, ge=1)
    """Causal blocks of the augmenter's reverse generator ([TCLA]: one)."""
    lacl_chunk_size: int = Field(2048, ge=1)
    """Rows the reverse generator scores against the whole catalogue at once."""

    @model_validator(mode="after")
    def _lacl_fits(self) -> LACLRecConfig:
        if not self.lacl_random_ops:
            raise ValueError("model.lacl_random_ops is empty; laclrec needs an operator")
        missing = [op for op in self.lacl_random_ops if op not in self.lacl_random_ratios]
        if missing:
            raise ValueError(
                f"model.lacl_random_ratios has no ratio for {missing}; give one per "
                "operator in model.lacl_random_ops"
            )
        bad = {k: v for k, v in self.lacl_random_ratios.items() if not 0 <= v <= 1}
        if bad:
            raise ValueError(f"model.lacl_random_ratios must lie in [0, 1], got {bad}")
        if self.rab:
            raise ValueError(
                "model.rab is not available for laclrec: its augmenter attends both ways and "
                "its generator blocks have no position table to size the bias; set model.rab=false"
            )
        return self


def triplet_loss(
    h: torch.Tensor, h_pos: torch.Tensor, h_neg: torch.Tensor, margin: float = 0.0
) -> torch.Tensor:
    """mean_b softplus(h_b·h⁻_b − h_b·h⁺_b + margin) = −log σ(h·h⁺ − h·h⁻ − margin)."""
    return F.softplus((h * h_neg).sum(-1) - (h * h_pos).sum(-1) + margin).mean()


class LACLRec(SeqModel):
    """SASRec recommender + learnable augmenter + triplet / coarse contrastive terms."""

    config_class = LACLRecConfig

    @staticmethod
    def flops_per_interaction(cfg: LACLRecConfig, n_items: int, seq_len: float) -> dict:
        """SASRec's count (the recommender's); the augmenter is training-only overhead."""
        return flops_per_interaction(cfg, n_items, seq_len)

    def __init__(self, cfg: LACLRecConfig, n_items: int, max_len: int) -> None:
        super().__init__()
        self.cfg, self.n_items, self.max_len = cfg, n_items, max_len
        self.encoder = SASRec(cfg, n_items + 1, max_len)  # row n_items + 1 = mask token
        self.augmenter = LearnableAugmenter(cfg, n_items, max_len)
        self.register_buffer("lacl_step", torch.zeros((), dtype=torch.long))
        self.last_stats: dict[str, torch.Tensor] = {}

    # ---------------------------------------------------------------- recommender contract
    @property
    def item_weights(self) -> torch.Tensor:
        """Output table [n_items + 1, D]; the mask token row is never scored."""
        return self.encoder.item_emb.weight[: self.n_items + 1]

    def forward(self, batch: SeqBatch) -> torch.Tensor:
        return self.encoder(batch)

    def last_hidden(self, batch: SeqBatch) -> torch.Tensor:
        return self.encoder.last_hidden(batch)

    # ---------------------------------------------------------------- schedule
    @property
    def pretraining(self) -> bool:
        """True while the augmenter is being pre-trained (no contrastive terms yet); never
        with ``lacl_view="random"``, where the augmenter is not used."""
        if self.cfg.lacl_view == "random":
            return False
        return int(self.lacl_step) < self.cfg.lacl_augmenter_pretrain_steps

    # ---------------------------------------------------------------- views and losses
    def represent(self, views: torch.Tensor) -> torch.Tensor:
        """Final hidden state [N, D] at each row's last real item (full forward, dropout on)."""
        lengths = (views != 0).sum(1)
        views = views[:, : int(lengths.max())]
        rows = torch.arange(views.shape[0], device=views.device)
        batch = SeqBatch(items=views, targets=torch.zeros_like(views), lengths=lengths, users=rows)
        return self.encoder(batch)[rows, lengths - 1]

    def views(self, seqs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(learned view, random view) of right-padded ``seqs`` [N, L]."""
        cfg = self.cfg
        ops, ratios = list(cfg.lacl_random_ops), cfg.lacl_random_ratios
        if cfg.lacl_view == "random":  # the augmenter ablation: two independent random views
            learned = random_augment(seqs, ops, ratios, self.n_items)
        else:
            learned, stats = self.augmenter.augment(seqs, self.max_len, cfg.lacl_op_temperature)
            self.last_stats.update(stats)
        rand = random_augment(seqs, ops, ratios, self.n_items)
        return learned, rand

    def contrastive_loss(self, seqs: torch.Tensor) -> torch.Tensor:
        """λ1 · NT-Xent(h⁺, h⁻) + λ2 · triplet(h, h⁺, h⁻) for rows ``seqs`` [N, L]."""
        cfg = self.cfg
        learned, rand = self.views(seqs)
        n = seqs.shape[0]
        width = max(seqs.shape[1], learned.shape[1], rand.shape[1])
        stacked = torch.cat([F.pad(v, (0, width - v.shape[1])) for v in (seqs, learned, rand)])
        z = self.represent(stacked)
        if cfg.lacl_similarity == "cos":
            z = F.normalize(z, dim=-1)
        h, h_pos, h_neg = z[:n], z[n : 2 * n], z[2 * n :]
        loss = cfg.lacl_triplet_weight * triplet_loss(h, h_pos, h_neg, cfg.lacl_triplet_margin)
        if cfg.lacl_cl_weight:
            loss = loss + cfg.lacl_cl_weight * nt_xent(h_pos, h_neg, cfg.lacl_temperature)
        return loss

    def restore_loss(self, seqs: torch.Tensor) -> torch.Tensor:
        cfg = self.cfg
        c = corrupt(
            seqs,
            self.n_items,
            cfg.lacl_max_insert,
            cfg.lacl_corrupt_delete_prob,
            cfg.lacl_corrupt_noise_prob,
        )
        loss, stats = self.augmenter.restore_loss(c)
        self.last_stats.update(stats)
        return loss

    def auxiliary_loss(self, batch: SeqBatch) -> torch.Tensor:
        """Restore loss while pre-training; contrastive terms (+ restore) afterwards."""
        if batch.targets.dim() != 2:
            raise ValueError("LACLRec.auxiliary_loss needs a training batch ([B, L] targets)")
        pretraining = self.pretraining
        if self.training:
            self.lacl_step += 1
        seqs = batch.targets[(batch.targets != 0).any(1)]
        loss = self.encoder.item_emb.weight.sum() * 0.0
        if not seqs.shape[0]:
            return loss
        learned = self.cfg.lacl_view == "learned"
        if learned and (pretraining or self.cfg.lacl_augmenter_joint):
            loss = loss + self.restore_loss(seqs)
        if not pretraining and seqs.shape[0] >= 2:  # NT-Xent needs a second row
            loss = loss + self.contrastive_loss(seqs)
        return loss
