"""ABXI (Bian et al., WWW'25): invariant interest adaptation for task-guided cross-domain
sequential recommendation. Code: github.com/DiMarzioBian/ABXI (models/ABXI.py, v2.1).

What the model is. Each user's merged sequence (every domain) and each domain's own
subsequence go through one shared encoder: learned item + absolute position vectors, a causal
post-norm attention layer, then a post-norm SwiGLU FFN to which each stream adds its own
low-rank adapter (dLoRA: one for the merged stream, one per domain). The state that predicts a
target of domain k is the sum of two LayerNormed branches:

* invariant: h_x + proj_i(h_x) + iLoRA_k(h_x), the merged stream's state, its shared
  projection (the domain-invariant interest) and a per-domain low-rank adaptation of it;
* specific: h_k + proj_k(h_k), domain k's own stream and its own projection.

Which k is read at a slot is the domain of the event it predicts ("task-guided": the code
builds each domain stream at the slots whose target lies in that domain). Rank 8 for both
adapters, SwiGLU inner width 680 whatever the width (encoders.py), one attention layer,
dropout 0.5, width 256, no sqrt(d) scaling, every matrix N(0, 0.02), the adapters'
up-projection zero.

How it maps onto seqrec's contract (decisions, not the code's):

* Domain streams are built per slot, causally: the stream of domain k at slot t is the most
  recent domain-k events at slots <= t. `domain_subsequences` compacts each row's domain-k
  events to the front (one argsort) and every slot reads the encoded compact stream at its
  running count of domain-k events (a cumsum), so the compact stream is encoded once per row,
  not once per slot; the tests check it against a plain loop. The code instead lays each
  domain's items at its target slots with first/last events dropped (dataloader
  ``get_spe_seq``), a shifted alignment this file does not copy.
* The task domain is ``SeqBatch.target_domains``: [B, L] in training, [B] in evaluation (the
  domain the row is scored for). Where it is absent (serving, plain histories) or 0 the slot
  uses its own input's domain. Reading the target's domain is the method, so ABXI's ``joint``
  metrics are conditioned on the target's domain and are not comparable with other models'
  joint metrics; its ``own`` and ``sampled`` metrics are (docs/CROSS_DOMAIN.md).
* Loss: the run's objective (full CE over the joint catalogue in the preset). The code trains
  InfoNCE at temperature 0.75 against 128 negatives from each domain (256, both domains, so
  not an own-domain softmax either) and sums per-domain losses, each a per-row mean over that
  domain's targets; CE here averages over all targets alike. No temperature option.
* ``layers`` stacks shared attention layers (the code has one, the default); the
  FFN + dLoRA and the heads run once after them. Up to ``domain_vocab - 1`` domains, not two.

Published numbers (README v2.1, ABXI's own splits of Amazon Food-Kitchen and Beauty-
Electronics, leave-one-out, each target ranked against 999 negatives sampled from its own
domain's unseen items, mean of 5 seeds): Food-Kitchen, Food HR@10 .3243 NDCG@10 .1971,
Kitchen .2438 / .1427; Beauty-Electronics, Beauty .3778 / .2200, Electronics .2328 / .1340.
Our ``domain:<d>/sampled`` metrics draw the same 999 same-domain negatives (hypergeometric
rank, eval/domains.py); differences: ABXI trims inputs to 47 items and trains (main.py v2.1)
with lr 1e-4, weight decay 5.0 (``--l2``), batch 256, one warm-up epoch and plateau decay
(x0.3162 after 30 epochs, stop after 61), selects on the sum of both domains' validation
metric, and reads its own preprocessing (same-day order as in its files); the preset keeps
seqrec's SASRec budget (Adam lr 1e-3, patience 10) so it compares with the other presets.
Pitfalls of the public code: the attention has no key padding mask (left-padding zeros are
attended as keys); the v1.0 and v2.1 results differ by -5% to +2% per the README.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from seqrec.data.batches import SeqBatch
from seqrec.errors import SeqrecError
from seqrec.models.base import HeadsConfig, Needs, SeqModel
from seqrec.models.common import check_width, gather_last, merge_heads, split_heads
from seqrec.ops.attention import causal_attention
from seqrec.ops.dropout import Dropout


class ABXIConfig(HeadsConfig):
    """ABXI's options; defaults are the public code's unless the field says otherwise."""

    name: Literal["abxi"] = "abxi"
    ranking_encoder = True
    hidden: int = Field(256, ge=1)
    layers: int = Field(1, ge=1)
    """Shared causal attention layers (the code has one)."""
    dropout: float = Field(0.5, ge=0, lt=1)
    ffn_inner: int = Field(680, ge=1)
    """SwiGLU inner width of the shared FFN and the projectors (680 in encoders.py)."""
    domain_rank: int = Field(8, ge=1)
    """Rank of each stream's dLoRA (``--rd``)."""
    invariant_rank: int = Field(8, ge=1)
    """Rank of each domain's iLoRA (``--ri``)."""
    domain_vocab: int = Field(3, ge=3)
    """Domain codes 0..domain_vocab-1 (0 = PAD): one adapter set per domain; two domains: 3."""

    def needs(self) -> Needs:
        return Needs(domains=True)


def domain_subsequences(
    items: torch.Tensor, domains: torch.Tensor, code: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Domain ``code``'s events of each row compacted to the front, right-padded [B, L], and
    for each slot t the index in that compact row of the latest domain event at a slot <= t
    (-1 where there is none yet). The compact row encoded causally, read at that index, is the
    encoding of "the most recent same-domain events up to t"."""
    real = (items != 0) & (domains == code)
    slots = torch.arange(items.shape[1], device=items.device).expand_as(items)
    order = torch.where(real, slots, slots + items.shape[1]).argsort(dim=1)
    compact = torch.where(real.gather(1, order), items.gather(1, order), 0)
    return compact, real.long().cumsum(1) - 1


class LowRank(nn.Module):
    """x -> x A B with A [d, r] N(0, 0.02) and B [r, d] zero: an adapter that starts as 0."""

    def __init__(self, width: int, rank: int) -> None:
        super().__init__()
        self.down = nn.Parameter(torch.empty(width, rank))
        self.up = nn.Parameter(torch.empty(rank, width))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.normal_(self.down, std=0.02)
        nn.init.zeros_(self.up)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x @ self.down) @ self.up


class SwiGLU(nn.Module):
    def __init__(self, width: int, inner: int) -> None:
        super().__init__()
        self.gate = nn.Linear(width, inner, bias=False)
        self.lift = nn.Linear(width, inner, bias=False)
        self.down = nn.Linear(inner, width, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(F.silu(self.gate(x)) * self.lift(x))


class PostNormAttention(nn.Module):
    """LN(x + Dropout(MHA(x))) with causal attention (no dropout on the probabilities, as in
    the code's ``nn.MultiheadAttention``)."""

    def __init__(self, cfg: ABXIConfig) -> None:
        super().__init__()
        self.heads = cfg.heads
        self.qkv = nn.Linear(cfg.hidden, 3 * cfg.hidden)
        self.out = nn.Linear(cfg.hidden, cfg.hidden)
        self.drop = Dropout(cfg.dropout)
        self.norm = nn.LayerNorm(cfg.hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = (split_heads(t, self.heads) for t in self.qkv(x).chunk(3, dim=-1))
        return self.norm(x + self.drop(self.out(merge_heads(causal_attention(q, k, v)))))


class ABXI(SeqModel):
    """Shared encoder + dLoRA per stream, iLoRA + projector per domain; states [B, L, D]
    for each slot's task domain."""

    config_class = ABXIConfig

    def __init__(self, cfg: ABXIConfig, n_items: int, max_len: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.n_items = n_items
        self.max_len = max_len
        self.n_domains = cfg.domain_vocab - 1
        d, k = cfg.hidden, self.n_domains
        self.item_emb = nn.Embedding(n_items + 1, d, padding_idx=0)
        self.pos_emb = nn.Embedding(max_len, d)
        self.drop = Dropout(cfg.dropout)
        self.attention = nn.ModuleList(PostNormAttention(cfg) for _ in range(cfg.layers))
        self.ffn = SwiGLU(d, cfg.ffn_inner)
        # stream 0 is the merged sequence, stream k the domain-k subsequence
        self.dlora = nn.ModuleList(LowRank(d, cfg.domain_rank) for _ in range(k + 1))
        self.stream_norm = nn.ModuleList(nn.LayerNorm(d) for _ in range(k + 1))
        self.proj_invariant = SwiGLU(d, cfg.ffn_inner)
        self.ilora = nn.ModuleList(LowRank(d, cfg.invariant_rank) for _ in range(k))
        self.proj_domain = nn.ModuleList(SwiGLU(d, cfg.ffn_inner) for _ in range(k))
        self.norm_invariant = nn.ModuleList(nn.LayerNorm(d) for _ in range(k))
        self.norm_domain = nn.ModuleList(nn.LayerNorm(d) for _ in range(k))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for name, p in self.named_parameters():
            if p.dim() > 1:
                nn.init.normal_(p, std=0.02)
            elif name.endswith("bias") and "norm" not in name:
                nn.init.zeros_(p)
        for module in self.modules():
            if isinstance(module, LowRank):
                module.reset_parameters()
        with torch.no_grad():
            self.item_emb.weight[0].zero_()

    @property
    def item_weights(self) -> torch.Tensor:
        return self.item_emb.weight

    def _domains(self, batch: SeqBatch, items: torch.Tensor) -> torch.Tensor:
        """The batch's domain codes, refused in one line where absent or out of range."""
        domains = batch.domains
        if domains is None or domains.shape != items.shape:
            raise SeqrecError(
                "model.name=abxi needs each input item's domain (batch.domains), which this "
                "batch lacks; evaluate through the trainer or Run.evaluate on data with domains"
            )
        domains = torch.where(items != 0, domains, torch.zeros_like(domains))
        if int(domains.max()) > self.n_domains:
            raise SeqrecError(
                f"the data has domain code {int(domains.max())} but model.domain_vocab="
                f"{self.cfg.domain_vocab}; set model.domain_vocab={int(domains.max()) + 1}"
            )
        return domains

    def _encode(self, items: torch.Tensor) -> torch.Tensor:
        """The shared part of every stream [S, L, D] (S rows of streams stacked)."""
        valid = (items != 0).unsqueeze(-1).to(self.item_emb.weight.dtype)
        slots = torch.arange(items.shape[1], device=items.device)
        x = self.drop(self.item_emb(items) + self.pos_emb(slots)) * valid
        for layer in self.attention:
            x = layer(x) * valid
        return x

    def _stream(self, x: torch.Tensor, s: int) -> torch.Tensor:
        """The shared FFN plus stream ``s``'s own dLoRA, post-norm."""
        ffn = self.drop(self.ffn(x)) + self.drop(self.dlora[s](x))
        return self.stream_norm[s](x + ffn)

    def _task(self, batch: SeqBatch, items: torch.Tensor, domains: torch.Tensor) -> torch.Tensor:
        """The domain each slot's state is for: its target's where given, else its input's."""
        task = domains
        target = batch.target_domains
        if target is not None and target.shape == items.shape:
            task = torch.where(target > 0, target, domains)
        return torch.where(items != 0, task, torch.zeros_like(task))

    def forward(self, batch: SeqBatch) -> torch.Tensor:
        items = check_width(batch.items, self.max_len)
        domains = self._domains(batch, items)
        b = items.shape[0]
        subs = [domain_subsequences(items, domains, k + 1) for k in range(self.n_domains)]
        shared = self._encode(torch.cat([items] + [c for c, _ in subs])).split(b)
        h_x = self._stream(shared[0], 0)
        invariant = h_x + self.drop(self.proj_invariant(h_x))
        task = self._task(batch, items, domains)
        out = torch.zeros_like(h_x)
        for k, (_, last) in enumerate(subs):
            state = self._head(k, h_x, invariant, self._per_slot(shared[k + 1], k, last))
            out = torch.where((task == k + 1).unsqueeze(-1), state, out)
        return out

    def _per_slot(self, encoded: torch.Tensor, k: int, last: torch.Tensor) -> torch.Tensor:
        """Domain k's compact stream finished, read at each slot's latest domain-k event
        (zero where the row has none yet)."""
        h_k = self._stream(encoded, k + 1)
        h_k = h_k.gather(1, last.clamp(min=0).unsqueeze(-1).expand_as(h_k))
        return h_k * (last >= 0).unsqueeze(-1).to(h_k.dtype)

    def _head(self, k: int, h_x, invariant, h_k) -> torch.Tensor:
        """Domain k's state: the adapted invariant interest plus its own stream's."""
        inv = self.norm_invariant[k](invariant + self.drop(self.ilora[k](h_x)))
        return inv + self.norm_domain[k](h_k + self.drop(self.proj_domain[k](h_k)))

    def last_hidden(self, batch: SeqBatch) -> torch.Tensor:
        """The state at each row's last item, for the row's target domain where the batch
        names one ([B] in evaluation), else for its last input's domain."""
        lengths = (batch.items != 0).sum(1).clamp(min=1)
        target = batch.target_domains
        if target is not None and target.dim() == 1:
            full = torch.zeros_like(batch.items)
            full[torch.arange(len(lengths), device=full.device), lengths - 1] = target
            batch = replace(batch, target_domains=full)
        return gather_last(self.forward(batch), lengths)

    @staticmethod
    def flops_per_interaction(cfg: ABXIConfig, n_items: int, seq_len: float) -> dict[str, float]:
        """Forward FLOPs per scored slot: every stream (merged + each domain's) runs the
        shared encoder; each domain's head runs at every slot; then the catalogue output."""
        d, inner, k = cfg.hidden, cfg.ffn_inner, cfg.domain_vocab - 1
        attention = cfg.layers * (2 * 4 * d * d + 2 * 2 * seq_len * d)
        swiglu = 2 * 3 * d * inner
        stream = attention + swiglu + 2 * 2 * d * cfg.domain_rank
        heads = swiglu + k * (swiglu + 2 * 2 * d * cfg.invariant_rank)
        forward = (k + 1) * stream + heads + 2 * d * (n_items + 1)
        return {"forward": float(forward), "train": float(3 * forward)}
