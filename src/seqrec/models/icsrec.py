"""ICSRec (Qin et al., WSDM'24, "Intent Contrastive Learning with Cross Subsequences for
Sequential Recommendation"): SASRec trained with CE plus two intent contrastive terms.

L = L_rec + λ·L_cicl + β·L_ficl, read from QinHsiu/ICSRec (``src/trainers.py``, ``src/main.py``,
``src/datasets.py``, ``src/models.py``, ``src/scripts/*.sh``; the paper's PDF was not reachable):

* **Subsequences.** The code's DS(·) splits every user's training sequence into all its
  prefixes; each is one training sample whose next item is its target, and its representation
  is the encoder's output at its last position (the state the recommender scores with).
* **Coarse-grain (CICL).** Each prefix is paired with a prefix of another sequence that has the
  same target item (a "cross subsequence"); InfoNCE over the 2N states of a batch of N pairs.
  With the false-negative mask (FNM) every state whose target equals the anchor's is removed
  from the negatives (the positive keeps its own logit).
* **Fine-grain (FICL).** Before every epoch the model (eval mode) encodes every training prefix
  and faiss k-means (niter 20, nredo 5) finds ``intent_num`` intents. In training each state is
  assigned to its nearest centroid (L2, raw centroids) and contrasted by the same InfoNCE with
  the L2-normalised centroid as its positive, FNM by intent id; summed over both members of a
  pair.
* **Defaults** (``main.py``): λ (lambda_0) 0.1, β (beta_0) 0.1, τ 1.0, dot similarity, 512
  intents, batch 256 pairs, Adam lr 1e-3, 300 epochs, patience 40 on valid NDCG@20; 2 layers,
  2 heads, width 64, max length 50, GELU. Scripts: Beauty λ 0.3, β 0.1, 256 intents, dropout
  0.5; ML-1M λ 0.1, β 0.1, 512 intents, dropout 0.1 (max length stays 50).

**Published full-ranking numbers** (README table = paper, ranked against every item, seen
items' scores set to 0 by ``rating_pred[train_matrix>0]=0``, leave-one-out): Beauty (the
S3-Rec file we hold as ``amazon-beauty``) HR@5 0.0698, NDCG@5 0.0494, HR@20 0.1298, NDCG@20
0.0663; the released checkpoint also gives HR@10 0.0959, NDCG@10 0.0578. ML-1M HR@5 0.2445,
NDCG@5 0.1710, HR@20 0.4518, NDCG@20 0.2297 (checkpoint: HR@10 0.3369, NDCG@10 0.2007); their
ml-1m.txt preprocessing is not recorded (data/README names only GroupLens), so it is not known
to match ours. Sports and Toys are also reported; LastFM, Video and Home are not. The paper's
SASRec row (Beauty NDCG@20 0.0386) is far below this library's full-CE SASRec (Beauty test
NDCG@10 0.0566, configs/cl4srec-beauty.yaml), so its relative gains do not carry over.

**Protocol differences from ours.** Seen items are zeroed, not removed, in their evaluation
(with dot scores a zeroed seen item still outranks every negative-scored item; PAD and the
mask row are candidates too); ``eval.repeat_targets=miss`` is the nearest rule here. Their
backbone is the post-LN BERT-style encoder (GELU, N(0, 0.02) init); ours is SASRecBlockConfig's.
DS trains every prefix of long users through sliding windows; our rows keep the last
``max_len + 1`` items of each user.

**Adaptation to one row per user** (``seqrec.data.batches.training_batch``): every (row,
position) with a target is one prefix, its state the hidden state there (one extra full forward
in ``auxiliary_loss``, dropout on, as ICSRec re-encodes its samples for the contrastive terms).

* Partners come from the same batch (`same_target_partners`: a uniformly random other prefix
  with the same target, redrawn every step); ICSRec looks in the whole training set and keeps a
  fixed partner (the *last* other listed subsequence, no break in the loop), or the prefix
  itself when none exists. Prefixes with no same-target partner in the batch are left out, so
  anchors lean towards popular targets. At most ``cl_max_positions`` anchors are drawn per
  batch (256 = ICSRec's 256 pairs per batch).
* Intents are an online k-means: a prototype table (``num_intents`` x D, a persistent buffer, so
  it is saved, resumed and synchronised like weights) seeded from a batch's states, then every
  training step runs ``intent_iters`` Lloyd iterations on the batch's detached states from the
  table and blends the result in with rate ``intent_momentum`` (clusters that got points only).
  ICSRec instead re-runs k-means from scratch each epoch on eval-mode states of every training
  prefix; ours follows the encoder continuously and sees dropout-on states. Under DDP the
  sums and counts are all-reduced, so every rank keeps the same table.

Pitfalls of the public code: ``--f_neg`` is documented as "delete the FNM component" but turns
FNM *on* (every script passes it); its SASRec output for CE has ``max_item + 2`` rows, so PAD
and the mask row stay in both the training softmax and the ranking.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
import torch.distributed as dist
import torch.nn.functional as F
from pydantic import Field

from seqrec.data.batches import SeqBatch
from seqrec.models.base import CosineOutputOption
from seqrec.models.common import output_flops
from seqrec.models.pairs import info_nce, same_target_partners
from seqrec.models.sasrec import SASRec, flops_per_interaction
from seqrec.models.sasrec_blocks import SASRecBlockConfig

Reduce = Callable[[torch.Tensor], object]
"""In-place sum of a tensor over processes (``torch.distributed.all_reduce``), or None."""


class ICSRecConfig(SASRecBlockConfig, CosineOutputOption):
    """SASRec's options plus the two intent contrastive terms (defaults: ICSRec's main.py)."""

    name: Literal["icsrec"]
    cosine_output = True
    cl_weight: float = Field(0.1, ge=0)
    """λ of the coarse-grain (cross-subsequence) term (lambda_0; Beauty script 0.3)."""
    intent_weight: float = Field(0.1, ge=0)
    """β of the fine-grain (intent prototype) term (beta_0; 0.1 in every script)."""
    cl_temperature: float = Field(1.0, gt=0)
    """τ of both InfoNCE terms (1.0, "not studied" in main.py)."""
    cl_similarity: Literal["dot", "cos"] = "dot"
    """Similarity inside both terms: dot product (public code) or cosine."""
    false_negative_mask: bool = True
    """Drop same-target (coarse) / same-intent (fine) states from the negatives (FNM; on in
    every public script via ``--f_neg``); false = plain NT-Xent negatives."""
    cl_max_positions: int = Field(256, ge=1)
    """Most anchor prefixes per batch (each brings its partner): bounds the [2N, 2N] terms."""
    num_intents: int = Field(512, ge=1)
    """k of the intent k-means (intent_num; main.py 512, Beauty script 256)."""
    intent_iters: int = Field(3, ge=1)
    """Lloyd iterations per step on the batch's states (ours; ICSRec runs faiss, 20 per epoch)."""
    intent_momentum: float = Field(0.1, gt=0, le=1)
    """Share of the batch's k-means centres blended into the prototype table each step (a
    guess: ICSRec replaces its centroids once per epoch); 1 = keep only the batch's centres."""


def nearest_centre(points: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """Index [P] of each point's nearest centre in L2 (‖x‖² is the same for every centre)."""
    return ((centres * centres).sum(1)[None, :] - 2 * points @ centres.T).argmin(1)


@torch.no_grad()
def kmeans_step(
    points: torch.Tensor,
    centres: torch.Tensor,
    iters: int,
    momentum: float,
    reduce: Reduce | None = None,
) -> torch.Tensor:
    """New centres [K, D]: ``iters`` Lloyd iterations on ``points`` [P, D] from ``centres``
    (an empty cluster keeps its centre), then centres ← (1 − momentum)·old + momentum·batch
    centre for the clusters that hold points at the last assignment. ``reduce`` sums the
    per-cluster sums and counts over processes first, so every rank computes the same table."""
    k = centres.shape[0]
    batch, hit = centres, torch.zeros(k, dtype=torch.bool, device=centres.device)
    for _ in range(iters):  # iterations, not rows: each one is a few [P, K] tensor ops
        assign = nearest_centre(points, batch)
        sums = torch.zeros_like(centres).index_add_(0, assign, points)
        counts = torch.bincount(assign, minlength=k).to(centres.dtype)
        if reduce is not None:
            reduce(sums)
            reduce(counts)
        hit = counts > 0
        batch = torch.where(hit[:, None], sums / counts.clamp(min=1)[:, None], batch)
    return torch.where(hit[:, None], (1 - momentum) * centres + momentum * batch, centres)


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


class ICSRec(SASRec):
    """SASRec encoder + ``auxiliary_loss`` (λ·coarse + β·fine intent InfoNCE over prefixes)."""

    config_class = ICSRecConfig

    def __init__(self, cfg: ICSRecConfig, n_items: int, max_len: int) -> None:
        super().__init__(cfg, n_items, max_len)
        # the intent table and how many steps have updated it (0 = not seeded yet)
        self.register_buffer("intent_centres", torch.zeros(cfg.num_intents, cfg.hidden))
        self.register_buffer("intent_updates", torch.zeros((), dtype=torch.long))

    @staticmethod
    def flops_per_interaction(cfg: ICSRecConfig, n_items: int, seq_len: float) -> dict:
        """SASRec's count plus the contrastive forward and backward over every prefix (no
        catalogue scoring there); the [2N, 2N] terms and the k-means step are left out."""
        base = flops_per_interaction(cfg, n_items, seq_len)
        encoder = base["forward"] - output_flops(cfg.hidden, n_items)
        return {"forward": base["forward"], "train": base["train"] + 3 * encoder}

    def prefix_states(self, batch: SeqBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """(state [P, D], target [P]) of every position that has a next item."""
        valid = batch.targets != 0
        return self(batch)[valid], batch.targets[valid]

    def pick_pairs(self, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(anchor, partner) indices: at most ``cl_max_positions`` anchors drawn uniformly among
        the prefixes that have a same-target partner in the batch."""
        partner = same_target_partners(targets)  # its own index when it has no partner
        anchors = torch.nonzero(partner != torch.arange(len(partner), device=partner.device))
        anchors = anchors.squeeze(1)
        if anchors.numel() > self.cfg.cl_max_positions:
            keep = torch.randperm(anchors.numel(), device=anchors.device)
            anchors = anchors[keep[: self.cfg.cl_max_positions]]
        return anchors, partner[anchors]

    @torch.no_grad()
    def update_intents(self, states: torch.Tensor) -> None:
        """One online k-means step on detached ``states`` [P, D]; the first call seeds the table
        with random states (with replacement only when the batch has fewer than k)."""
        cfg, n = self.cfg, states.shape[0]
        reduce = dist.all_reduce if _distributed() else None
        if int(self.intent_updates) == 0:
            if n >= cfg.num_intents:
                pick = torch.randperm(n, device=states.device)[: cfg.num_intents]
            else:
                pick = torch.randint(n, (cfg.num_intents,), device=states.device)
            self.intent_centres.copy_(states[pick])
            if reduce is not None:
                dist.broadcast(self.intent_centres, src=0)
        centres = kmeans_step(
            states, self.intent_centres, cfg.intent_iters, cfg.intent_momentum, reduce
        )
        self.intent_centres.copy_(centres)
        self.intent_updates += 1

    def intent_loss(self, z: torch.Tensor) -> torch.Tensor:
        """FICL of states ``z`` [N, D]: InfoNCE against their nearest intent's unit centroid."""
        cfg = self.cfg
        ids = nearest_centre(z.detach(), self.intent_centres)
        labels = ids if cfg.false_negative_mask else None
        positive = F.normalize(self.intent_centres[ids], dim=-1)
        return info_nce(z, positive, cfg.cl_temperature, cfg.cl_similarity, labels)

    def auxiliary_loss(self, batch: SeqBatch) -> torch.Tensor | None:
        """λ·CICL(anchor, partner) + β·(FICL(anchor) + FICL(partner)); None when λ = β = 0
        (then nothing is drawn or encoded and the run is plain SASRec)."""
        if batch.targets.dim() != 2:
            raise ValueError("ICSRec.auxiliary_loss needs a training batch ([B, L] targets)")
        cfg = self.cfg
        if cfg.cl_weight == 0 and cfg.intent_weight == 0:
            return None
        z, targets = self.prefix_states(batch)
        if self.training and cfg.intent_weight:
            self.update_intents(z.detach())
        anchors, partners = self.pick_pairs(targets)
        loss = z.sum() * 0.0  # keeps every rank's graph alike when a batch has no pair
        if anchors.numel() == 0:
            return loss
        za, zp = z[anchors], z[partners]
        if cfg.cl_weight:
            labels = targets[anchors] if cfg.false_negative_mask else None
            cicl = info_nce(za, zp, cfg.cl_temperature, cfg.cl_similarity, labels)
            loss = loss + cfg.cl_weight * cicl
        if cfg.intent_weight and int(self.intent_updates) > 0:
            loss = loss + cfg.intent_weight * (self.intent_loss(za) + self.intent_loss(zp))
        return loss
