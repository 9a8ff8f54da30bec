"""SRT, the Scalable Recommendation Transformer (Zivic, Vazquez & Sánchez, SIGIR'24; METHODS.md 7).

Items are not looked up in a per-id table: each item is a bag of feature tokens (genre names,
year buckets, hashed title words, Amazon attributes; ``data/item_tokens.py`` builds them) and
its vector is computed by a trainable feature extractor shared by every catalogue:

    e_i = Adapter([pool(T[tokens of field 1 of i]); ...; pool(T[tokens of field F of i])])

with T one hashed token table of ``srt_buckets`` rows (`[SRT]` embeds each field and pools
within it, ``sum`` by default, then concatenates the fields and maps them to the model width
with a Linear adapter). The same e_i is the input embedding of a history item and the output
vector a user state scores (tied, as `[SRT]`), so the parameter count depends on the number of
fields, the token buckets and the backbone, never on the number of items: weights trained on
ML-1M score ML-100K items after ``set_item_tokens`` swaps the catalogue in.

The backbone is SASRec's (``models/sasrec.py`` blocks, learned positions, final LN), so every
SASRec layout option applies. Which target is trained is the objective's business: full
softmax CE over the whole catalogue (``objective.name=ce``, `[SRT]`'s classification target,
the one the presets use) or a sampled softmax (``ssm``; ``sampling=in_batch`` with logQ is the
closest to `[SRT]`'s popularity-sampled InfoNCE). Both read ``item_weights``.

The catalogue's item tokens are a persistent buffer (``item_tokens``), so a run's weights
file is self-contained for evaluation and serving; ``catalogue_keys`` names the state entries
that belong to the catalogue rather than to the learned function, which ``train.init_from``
leaves at the target run's values when it transfers weights to another dataset.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from seqrec.data.batches import SeqBatch
from seqrec.data.item_tokens import item_tokens
from seqrec.models.base import Needs, SeqModel
from seqrec.models.common import check_width, embed_sequence, init_matrices
from seqrec.models.sasrec import flops_per_interaction as sasrec_flops
from seqrec.models.sasrec_blocks import Block, SASRecBlockConfig
from seqrec.ops.dropout import Dropout


class SRTConfig(SASRecBlockConfig):
    """SASRec's block options plus the feature-based item encoder's (METHODS.md 7;
    data/item_tokens.py makes the tokens)."""

    name: Literal["srt"]
    srt_fields: dict[str, int] = Field(
        default_factory=lambda: {"genres": 6, "title_tokens": 12, "year": 2}
    )
    """SRT: item feature fields (names from data/features/) -> token slots per item. Each
    field is pooled separately, then the fields are concatenated ([SRT]: title and brand).
    Categorical = 1 token, multi-valued = up to ``slots`` values, numeric = the integer value
    and its decade (year 1995 -> year=1995, year~1990)."""
    srt_buckets: int = Field(16384, ge=2)
    """SRT: rows of the shared hashed token table; tokens are hashed by name (field + value),
    so the same genre, year or title word gets the same row in every dataset."""
    srt_feature_dim: int | None = Field(None, ge=1)
    """SRT: token embedding width before the adapter; None = model.hidden."""
    srt_pooling: Literal["sum", "mean"] = "sum"
    """SRT: pooling of a field's tokens ([SRT] ``pooling_mode`` default: sum)."""
    srt_id_residual: bool = False
    """SRT: add a learned per-item-id vector (zero-initialised) to the feature vector; it makes
    the parameter count grow with the catalogue and does not transfer across datasets."""

    def needs(self) -> Needs:
        return Needs(item_features=True)


class SRT(SeqModel):
    """Feature-based item encoder + SASRec backbone; ``forward`` returns hidden states [B, L, D]."""

    config_class = SRTConfig
    transferable_items = True

    @staticmethod
    def flops_per_interaction(cfg: SRTConfig, n_items: int, seq_len: float) -> dict:
        return flops_per_interaction(cfg, n_items, seq_len)

    def __init__(self, cfg: SRTConfig, n_items: int, max_len: int) -> None:
        super().__init__()
        if not cfg.srt_fields:
            raise ValueError("model.srt_fields is empty; srt needs at least one item feature field")
        self.cfg = cfg
        self.n_items = n_items
        self.max_len = max_len
        self.fields = dict(cfg.srt_fields)
        width = cfg.srt_feature_dim or cfg.hidden
        self.register_buffer(
            "item_tokens", torch.zeros(n_items + 1, sum(self.fields.values()), dtype=torch.long)
        )
        self.token_emb = nn.Embedding(cfg.srt_buckets + 1, width, padding_idx=0)
        self.adapter = nn.Linear(len(self.fields) * width, cfg.hidden)
        # the optional per-id residual is named item_emb so count_parameters reports it as the
        # (catalogue-sized) embedding part; without it that part is 0
        self.item_emb = (
            nn.Embedding(n_items + 1, cfg.hidden, padding_idx=0) if cfg.srt_id_residual else None
        )
        self.pos_emb = nn.Embedding(max_len, cfg.hidden)
        self.emb_dropout = Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.layers))
        final = cfg.norm in ("pre", "official")
        self.final_ln = nn.LayerNorm(cfg.hidden, eps=cfg.ln_eps) if final else nn.Identity()
        self.emb_scale = math.sqrt(cfg.hidden) if cfg.scale_embeddings else 1.0
        self._cache: tuple[tuple, torch.Tensor] | None = None
        self.reset_parameters()

    @property
    def catalogue_keys(self) -> tuple[str, ...]:
        """State entries tied to one catalogue (not transferred by ``train.init_from``)."""
        return ("item_tokens",) + (("item_emb.weight",) if self.item_emb is not None else ())

    def reset_parameters(self) -> None:
        init_matrices(self, self.cfg.init)
        with torch.no_grad():
            self.token_emb.weight[0].zero_()
            if self.item_emb is not None:  # a residual that starts at 0: features first
                self.item_emb.weight.zero_()
        self._cache = None

    # ------------------------------------------------------------------ catalogue
    def attach_item_features(self, features) -> dict:
        """The catalogue's items as hashed feature tokens (``model.srt_fields``); returns what
        was hashed (source, coverage, fields, items without any token) for the run log."""
        tokens, report = item_tokens(features, self.fields, self.cfg.srt_buckets)
        self.set_item_tokens(torch.from_numpy(tokens))
        empty = float((tokens[1:] == 0).all(axis=1).mean()) if len(tokens) > 1 else 0.0
        return {
            "source": features.source,
            "coverage": features.coverage,
            "fields": report,
            "items_without_tokens": empty,
        }

    def set_item_tokens(self, tokens: torch.Tensor) -> None:
        """Swap in a catalogue: ``tokens`` [n_items + 1, sum(srt_fields slots)] int64 hashed
        feature tokens (0 = empty slot, row 0 = PAD). The catalogue may differ in size from the
        one the model was built for unless the per-id residual is on (its table is per id)."""
        tokens = torch.as_tensor(tokens, dtype=torch.long)
        want = sum(self.fields.values())
        if tokens.dim() != 2 or tokens.shape[1] != want:
            raise ValueError(
                f"item tokens must be [n_items + 1, {want}] (the model.srt_fields slots), "
                f"got {list(tokens.shape)}"
            )
        if int(tokens.min()) < 0 or int(tokens.max()) > self.cfg.srt_buckets:
            raise ValueError(f"item tokens must lie in 0..{self.cfg.srt_buckets} (srt_buckets)")
        n_items = tokens.shape[0] - 1
        if self.item_emb is not None and n_items != self.n_items:
            raise ValueError(
                f"model.srt_id_residual=true has a table for {self.n_items} items; it cannot "
                f"score a catalogue of {n_items}"
            )
        self.item_tokens = tokens.to(self.item_tokens.device)
        self.n_items = n_items
        self._cache = None

    def encode_items(self, tokens: torch.Tensor) -> torch.Tensor:
        """Item vectors [R, D] from token rows [R, slots]: per-field pooled token embeddings,
        concatenated, through the adapter. ``embedding_bag`` pools without materialising the
        [R, slots, E] gather, so the whole catalogue is one pass even for large ones."""
        pooled, start = [], 0
        for slots in self.fields.values():
            pooled.append(
                F.embedding_bag(
                    tokens[:, start : start + slots],
                    self.token_emb.weight,
                    mode=self.cfg.srt_pooling,
                    padding_idx=0,
                )
            )
            start += slots
        return self.adapter(torch.cat(pooled, dim=-1))

    def _cache_key(self) -> tuple:
        """Changes whenever a parameter or the catalogue changes (optimizer steps bump tensor
        versions; ``.to()`` moves storage), and between grad / no-grad / inference modes."""
        state = [self.item_tokens, *self.parameters()]
        return (
            torch.is_grad_enabled(),
            torch.is_inference_mode_enabled(),
            *((t.data_ptr(), t._version) for t in state),
        )

    def _compute_table(self) -> torch.Tensor:
        table = self.encode_items(self.item_tokens[1:])
        if self.item_emb is not None:
            table = table + self.item_emb.weight[1:]
        return torch.cat([table.new_zeros(1, table.shape[1]), table])

    def item_table(self, fresh: bool) -> torch.Tensor:
        """The catalogue's item vectors [n_items + 1, D] (row 0 = PAD = zeros).

        Computed once per training step: ``forward`` recomputes it (``fresh``, so every forward
        has its own autograd graph) and ``item_weights`` then reuses that tensor, so the loss's
        output layer and the input embeddings share one extractor pass. Without gradients
        (evaluation, serving) the table is reused until a parameter or the catalogue changes.
        """
        key = self._cache_key()
        reuse = not fresh or not torch.is_grad_enabled()
        if reuse and self._cache is not None and self._cache[0] == key:
            return self._cache[1]
        table = self._compute_table()
        self._cache = (key, table)
        return table

    @property
    def item_weights(self) -> torch.Tensor:
        """Output item table [n_items + 1, D] computed from features; row 0 is never predicted."""
        return self.item_table(fresh=False)

    def reference_item_weights(self) -> torch.Tensor:
        """The same table by an explicit per-field gather and masked pooling (the tests' check
        on ``embedding_bag`` and on the cache)."""
        rows, start, pooled = self.item_tokens[1:], 0, []
        for slots in self.fields.values():
            tok = rows[:, start : start + slots]
            emb = self.token_emb.weight[tok] * (tok != 0).unsqueeze(-1)
            total = emb.sum(1)
            if self.cfg.srt_pooling == "mean":
                total = total / (tok != 0).sum(1, keepdim=True).clamp(min=1)
            pooled.append(total)
            start += slots
        table = self.adapter(torch.cat(pooled, dim=-1))
        if self.item_emb is not None:
            table = table + self.item_emb.weight[1:]
        return torch.cat([table.new_zeros(1, table.shape[1]), table])

    # ------------------------------------------------------------------ sequence
    def _embed(self, items: torch.Tensor, fresh: bool) -> tuple[torch.Tensor, torch.Tensor]:
        table = self.item_table(fresh)
        cfg = self.cfg
        return embed_sequence(
            items,
            lambda ids: F.embedding(ids, table),
            self.pos_emb,
            cfg.positions,
            self.emb_scale,
            self.emb_dropout,
        )

    def _output(self, h: torch.Tensor) -> torch.Tensor:
        return self.final_ln(h)

    def forward(self, batch: SeqBatch) -> torch.Tensor:
        """Hidden states [B, L, D] of right-padded rows (causal SDPA kernel, as SASRec)."""
        items = check_width(batch.items, self.max_len)
        x, _ = self._embed(items, fresh=True)
        for block in self.blocks:
            x = block(x)
        return self._output(x)

    def last_hidden(self, batch: SeqBatch) -> torch.Tensor:
        """User representation [B, D]: the state at each row's most recent item, with the last
        block evaluated at that position only (SASRec's inference fast path)."""
        items = check_width(batch.items, self.max_len)
        x, lengths = self._embed(items, fresh=False)
        lengths = lengths.clamp(min=1)
        for block in self.blocks[:-1]:
            x = block(x)
        return self._output(self.blocks[-1].forward_last(x, lengths))


def flops_per_interaction(cfg: SRTConfig, n_items: int, seq_len: float) -> dict[str, float]:
    """SASRec's per-position count (the output layer scores every item), and separately the
    feature extractor's cost per training step: it encodes the whole catalogue once per step
    (pooling + adapter), which a step shares among all its scored positions."""
    base = sasrec_flops(cfg, n_items, seq_len)
    width = cfg.srt_feature_dim or cfg.hidden
    slots = sum(cfg.srt_fields.values())
    per_item = slots * width + 2 * len(cfg.srt_fields) * width * cfg.hidden
    extractor = float(per_item * n_items)
    return {
        "forward": base["forward"],
        "train": base["train"],
        "extractor_per_step": extractor,
    }
