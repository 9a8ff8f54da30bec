"""SASRec+ switches: the HSTU pieces that *Scaling New Frontiers* (Guo et al., arXiv 2412.00714)
credits with HSTU's scalability, as options on SASRec so their effect on scaling can be measured.

The paper body was not readable; what is known (METHODS.md 10.2, ANCHORS.md 5) is that the
authors added HSTU's relative attention bias and "residual connection pattern" to SASRec, that
rab with a Llama-style pre-norm residual "significantly" improved SASRec's scaling, and that "a
well-normalised model may enhance scalability". The exact SASRec variants are NOT KNOWN, so
each piece here is one switch, defaults off, and the choices below are ours:

* ``model.rab`` -> `RelativePositionBias`: HSTU's position part of rab^{p,t} (METHODS.md 6.2),
  one learned scalar per causal offset i - j per layer, shared by the heads, init N(0, 0.02) as
  in the research code. ``max_len`` scalars, not the research code's 2N - 1 (the N - 1 for
  future keys are always masked in a causal model), as hstu.py does. It is added to the softmax
  logits *after* SASRec's 1/sqrt(d_h) scaling (SDPA adds a float mask there), where HSTU adds it
  to unscaled SiLU logits; a learned scalar absorbs the scale. No time part: SASRec batches
  carry no timestamps and the paper note names the position bias. hstu.py keeps the bias inside
  ``HSTULayer`` (a parameter mixed with its time buckets), not as a module this file could
  import, so the few lines are written here.
* ``model.residual="hstu"`` -> `GatedBlock`: HSTU's layer shape (METHODS.md 6.1 steps 1 and 3)
  around SASRec's attention: ``x + W_o Dropout(SiLU(N(x) W_u) * N_av(Attn(N(x))))`` with no
  separate FFN. Taken from HSTU: the pre-norm input, the SiLU-gated U, the norm over the
  concatenated heads' attention output, dropout before the output projection, the bias-carrying
  W_o, and no FFN. Kept from SASRec (so that only the residual pattern changes): softmax
  attention with 1/sqrt(d_h) (the paper note lists "softmax instead of SiLU" as a separate HSTU
  ablation), linear Q/K/V with biases (HSTU has SiLU on Q/K/V and no bias; guess), affine norms
  of ``model.norm_type`` (HSTU's have no affine; guess), SASRec's init for W_u and W_o, the
  final norm of the pre layout (HSTU has none; kept so the stack differs from SASRec's only
  inside the blocks), and the learned absolute positions. At ``ffn_mult=1`` both blocks hold
  5 d^2 weights (Q, K, V, U, W_o vs Q, K, V, FFN in, FFN out), so the comparison is matched in
  parameters. ``attn_out_proj`` adds nothing here: W_o is the output projection.
* ``model.norm_type="rmsnorm"``: every norm of the SASRec stack (block norms of any ``norm``
  layout, the gated block's two norms and the final norm) becomes llama.py's RMSNorm with
  eps ``ln_eps``; the Llama residual the note mentions is SASRec's ``norm=pre`` layout.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from seqrec.models.base import ModelConfig
from seqrec.models.llama import RMSNorm
from seqrec.ops.dropout import Dropout


def make_norm(cfg: ModelConfig) -> nn.Module:
    """The block / final norm of a SASRec stack: LayerNorm or RMSNorm (``model.norm_type``)."""
    if cfg.norm_type == "rmsnorm":
        return RMSNorm(cfg.hidden, cfg.ln_eps)
    return nn.LayerNorm(cfg.hidden, eps=cfg.ln_eps)


class RelativePositionBias(nn.Module):
    """Learned scalar per causal offset i - j (0 .. max_len - 1), shared by all heads.

    Produces SDPA's additive float mask: the bias where attention is allowed, -inf elsewhere,
    so the causal (or padding) mask travels in the same tensor.
    """

    def __init__(self, max_len: int) -> None:
        super().__init__()
        # zeros here, N(0, 0.02) in reset_parameters: construction draws no random numbers,
        # so every other weight of a rab model equals the plain model's at the same seed
        self.weight = nn.Parameter(torch.zeros(max_len))

    def reset_parameters(self) -> None:
        nn.init.normal_(self.weight, std=0.02)

    def mask(self, length: int, allowed: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor:
        """[L, L] (``allowed`` None = causal) or ``allowed``'s shape [B, 1, L, L] float mask.

        ``allowed`` must be causal (keys j <= i only): the table has no future offsets.
        """
        slots = torch.arange(length, device=self.weight.device)
        offset = (slots[:, None] - slots[None, :]).clamp_(min=0)
        if allowed is None:
            allowed = slots[None, :] <= slots[:, None]
        return self.weight[offset].masked_fill(~allowed, float("-inf")).to(dtype)

    def last_mask(self, lengths: torch.Tensor, width: int, dtype: torch.dtype) -> torch.Tensor:
        """[B, 1, 1, L] float mask for one query per row at slot ``lengths - 1``."""
        slots = torch.arange(width, device=lengths.device)
        offset = (lengths[:, None] - 1 - slots[None, :]).clamp_(min=0)
        keep = slots[None, :] < lengths[:, None]
        bias = self.weight[offset].masked_fill(~keep, float("-inf"))
        return bias.to(dtype)[:, None, None, :]


class GatedBlock(nn.Module):
    """HSTU-style residual: x + W_o Dropout(SiLU(N(x) W_u) * N_av(Attn(N(x)))), no FFN.

    ``attn`` is SASRec's causal attention (softmax, optional rab, no output projection); it
    exposes ``forward(x, mask)`` and ``forward_last(x_last, x, lengths)`` returning [.., D].
    """

    def __init__(self, cfg: ModelConfig, attn: nn.Module) -> None:
        super().__init__()
        d = cfg.hidden
        self.ln1 = make_norm(cfg)
        self.attn = attn
        self.gate = nn.Linear(d, d)
        self.ln_av = make_norm(cfg)
        self.out = nn.Linear(d, d)
        self.drop = Dropout(cfg.dropout)

    def _mix(self, h: torch.Tensor, av: torch.Tensor) -> torch.Tensor:
        """W_o Dropout(SiLU(h W_u) * N_av(av)) for the normalised input h and attention av."""
        return self.out(self.drop(F.silu(self.gate(h)) * self.ln_av(av)))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        h = self.ln1(x)
        return x + self._mix(h, self.attn(h, mask))

    def forward_last(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Output [B, D] at each row's most recent slot; keys and values cover the whole row."""
        rows = torch.arange(x.shape[0], device=x.device)
        h = self.ln1(x)
        h_last = h[rows, lengths - 1]
        return x[rows, lengths - 1] + self._mix(h_last, self.attn.forward_last(h_last, h, lengths))
