"""Small pieces every sequence backbone needs, kept in one place so no model copies another.

All models read right-padded rows (oldest item in slot 0, PAD = 0 after the most recent item),
so a causal model's state at slot ``length - 1`` is the user representation for the next item.
"""

from __future__ import annotations

import torch
from torch import nn

from seqrec.data.batches import SeqBatch
from seqrec.ops.attention import causal_attention
from seqrec.ops.dropout import Dropout


def check_width(items: torch.Tensor, max_len: int) -> torch.Tensor:
    """Refuse a batch wider than the model was built for (learned positions would overflow)."""
    if items.shape[1] > max_len:
        raise ValueError(f"batch width {items.shape[1]} exceeds max_len {max_len}")
    return items


def row_lengths(items: torch.Tensor) -> torch.Tensor:
    """True length of each right-padded row (read from the items, so a caller's stale
    ``batch.lengths`` cannot misplace the gather)."""
    return (items != 0).sum(1)


def position_ids(items: torch.Tensor, lengths: torch.Tensor, mode: str) -> torch.Tensor:
    """Learned-position index of every slot [B, L].

    ``from_start``: the slot index (a query's position says how many items precede it).
    ``from_end``: distance back from the most recent item, n-1 ... 0; PAD slots clamp to 0.
    """
    slots = torch.arange(items.shape[1], device=items.device)
    if mode == "from_start":
        return slots.expand_as(items)
    return (lengths[:, None] - 1 - slots).clamp_(min=0)


def embed_sequence(
    items: torch.Tensor,
    item_emb: nn.Embedding,
    pos_emb: nn.Embedding | None,
    positions: str,
    scale: float,
    dropout: nn.Module,
    vectors: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Item (x ``scale``) [+ learned position] embeddings with dropout, zero at PAD slots.

    Returns (x [B, L, D], lengths [B]). Zeroing PAD slots keeps their (never scored) states
    free of position vectors; real slots are unaffected. ``vectors`` [B, L, D] replaces
    ``item_emb(items)`` (side information / behaviour tokens, models/side_info.py).
    """
    valid = items != 0
    lengths = valid.sum(1)
    x = (item_emb(items) if vectors is None else vectors) * scale
    if pos_emb is not None:
        x = x + pos_emb(position_ids(items, lengths, positions))
    x = dropout(x)
    return x * valid.unsqueeze(-1).to(x.dtype), lengths


def gather_last(hidden: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """States [B, D] at each row's most recent real slot (an empty row reads slot 0)."""
    rows = torch.arange(hidden.shape[0], device=hidden.device)
    return hidden[rows, lengths.clamp(min=1) - 1]


def last_from_forward(model: nn.Module, batch: SeqBatch) -> torch.Tensor:
    """``last_hidden`` of a model whose every slot is computed anyway: forward, then gather."""
    return gather_last(model(batch), row_lengths(batch.items))


def count_parameters(model: nn.Module) -> dict[str, int]:
    """Total / item-table / everything-else parameter counts.

    The item tables are the modules whose name ends in ``item_emb``, at any depth (a model that
    wraps an encoder, ``encoder.item_emb``, counts too; a separate output table, Caser's
    ``out_item_emb``, is one as well). Learned positions count as non-embedding, as in the
    scaling-law literature (they grow with the window, not the catalogue).
    """
    named = model.named_parameters()
    emb = sum(p.numel() for n, p in named if any(m.endswith("item_emb") for m in n.split(".")[:-1]))
    total = sum(p.numel() for p in model.parameters())
    return {"total": total, "embedding": emb, "non_embedding": total - emb}


def output_flops(hidden: int, n_items: int) -> float:
    """Forward FLOPs of scoring one position against the whole catalogue (PAD row included)."""
    return 2.0 * hidden * (n_items + 1)


def split_heads(t: torch.Tensor, heads: int) -> torch.Tensor:
    """[B, L, D] -> [B, H, L, D / H]."""
    b, length, d = t.shape
    return t.view(b, length, heads, d // heads).transpose(1, 2)


def merge_heads(t: torch.Tensor) -> torch.Tensor:
    """[B, H, L, Dh] -> [B, L, H * Dh]."""
    b, h, length, dh = t.shape
    return t.transpose(1, 2).reshape(b, length, h * dh)


# ------------------------------------------------------------------ rotary positions (RoPE)
def rope_tables(
    positions: torch.Tensor, head_dim: int, theta: float, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin [L, Dh] for integer ``positions`` [L] (rotate-half layout: frequency i drives
    dimensions i and i + Dh/2). Angles are computed in fp32 and cast to the activations' dtype."""
    inv_freq = theta ** (
        -torch.arange(0, head_dim, 2, device=positions.device, dtype=torch.float32) / head_dim
    )
    angles = positions.to(torch.float32)[:, None] * inv_freq[None, :]
    angles = torch.cat([angles, angles], dim=-1)
    return angles.cos().to(dtype), angles.sin().to(dtype)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate every (i, i + Dh/2) pair of ``x`` [..., L, Dh] by its position's angle, so
    <rope(q, m), rope(k, n)> depends on m - n only."""
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos + rotated * sin


# ------------------------------------------------------------------ decoder pieces (GPT, Llama)
class CausalAttention(nn.Module):
    """Multi-head causal self-attention with an output projection (``attn.out``), optional
    biases and optional rotary positions on Q and K."""

    def __init__(self, hidden: int, heads: int, dropout: float, bias: bool) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(hidden, 3 * hidden, bias=bias)
        self.out = nn.Linear(hidden, hidden, bias=bias)
        self.dropout = dropout

    def project(
        self, x: torch.Tensor, rotary: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Q, K, V [B, H, L, Dh], with RoPE applied to Q and K when ``rotary`` is given."""
        q, k, v = (split_heads(t, self.heads) for t in self.qkv(x).chunk(3, dim=-1))
        if rotary is not None:
            q, k = apply_rope(q, *rotary), apply_rope(k, *rotary)
        return q, k, v

    def forward(
        self, x: torch.Tensor, rotary: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> torch.Tensor:
        q, k, v = self.project(x, rotary)
        p = self.dropout if self.training else 0.0
        return self.out(merge_heads(causal_attention(q, k, v, p)))


class PreNormBlock(nn.Module):
    """x + Drop(Attn(Norm1(x))), then + Drop(FFN(Norm2(x))): the GPT-2 / Llama residual layout,
    whose un-normalised residual stream is what lets these stacks deepen (METHODS.md 10.2)."""

    def __init__(
        self, norm1: nn.Module, attn: CausalAttention, norm2: nn.Module, ffn: nn.Module, p: float
    ) -> None:
        super().__init__()
        self.norm1, self.attn, self.norm2, self.ffn = norm1, attn, norm2, ffn
        self.drop = Dropout(p)

    def forward(
        self, x: torch.Tensor, rotary: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> torch.Tensor:
        x = x + self.drop(self.attn(self.norm1(x), rotary))
        return x + self.drop(self.ffn(self.norm2(x)))


def init_decoder_(model: nn.Module, layers: int, std: float = 0.02) -> None:
    """GPT-2 / Llama init: every Linear and Embedding ~ N(0, std), biases 0, norms at 1; the
    projections that write into the residual stream (``attn.out``, ``ffn.down``) at
    std / sqrt(2 * layers) so the stream's variance does not grow with depth. The PAD row of
    the item table stays zero ([PL]'s code overwrote it, METHODS.md 10.3)."""
    for name, p in model.named_parameters():
        if p.dim() < 2:
            if name.endswith("bias"):
                nn.init.zeros_(p)
            else:
                nn.init.ones_(p)
        elif name.endswith(("attn.out.weight", "ffn.down.weight")):
            nn.init.normal_(p, std=std / (2 * layers) ** 0.5)
        else:
            nn.init.normal_(p, std=std)
    with torch.no_grad():
        model.item_emb.weight[0].zero_()


def attention_layer_flops(hidden: int, inner_matmuls: float, seq_len: float) -> float:
    """Forward FLOPs of one decoder layer per position: Q, K, V and output projections (4 d^2),
    QK^T and AV over ``seq_len`` attended keys (2 * seq_len * d), and the FFN's matmuls
    (``inner_matmuls`` = sum of their in x out sizes); multiply-add = 2 FLOPs."""
    return 2.0 * (4 * hidden * hidden + 2 * seq_len * hidden + inner_matmuls)


def init_matrices(module: nn.Module, scheme: str) -> None:
    """SASRec-family init: every matrix xavier-normal (the SASRec code) or N(0, 0.02)
    (``scheme="normal"``, BERT/GPT-style), every bias zero; norms keep their defaults.

    ``"normal_xavier_qkv"`` is N(0, 0.02) except the fused Q/K/V projection, which gets
    xavier-uniform over the stacked [3d, d] matrix: what a port built on torch's
    ``nn.MultiheadAttention`` ends up with when its N(0, 0.02) loop visits only Linear and
    Embedding modules (Klenitskiy & Vasilev's SASRec), since ``in_proj_weight`` is neither.
    Its Q/K/V start about 4x larger than under ``"normal"`` at width 64."""
    for name, p in module.named_parameters():
        if p.dim() > 1 and scheme == "normal_xavier_qkv" and name.endswith("qkv.weight"):
            nn.init.xavier_uniform_(p)
        elif p.dim() > 1 and scheme in ("normal", "normal_xavier_qkv"):
            nn.init.normal_(p, std=0.02)
        elif p.dim() > 1:
            nn.init.xavier_normal_(p)
        elif name.endswith("bias"):
            nn.init.zeros_(p)
