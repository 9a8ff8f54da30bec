"""Metrics per target domain on multi-domain data (docs/CROSS_DOMAIN.md).

Rows are split by the domain of their target; nothing else about them changes (leave-one-out
on the merged sequence: the last event is the test, the one before it validation, whichever
domain each is in). Each domain's rows are scored under up to three protocols, all from the
one scoring pass of `eval.ranking.rank_rows`, and stated in the result's protocol:

* ``own``: the target among its own domain's items (seen items masked as ``eval.mask_seen``
  says): what a recommender serving one catalogue is asked;
* ``joint``: the target among every item of the joint catalogue (the headline ranks, counted
  per domain): a miss-ranked item from the other domain counts against the model;
* ``sampled``: the published protocol of ABXI (WWW'25) and MERIT: the target among
  ``eval.domain_negatives`` (999) items drawn uniformly without replacement from its domain's
  items the user has not seen. Sampled metrics overstate full-ranking ones and rank models
  differently (Krichene & Rendle 2020): labelled so, never mixed with the others.

How the sampled rank is drawn: of ``n`` negatives drawn without replacement from the ``N``
candidates of the target's domain, ``H`` of which outscore the target, the number that outscore
it is Hypergeometric(N, H, n), so rank = 1 + that draw. ``H`` and ``N`` are the own-domain
protocol's counts, so the published protocol costs one number per row instead of a
[rows, catalogue] draw (the same distribution as drawing the items; tests/eval checks it).

Keys: ``domain:<name>/<protocol>/<metric>``, e.g. ``domain:food/own/NDCG@10``. The headline
metrics (joint catalogue, every row) are untouched, as is everything when the data has no
domains. ``eval.repeat_targets`` applies to every protocol alike.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from seqrec.data.batches import flat_slices
from seqrec.errors import SeqrecError
from seqrec.eval.metrics import per_user_metrics, summarize
from seqrec.options import EvalConfig


@dataclass(frozen=True)
class DomainLabels:
    """What evaluation knows of a multi-domain store: each item's domain code (0 = PAD) and
    the codes' names; ``events`` (per-event codes aligned with the flat item array) only for
    a model that reads domains, whose history batches then carry them."""

    items: np.ndarray
    names: tuple[str, ...]
    events: np.ndarray | None = None


def domain_labels(store, events: bool = False) -> DomainLabels | None:
    """``store``'s labels, None for single-domain data; ``events`` attaches the per-event
    codes (for a model that reads ``SeqBatch.domains``)."""
    if not getattr(store, "has_domains", False):
        return None
    return DomainLabels(
        np.asarray(store.item_domains), tuple(store.domain_names), store.domains if events else None
    )


def _rule(out: torch.Tensor, repeat: torch.Tensor, last: torch.Tensor, rule: str) -> torch.Tensor:
    """``eval.repeat_targets`` on one protocol's ranks (as `rank_rows` applies it)."""
    if rule == "miss":
        return torch.where(repeat, last, out)
    if rule == "drop":
        return torch.where(repeat, torch.zeros_like(out), out)
    return out


@dataclass
class DomainRanks:
    """The own-domain and sampled ranks of every row, filled chunk by chunk by `rank_rows`
    from the scores and candidate mask it builds anyway (0 = a row the repeat rule drops)."""

    labels: DomainLabels
    cfg: EvalConfig
    target_domains: np.ndarray
    own: np.ndarray | None
    sampled: np.ndarray | None
    rng: np.random.Generator | None = None
    onehot: torch.Tensor | None = field(default=None, repr=False)

    def add(
        self,
        pos: np.ndarray,
        scores: torch.Tensor,
        allowed: torch.Tensor,
        target_score: torch.Tensor,
        repeat: torch.Tensor,
    ) -> None:
        """Rank rows ``pos`` within their targets' domains; ``allowed`` excludes the target."""
        if self.onehot is None:  # [V + 1, K + 1]: counts per domain are one matmul
            codes = torch.as_tensor(self.labels.items, dtype=torch.int64, device=scores.device)
            self.onehot = torch.nn.functional.one_hot(codes, len(self.labels.names) + 1).float()
        tdom = torch.as_tensor(self.target_domains[pos], dtype=torch.int64, device=scores.device)
        tdom = tdom[:, None]
        higher = ((scores > target_score[:, None]) & allowed).float() @ self.onehot
        higher = higher.gather(1, tdom)[:, 0].long()  # own-domain candidates above the target
        rule = self.cfg.repeat_targets
        if self.own is not None:
            size = self.onehot.sum(0).long()[tdom[:, 0]]
            self.own[pos] = _rule(1 + higher, repeat, size + 1, rule).cpu().numpy()
        if self.sampled is not None:
            n = int(self.cfg.domain_negatives or 0)
            pool = (allowed.float() @ self.onehot).gather(1, tdom)[:, 0].long().cpu().numpy()
            good = higher.cpu().numpy()
            if (pool < n).any():  # check_domain_negatives refuses this before any scoring
                raise SeqrecError(
                    f"eval.domain_negatives={n} exceeds the candidates a row has left in its "
                    "domain; set eval.domain_negatives lower, or to null"
                )
            assert self.rng is not None
            out = torch.from_numpy(1 + self.rng.hypergeometric(good, pool - good, n))
            last = torch.full_like(out, n + 2)
            self.sampled[pos] = _rule(out, repeat.cpu(), last, rule).numpy()

    def merged(
        self, gather: Callable[[np.ndarray], np.ndarray], targets: np.ndarray
    ) -> DomainRanks:
        """The collector over every row of a sharded evaluation: each process's ranks joined
        by ``gather`` (its all-gather of per-row arrays), ``targets`` those of all the rows."""
        return replace(
            self,
            target_domains=self.labels.items[np.asarray(targets, dtype=np.int64)],
            own=None if self.own is None else gather(self.own),
            sampled=None if self.sampled is None else gather(self.sampled),
        )


def check_domain_negatives(
    labels: DomainLabels,
    n: int,
    items: np.ndarray,
    starts: np.ndarray,
    ends: np.ndarray,
    targets: np.ndarray,
    max_len: int,
    mask_seen: bool | str,
) -> None:
    """Refuse, in one line, ``n`` per-domain negatives that some row cannot draw without
    replacement from its domain's items minus its target and masked history."""
    pool = np.bincount(labels.items[1:], minlength=len(labels.names) + 1)
    tdom = labels.items[targets]
    seen_from = np.maximum(starts, ends - max_len) if mask_seen == "window" else starts
    held = (ends - seen_from) if mask_seen else np.zeros_like(ends)
    risky = np.flatnonzero(held + 1 > pool[tdom] - n)  # the others have enough left for sure
    if not len(risky):
        return
    rows, flat = flat_slices(seen_from[risky], ends[risky])
    hist = np.asarray(items)[flat]
    width = len(labels.items)
    same = labels.items[hist] == tdom[risky][rows]
    keys = np.concatenate(
        [rows[same] * width + hist[same], np.arange(len(risky)) * width + targets[risky]]
    )
    left = pool[tdom[risky]] - np.bincount(np.unique(keys) // width, minlength=len(risky))
    if (left < n).any():
        worst = int(np.argmin(left))
        name = labels.names[int(tdom[risky][worst]) - 1]
        most = int(left.min())
        fix = f"to at most {most}, or to null" if most >= 1 else "to null"
        raise SeqrecError(
            f"eval.domain_negatives={n} cannot be drawn without replacement: a row of domain "
            f"'{name}' has only {int(left[worst])} unseen items of it besides its target; set "
            f"eval.domain_negatives {fix}"
        )


def start_domain_ranks(
    labels: DomainLabels | None,
    cfg: EvalConfig,
    items: np.ndarray,
    starts: np.ndarray,
    ends: np.ndarray,
    targets: np.ndarray,
    max_len: int,
    seed: int = 0,
) -> DomainRanks | None:
    """The collector `rank_rows` fills for these rows, or None (no domains, or
    ``eval.per_domain=false``). The sampled draws use their own generator (from ``seed``), so
    the other protocols' numbers (sampled headline metrics included) never depend on them."""
    if labels is None or not cfg.per_domain:
        return None
    n = cfg.domain_negatives
    if n is not None and len(targets):
        check_domain_negatives(labels, n, items, starts, ends, targets, max_len, cfg.mask_seen)
    own = cfg.domain_candidates in ("own", "both")
    rows = len(targets)
    rng = None if n is None else np.random.default_rng([seed, 0xD0])
    return DomainRanks(
        labels,
        cfg,
        labels.items[np.asarray(targets, dtype=np.int64)],
        np.zeros(rows, dtype=np.int64) if own else None,
        np.zeros(rows, dtype=np.int64) if n is not None else None,
        rng,
    )


def _seen(mask_seen: bool | str) -> str:
    return {True: "seen items masked", False: "seen items kept"}.get(
        mask_seen, "seen items in the model's window masked"
    )


def domain_protocol(cfg: EvalConfig, names: list[str], rows: dict[str, int]) -> dict:
    """The per-domain protocols as every result states them."""
    seen = _seen(cfg.mask_seen)
    out: dict = {"by": "the target's domain", "rows": rows, "protocols": {}}
    if cfg.domain_candidates in ("own", "both"):
        out["protocols"]["own"] = f"full ranking among the target's domain's items, {seen}"
    if cfg.domain_candidates in ("joint", "both"):
        out["protocols"]["joint"] = f"full ranking over the joint catalogue, {seen}"
    if cfg.domain_negatives is not None:
        out["negatives"] = cfg.domain_negatives
        out["protocols"]["sampled"] = (
            f"sampled ({cfg.domain_negatives} uniform negatives from the target's domain, "
            "without replacement, the user's items of it excluded)"
        )
    out["names"] = names
    return out


def domain_metrics(
    ranks: np.ndarray, collect: DomainRanks, cfg: EvalConfig
) -> tuple[dict[str, float], dict]:
    """(``domain:<name>/<protocol>/<metric>`` values, the protocol block) from the joint
    ``ranks`` of every row (0: dropped) and the collected own / sampled ranks."""
    by_protocol = {
        "own": collect.own,
        "joint": ranks if cfg.domain_candidates in ("joint", "both") else None,
        "sampled": collect.sampled,
    }
    tdom = collect.target_domains
    metrics: dict[str, float] = {}
    rows: dict[str, int] = {}
    for code, name in enumerate(collect.labels.names, start=1):
        mine = tdom == code
        if not mine.any():
            continue
        rows[name] = int(mine.sum())
        for protocol, values in by_protocol.items():
            if values is None:
                continue
            kept = values[mine]
            summary = summarize(per_user_metrics(kept[kept > 0], cfg.ks))
            metrics.update({f"domain:{name}/{protocol}/{k}": v for k, v in summary.items()})
    return metrics, domain_protocol(cfg, list(collect.labels.names), rows)
