"""One HSTU layer and its attention (METHODS.md 6.1; models/hstu.py has the model, its
options and the reasons behind each choice).

``cfg`` here is the model's `HSTUConfig` (hidden, heads, attn_dim, hstu_value_dim, hstu_rab,
time_bias, dropout, attn_dropout), typed by the base class so this file and hstu.py import in
one direction only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from seqrec.models.base import ModelConfig
from seqrec.ops.dropout import Dropout
from seqrec.ops.dropout import dropout as dropout_op

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
    attn = dropout_op(F.silu(scores) * causal, dropout, training)
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
        self.dropout = Dropout(cfg.dropout)

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
        attn = dropout_op(attn, self.attn_dropout, self.training)
        return self.finish(x, u, attn @ v)
