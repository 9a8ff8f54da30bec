"""From CSR slices to padded tensors: the one `SeqBatch` type that crosses into the models.

Sequences are right-padded (oldest item in slot 0, PAD = 0 after the most recent item) and each
batch is only as wide as its longest row. Right padding means a causal model never needs a
padding mask: a real position only looks at earlier slots, which are all real, so attention can
use the plain causal kernel. Positions count from each row's oldest item by default (a model's
``positions`` option can count back from the most recent one, the official SASRec window), so
results are identical whether or not a batch is trimmed. All gathers are vectorised: one fancy-index per batch.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import numpy as np
import torch


@dataclass(frozen=True)
class SeqBatch:
    """A padded batch. ``targets`` is 0 where there is nothing to predict."""

    items: torch.Tensor  # [B, L] int64, right-padded
    targets: torch.Tensor  # [B, L] int64 next item per position (training) or [B] (evaluation)
    lengths: torch.Tensor  # [B] int64 true (un-padded, window-clipped) lengths
    users: torch.Tensor  # [B] int64 store rows
    timestamps: torch.Tensor | None = None  # [B, L] int64
    next_timestamps: torch.Tensor | None = None
    """[B, L] int64 time of the event each position predicts, t_{i+1} (0 at PAD): the next
    input's time, and at a row's last slot its target's (training) or the request time
    (evaluation; its own time where none is known). Present whenever ``timestamps`` is."""
    behaviors: torch.Tensor | None = None
    """[B, L] int64 behaviour code of each input item (0 at PAD), aligned with ``items``;
    only when the store has behaviours and the caller asks for them."""
    target_behaviors: torch.Tensor | None = None
    """[B, L] behaviour of each position's target (training batches with behaviours only);
    read only by target-behaviour conditioning (``model.target_behavior``), never an input."""
    domains: torch.Tensor | None = None
    """[B, L] int64 domain code 1..K of each input item (0 at PAD), aligned with ``items``;
    only when the store has domains and the caller asks for them (data/domains.py)."""
    target_domains: torch.Tensor | None = None
    """The domain of each target, shaped like ``targets``: [B, L] in training (0 where there
    is no target), [B] in evaluation (the domain a row is scored for). The domain a
    recommendation is asked in, never an input item's."""

    def to(self, device: torch.device | str) -> SeqBatch:
        moved = {
            f.name: (v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v)
            for f in fields(self)
            for v in [getattr(self, f.name)]
        }
        return replace(self, **moved)

    @property
    def padding_mask(self) -> torch.Tensor:
        """True at real items."""
        return self.items != 0


def window_index(starts: np.ndarray, ends: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Gather indices for the last ``width`` items of each [start, end) slice, right-padded.

    Returns (index [B, width] into the flat item array, valid mask [B, width]). Invalid slots
    point at index 0 and must be replaced by PAD by the caller.
    """
    lengths = np.minimum(ends - starts, width)
    slot = np.arange(width, dtype=np.int64)[None, :]
    idx = (ends - lengths)[:, None] + slot
    valid = slot < lengths[:, None]
    return np.where(valid, idx, 0), valid


def gather_window(
    flat: np.ndarray, starts: np.ndarray, ends: np.ndarray, width: int
) -> tuple[np.ndarray, np.ndarray]:
    idx, valid = window_index(starts, ends, width)
    out = np.where(valid, flat[idx], 0)
    return out, valid


def _aligned(flat: np.ndarray | None, idx: np.ndarray, valid: np.ndarray) -> torch.Tensor | None:
    """``flat`` (timestamps, behaviours) gathered at the items' window ``idx``, 0 where invalid."""
    if flat is None:
        return None
    return torch.from_numpy(np.where(valid, flat[idx], 0).astype(np.int64, copy=False))


def _inputs_and_targets(
    flat: np.ndarray | None, idx: np.ndarray, valid: np.ndarray
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """``flat`` over a training window (``max_len + 1`` wide), gathered once and split into
    the inputs' columns and the targets' (the same values one slot later)."""
    out = _aligned(flat, idx, valid)
    if out is None:
        return None, None
    return out[:, :-1].contiguous(), out[:, 1:].contiguous()


def training_batch(
    items: np.ndarray,
    timestamps: np.ndarray | None,
    users: np.ndarray,
    starts: np.ndarray,
    ends: np.ndarray,
    max_len: int,
    behaviors: np.ndarray | None = None,
    domains: np.ndarray | None = None,
) -> SeqBatch:
    """Next-item training rows: input = last ``max_len`` items before the end, targets shifted by one.

    Only the most recent ``max_len + 1`` items of each training slice are used (as in SASRec), so
    memory is users x max_len, never interactions x max_len. ``behaviors`` (aligned with
    ``items``) gives ``SeqBatch.behaviors`` for the inputs and ``target_behaviors`` for the
    targets (kept apart, so no model input ever holds a target's behaviour); ``domains``
    likewise gives ``SeqBatch.domains`` and ``target_domains``.
    """
    n = ends - starts
    width = int(min(max_len, max(int(n.max()) - 1, 1)))
    idx, valid = window_index(starts, ends, width + 1)
    seq = np.where(valid, items[idx], 0)
    inp, tgt = seq[:, :-1], seq[:, 1:]
    inp = np.where(tgt != 0, inp, 0)  # a short row's last item has no next item: not an input
    ts, nts = _inputs_and_targets(timestamps, idx, valid)  # nts: each target's time
    beh, tbeh = _inputs_and_targets(behaviors, idx, valid)
    dom, tdom = _inputs_and_targets(domains, idx, valid)
    real = torch.from_numpy(inp != 0)
    beh = None if beh is None else beh * real
    dom = None if dom is None else dom * real
    return SeqBatch(
        items=torch.from_numpy(np.ascontiguousarray(inp, dtype=np.int64)),
        targets=torch.from_numpy(np.ascontiguousarray(tgt, dtype=np.int64)),
        lengths=torch.from_numpy(np.minimum(n - 1, width).astype(np.int64)),
        users=torch.from_numpy(users.astype(np.int64)),
        timestamps=ts,
        next_timestamps=nts,
        behaviors=beh,
        target_behaviors=tbeh,
        domains=dom,
        target_domains=tdom,
    )


def history_batch(
    items: np.ndarray,
    timestamps: np.ndarray | None,
    users: np.ndarray,
    starts: np.ndarray,
    ends: np.ndarray,
    targets: np.ndarray,
    max_len: int,
    behaviors: np.ndarray | None = None,
    request_times: np.ndarray | None = None,
    domains: np.ndarray | None = None,
    target_domains: np.ndarray | None = None,
) -> SeqBatch:
    """Evaluation / inference rows: the last ``max_len`` history items and one target each.

    ``request_times`` [B] (with ``timestamps``): the time each row is scored at, which becomes
    the last slot's ``next_timestamps``; None keeps that slot's own time. ``domains`` (aligned
    with ``items``) and ``target_domains`` [B] (the domain each row is scored for) give
    ``SeqBatch.domains`` / ``target_domains``.
    """
    n = ends - starts
    width = int(min(max_len, max(int(n.max()), 1)))
    idx, valid = window_index(starts, ends, width)
    inp = np.where(valid, items[idx], 0)
    ts = _aligned(timestamps, idx, valid)
    nts = None if ts is None else _next_times(ts, np.minimum(n, width), request_times)
    beh = _aligned(behaviors, idx, valid)
    tdom = None if target_domains is None else torch.from_numpy(target_domains.astype(np.int64))
    return SeqBatch(
        items=torch.from_numpy(np.ascontiguousarray(inp, dtype=np.int64)),
        targets=torch.from_numpy(targets.astype(np.int64)),
        lengths=torch.from_numpy(np.minimum(n, width).astype(np.int64)),
        users=torch.from_numpy(users.astype(np.int64)),
        timestamps=ts,
        next_timestamps=nts,
        behaviors=beh,
        domains=_aligned(domains, idx, valid),
        target_domains=tdom,
    )


def _next_times(
    ts: torch.Tensor, lengths: np.ndarray, request_times: np.ndarray | None
) -> torch.Tensor:
    """History times shifted one slot left; the last real slot gets the request time (or
    keeps its own), PAD slots 0."""
    nts = torch.zeros_like(ts)
    nts[:, :-1] = ts[:, 1:]
    rows = np.flatnonzero(lengths > 0)
    last = torch.from_numpy(lengths[rows] - 1)
    rows_t = torch.from_numpy(rows)
    if request_times is None:
        nts[rows_t, last] = ts[rows_t, last]
    else:
        nts[rows_t, last] = torch.from_numpy(np.asarray(request_times, dtype=np.int64)[rows])
    return nts


def flat_slices(starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(row id, flat index) of every element of every [start, end) slice, without a Python loop.

    Used to mask a user's whole history (not only the model's window) at evaluation time.
    """
    lens = (ends - starts).astype(np.int64)
    total = int(lens.sum())
    rows = np.repeat(np.arange(len(lens), dtype=np.int64), lens)
    first = np.cumsum(lens) - lens
    flat = np.arange(total, dtype=np.int64) - np.repeat(first, lens) + np.repeat(starts, lens)
    return rows, flat


def keep_last(items: torch.Tensor, max_len: int) -> torch.Tensor:
    """The last ``max_len`` real items of right-padded rows, still right-padded.

    Only rows longer than ``max_len`` move (their oldest items drop off); one gather, no loop.
    """
    width = items.shape[1]
    if width <= max_len:
        return items
    lengths = (items != 0).sum(1, keepdim=True)
    shift = (lengths - max_len).clamp(min=0)
    slots = torch.arange(max_len, device=items.device)[None, :] + shift
    return items.gather(1, slots)
