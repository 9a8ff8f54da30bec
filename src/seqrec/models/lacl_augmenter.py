"""LACLRec's learnable sequence augmenter: keep / delete / insert per position, trained to restore.

METHODS.md 5.2-5.3 (read from `[TCLA]`, the authors' SIGIR'25 follow-up; LACLRec has no code).

Restore training (self-supervised). A raw row is corrupted at random (`corrupt`):

* every real item except the most recent one is deleted with probability ``p_delete``; a
  deleted run is at most ``max_insert`` long (a longer run is cut by keeping every
  (max_insert + 1)-th item of it), so the item after a run can always restore it;
* before every real item a random catalogue item ("noise") is inserted with probability
  ``p_noise``.

The labels on the corrupted row undo that: noise -> DELETE; the surviving item right after a
deleted run -> INSERT with target list = the run in reverse order (the item immediately before
it first), then EOS, then PAD; every other item -> KEEP. `apply_edits` (the same function the
augmenter uses at inference) applied to (corrupted row, labels, target lists) gives back the raw
row exactly; the tests check that on many random rows.

`[TCLA]` draws the same three outcomes by walking the row (keep <= 0.4 < delete-run <= 0.85 <
noise); a deletion run continues while fresh draws stay in the delete band, i.e. run lengths are
geometric with p = 0.45, which is what independent per-item Bernoulli(0.45) deletions give too.
Differences, chosen to make the corruption one set of tensor ops: at most one noise item before
each real item (`[TCLA]` may emit several in a row), and no cap on the corrupted length (it is
at most twice the raw length, so the augmenter's encoder gets 2 * max_len positions).

Network. The augmenter owns its encoder (a SASRec of the recommender's shape with 2 * max_len
positions and one extra item row, EOS = n_items + 1). `[TCLA]` shares the encoder with the
recommender, which lets the recommender's training silently change a frozen augmenter (the
"shared encoder drifts" pitfall, METHODS.md 5.6); a separate encoder removes that. By default
it attends in both directions (``lacl_augmenter_bidirectional``): the augmenter edits a whole
sequence, and a causal one cannot tell a noise item at t (DELETE) from a gap before t (INSERT)
without seeing t + 1. `[TCLA]`'s encoder is causal; ``false`` reproduces that (which of the
two gives the better recommender is not measured).
On top of it:

* ``op_head``: Linear(d -> 3) logits for {KEEP, DELETE, INSERT} at every position;
* the reverse generator: causal blocks over [encoder state at t; embeddings of the items
  generated so far] + step positions, scored against the augmenter's whole item table (PAD
  excluded, EOS included): full softmax over the catalogue, in row chunks. The first generated
  item is the one immediately before t, so a whole sub-sequence is generated backwards and
  then inserted in chronological order.

Inference (`augment`, no gradients, eval mode): operations are *sampled* from
softmax(logits / T) by Gumbel-max (`[TCLA]` multiplies raw logits by U(0, 1) noise, which is not
a calibrated sampler, METHODS.md 5.6); each INSERT position greedily decodes up to
``max_insert`` items, all insertion points of the batch at once, stopping at EOS; the edits
are applied with tensor ops and the most recent ``out_len`` items kept. No de-duplication
(`[TCLA]`'s ``set()`` destroys temporal order). A row whose every item was deleted falls back to
the raw row.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from seqrec.data.batches import SeqBatch
from seqrec.models.sasrec import SASRec
from seqrec.models.sasrec_blocks import Block, SASRecBlockConfig
from seqrec.ops.cross_entropy import chunked_cross_entropy
from seqrec.ops.dropout import Dropout

KEEP, DELETE, INSERT = 0, 1, 2


@dataclass(frozen=True)
class Corruption:
    """A corrupted right-padded batch with the edits that restore it."""

    items: torch.Tensor  # [B, W] corrupted rows
    ops: torch.Tensor  # [B, W] KEEP / DELETE / INSERT (KEEP on PAD)
    inserts: torch.Tensor  # [B, W, K + 1] run to insert before each slot, newest first, EOS, PAD


def _as_batch(items: torch.Tensor) -> SeqBatch:
    lengths = (items != 0).sum(1)
    return SeqBatch(items=items, targets=items, lengths=lengths, users=lengths)


def _uniform(shape: tuple[int, ...], generator: torch.Generator | None, device) -> torch.Tensor:
    """Uniforms drawn on the generator's device (the checkpointed CPU RNG by default), so a
    resumed run repeats the same corruptions and samples."""
    g_device = generator.device if generator is not None else torch.device("cpu")
    return torch.rand(shape, generator=generator, device=g_device).to(device)


def _random_items(
    shape: tuple[int, ...], n_items: int, generator: torch.Generator | None, device
) -> torch.Tensor:
    g_device = generator.device if generator is not None else torch.device("cpu")
    return torch.randint(1, n_items + 1, shape, generator=generator, device=g_device).to(device)


def corrupt_with(
    items: torch.Tensor,
    delete: torch.Tensor,
    noise_before: torch.Tensor,
    noise_items: torch.Tensor,
    max_insert: int,
    eos: int,
) -> Corruption:
    """Corrupt ``items`` [B, L] with explicit decisions (what the tests compare with a loop).

    ``delete`` / ``noise_before`` are boolean [B, L] wishes; the rules of the module doc (last
    item kept, runs <= max_insert, PAD untouched) are enforced here. ``noise_items`` [B, L] is
    the item inserted before each slot where ``noise_before``.
    """
    b, width = items.shape
    dev = items.device
    real = items != 0
    n = real.sum(1)
    slots = torch.arange(width, device=dev)[None, :]
    delete = delete & real & (slots < (n - 1)[:, None])
    # cap runs: every (max_insert + 1)-th item of a longer run is kept, splitting it
    last_kept = torch.where(~delete, slots, -1).cummax(1).values
    delete = delete & ((slots - last_kept - 1) % (max_insert + 1) != max_insert)
    kept = real & ~delete
    last_kept = torch.where(~delete, slots, -1).cummax(1).values
    prev_kept = torch.cat([torch.full_like(last_kept[:, :1], -1), last_kept[:, :-1]], 1)
    run = torch.where(kept, slots - prev_kept - 1, 0)  # deleted items just before a kept slot
    noise = noise_before & real

    # output slots: noise (if any) first, then the raw item (if kept)
    count = noise.long() + kept.long()
    start = count.cumsum(1) - count
    total = count.sum(1)
    out_w = max(int(total.max()) if b else 0, 1)
    dump = 2 * width
    item_pos = torch.where(kept, start + noise.long(), dump)
    noise_pos = torch.where(noise, start, dump)
    out = items.new_zeros(b, dump + 1)
    out.scatter_(1, item_pos, items)
    out.scatter_(1, noise_pos, torch.where(noise, noise_items, 0))
    ops = items.new_zeros(b, dump + 1)
    ops.scatter_(1, item_pos, torch.where(run > 0, INSERT, KEEP))
    ops.scatter_(1, noise_pos, torch.where(noise, DELETE, KEEP))

    # target lists: items[t-1], ..., items[t-run], EOS, PAD...
    k = torch.arange(max_insert + 1, device=dev)[None, None, :]
    src = (slots[..., None] - 1 - k).clamp(min=0).expand(b, width, max_insert + 1)
    runs = run[..., None]
    lists = torch.where(k < runs, items.gather(1, src.reshape(b, -1)).view_as(src), 0)
    lists = torch.where((k == runs) & (runs > 0), eos, lists)
    inserts = items.new_zeros(b, dump + 1, max_insert + 1)
    inserts.scatter_(1, item_pos[..., None].expand_as(lists), lists)
    inserts[:, dump] = 0
    return Corruption(out[:, :out_w], ops[:, :out_w], inserts[:, :out_w])


def corrupt(
    items: torch.Tensor,
    n_items: int,
    max_insert: int,
    p_delete: float,
    p_noise: float,
    generator: torch.Generator | None = None,
) -> Corruption:
    """Random corruption of a right-padded batch (module doc); EOS = n_items + 1.

    Noise items are uniform over the catalogue; one that already occurs in the row is redrawn
    once (`[TCLA]` draws an item not in the sequence; a second collision is left, it is rare).
    """
    shape, dev = items.shape, items.device
    delete = _uniform(shape, generator, dev) < p_delete
    noise = _uniform(shape, generator, dev) < p_noise
    new = _random_items(shape, n_items, generator, dev)
    again = _random_items(shape, n_items, generator, dev)
    clash = (new[:, :, None] == items[:, None, :]).any(-1)
    new = torch.where(clash, again, new)
    return corrupt_with(items, delete, noise, new, max_insert, n_items + 1)


def apply_edits(
    items: torch.Tensor, ops: torch.Tensor, inserts: torch.Tensor, n_items: int, out_len: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply per-slot KEEP / DELETE / INSERT to right-padded ``items`` [B, W].

    ``inserts`` [B, W, K] holds, for each slot, the items to insert before it, newest first;
    the run ends at the first token that is not a catalogue item (PAD, EOS, mask). Output slot
    of each piece = exclusive cumsum of the pieces before it; inserted items and kept items
    are scattered there in one pass each. Returns (the most recent ``out_len`` items of each
    edited row, right-padded [B, <= out_len]; the edited lengths before truncation).
    """
    b, width = items.shape
    k_max = inserts.shape[-1]
    real = items != 0
    is_item = (inserts >= 1) & (inserts <= n_items)
    ins_len = is_item.long().cumprod(-1).sum(-1)
    ins_len = torch.where(real & (ops == INSERT), ins_len, 0)
    keep = real & (ops != DELETE)
    count = ins_len + keep.long()
    start = count.cumsum(1) - count
    total = count.sum(1)
    dump = width * (k_max + 1)
    scratch = items.new_zeros(b, dump + 1)
    k = torch.arange(k_max, device=items.device)[None, None, :]
    ins_pos = torch.where(k < ins_len[..., None], (start + ins_len)[..., None] - 1 - k, dump)
    scratch.scatter_(
        1, ins_pos.reshape(b, -1), torch.where(k < ins_len[..., None], inserts, 0).reshape(b, -1)
    )
    scratch.scatter_(1, torch.where(keep, start + ins_len, dump), torch.where(keep, items, 0))
    drop = (total - out_len).clamp(min=0)
    out_w = max(min(int(total.max()) if b else 0, out_len), 1)
    slots = torch.arange(out_w, device=items.device)[None, :]
    out = scratch.gather(1, (drop[:, None] + slots).clamp(max=dump))
    return torch.where(slots < (total - drop)[:, None], out, 0), total


class LearnableAugmenter(nn.Module):
    """Operation head + reverse generator over the augmenter's own SASRec encoder."""

    def __init__(self, cfg: SASRecBlockConfig, n_items: int, max_len: int) -> None:
        super().__init__()
        self.n_items, self.eos = n_items, n_items + 1
        self.max_len = max_len
        self.max_insert = cfg.lacl_max_insert
        self.chunk = cfg.lacl_chunk_size
        self.bidirectional = cfg.lacl_augmenter_bidirectional
        self.encoder = SASRec(cfg, n_items + 1, 2 * max_len)  # row n_items + 1 = EOS
        self.op_head = nn.Linear(cfg.hidden, 3)
        gen_cfg = cfg.model_copy(update={"layers": cfg.lacl_generator_layers})
        self.gen_pos = nn.Embedding(self.max_insert + 1, cfg.hidden)
        self.gen_blocks = nn.ModuleList(Block(gen_cfg) for _ in range(gen_cfg.layers))
        self.gen_drop = Dropout(cfg.dropout)
        self.gen_ln = nn.LayerNorm(cfg.hidden) if cfg.norm != "post" else nn.Identity()
        for p in (self.op_head.weight, self.gen_pos.weight):
            nn.init.xavier_normal_(p)
        nn.init.zeros_(self.op_head.bias)

    @property
    def table(self) -> torch.Tensor:
        """Items 0..n_items + EOS: what the reverse generator scores (PAD never)."""
        return self.encoder.item_emb.weight

    def states(self, items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Encoder states [B, W, D] and operation logits [B, W, 3].

        Bidirectional (default): every slot attends to all real slots of its row; causal: the
        SASRec kernel path, as `[TCLA]`'s shared encoder.
        """
        if not self.bidirectional:
            h = self.encoder(_as_batch(items))
            return h, self.op_head(h)
        real = items != 0
        diag = torch.eye(items.shape[1], dtype=torch.bool, device=items.device)
        mask = real[:, None, None, :] | diag  # [B, 1, W, W]; PAD queries see themselves
        x, _ = self.encoder.embed(items)
        for block in self.encoder.blocks:
            x = block(x, mask)
        h = self.encoder.final_ln(x)
        return h, self.op_head(h)

    def generator_states(self, context: torch.Tensor, prev: torch.Tensor) -> torch.Tensor:
        """[N, T + 1, D] next-item states for [context; items generated so far] (causal)."""
        emb = self.encoder.item_emb(prev) * self.encoder.emb_scale
        x = torch.cat([context[:, None], emb], 1)
        x = x + self.gen_pos.weight[: x.shape[1]]
        x = self.gen_drop(x)
        for block in self.gen_blocks:
            x = block(x)
        return self.gen_ln(x)

    def restore_loss(self, c: Corruption) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """L1 (operation CE over real slots) + L2 (teacher-forced generator CE over the full
        catalogue, at INSERT slots, on every non-PAD target token including EOS)."""
        h, logits = self.states(c.items)
        real = c.items != 0
        l_ops = F.cross_entropy(logits[real], c.ops[real])
        ins = real & (c.ops == INSERT)
        tgt = c.inserts[ins]  # [N, K + 1]
        if tgt.shape[0]:
            out = self.generator_states(h[ins], tgt[:, :-1])
            valid = tgt != 0
            l_gen = chunked_cross_entropy(out[valid], self.table, tgt[valid], self.chunk)
        else:
            l_gen = h.sum() * 0.0
        acc = (logits[real].argmax(-1) == c.ops[real]).float().mean()
        stats = {"op_ce": l_ops.detach(), "gen_ce": l_gen.detach(), "op_acc": acc}
        return l_ops + l_gen, stats

    def _argmax_items(self, states: torch.Tensor) -> torch.Tensor:
        """Best item (or EOS) for each state [N, D]: full catalogue, scored in row chunks."""
        out = torch.empty(states.shape[0], dtype=torch.long, device=states.device)
        table = self.table
        for s in range(0, states.shape[0], self.chunk):
            scores = states[s : s + self.chunk] @ table.T
            scores[:, 0] = float("-inf")
            out[s : s + self.chunk] = scores.argmax(1)
        return out

    @torch.no_grad()
    def augment(
        self,
        items: torch.Tensor,
        out_len: int,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The learned view of right-padded ``items``: sampled edits applied (module doc)."""
        was_training = self.training
        self.eval()
        try:
            h, logits = self.states(items)
            real = items != 0
            gumbel = -torch.log(
                -torch.log(_uniform(logits.shape, generator, items.device).clamp_(1e-20, 1 - 1e-7))
            )
            ops = (logits / temperature + gumbel).argmax(-1)
            ops = torch.where(real, ops, KEEP)
            ins = ops == INSERT
            ctx = h[ins]
            tokens = items.new_zeros(ctx.shape[0], self.max_insert)
            alive = torch.ones(ctx.shape[0], dtype=torch.bool, device=items.device)
            for k in range(self.max_insert):  # <= max_insert steps, all insertion points at once
                if not ctx.shape[0]:
                    break
                nxt = self._argmax_items(self.generator_states(ctx, tokens[:, :k])[:, -1])
                tokens[:, k] = torch.where(alive, nxt, 0)
                alive &= nxt != self.eos
            inserts = items.new_zeros(*items.shape, self.max_insert)
            inserts[ins] = tokens
            out, total = apply_edits(items, ops, inserts, self.n_items, out_len)
            empty = total == 0
            if empty.any():  # everything deleted: fall back to the raw row
                raw = apply_edits(items, torch.zeros_like(ops), inserts, self.n_items, out_len)[0]
                width = max(out.shape[1], raw.shape[1])
                out = F.pad(out, (0, width - out.shape[1]))
                out[empty] = F.pad(raw, (0, width - raw.shape[1]))[empty]
            n_real = real.sum().clamp(min=1)
            stats = {  # tensors: reading them would stall a GPU step, so only loggers do
                "keep": ((ops == KEEP) & real).sum() / n_real,
                "delete": ((ops == DELETE) & real).sum() / n_real,
                "insert": ins.sum() / n_real,
                "inserted_items": ((tokens >= 1) & (tokens <= self.n_items)).sum() / n_real,
            }
            return out, stats
        finally:
            self.train(was_training)
