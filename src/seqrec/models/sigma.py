"""SIGMA (Liu et al., AAAI'25; arXiv 2408.11451): selective gated Mamba for sequential
recommendation. Released code: github.com/ziwliu-cityu/SIMGA, ``model/gated_mamba.py`` on
RecBole 1.2.0 and mamba-ssm 1.1.4.

Item embedding -> dropout -> LayerNorm (no positions), then ``layers`` G-Mamba layers, each:

* **PF-Mamba**: one Mamba mixer (in_proj, causal depthwise conv, selective scan, SiLU(z) gate,
  out_proj) read twice with the same weights: forward, and partially flipped, where a query's
  older items are read newest-first and its ``flip_keep`` (r) most recent ones in time order.
* **DS Gate**: per direction, G(h) = W_a SiLU(h) + W_b sigma(h) (+ biases, dropout
  ``gate_dropout``) of h = x + Dense(x), one Dense per direction, W_a and W_b shared; a
  direction's output o becomes o * (1 + G).
* **FE-GRU**: a width-3 convolution over the inputs, then a bias-free GRU.
* The three are mixed as w_f o_f + w_b o_b + w_g gru with w = softmax(``mix_logits``), then a
  Linear, dropout, LayerNorm (with the residual x when layers > 1, as in the code) and a GELU
  FFN (inner ``ffn_mult`` * hidden, residual, LayerNorm). States are scored against the item
  table; the code trains full CE.

Released defaults (``model/config.yaml``): hidden 64, 1 layer, dropout 0.2, d_state 32,
d_conv 4, expand 2, CE, Adam lr 1e-3, batch 2048, 200 epochs, early stop after 10 on valid
NDCG@10, max length 50 (Amazon) / 200 (ML-1M); RecBole's leave-one-out split and full ranking
with seen items removed, HR / NDCG / MRR @10. The paper reports five datasets; the code's
README and config name ML-1M, RecBole's amazon-beauty (5-core filtered: the 5-core of the same
ratings as our S3-Rec file, 22,363 x 12,101 in DuoRec's RecBole table), Sports, Video Games,
Fashion and Yelp.
Published numbers: the paper's tables were not readable from the stored copies of the arXiv
pages, so none is recorded here; the only full-ranking figure found is a third party's run of
the released code on ML-1M (black-doggie/SIGMA ``REPRODUCTION.md``, one seed): test HR@10
0.3083, NDCG@10 0.1814, MRR@10 0.1424 (valid 0.3354 / 0.1925 / 0.1489).

**Causality, and why this model is causal.** RecBole trains one sample per prefix with its
target at the last slot, so the code's flip never shows a sample the item it predicts. Flipping
a whole training row would let slot t read later items. Here slot t's flipped branch reads its
own prefix, flipped about t - r (`seqrec.ops.selective_scan.flipped_scan`): the reversed part
of a prefix is a prefix sum over items, so every query's flip costs O(1) extra per position,
not one scan per query. Every branch reads slots <= t, so ``causal = True``; a row trained on
all positions gives every prefix the state the code computes for that prefix as a sample (one
layer, the released setting). ``train.samples=prefixes`` (RecBole's samples) therefore computes
the same states at about max_len times the encoder work; the presets train ``sequences``. With
more layers, layer l > 1 reads each slot's own-prefix output, where the code's reads the
positions of one flipped sample.

**Speed.** On a CPU the mixer runs `packed_scan`, one loop over the real slots (Beauty batches
are ~80% PAD); on an accelerator the chunked scan and `flipped_scan`'s closed form (few kernel
launches). The forward + flipped scan cost 0.23x the released code's two full scans on a
Beauty-like batch and 1.3x on an ML-1M-like one (CPU seconds, benchmarks/sigma_scan_speed.py).
A 1-epoch Beauty smoke run (2-core shared CPU, ``train.threads=1``): ~1,800 interactions/s,
1 min 45 s with both evaluations, valid NDCG@10 0.0108.

Differences from the released code, each a decision:

* **r counts from each prefix's end.** The code flips slots 0..44 of the right-padded window
  (r = 5 only at length 50; on ML-1M's 200-wide window, everything after item 45 stays in
  place). For a prefix of n <= 22 items (most of Beauty's) its flipped branch at the scored
  slot has read PAD vectors only, and for 22 < n <= 45 PADs then the newest items backwards.
  Here every prefix longer than r + 1 is flipped as the paper describes.
* **The flipped branch reuses the forward branch's token features** (in_proj, the causal conv
  over time order, Δ, B, C, z): only the order the scan visits them is flipped. The code runs
  the conv (width 4) over the flipped order too, which would need per-query features near the
  flip point.
* **FE-GRU per prefix.** The code's convolution is centred (padding 1), so in a prefix sample
  position s < t reads s + 1 and the last slot reads PAD. Here the GRU runs over the centred
  convolution, and each slot's last step is redone with its right tap empty (`FEGRU`): the
  code's per-prefix value, except that the code's PAD vector (one vector shared by every
  query, which the conv bias can absorb) is zero here.
* **Kept quirks**: ``mix_logits`` (0.8, 0.1, 0.1) are read through ``.data`` in the code, so
  the mix is fixed at softmax = (0.50, 0.25, 0.25) (``learn_mix`` frees it); every Linear,
  Mamba's dt_proj included, is re-initialised N(0, 0.02) with zero bias, so Δ starts at
  softplus(0) instead of Mamba's [1e-3, 0.1] (A = -(1..N), D = 1, conv and GRU keep torch's
  init). ``released_flip_gate`` reproduces the code's flipped gate, whose sigmoid path reads
  the forward gate's output instead of its own input (likely a slip; off by default).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import nn

from seqrec.data.batches import SeqBatch
from seqrec.errors import SeqrecError
from seqrec.models.base import FeedForwardOption, LayerNormOption, ModelConfig, SeqModel
from seqrec.models.common import check_width, last_from_forward, output_flops, row_lengths
from seqrec.ops.dropout import Dropout
from seqrec.ops.selective_scan import (
    flipped_scan,
    flipped_scan_reference,
    packed_scan,
    selective_scan,
    selective_scan_reference,
)


class SIGMAConfig(ModelConfig, FeedForwardOption, LayerNormOption):
    """Defaults: the released code's (``model/config.yaml`` and ``gated_mamba.py``)."""

    name: Literal["sigma"]
    layers: int = Field(1, ge=1)
    """G-Mamba layers (1 in the released config; a single layer has no residual around it)."""
    ffn_mult: float = Field(4.0, gt=0)
    """FFN inner width = ffn_mult * hidden (4 in the code)."""
    ln_eps: float = Field(1e-12, gt=0)
    """LayerNorm epsilon (1e-12 in the code)."""
    d_state: int = Field(32, ge=1)
    """N: SSM state size per channel."""
    d_conv: int = Field(4, ge=1)
    """Width of Mamba's causal depthwise convolution."""
    expand: int = Field(2, ge=1)
    """Mamba's inner width E = expand * hidden."""
    dt_rank: int | None = Field(None, ge=1)
    """Rank of Δ's projection; None = ceil(hidden / 16), mamba-ssm's "auto"."""
    flip: Literal["prefix", "off"] = "prefix"
    """``prefix``: PF-Mamba, each slot's prefix partially flipped (module docstring); ``off``:
    the forward branch alone (the paper's "w/o PF" ablation)."""
    flip_keep: int = Field(5, ge=1)
    """r: most recent items of a prefix left in time order (the code flips 45 of 50 slots)."""
    gate_dropout: float = Field(0.2, ge=0, lt=1)
    """Dropout on the DS Gate's output (fixed at 0.2 in the code)."""
    mix_logits: tuple[float, float, float] = (0.8, 0.1, 0.1)
    """Logits of the (forward, flipped, GRU) mix; weights = softmax."""
    learn_mix: bool = False
    """Train the mix logits (the code defines them as a parameter but reads ``.data``)."""
    released_flip_gate: bool = False
    """The code's flipped gate: W_a SiLU(h_b) + W_b sigma(G_f), G_f the forward gate's output."""

    @model_validator(mode="after")
    def _flip_options_need_the_flip(self) -> SIGMAConfig:
        if self.flip == "off" and (self.flip_keep != 5 or self.released_flip_gate):
            raise ValueError(
                "model.flip_keep and model.released_flip_gate act on the flipped branch, "
                "which model.flip=off removes; drop them or set model.flip=prefix"
            )
        return self

    def rank(self) -> int:
        return self.dt_rank or math.ceil(self.hidden / 16)


class PFMamba(nn.Module):
    """Mamba's mixer (mamba-ssm 1.1.4 layout) returning the forward and, when ``keep`` is set,
    the partially flipped output [B, L, D] of every slot.

    ``path``: ``packed`` runs `packed_scan` (one loop over the real slots), ``vectorised`` the
    chunked scan and `flipped_scan`'s closed form; ``auto`` picks packed on a CPU, where it
    measured fastest, and vectorised on an accelerator (fewer kernel launches)."""

    path: Literal["auto", "packed", "vectorised"] = "auto"

    def __init__(self, cfg: SIGMAConfig) -> None:
        super().__init__()
        d, inner, n = cfg.hidden, cfg.expand * cfg.hidden, cfg.d_state
        self.rank, self.n = cfg.rank(), n
        self.keep = cfg.flip_keep if cfg.flip == "prefix" else None
        self.in_proj = nn.Linear(d, 2 * inner, bias=False)
        self.conv = nn.Conv1d(inner, inner, cfg.d_conv, groups=inner, padding=cfg.d_conv - 1)
        self.x_proj = nn.Linear(inner, self.rank + 2 * n, bias=False)
        self.dt_proj = nn.Linear(self.rank, inner)
        self.A_log = nn.Parameter(torch.log(torch.arange(1.0, n + 1)).repeat(inner, 1))
        self.D = nn.Parameter(torch.ones(inner))
        self.out_proj = nn.Linear(inner, d, bias=False)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor, reference: bool = False):
        """(forward, flipped or None) outputs [B, L, D] of right-padded rows of ``lengths``."""
        u, z = self.in_proj(x).chunk(2, dim=-1)
        u = F.silu(self.conv(u.transpose(1, 2))[..., : x.shape[1]].transpose(1, 2))
        dt, B, C = self.x_proj(u).split([self.rank, self.n, self.n], dim=-1)
        args = (u, F.softplus(self.dt_proj(dt)), -torch.exp(self.A_log), B, C, self.D)
        with torch.autocast(x.device.type, enabled=False):  # the scan in fp32, as mamba-ssm's
            full = torch.promote_types(u.dtype, torch.float32)
            y, y_flip = self._scan(tuple(a.to(full) for a in args), lengths, reference)
        gate = F.silu(z)
        y, y_flip = y.to(gate.dtype), None if y_flip is None else y_flip.to(gate.dtype)
        return self.out_proj(y * gate), None if y_flip is None else self.out_proj(y_flip * gate)

    def _scan(self, args: tuple, lengths: torch.Tensor, reference: bool):
        """(y, y_flip or None) [B, L, E] by the chosen path (class docstring)."""
        path = self.path if self.path != "auto" else ("packed" if args[0].is_cpu else "vectorised")
        if reference:
            y = selective_scan_reference(*args)
            y_flip = None if self.keep is None else flipped_scan_reference(*args, self.keep)[1]
        elif path == "packed":
            y, y_flip = packed_scan(*args, lengths, self.keep)
        elif self.keep is None:
            y, y_flip = selective_scan(*args), None
        else:
            y, y_flip = flipped_scan(*args, keep=self.keep)
        return y, y_flip


class DSGate(nn.Module):
    """G(h) = Dropout(W_a SiLU(h) + b_a + W_b sigma(s) + b_b), s = h unless given."""

    def __init__(self, hidden: int, p: float) -> None:
        super().__init__()
        self.silu_path = nn.Linear(hidden, hidden)
        self.sigmoid_path = nn.Linear(hidden, hidden)
        self.drop = Dropout(p)

    def forward(self, h: torch.Tensor, s: torch.Tensor | None = None) -> torch.Tensor:
        s = h if s is None else s
        return self.drop(self.silu_path(F.silu(h)) + self.sigmoid_path(torch.sigmoid(s)))


def gru_step(x: torch.Tensor, h: torch.Tensor, w_ih: torch.Tensor, w_hh: torch.Tensor):
    """One bias-free step of torch's GRU (gate rows r, z, n):
    h' = (1 - z) n + z h, n = tanh(W_in x + r * W_hn h)."""
    xr, xz, xn = F.linear(x, w_ih).chunk(3, dim=-1)
    hr, hz, hn = F.linear(h, w_hh).chunk(3, dim=-1)
    r, z = torch.sigmoid(xr + hr), torch.sigmoid(xz + hz)
    return (1 - z) * torch.tanh(xn + r * hn) + z * h


class FEGRU(nn.Module):
    """Feature-extract GRU: a centred width-3 convolution, then a bias-free GRU, per prefix.

    State at slot t = one GRU step from the state after slots < t (which read items <= t),
    taking the convolution at t with its right tap empty: what the code computes at the last
    slot of the prefix ending at t, for every t at once."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(hidden, hidden, 3, padding=1)
        self.gru = nn.GRU(hidden, hidden, bias=False, batch_first=True)

    def forward(self, x: torch.Tensor, reference: bool = False) -> torch.Tensor:
        if reference:
            return self._reference(x)
        g = self.conv(x.transpose(1, 2)).transpose(1, 2)  # slot s reads s - 1, s, s + 1
        following = F.pad(x[:, 1:], (0, 0, 0, 1))
        own = g - F.linear(following, self.conv.weight[:, :, 2])  # right tap empty
        before, _ = self.gru(g)
        before = F.pad(before[:, :-1], (0, 0, 1, 0))  # state after slots < t
        return gru_step(own, before, self.gru.weight_ih_l0, self.gru.weight_hh_l0)

    def _reference(self, x: torch.Tensor) -> torch.Tensor:
        """The code's FE-GRU run on each prefix separately; its last state."""
        out = []
        for t in range(x.shape[1]):
            g = self.conv(x[:, : t + 1].transpose(1, 2)).transpose(1, 2)
            out.append(self.gru(g)[0][:, -1])
        return torch.stack(out, dim=1)


class GMambaLayer(nn.Module):
    """PF-Mamba with DS Gates, FE-GRU, their mix, projection, norm and FFN."""

    def __init__(self, cfg: SIGMAConfig) -> None:
        super().__init__()
        d = cfg.hidden
        self.residual = cfg.layers > 1
        self.released_gate = cfg.released_flip_gate
        self.mamba = PFMamba(cfg)
        self.dense_fwd = nn.Linear(d, d)
        self.dense_flip = nn.Linear(d, d) if cfg.flip == "prefix" else None
        self.gate = DSGate(d, cfg.gate_dropout)
        self.fe_gru = FEGRU(d)
        logits = torch.tensor(cfg.mix_logits)
        if cfg.learn_mix:
            self.mix_logits = nn.Parameter(logits)
        else:
            self.register_buffer("mix_logits", logits)
        self.proj = nn.Linear(d, d)
        self.drop = Dropout(cfg.dropout)
        self.norm = nn.LayerNorm(d, eps=cfg.ln_eps)
        inner = max(1, round(cfg.ffn_mult * d))
        self.ffn = FeedForward(d, inner, cfg.dropout, cfg.ln_eps)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor, reference: bool = False):
        w = torch.softmax(self.mix_logits, dim=0)
        out_fwd, out_flip = self.mamba(x, lengths, reference)
        gate_fwd = self.gate(x + self.dense_fwd(x))
        mixed = w[0] * out_fwd * (1 + gate_fwd) + w[2] * self.fe_gru(x, reference)
        if out_flip is not None:
            s = gate_fwd if self.released_gate else None
            gate_flip = self.gate(x + self.dense_flip(x), s)
            mixed = mixed + w[1] * out_flip * (1 + gate_flip)
        h = self.drop(self.proj(mixed))
        return self.ffn(self.norm(h + x if self.residual else h))


class FeedForward(nn.Module):
    """LN(x + Drop(W_2 Drop(GELU(W_1 x)))), the code's (and RecBole's) FFN."""

    def __init__(self, hidden: int, inner: int, p: float, eps: float) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(hidden, inner), nn.Linear(inner, hidden)
        self.drop = Dropout(p)
        self.norm = nn.LayerNorm(hidden, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x + self.drop(self.fc2(self.drop(F.gelu(self.fc1(x))))))


class SIGMA(SeqModel):
    """Selective gated Mamba; ``forward`` returns states [B, L, D]."""

    config_class = SIGMAConfig

    def __init__(self, cfg: SIGMAConfig, n_items: int, max_len: int) -> None:
        super().__init__()
        if cfg.flip == "prefix" and cfg.flip_keep + 2 > max_len:
            raise SeqrecError(
                f"model.flip_keep={cfg.flip_keep} leaves nothing to flip in a window of "
                f"data.max_len={max_len} (a prefix needs r + 2 items); lower model.flip_keep "
                "or set model.flip=off"
            )
        self.cfg, self.n_items, self.max_len = cfg, n_items, max_len
        self.item_emb = nn.Embedding(n_items + 1, cfg.hidden, padding_idx=0)
        self.emb_dropout = Dropout(cfg.dropout)
        self.emb_norm = nn.LayerNorm(cfg.hidden, eps=cfg.ln_eps)
        self.layers = nn.ModuleList(GMambaLayer(cfg) for _ in range(cfg.layers))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The code's init: every Linear and the item table N(0, 0.02), Linear biases zero;
        Mamba's A_log and D, the convolutions and the GRU keep their own init."""
        for module in self.modules():
            if isinstance(module, nn.Linear | nn.Embedding):
                nn.init.normal_(module.weight, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)
        with torch.no_grad():
            self.item_emb.weight[0].zero_()

    @staticmethod
    def flops_per_interaction(cfg: SIGMAConfig, n_items: int, seq_len: float) -> dict:
        return flops_per_interaction(cfg, n_items, seq_len)

    @property
    def item_weights(self) -> torch.Tensor:
        return self.item_emb.weight

    def forward(self, batch: SeqBatch, reference: bool = False) -> torch.Tensor:
        """States [B, L, D]; ``reference`` runs the explicit per-position and per-prefix
        loops (`flipped_scan_reference`, `FEGRU._reference`) instead of the fast paths."""
        items = check_width(batch.items, self.max_len)
        x = self.emb_norm(self.emb_dropout(self.item_emb(items)))
        lengths = row_lengths(items)
        for layer in self.layers:
            x = layer(x, lengths, reference)
        return x

    def last_hidden(self, batch: SeqBatch) -> torch.Tensor:
        return last_from_forward(self, batch)


def flops_per_interaction(cfg: SIGMAConfig, n_items: int, seq_len: float) -> dict[str, float]:
    """Per scored position (multiply-add = 2): the mixer's projections and convolution, the
    scan (~6 E N) and the flip's correction (~10 E N), one out_proj per direction, the gates,
    the GRU (its sequence step plus the redone last step) and conv, projection, FFN and the
    full-catalogue output; training ~ 3x forward. ``seq_len`` does not enter: every part is
    linear in the length."""
    d, n, rank = cfg.hidden, cfg.d_state, cfg.rank()
    inner = cfg.expand * d
    flipped = cfg.flip == "prefix"
    mixer = 2 * d * 2 * inner + 2 * cfg.d_conv * inner + 2 * inner * (rank + 2 * n)
    mixer += 2 * rank * inner + (6 + 10 * flipped) * inner * n
    mixer += (1 + flipped) * 2 * inner * d
    gates = (1 + flipped) * 3 * 2 * d * d
    gru = 2 * 2 * (3 * d * d + 3 * d * d) + 2 * 3 * d * d
    ffn = 2 * 2 * d * max(1, round(cfg.ffn_mult * d))
    per_layer = mixer + gates + gru + 2 * d * d + ffn
    forward = cfg.layers * per_layer + output_flops(d, n_items)
    return {"forward": float(forward), "train": float(3 * forward)}
