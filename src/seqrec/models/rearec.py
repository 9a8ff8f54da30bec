"""ReaRec (Tang et al., "Think Before Recommend: Unleashing the Latent Reasoning Power for
Sequential Recommendation", arXiv 2503.22675): SASRec that thinks K more steps before it ranks.

After the encoder reads a history, its last state h_0 is fed back as a new input token,
h_{k-1} + r_k with r_k a learned *reasoning position* embedding (item positions are never added
to these tokens), and the encoder runs one more step; K steps give h_0 .. h_K. A reasoning token
attends to the real items of its history and to the earlier reasoning tokens of its own chain,
nothing else. Two ways of training and ranking with the chain (``model.reasoning_method``):

* **ERL** (Ensemble Reasoning Learning). Ranked state: the mean of h_0 .. h_K. Extra terms:
  ``step_weight`` x the mean over steps of CE(h_k) (the paper supervises every step) minus
  ``kl_weight`` x the mean over ordered pairs i != j of KL(p_j || sg(p_i)), p_k = softmax(h_k E^T)
  over the items: the steps are pushed apart so the ensemble does not collapse to one view.
* **PRL** (Progressive Reasoning Learning). Ranked state: h_K. Extra terms: ``step_weight`` x the
  mean over k < K of CE(h_k E^T / alpha^(K-k)) (temperature annealing: early steps get softer
  targets, alpha = ``anneal_base``), plus ``cl_weight`` x InfoNCE between each step k >= 1 of a
  noisy chain (Gaussian noise of std ``noise_std`` added to every reasoning input) and the clean
  chain, the other rows' step-k states being the negatives (dot product / ``cl_temperature``;
  the noisy state is the anchor, as in the official code).

**Where the chain runs.** ``forward`` returns, at every slot, the ranked state of that prefix's
chain, so the configured objective trains exactly what ``last_hidden`` ranks (the library's
contract: the user state is the state at the last real slot) and, like the official code, where
every prefix is its own training instance, every prefix's reasoned state meets its next item.
The step terms above are ``auxiliary_loss``, at each row's last real slot only: ERL's KL needs
every step's full-catalogue distribution and PRL's InfoNCE in-batch negatives per state, which
at every slot would be B x L x (K + 1) x V floats (1.9 GB for Beauty at batch 256). With
``train.samples=prefixes`` each row is one prefix, so every term meets every prefix, as in the
official code (at about max_len times the encoder work per epoch).
The slot-wise chain uses the item keys and values of one SASRec pass as a cache and an explicit
attention per step (``reasoning_attention``); ``forward(reference=True)`` re-encodes each prefix
plus its reasoning tokens from scratch, one token at a time, and the tests check the two agree.
``reasoning_steps=0`` is SASRec weight for weight and output for output.

**Defaults** are the official code's (TangJiakai/ReaRec ``src/models/ERL.py``, ``PRL.py``; the
autoregressive wrapper ``utils/layers.py`` read from the fork Honghui-BAO/ReaRec, the original's
is not in our index): K = 2 (``--reason_step``), lambda_KL = 0.05, alpha = 5 (``--temp_scale``),
noise 0.01, CL weight 1, progressive-CE weight 1 (``--pl_weight``), temperature 0.07 (see 1.).

**Published numbers.** The paper evaluates on Yelp and four Amazon-2023 categories (Video_Games,
Software, CDs_Vinyl, Baby_Products; ratings > 3, the official absolute-timestamp train/valid/test
split, test histories of >= 5 items), full ranking over all items without removing seen ones,
NDCG/Recall@{10,20}, model selection on valid NDCG@20 (``BaseRunner.py``). None of these is a
dataset we hold (our "Video" is the 2014 SASRec file, leave-one-out), and the stored copies of
the paper we could search did not give its tables, so no number is quoted here; the presets'
reference is this library's own SASRec on the same data and budget.

**Differences from the official code**, each deliberate:

1. Every logit there is divided by tau = 0.07 (CE, KL and InfoNCE alike). The library's CE
   scores raw dot products, so its states play the part of the code's h / tau: in those units
   the CE and KL terms are the code's at temperature 1 and PRL's at alpha^(K-k), while InfoNCE,
   quadratic in the state, has temperature 1 / tau (``cl_temperature`` = 14.29). That keeps the
   code's balance between the terms; at 0.07 here the InfoNCE swamped the CE (PRL then did not
   learn a cycle that the CE alone learns in 40 steps).
2. Official ERL trains only the mean state (its ``--el_weight`` is parsed and never used); the
   paper's per-step CE is ``step_weight`` (0 reproduces the code).
3. Each reasoning input there goes through the embedding LayerNorm and a fixed dropout of 0.2
   (RecBole's SASRec embedding path); here it goes through SASRec's own embedding dropout, as item
   embeddings do (this SASRec has no embedding LayerNorm).
4. The noisy PRL view there re-encodes a copy of the batch (its items get other dropout masks);
   here it shares the clean chain's encoding of the items. As there, its step-k input is the
   *clean* chain's h_{k-1} + r_k plus noise, and its keys are its own.
5. Noise and InfoNCE start after ``--warmup`` = 2 epochs there; here from the first step (the
   model does not know the epoch).

Pitfalls of the official code as stored (commit 929ce6c): ``ERL.forward`` reads
``self.noise_factor``, which ERL never sets (an AttributeError), and ``PRL.loss`` returns
``cl_loss``, which is unbound while noise is off (every warm-up epoch: a NameError), so the
published runs cannot have used these files unchanged.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import nn

from seqrec.data.batches import SeqBatch
from seqrec.models.common import gather_last, init_matrices, merge_heads
from seqrec.models.sasrec import SASRec
from seqrec.models.sasrec import flops_per_interaction as sasrec_flops
from seqrec.models.sasrec_blocks import Block, SASRecBlockConfig
from seqrec.ops.cross_entropy import chunked_cross_entropy
from seqrec.ops.dropout import dropout

PRL_ONLY = ("anneal_base", "noise_std", "cl_weight", "cl_temperature")
ERL_ONLY = ("kl_weight",)


class ReaRecConfig(SASRecBlockConfig):
    """SASRec's block options plus the reasoning chain's (defaults: the official code's)."""

    name: Literal["rearec"]
    reasoning_steps: int = Field(2, ge=0)
    """K: reasoning tokens appended after the history (2 in the official code; 0 = SASRec)."""
    reasoning_method: Literal["erl", "prl"] = "erl"
    """erl: rank with the mean of the K + 1 step states; prl: rank with the last one."""
    step_weight: float = Field(1.0, ge=0)
    """Weight of the per-step CE at each row's last slot: ERL's on every step (the paper's;
    the official code has none), PRL's temperature-annealed one on steps 0..K-1 (``--pl_weight``)."""
    kl_weight: float = Field(0.05, ge=0)
    """ERL: lambda of the subtracted mean pairwise KL between step distributions."""
    anneal_base: float = Field(5.0, gt=0)
    """PRL: alpha; step k's logits are divided by alpha^(K-k) (``--temp_scale``)."""
    noise_std: float = Field(0.01, ge=0)
    """PRL: std of the Gaussian noise on the noisy view's reasoning inputs (``--noise_factor``)."""
    cl_weight: float = Field(1.0, ge=0)
    """PRL: weight of the reasoning-aware InfoNCE (0 = no noisy view at all)."""
    cl_temperature: float = Field(1 / 0.07, gt=0)
    """PRL: temperature of the InfoNCE over dot products: the official 0.07 in this library's
    units, where the CE has none (module docstring, difference 1)."""

    @model_validator(mode="after")
    def _reasoning_fits(self) -> ReaRecConfig:
        if self.rab or self.residual == "hstu":
            raise ValueError(
                "ReaRec's reasoning tokens have no item position, so model.rab and "
                "model.residual=hstu do not apply to them; set model.rab=false, model.residual=standard"
            )
        other = ERL_ONLY if self.reasoning_method == "prl" else PRL_ONLY
        for key in other:
            if getattr(self, key) != type(self).model_fields[key].default:
                raise ValueError(
                    f"model.{key} is not read with model.reasoning_method="
                    f"{self.reasoning_method}; drop it or switch the method"
                )
        return self


def _attention_inputs(block: Block, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(query input, key/value input) of a block's attention in its ``norm`` layout."""
    if block.layout == "pre":
        h = block.ln1(x)
        return h, h
    if block.layout == "official":
        return block.ln1(x), x
    return x, x


def reasoning_attention(
    q: torch.Tensor,
    item_kv: tuple[torch.Tensor, torch.Tensor],
    keep: torch.Tensor,
    own_kv: tuple[torch.Tensor, torch.Tensor],
    p: float,
) -> torch.Tensor:
    """One softmax over the items a query may read and its own chain so far.

    ``q`` [B, H, P, Dh]: one reasoning token per query (a slot, or a view of it); item keys and
    values [B, H, L, Dh] with ``keep`` [B, 1, P, L]; the query's own chain [B, H, P, j, Dh], this
    token included. ``p`` is dropout on the probabilities, as SASRec's attention has."""
    scale = q.shape[-1] ** -0.5
    on_items = (q @ item_kv[0].transpose(-1, -2) * scale).masked_fill(~keep, float("-inf"))
    on_own = torch.einsum("bhpd,bhpjd->bhpj", q, own_kv[0]) * scale
    probs = dropout(torch.cat([on_items, on_own], -1).softmax(-1), p)
    width = on_items.shape[-1]
    own = torch.einsum("bhpj,bhpjd->bhpd", probs[..., width:], own_kv[1])
    return probs[..., :width] @ item_kv[1] + own


def step_cross_entropy(
    steps: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    temperatures: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean over rows and steps of CE(steps[n, k] @ weight.T / temperatures[k], targets[n])
    over items 1..V-1; ``steps`` [N, S, D]."""
    n, s, d = steps.shape
    if temperatures is not None:
        steps = steps / temperatures[:, None]
    return chunked_cross_entropy(steps.reshape(n * s, d), weight, targets.repeat_interleave(s))


def pairwise_kl(logits: torch.Tensor) -> torch.Tensor:
    """Mean over rows and ordered step pairs i != j of KL(p_j || sg(p_i)), p = softmax(logits)
    of ``logits`` [N, S, V]: the official ERL term, gradient through p_j only."""
    log_p = logits.log_softmax(-1)
    p = log_p.exp()
    neg_entropy = (p * log_p).sum(-1)  # [N, S]: sum_v p_j log p_j
    cross = p @ log_p.detach().transpose(1, 2)  # [N, j, i]: sum_v p_j log sg(p_i)
    kl = neg_entropy[:, :, None] - cross
    off = ~torch.eye(logits.shape[1], dtype=torch.bool, device=logits.device)
    return kl[:, off].mean()


def step_info_nce(anchors: torch.Tensor, positives: torch.Tensor, tau: float) -> torch.Tensor:
    """Mean over steps and rows of InfoNCE: anchor [n, s] against every row's positive at step
    s (its own is the target); ``anchors``, ``positives`` [N, S, D]."""
    n, s, _ = anchors.shape
    logits = torch.einsum("nsd,msd->snm", anchors, positives) / tau
    labels = torch.arange(n, device=anchors.device).repeat(s)
    return F.cross_entropy(logits.reshape(s * n, n), labels)


class ReaRec(SASRec):
    """SASRec + K latent reasoning steps; ``forward`` returns each slot's reasoned state."""

    config_class = ReaRecConfig

    def __init__(self, cfg: ReaRecConfig, n_items: int, max_len: int) -> None:
        super().__init__(cfg, n_items, max_len)
        self.reason_pos: nn.Embedding | None = None
        if cfg.reasoning_steps:  # none at K = 0: SASRec's weights load as they are
            self.reason_pos = nn.Embedding(cfg.reasoning_steps, cfg.hidden)
            init_matrices(self.reason_pos, cfg.init)

    # ------------------------------------------------------------------ the chain
    def _encode(self, items: torch.Tensor) -> tuple[torch.Tensor, list]:
        """SASRec's pass over the items: states [B, L, D] and every layer's item keys/values."""
        x, _ = self.embed(items)
        cache = []
        for block in self.blocks:
            q_in, kv_in = _attention_inputs(block, x)
            cache.append(block.attn._project(q_in[:, :0], kv_in)[1:])  # keys, values only
            x = block(x)
        return self._output(x), cache

    def _step_block(self, block: Block, x: torch.Tensor, item_kv, keep, own) -> torch.Tensor:
        """``block`` on the newest reasoning token of every query ([B, P, D]); ``own`` (this
        layer's keys and values of each query's chain) gains the token's."""
        q_in, kv_in = _attention_inputs(block, x)
        q, k, v = block.attn._project(q_in, kv_in)
        own[0].append(k)
        own[1].append(v)
        p = block.attn.attn_dropout if self.training else 0.0
        chain = (torch.stack(own[0], 3), torch.stack(own[1], 3))
        a = block.attn.out(merge_heads(reasoning_attention(q, item_kv, keep, chain, p)))
        if block.layout == "pre":  # the three layouts of Block.forward, for one token
            x = x + block.attn_drop(a)
            return x + block.drop(block.ffn(block.ln2(x)))
        if block.layout == "official":
            h = block.ln2(q_in + block.attn_drop(a))
            return h + block.drop(block.ffn(h))
        x = block.ln1(x + block.attn_drop(a))
        return block.ln2(x + block.drop(block.ffn(x)))

    def _reason(self, first, cache, keep, views: int = 1) -> torch.Tensor:
        """States [B, views * P, K + 1, D] of the chains that start at ``first`` [B, P, D] (one
        per query; ``keep`` [B, 1, P, L] says which items each reads). ``views=2`` appends PRL's
        noisy chains, fed like the official code from the clean chain's states plus noise."""
        n = first.shape[1]
        keep = keep.repeat(1, 1, views, 1)
        own = [([], []) for _ in self.blocks]
        h, steps = first, [first.repeat(1, views, 1)]
        for k in range(self.cfg.reasoning_steps):
            x = h + self.reason_pos.weight[k]
            if views == 2:
                x = torch.cat([x, x + self.cfg.noise_std * torch.randn_like(x)], 1)
            x = self.emb_dropout(x)
            for block, item_kv, chain in zip(self.blocks, cache, own, strict=True):
                x = self._step_block(block, x, item_kv, keep, chain)
            steps.append(self._output(x))
            h = steps[-1][:, :n]
        return torch.stack(steps, 2)

    def _rank(self, steps: torch.Tensor) -> torch.Tensor:
        """The ranked state of step states [..., K + 1, D]: ERL's mean, PRL's last."""
        return steps.mean(-2) if self.cfg.reasoning_method == "erl" else steps[..., -1, :]

    def _last_steps(self, items: torch.Tensor, views: int = 1) -> torch.Tensor:
        """Step states [B, views, K + 1, D] at each row's last real slot (one query per row)."""
        states, cache = self._encode(items)
        valid = items != 0
        first = gather_last(states, valid.sum(1))[:, None]
        return self._reason(first, cache, valid[:, None, None, :], views)

    # ------------------------------------------------------------------ the contract
    def forward(self, batch: SeqBatch, reference: bool = False) -> torch.Tensor:
        """Ranked state [B, L, D] of every slot's chain (SASRec's states when K = 0)."""
        if not self.cfg.reasoning_steps:
            return super().forward(batch, reference)
        items = self._check(batch.items)
        if reference:
            return self._reference_forward(items)
        states, cache = self._encode(items)
        slots = torch.arange(items.shape[1], device=items.device)
        keep = (slots[None, :] <= slots[:, None]) & (items != 0)[:, None, :]
        return self._rank(self._reason(states, cache, keep[:, None]))

    def last_hidden(self, batch: SeqBatch) -> torch.Tensor:
        """The ranked state [B, D] of the chain at each row's most recent item."""
        if not self.cfg.reasoning_steps:
            return super().last_hidden(batch)
        return self._rank(self._last_steps(self._check(batch.items))[:, 0])

    def auxiliary_loss(self, batch: SeqBatch) -> torch.Tensor | None:
        """ERL's or PRL's step terms at each row's last real slot (module docstring)."""
        cfg = self.cfg
        if not cfg.reasoning_steps:
            return None
        if batch.targets.dim() != 2:
            raise ValueError("ReaRec.auxiliary_loss needs a training batch ([B, L] targets)")
        items = self._check(batch.items)
        lengths = (items != 0).sum(1)
        target = batch.targets.gather(1, (lengths - 1).clamp(min=0)[:, None])[:, 0]
        rows = (lengths > 0) & (target != 0)
        weight = self.item_weights
        if not rows.any():
            return weight.sum() * 0.0
        prl = cfg.reasoning_method == "prl"
        steps = self._last_steps(items[rows], views=2 if prl and cfg.cl_weight else 1)
        clean, target = steps[:, 0], target[rows]
        if not prl:
            loss = cfg.step_weight * step_cross_entropy(clean, weight, target)
            return loss - cfg.kl_weight * pairwise_kl(clean @ weight[1:].T)
        k = cfg.reasoning_steps
        temps = cfg.anneal_base ** torch.arange(k, 0, -1, device=clean.device, dtype=clean.dtype)
        loss = cfg.step_weight * step_cross_entropy(clean[:, :k], weight, target, temps)
        if steps.shape[1] == 2:
            nce = step_info_nce(steps[:, 1, 1:], clean[:, 1:], cfg.cl_temperature)
            loss = loss + cfg.cl_weight * nce
        return loss

    # ------------------------------------------------------------------ reference and cost
    def reference_steps(self, prefix: torch.Tensor) -> torch.Tensor:
        """Step states [K + 1, D] after ``prefix`` (real items, [n]) by brute force: append one
        reasoning token at a time and re-encode the whole extended sequence."""
        x_items, _ = self.embed(prefix[None])
        tokens, steps = [], []
        for k in range(self.cfg.reasoning_steps + 1):
            x = torch.cat([x_items, *tokens], 1)
            for block in self.blocks:
                x = block(x)
            steps.append(self._output(x)[0, -1])
            if k < self.cfg.reasoning_steps:
                tokens.append(self.emb_dropout(steps[-1] + self.reason_pos.weight[k])[None, None])
        return torch.stack(steps)

    def _reference_forward(self, items: torch.Tensor) -> torch.Tensor:
        """`forward` by `reference_steps` on every prefix of every row (PAD slots stay 0)."""
        out = torch.zeros(*items.shape, self.cfg.hidden, device=items.device)
        for b in range(items.shape[0]):
            for t in range(int((items[b] != 0).sum())):
                out[b, t] = self._rank(self.reference_steps(items[b, : t + 1]))
        return out

    @staticmethod
    def flops_per_interaction(cfg: ReaRecConfig, n_items: int, seq_len: float) -> dict:
        """SASRec's count with the encoder run 1 + K times per slot (each reasoning step is one
        more token per slot through every layer, attending to ~seq_len keys); training adds
        `auxiliary_loss`'s second encoder pass (its chains and step scores are per row, not per
        slot, and left out)."""
        base = sasrec_flops(cfg, n_items, seq_len)
        output = 2.0 * cfg.hidden * (n_items + 1)
        encoder = base["forward"] - output
        forward = encoder * (1 + cfg.reasoning_steps) + output
        extra = encoder if cfg.reasoning_steps else 0.0
        return {"forward": float(forward), "train": float(3 * (forward + extra))}
