"""Sequence augmentations for contrastive learning (CL4SRec, CoSeRec-style), batched.

Every operator works on a right-padded ``[B, L]`` item tensor (0 = PAD, oldest item in slot 0)
and returns a new right-padded tensor of the same width; the input is never modified (the
in-place pitfall of METHODS.md 4.7). With n the true length of a row (its number of non-PAD
slots):

* ``crop(η)``: the contiguous block of k = max(1, ⌊η·n⌋) items starting at a uniform offset in
  [0, n − k], moved to slot 0 (the view starts at position 0, as in `[Duo]`).
* ``mask(γ)``: ⌊γ·n⌋ distinct uniformly chosen items are replaced by the mask token
  ``n_items + 1`` (a real token, as in `[Duo]`, not PAD as in `[ICL]`/`[JZ]`, which would turn
  masking into deletion). The encoder must therefore own an embedding row ``n_items + 1`` that
  is never ranked; `seqrec.models.cl4srec.CL4SRec` adds it and leaves it out of ``item_weights``.
* ``reorder(β)``: the contiguous block of ⌊β·n⌋ items at a uniform offset is shuffled in place.
* ``insert(r)`` (CoSeRec): before each of ⌊r·n⌋ distinct uniformly chosen items one random item
  is inserted. If the longer row no longer fits the width, its oldest items are dropped (the
  same most-recent truncation the training windows use).
* ``substitute(r)`` (CoSeRec): ⌊r·n⌋ distinct uniformly chosen items are replaced by random items.

CoSeRec draws the inserted / substituted item from an item-similarity model (the most
correlated item); here it is a uniform random item in 1..n_items. That is the ablation baseline
of "informative" augmentation, and it needs no extra model.

Rows with n ≤ 1 come back unchanged for ratios < 1 (every count above is then 0, and a crop
keeps the single item), matching `[Duo]`'s "do not augment" rule; a row with at least one item
always keeps at least one (crop keeps ≥ 1, the other operators never shorten a row). All-PAD
rows stay all PAD.

Randomness: each operator has a pure function of (items, explicit uniform draws) — what the
tests compare with a per-row reference — and `augment` draws those uniforms. Draws are made on
the generator's device (the global CPU RNG by default) and then moved to the items' device, so
a training run's augmentations are covered by the checkpointed CPU RNG state and a resumed run
repeats them exactly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

import torch
from pydantic import Field, model_validator

from seqrec.options import Strict

OPS = ("crop", "mask", "reorder", "insert", "substitute")


class AugmentOptions(Strict):
    """Which augmentations a contrastive model draws its views from (METHODS.md 4); defaults
    are ICLRec's CL4SRec settings."""

    aug_ops: list[Literal["crop", "mask", "reorder", "insert", "substitute"]] = Field(
        default_factory=lambda: ["crop", "mask", "reorder"]
    )
    """Augmentation set; each view applies one operator drawn uniformly from it. insert and
    substitute are CoSeRec's operators with uniform random items (no similarity model)."""
    aug_distinct: bool = False
    """Draw the two views' operators without replacement (DuoRec) instead of independently
    (ICLRec, JamZheng)."""
    crop_ratio: float = Field(0.2, gt=0, le=1)
    """η: a crop keeps max(1, ⌊η·n⌋) contiguous items (ICLRec ``--tao``; DuoRec 0.6)."""
    mask_ratio: float = Field(0.7, ge=0, lt=1)
    """γ: ⌊γ·n⌋ items become the mask token (ICLRec ``--gamma``; DuoRec 0.3)."""
    reorder_ratio: float = Field(0.2, ge=0, le=1)
    """β: a contiguous span of ⌊β·n⌋ items is shuffled (ICLRec ``--beta``; DuoRec 0.6)."""
    insert_ratio: float = Field(0.4, ge=0, le=1)
    """⌊r·n⌋ random items inserted (CoSeRec ``--insert_rate`` default)."""
    substitute_ratio: float = Field(0.1, ge=0, le=1)
    """⌊r·n⌋ items replaced by random items (CoSeRec ``--substitute_rate`` default)."""

    @model_validator(mode="after")
    def _augmentations_fit(self) -> AugmentOptions:
        if not self.aug_ops:
            raise ValueError("model.aug_ops is empty; cl4srec needs at least one augmentation")
        if len(set(self.aug_ops)) != len(self.aug_ops):
            raise ValueError(f"model.aug_ops lists an operator twice: {self.aug_ops}")
        if self.aug_distinct and len(self.aug_ops) < 2:
            raise ValueError(
                "model.aug_distinct=true draws two different operators per row; "
                "give model.aug_ops at least two"
            )
        return self


def mask_token(n_items: int) -> int:
    """The id `mask` writes; an encoder that sees masked views needs n_items + 2 embedding rows."""
    return n_items + 1


def _lengths(items: torch.Tensor) -> torch.Tensor:
    return (items != 0).sum(1)


def _count(lengths: torch.Tensor, ratio: float) -> torch.Tensor:
    """⌊ratio·n⌋ per row, computed in float64 like Python's ``math.floor(ratio * n)``."""
    return torch.floor(lengths.to(torch.float64) * ratio).to(torch.int64)


def _start(u: torch.Tensor, lengths: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Uniform offset in [0, n − k] from u ∈ [0, 1)."""
    slack = (lengths - k).clamp(min=0)
    s = torch.floor(u.to(torch.float64) * (slack + 1).to(torch.float64)).to(torch.int64)
    return torch.minimum(s, slack)


def _choose(lengths: torch.Tensor, count: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    """Boolean [B, L]: ``count`` distinct real slots per row, the ones with the smallest scores.

    With i.i.d. uniform scores this is a uniform draw without replacement; the double argsort
    turns scores into each slot's rank among the row's real slots (PAD slots rank last).
    """
    slots = torch.arange(scores.shape[1], device=scores.device)
    real = slots[None, :] < lengths[:, None]
    keyed = torch.where(real, scores.to(torch.float64), 2.0)
    rank = keyed.argsort(dim=1, stable=True).argsort(dim=1, stable=True)
    return rank < count[:, None]


def crop(items: torch.Tensor, ratio: float, u_start: torch.Tensor) -> torch.Tensor:
    """Keep max(1, ⌊ratio·n⌋) contiguous items from offset ⌊u·(n − k + 1)⌋, left-aligned."""
    lengths = _lengths(items)
    k = torch.minimum(_count(lengths, ratio).clamp(min=1), lengths)
    s = _start(u_start, lengths, k)
    slots = torch.arange(items.shape[1], device=items.device)[None, :]
    src = (s[:, None] + slots).clamp(max=items.shape[1] - 1)
    return torch.where(slots < k[:, None], items.gather(1, src), 0)


def mask(items: torch.Tensor, ratio: float, scores: torch.Tensor, token: int) -> torch.Tensor:
    """Replace the ⌊ratio·n⌋ real slots with the smallest ``scores`` by ``token``."""
    chosen = _choose(_lengths(items), _count(_lengths(items), ratio), scores)
    return torch.where(chosen, token, items)


def reorder(
    items: torch.Tensor, ratio: float, u_start: torch.Tensor, keys: torch.Tensor
) -> torch.Tensor:
    """Sort the span [s, s + ⌊ratio·n⌋) by ``keys`` (a uniform shuffle for uniform keys).

    One stable argsort per row does it: a slot outside the span keeps its index as sort key,
    a slot inside gets s + key ∈ [s, s + 1), which stays above every index before the span
    and below every index after it.
    """
    lengths = _lengths(items)
    k = _count(lengths, ratio)
    s = _start(u_start, lengths, k)
    slots = torch.arange(items.shape[1], device=items.device)[None, :]
    inside = (slots >= s[:, None]) & (slots < (s + k)[:, None])
    sort_key = torch.where(inside, s[:, None] + keys.to(torch.float64), slots.to(torch.float64))
    return items.gather(1, sort_key.argsort(dim=1, stable=True))


def substitute(
    items: torch.Tensor, ratio: float, scores: torch.Tensor, new_items: torch.Tensor
) -> torch.Tensor:
    """Replace the ⌊ratio·n⌋ real slots with the smallest ``scores`` by ``new_items`` there."""
    lengths = _lengths(items)
    return torch.where(_choose(lengths, _count(lengths, ratio), scores), new_items, items)


def insert(
    items: torch.Tensor, ratio: float, scores: torch.Tensor, new_items: torch.Tensor
) -> torch.Tensor:
    """Insert ``new_items[j]`` before each of the ⌊ratio·n⌋ chosen slots j; keep the newest L.

    Original item j moves to j + c_j, where c_j counts chosen slots ≤ j; the item inserted
    before a chosen j lands at j + c_j − 1. Both are scattered into a 2L-wide scratch row,
    from which the last min(n + m, L) items are taken.
    """
    b, width = items.shape
    lengths = _lengths(items)
    m = _count(lengths, ratio)
    chosen = _choose(lengths, m, scores)
    real = items != 0
    shifted = torch.arange(width, device=items.device)[None, :] + chosen.cumsum(1)
    scratch = items.new_zeros(b, 2 * width + 1)
    dump = 2 * width  # PAD slots are scattered here and never read
    scratch.scatter_(1, torch.where(real, shifted, dump), items)
    scratch.scatter_(1, torch.where(chosen, shifted - 1, dump), torch.where(chosen, new_items, 0))
    total = lengths + m
    drop = (total - width).clamp(min=0)
    slots = torch.arange(width, device=items.device)[None, :]
    out = scratch.gather(1, drop[:, None] + slots)
    return torch.where(slots < (total - drop)[:, None], out, 0)


def _draw(shape: tuple[int, ...], generator: torch.Generator | None, device) -> torch.Tensor:
    g_device = generator.device if generator is not None else torch.device("cpu")
    return torch.rand(shape, generator=generator, device=g_device).to(device)


def _draw_items(
    shape: tuple[int, ...], n_items: int, generator: torch.Generator | None, device
) -> torch.Tensor:
    g_device = generator.device if generator is not None else torch.device("cpu")
    return torch.randint(1, n_items + 1, shape, generator=generator, device=g_device).to(device)


def augment(
    items: torch.Tensor,
    op: str,
    ratio: float,
    n_items: int,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Apply one operator to every row of a right-padded [B, L] batch (see the module doc)."""
    if op not in OPS:
        raise ValueError(f"unknown augmentation '{op}'; choose one of {', '.join(OPS)}")
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"augmentation ratio for '{op}' must be in [0, 1], got {ratio}")
    b, width = items.shape
    dev = items.device
    if op == "crop":
        return crop(items, ratio, _draw((b,), generator, dev))
    if op == "reorder":
        return reorder(items, ratio, _draw((b,), generator, dev), _draw((b, width), generator, dev))
    scores = _draw((b, width), generator, dev)
    if op == "mask":
        return mask(items, ratio, scores, mask_token(n_items))
    new = _draw_items((b, width), n_items, generator, dev)
    if op == "substitute":
        return substitute(items, ratio, scores, new)
    return insert(items, ratio, scores, new)


def random_augment(
    items: torch.Tensor,
    ops: Sequence[str],
    ratios: Mapping[str, float],
    n_items: int,
    generator: torch.Generator | None = None,
    choice: torch.Tensor | None = None,
) -> torch.Tensor:
    """One operator per row, drawn uniformly from ``ops`` (or given as indices in ``choice``).

    Each operator runs once, on the sub-batch of rows that drew it (a boolean gather, not a
    per-row loop), so the cost is one pass over the batch whatever the number of operators.
    """
    if not ops:
        raise ValueError("random_augment needs at least one operator")
    if choice is None:
        g_device = generator.device if generator is not None else torch.device("cpu")
        choice = torch.randint(
            len(ops), (items.shape[0],), generator=generator, device=g_device
        ).to(items.device)
    out = torch.empty_like(items)
    for i, op in enumerate(ops):
        rows = (choice == i).nonzero().squeeze(1)
        if rows.numel():
            out[rows] = augment(items[rows], op, ratios[op], n_items, generator)
    return out


def two_view_choices(
    batch_size: int,
    n_ops: int,
    distinct: bool,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Operator indices for two views per row: independent uniform picks (`[ICL]`, `[JZ]`), or
    two different operators drawn without replacement (`[Duo]`, needs ≥ 2 operators)."""
    g_device = generator.device if generator is not None else torch.device("cpu")
    if not distinct:
        both = torch.randint(n_ops, (2, batch_size), generator=generator, device=g_device)
        return both[0], both[1]
    if n_ops < 2:
        raise ValueError("two distinct augmentation operators need at least 2 in the set")
    first = torch.randint(n_ops, (batch_size,), generator=generator, device=g_device)
    offset = torch.randint(1, n_ops, (batch_size,), generator=generator, device=g_device)
    return first, (first + offset) % n_ops
