"""HSTU (Zhai et al., ICML'24, "Actions Speak Louder than Words"): Hierarchical Sequential
Transduction Units, following generative-recommenders' research code (METHODS.md 6).

One layer, with X the layer input (METHODS.md 6.1):

    U, V, Q, K = Split(SiLU(LN(X) W_uvqk))          one fused projection, no bias, LN without affine
    A_ij       = SiLU(q_i . k_j + rab_ij) / n  for j <= i, else 0   point-wise, **no softmax**
    Y          = X + Dropout(U * LN(A V)) W_o + b_o  gated output, no separate FFN

Choices and why:

* **Normaliser n** (``model.hstu_normalizer``): ``length`` (default) divides by the row's true
  length, as the NetEase TF port does; ``max_len`` divides by the padded length, as the research
  code does, which makes the attention scale depend on ``data.max_len``. Because LN(A V) removes
  any per-row scale, the two differ only through LN's epsilon; padding a row never changes it.
  Measured on ML-1M (HSTU, 101 epochs, 2 seeds paired per user): +0.0024 [-0.0004, +0.0051]
  NDCG@10 for ``max_len``, not significant (benchmarks/RESULTS.md).
* **Relative attention bias** (``model.hstu_rab``, METHODS.md 6.2), one module per layer shared
  by all heads: a learned scalar per causal offset i - j (``max_len`` of them; the research
  code allocates 2N - 1, of which the N - 1 for future keys are always masked) plus, with
  ``model.time_bias``, a learned scalar per log-bucketed time gap,
  bucket = clamp(floor(ln(max(|t_i - t_j|, 1)) / 0.301), 0, 128) (0.301 kept for parity).
  The query side uses its *own* timestamp t_i by default (``model.time_query=own``): the
  history alone decides the score. ``time_query=next`` uses the next event's time t_{i+1}
  as the research code does: in training the target's time, in evaluation the held-out
  item's (the request time; `SeqBatch.next_timestamps`), and where no request time is
  known (recommend, serving) the last slot's own time, the research code's final-slot rule.
* **Dropout**: on the embeddings, on the attention weights (``model.attn_dropout``, None =
  ``model.dropout``; the research code stores this rate but never applies it, so presets that
  match it set 0) and before the output projection (``model.dropout``).
* **Output**: no final LN (none in the research stack). With ``model.l2_norm_output`` the user
  states and the item table are L2-normalised, so evaluation scores the cosine the sampled
  softmax trained.

Two attention paths: `forward(reference=True)` builds an explicit [B, H, L, L] bias and a
boolean [B, 1, L, L] mask in every layer and normalises the attention matrix itself. The fast
path computes the bucket indices once per forward, broadcasts each layer's [L, L] position bias
over the batch and heads, uses one shared [L, L] causal mask (right padding means a real query
never sees a PAD key) and divides the [B, H, L, d_v] output instead of the [B, H, L, L] matrix.
`last_hidden` runs the last layer for the final real position only. Tests check both against
the reference.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from seqrec.data.batches import SeqBatch
from seqrec.errors import SeqrecError
from seqrec.models.common import check_width, embed_sequence
from seqrec.models.side_info import SideInputs
from seqrec.options import ModelConfig

TIME_BUCKETS = 128
"""Time-gap buckets 0..128 (129 learned scalars per layer), as in the research code."""
TIME_LOG_DIV = 0.301
"""Bucket width in ln(seconds): the research code divides ln|dt| by 0.301 (~log10 2)."""
LN_EPS = 1e-6


def time_buckets(query_ts: torch.Tensor, key_ts: torch.Tensor) -> torch.Tensor:
    """Bucket of |t_query - t_key| for every (query, key) pair: [B, Lq, Lk] int64."""
    gap = (query_ts[:, :, None] - key_ts[:, None, :]).abs().clamp_(min=1)
    bucket = torch.floor(gap.to(torch.float32).log() / TIME_LOG_DIV)
    return bucket.clamp_(0, TIME_BUCKETS).long()


class _BucketLookup(torch.autograd.Function):
    """``table[idx]`` whose backward is one weighted bincount instead of an indexed scatter."""

    @staticmethod
    def forward(ctx, table: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(idx)
        ctx.size = table.shape[0]
        return table[idx]

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (idx,) = ctx.saved_tensors
        flat = torch.bincount(idx.reshape(-1), grad.reshape(-1).float(), minlength=ctx.size)
        return flat.to(grad.dtype), None


def bucket_lookup(table: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """``table[idx]`` for a small 1-d table and many indices (the time-gap bias).

    Why: autograd's backward of ``table[idx]`` scatters with accumulation. With [B, L, L]
    indices (5M for a batch of 128 x 200) into 129 buckets it took about half of an HSTU
    step on CPU and made GPU training ~25x slower (session 9, round 10). A weighted bincount
    sums the same values; on CUDA its atomic adds make the gradient's last bits
    run-to-run nondeterministic. ``forward_reference`` keeps plain indexing; tests compare them.
    """
    return _BucketLookup.apply(table, idx)


def hstu_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    rab: torch.Tensor | None,
    causal: torch.Tensor,
    norm: torch.Tensor | float,
    dropout: float = 0.0,
    training: bool = False,
) -> torch.Tensor:
    """Point-wise attention of the fast path: (Dropout(SiLU(q k^T + rab) * causal) v) / n.

    q, k [B, h, L, dqk], v [B, h, L, dv]; rab broadcastable to [B, h, L, L] or None; causal a
    float 0/1 [L, L]; norm [B, 1, 1, 1] or a number. Returns [B, h, L, dv].
    """
    scores = q @ k.transpose(-1, -2)
    if rab is not None:
        scores = scores + rab
    attn = F.dropout(F.silu(scores) * causal, dropout, training)
    return (attn @ v) / norm


def dims(cfg: ModelConfig) -> tuple[int, int, int]:
    """(heads, d_qk, d_v) per head; d_qk defaults to hidden / heads and d_v to d_qk."""
    dqk = cfg.attn_dim or cfg.hidden // cfg.heads
    return cfg.heads, dqk, cfg.hstu_value_dim or dqk


class HSTULayer(nn.Module):
    def __init__(self, cfg: ModelConfig, max_len: int) -> None:
        super().__init__()
        self.heads, self.dqk, self.dv = dims(cfg)
        h = self.heads
        self.uvqk = nn.Linear(cfg.hidden, 2 * h * self.dv + 2 * h * self.dqk, bias=False)
        self.out = nn.Linear(h * self.dv, cfg.hidden)
        self.pos_w = nn.Parameter(torch.empty(max_len)) if cfg.hstu_rab else None
        self.time_w = nn.Parameter(torch.empty(TIME_BUCKETS + 1)) if cfg.time_bias else None
        self.attn_dropout = cfg.dropout if cfg.attn_dropout is None else cfg.attn_dropout
        self.dropout = nn.Dropout(cfg.dropout)

    def reset_parameters(self) -> None:
        nn.init.normal_(self.uvqk.weight, std=0.02)
        nn.init.xavier_uniform_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        for w in (self.pos_w, self.time_w):
            if w is not None:
                nn.init.normal_(w, std=0.02)

    # ------------------------------------------------------------------ shared pieces
    def project(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """u [B, L, h*dv] and v, q, k as [B, h, L, d] from SiLU(LN(x) W_uvqk)."""
        b, length, _ = x.shape
        h, dv, dqk = self.heads, self.dv, self.dqk
        normed = F.layer_norm(x, x.shape[-1:], eps=LN_EPS)
        u, v, q, k = F.silu(self.uvqk(normed)).split([h * dv, h * dv, h * dqk, h * dqk], -1)

        def split(t: torch.Tensor, d: int) -> torch.Tensor:
            return t.view(b, length, h, d).transpose(1, 2)

        return u, split(v, dv), split(q, dqk), split(k, dqk)

    def finish(self, x: torch.Tensor, u: torch.Tensor, av: torch.Tensor) -> torch.Tensor:
        """x + W_o Dropout(u * LN(A V)) for av [B, h, Lq, dv] and x, u [B, Lq, ...]."""
        b, _, length, _ = av.shape
        av = av.transpose(1, 2).reshape(b, length, self.heads * self.dv)
        y = u * F.layer_norm(av, av.shape[-1:], eps=LN_EPS)
        return x + self.out(self.dropout(y))

    def bias(self, rel: torch.Tensor, buckets: torch.Tensor | None) -> torch.Tensor | None:
        """This layer's rab from shared indices: offsets rel [.., Lq, Lk] (clamped to >= 0),
        time buckets [B, Lq, Lk] or None. Returns a tensor broadcastable to the scores."""
        out = None if self.pos_w is None else self.pos_w[rel]
        if self.time_w is not None and buckets is not None:
            t = bucket_lookup(self.time_w, buckets)
            out = t if out is None else out + t
        return out

    # ------------------------------------------------------------------ fast path
    def forward(
        self,
        x: torch.Tensor,
        rel: torch.Tensor,
        buckets: torch.Tensor | None,
        causal: torch.Tensor,
        norm: torch.Tensor,
    ) -> torch.Tensor:
        """All positions. rel [L, L], causal float [L, L], norm [B, 1, 1, 1] or a scalar."""
        u, v, q, k = self.project(x)
        rab = self.bias(rel, buckets)
        if rab is not None and rab.dim() == 3:  # [B, L, L] with time gaps: broadcast over heads
            rab = rab.unsqueeze(1)
        av = hstu_attention(q, k, v, rab, causal, norm, self.attn_dropout, self.training)
        return self.finish(x, u, av)

    def forward_last(
        self,
        x: torch.Tensor,
        last: torch.Tensor,
        rel: torch.Tensor,
        buckets: torch.Tensor | None,
        norm: torch.Tensor,
    ) -> torch.Tensor:
        """Output [B, D] at slot ``last`` [B] of each row only; keys and values still cover the
        whole row. rel [B, L] = last - j (clamped), buckets [B, L] or None."""
        rows = torch.arange(x.shape[0], device=x.device)
        u, v, q, k = self.project(x)
        q_last = q[rows, :, last].unsqueeze(2)  # [B, h, 1, dqk]
        scores = q_last @ k.transpose(-1, -2)  # [B, h, 1, L]
        rab = self.bias(rel, buckets)  # [B, L]
        if rab is not None:
            scores = scores + rab.view(x.shape[0], 1, 1, -1)
        seen = torch.arange(x.shape[1], device=x.device)[None, :] <= last[:, None]
        attn = F.silu(scores) * seen[:, None, None, :].to(scores.dtype)
        av = (attn @ v) / norm
        return self.finish(x[rows, last][:, None], u[rows, last][:, None], av)[:, 0]

    # ------------------------------------------------------------------ reference
    def forward_reference(
        self,
        x: torch.Tensor,
        items: torch.Tensor,
        ts: torch.Tensor | None,
        n: torch.Tensor,
        query_ts: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Plain version: explicit [B, H, L, L] bias and boolean mask, built here from scratch;
        the attention matrix itself is divided by n [B] (float). ``query_ts`` None = ``ts``."""
        b, length, _ = x.shape
        u, v, q, k = self.project(x)
        i = torch.arange(length, device=x.device)[:, None]
        j = torch.arange(length, device=x.device)[None, :]
        mask = (j <= i)[None, None] & (items != 0)[:, None, None, :]  # [B, 1, L, L]
        bias = torch.zeros(b, self.heads, length, length, dtype=x.dtype, device=x.device)
        if self.pos_w is not None:
            offset = (i - j).clamp(min=0)
            bias = bias + self.pos_w[offset].expand(b, self.heads, length, length)
        if self.time_w is not None:
            qt = ts if query_ts is None else query_ts
            gap = (qt[:, :, None] - ts[:, None, :]).abs().clamp(min=1).to(torch.float32)
            bucket = torch.floor(gap.log() / TIME_LOG_DIV).clamp(0, TIME_BUCKETS).long()
            bias = bias + self.time_w[bucket][:, None].expand(b, self.heads, length, length)
        scores = q @ k.transpose(-1, -2) + bias
        attn = torch.where(mask, F.silu(scores), torch.zeros_like(scores))
        attn = attn / n.to(x.dtype)[:, None, None, None]
        attn = F.dropout(attn, self.attn_dropout, self.training)
        return self.finish(x, u, attn @ v)


class HSTU(nn.Module):
    """HSTU encoder; ``forward`` returns states [B, L, D] (L2-normalised if asked)."""

    def __init__(self, cfg: ModelConfig, n_items: int, max_len: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.n_items = n_items
        self.max_len = max_len
        # the trainer reads this to put timestamps in batches, and refuses data without them
        self.needs_timestamps = cfg.time_bias
        self.item_emb = nn.Embedding(n_items + 1, cfg.hidden, padding_idx=0)
        self.pos_emb = nn.Embedding(max_len, cfg.hidden)
        self.emb_dropout = nn.Dropout(cfg.dropout)
        self.layers = nn.ModuleList(HSTULayer(cfg, max_len) for _ in range(cfg.layers))
        self.emb_scale = math.sqrt(cfg.hidden) if cfg.scale_embeddings else 1.0
        if cfg.behavior_tokens == "interleave":
            raise SeqrecError(
                "model.behavior_tokens=interleave is implemented for sasrec only; use "
                "model.behavior_tokens=embedding with hstu"
            )
        self.side = SideInputs(cfg, n_items)  # features / behaviours (models/side_info.py)
        self.reset_parameters()

    def attach_features(self, features) -> None:
        """Item side information (`data.features.Features`); see models/side_info.py."""
        self.side.attach_features(features)

    def reset_parameters(self) -> None:
        """Research-code init: items N(0, 0.02) truncated at 2 std; positions N(0, 1/d)
        truncated at 2 std or, with ``model.hstu_pos_init=xavier``, xavier-normal (the research
        code's effective init, see the config field); W_uvqk N(0, 0.02); W_o Xavier-uniform;
        rab scalars N(0, 0.02)."""
        d = self.cfg.hidden
        nn.init.trunc_normal_(self.item_emb.weight, std=0.02, a=-0.04, b=0.04)
        if self.cfg.hstu_pos_init == "xavier":
            nn.init.xavier_normal_(self.pos_emb.weight)
        else:
            std = math.sqrt(1.0 / d)
            nn.init.trunc_normal_(self.pos_emb.weight, std=std, a=-2 * std, b=2 * std)
        for layer in self.layers:
            layer.reset_parameters()
        with torch.no_grad():
            self.item_emb.weight[0].zero_()

    @property
    def item_weights(self) -> torch.Tensor:
        """Output item table [n_items + 1, D] (the input table, tied); row 0 is PAD (zero)."""
        w = self.side.output_table(self.item_emb.weight)
        return F.normalize(w, dim=-1, eps=LN_EPS) if self.cfg.l2_norm_output else w

    def _output(
        self, h: torch.Tensor, target_behaviors: torch.Tensor | None = None
    ) -> torch.Tensor:
        h = self.side.condition(h, target_behaviors)
        return F.normalize(h, dim=-1, eps=LN_EPS) if self.cfg.l2_norm_output else h

    def _inputs(self, batch: SeqBatch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(items, embedded x [B, L, D], true lengths [B]); refuses a time-bias forward
        without timestamps."""
        items = check_width(batch.items, self.max_len)
        if self.cfg.time_bias and batch.timestamps is None:
            raise SeqrecError(
                "model.time_bias=true needs timestamps in every batch, but this one has none; "
                "use data with a timestamp column or set model.time_bias=false"
            )
        cfg = self.cfg
        vectors = None
        if self.side.active:
            vectors = self.side.items_in(self.item_emb, items, batch.behaviors)
        x, lengths = embed_sequence(
            items,
            self.item_emb,
            self.pos_emb,
            cfg.positions,
            self.emb_scale,
            self.emb_dropout,
            vectors,
        )
        return items, x, lengths

    @staticmethod
    def _slots(length: int, device: torch.device, dtype: torch.dtype):
        """Shared by every layer: slot ids [L], offsets i - j clamped to >= 0 [L, L] (indices
        into each layer's position bias) and the float causal mask [L, L]."""
        slots = torch.arange(length, device=device)
        rel = (slots[:, None] - slots[None, :]).clamp_(min=0)
        return slots, rel, (slots[None, :] <= slots[:, None]).to(dtype)

    def _norm(self, lengths: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """The attention normaliser n as [B, 1, 1, 1]."""
        if self.cfg.hstu_normalizer == "max_len":
            n = torch.full_like(lengths, self.max_len)
        else:
            n = lengths.clamp(min=1)
        return n.to(dtype).view(-1, 1, 1, 1)

    def _query_times(self, batch: SeqBatch) -> torch.Tensor | None:
        """The query side's timestamps: the history's own, or each position's next event's."""
        if not self.cfg.time_bias:
            return None
        if self.cfg.time_query == "own":
            return batch.timestamps
        if batch.next_timestamps is None:
            raise SeqrecError(
                "model.time_query=next needs each position's next-event time, which this batch "
                "lacks; build it with seqrec.data.batches (training_batch / history_batch)"
            )
        return batch.next_timestamps

    def _buckets(self, batch: SeqBatch) -> torch.Tensor | None:
        query = self._query_times(batch)
        return None if query is None else time_buckets(query, batch.timestamps)

    def forward(self, batch: SeqBatch, reference: bool = False) -> torch.Tensor:
        """States [B, L, D]; ``reference`` runs the explicit-bias, explicit-mask layers."""
        items, x, lengths = self._inputs(batch)
        if reference:
            n = self._norm(lengths, x.dtype).view(-1)
            query = self._query_times(batch)
            for layer in self.layers:
                x = layer.forward_reference(x, items, batch.timestamps, n, query)
            return self._output(x, batch.target_behaviors)
        _, rel, causal = self._slots(items.shape[1], items.device, x.dtype)
        buckets, norm = self._buckets(batch), self._norm(lengths, x.dtype)
        for layer in self.layers:
            x = layer(x, rel, buckets, causal, norm)
        return self._output(x, batch.target_behaviors)

    def last_hidden(self, batch: SeqBatch) -> torch.Tensor:
        """User representation [B, D]: the state at each row's most recent item; the last
        layer is evaluated at that slot only."""
        items, x, lengths = self._inputs(batch)
        slots, rel, causal = self._slots(items.shape[1], items.device, x.dtype)
        buckets, norm = self._buckets(batch), self._norm(lengths, x.dtype)
        for layer in self.layers[:-1]:
            x = layer(x, rel, buckets, causal, norm)
        last = (lengths - 1).clamp(min=0)
        rows = torch.arange(items.shape[0], device=items.device)
        rel_last = (last[:, None] - slots[None, :]).clamp_(min=0)
        b_last = None if buckets is None else buckets[rows, last]
        return self._output(self.layers[-1].forward_last(x, last, rel_last, b_last, norm))


def flops_per_interaction(cfg: ModelConfig, n_items: int, seq_len: float) -> dict[str, float]:
    """Forward FLOPs per scored position (multiply-add = 2), same conventions as SASRec's:
    ``seq_len`` is the average attended length and the output term is the full catalogue."""
    h, dqk, dv = dims(cfg)
    d = cfg.hidden
    per_layer = 2 * d * (2 * h * dv + 2 * h * dqk) + 2 * seq_len * h * (dqk + dv) + 2 * h * dv * d
    forward = cfg.layers * per_layer + 2 * d * (n_items + 1)
    return {"forward": float(forward), "train": float(3 * forward)}
