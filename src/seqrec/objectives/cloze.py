"""BERT4Rec's Cloze objective: hide random items behind a mask token, predict them from both sides.

Choices, and why (METHODS.md 2.3 / 2.6):

* **Sequence.** The last ``max_len`` items of each training sequence. ``training_batch`` hands
  out next-item pairs, so the sequence is rebuilt as [first input, targets...] (``targets`` alone
  would lose the first item of every short row).
* **Masking.** Each real item is masked independently with probability ``mask_prob``
  (Klenitskiy & Vasilev; RecBole), and a row with no mask gets one at a uniformly drawn real
  position, so every row trains. A chosen item is always replaced by the mask token: the
  official code runs with ``mask_prob = 1.0`` for its replacement rule, i.e. no 80/10/10.
  Masks are drawn fresh every step (dynamic masking), which replaces the official code's ten
  static copies per window.
* **Randomness** comes from torch's global CPU generator (drawn on the CPU, then moved), which
  the trainer checkpoints, so a resumed run masks exactly as an uninterrupted one on any device.
* **Loss.** Full-softmax CE over items 1..n_items at the masked positions only, through the
  model's output head and the chunked CE; mean over masked positions.
"""

from __future__ import annotations

import torch
from torch import nn

from seqrec.data.batches import SeqBatch, keep_last
from seqrec.ops.cross_entropy import chunked_cross_entropy


def cloze_sequences(batch: SeqBatch, max_len: int) -> torch.Tensor:
    """Right-padded training sequences [B, <= max_len] rebuilt from a next-item training batch.

    ``training_batch`` gives inputs s_1..s_{n-1} and targets s_2..s_n (clipped to the window);
    the first input followed by the targets is the whole window, of which the last ``max_len``
    items are kept.
    """
    first = torch.where(batch.targets[:, :1] != 0, batch.items[:, :1], 0)
    return keep_last(torch.cat([first, batch.targets], dim=1), max_len)


def cloze_mask(
    seq: torch.Tensor, mask_prob: float, mask_token: int, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs with masked items replaced by ``mask_token``, labels: the hidden item or 0).

    Each real item is chosen with probability ``mask_prob``; a row that drew none gets the real
    item with the smallest draw, which is uniform over its real positions. PAD is never chosen.
    """
    real = seq != 0
    draw = torch.rand(seq.shape, generator=generator).to(seq.device)
    chosen = (draw < mask_prob) & real
    forced = draw.masked_fill(~real, 2.0).argmin(1, keepdim=True)
    slots = torch.arange(seq.shape[1], device=seq.device)[None, :]
    chosen |= (~chosen.any(1, keepdim=True)) & (slots == forced) & real
    inputs = torch.where(chosen, mask_token, seq)
    labels = torch.where(chosen, seq, 0)
    return inputs, labels


def cloze_loss(
    model: nn.Module, batch: SeqBatch, mask_prob: float, chunk: int | None = None
) -> torch.Tensor:
    """Mean CE over every masked position of the batch (model must be a mask-token encoder)."""
    seq = cloze_sequences(batch, model.max_len)
    inputs, labels = cloze_mask(seq, mask_prob, model.mask_token)
    lengths = (seq != 0).sum(1)
    hidden = model(SeqBatch(inputs, labels, lengths, batch.users))
    picked = labels != 0
    return chunked_cross_entropy(
        model.project(hidden[picked]), model.item_weights, labels[picked], chunk
    )
