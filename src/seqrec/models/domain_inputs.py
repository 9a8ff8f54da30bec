"""Domain embeddings for joint models on a merged multi-domain sequence (issue 25).

*Scaling New Frontiers* (Guo et al., 2024) trains one model on the merged sequence of a user's
events in several domains; the one input it adds is a learned vector per domain, summed with
each event's item vector before the encoder. `DomainOptions` is that option group, shared by
SASRec, HSTU and Llama; `DomainInputs` is the submodule a backbone owns. With
``model.domain_embedding=false`` (default) it has no parameters, draws no random numbers and
returns its input untouched, so every existing model and result is unchanged weight for weight.

With it on, the item vector of slot t becomes e(item_t) + d(domain_t), where d is a table of
``model.domain_vocab`` rows (row 0 = PAD, kept zero and never read: PAD slots read row 0
whatever their label) initialised N(0, 0.02), the scale of the item tables it joins; the
backbone's own scale (x sqrt(d)), positions and dropout then apply to the sum. Domain codes are
``SeqBatch.domains`` (1..K, data/domains.py), so the model declares ``Needs(domains=True)`` and
data without domains is refused before any step (models/inputs.py). The table counts as
non-embedding parameters in `count_parameters`: like positions it does not grow with the
catalogue.

Where the vocabulary comes from: ``model.domain_vocab`` (default 3: two domains + PAD, both
catalogue entries), checked against the store's domains before training
(`check_domain_config`), as ``model.behavior_vocab`` is against its behaviours. A config field,
not a count read at build time, so a saved run rebuilds its table from its config alone
(evaluation, packages, ``train.init_from``) without the store.

What each item's domain adds: every item lies in exactly one domain, so d(domain_t) is a
function of the item; the table shares one learned offset among a domain's items, a prior that
helps their rarely seen items, not information the item id lacks.

Not done, on purpose: conditioning the output on the *target's* domain (the next event's
domain, ``SeqBatch.target_domains``). Training could read it without leaking the item, but
evaluation scores the ``joint`` protocol (every item of every domain) from the same states as
``own``: conditioning on the held-out target's domain would hand the joint ranking half the
answer. It is legitimate only under "rank within the target's own domain", which would need a
second scoring pass per protocol; left out until a protocol needs it.

Serving: histories of item ids carry no domain codes, so a domain model's ``recommend`` is
refused in one line; evaluation (trainer, ``Run.evaluate``) passes the codes.
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import nn

from seqrec.errors import SeqrecError
from seqrec.models.base import Needs
from seqrec.options import Strict


class DomainOptions(Strict):
    """Domain embeddings (issue 25), for the backbones that own a `DomainInputs`."""

    domain_embedding: bool = False
    """Add a learned vector per domain (``SeqBatch.domains``) to each input item's vector:
    the joint multi-domain model of *Scaling New Frontiers*. Needs data with domains."""
    domain_vocab: int = Field(3, ge=2)
    """Domain codes 0..domain_vocab-1 (0 = PAD); two domains (both ABXI datasets): 3."""

    def domain_needs(self) -> Needs:
        return Needs(domains=self.domain_embedding)


class DomainInputs(nn.Module):
    """The domain table of one backbone; empty (no parameters, no state) when off."""

    def __init__(self, cfg: DomainOptions, hidden: int) -> None:
        """``cfg``: the backbone's options (a config without the group passes DomainOptions(),
        off)."""
        super().__init__()
        self.emb = None
        if cfg.domain_embedding:
            self.emb = nn.Embedding(cfg.domain_vocab, hidden, padding_idx=0)
            self.reset_parameters()

    def reset_parameters(self) -> None:
        """N(0, 0.02), PAD row zero; a no-op when off. Backbones call it after their own init,
        which would otherwise give this small table their item-table scheme."""
        if self.emb is not None:
            nn.init.normal_(self.emb.weight, std=0.02)
            with torch.no_grad():
                self.emb.weight[0].zero_()

    def items_in(
        self,
        item_emb: nn.Embedding,
        items: torch.Tensor,
        domains: torch.Tensor | None,
        vectors: torch.Tensor | None = None,
    ) -> torch.Tensor | None:
        """Input item vectors [B, L, D]: ``vectors`` (or ``item_emb(items)``) plus each slot's
        domain vector; ``vectors`` unchanged (None stays None) when off."""
        if self.emb is None:
            return vectors
        if domains is None or domains.shape != items.shape:
            raise SeqrecError(
                "model.domain_embedding=true needs each input item's domain (batch.domains), "
                "which this batch lacks; evaluate through the trainer or Run.evaluate on data "
                "with domains, or use a model without domain embeddings"
            )
        base = item_emb(items) if vectors is None else vectors
        codes = torch.where(items != 0, domains, torch.zeros_like(domains))
        return base + self.emb(codes)


def check_domain_config(cfg: DomainOptions, domain_names: list[str]) -> None:
    """Refuse, before training, a domain table too small for the data's domain codes."""
    if cfg.domain_embedding and len(domain_names) >= cfg.domain_vocab:
        raise SeqrecError(
            f"the data has {len(domain_names)} domains (codes 1..{len(domain_names)}) but "
            f"model.domain_vocab={cfg.domain_vocab}; set model.domain_vocab="
            f"{len(domain_names) + 1}"
        )
