"""Full-ranking evaluation: every user's held-out item ranked against the whole catalogue.

Protocol (written into every result):
* scores = user representation . item table, one [chunk, V] block at a time;
* PAD is never a candidate; items in the user's *whole* history (not only the model's window)
  are removed from the candidates by default (``mask_seen``; ``"window"`` removes only the last
  ``max_len``, as generative-recommenders does), except the target itself, which is always ranked
  by its own score (so a re-consumed item is not an automatic miss). ``eval.repeat_targets``
  makes that an explicit choice: ``rank`` (default, as above), ``miss`` (a target the user has
  already seen ranks last, as code that zeroes every training item's score before ranking
  does: ICLRec / BSARec-style trainers) or ``drop`` (such rows leave the metrics); the protocol
  records the rule and ``repeat_share``, the share of rows it concerns;
* rank = 1 + number of candidates scored strictly higher than the target (ties go to the
  target; with float scores from a trained model ties are vanishingly rare);
* sampled metrics (only when asked) rank the target among ``n_negatives`` distinct items drawn
  without replacement outside the masked history and the target, uniformly or by training
  popularity, and are labelled "sampled". More negatives than a user has items left to draw
  from is refused before any scoring: with replacement the same item could be counted twice,
  and "sampled" metrics then fell below full-ranking ones.

On multi-domain data (``domains``) the same pass also ranks each row within its target's
domain and against negatives of that domain, reported per domain (eval/domains.py).

Users are processed in order of history length so that each chunk is only as wide as its
longest history (right padding makes this exact, see data.batches).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from seqrec.data.batches import flat_slices, history_batch
from seqrec.errors import SeqrecError
from seqrec.eval.domains import DomainLabels, DomainRanks, domain_metrics, start_domain_ranks
from seqrec.eval.metrics import per_user_metrics, summarize
from seqrec.options import EvalConfig


@dataclass
class EvalResult:
    metrics: dict[str, float]
    ranks: np.ndarray
    users: np.ndarray
    protocol: dict
    seconds: float
    per_user: dict[str, np.ndarray] = field(repr=False, default_factory=dict)
    domain_ranks: DomainRanks | None = field(repr=False, default=None)
    """Multi-domain data: every row's own-domain and sampled ranks and its target's domain."""

    def to_json(self) -> dict:
        return {
            "metrics": self.metrics,
            "n_users": len(self.users),
            "seconds": self.seconds,
            "protocol": self.protocol,
        }


def score_chunks(
    model: nn.Module,
    items: np.ndarray,
    starts: np.ndarray,
    ends: np.ndarray,
    max_len: int,
    chunk: int,
    device: torch.device,
    mask_seen: bool | str = True,
    timestamps: np.ndarray | None = None,
    behaviors: np.ndarray | None = None,
    request_times: np.ndarray | None = None,
    domains: np.ndarray | None = None,
    target_domains: np.ndarray | None = None,
) -> Iterator[tuple[np.ndarray, torch.Tensor, torch.Tensor]]:
    """Yield (row positions, raw scores [b, V+1], candidate mask [b, V+1]) in length order.

    Shared by evaluation and by the recommender, so offline metrics and served top-K come from
    the same scoring code. ``items`` is the flat item array the [start, end) slices point into;
    ``domains`` (aligned with it) and ``target_domains`` (per row) reach the history batches.
    """
    order = np.argsort(ends - starts, kind="stable")
    weight = model.item_weights
    for s in range(0, len(order), chunk):
        pos = order[s : s + chunk]
        st, en = starts[pos], ends[pos]
        req = None if request_times is None else request_times[pos]
        tdom = None if target_domains is None else target_domains[pos]
        batch = history_batch(
            items, timestamps, pos, st, en, np.zeros(len(pos)), max_len, behaviors, req,
            domains, tdom,
        )  # fmt: skip
        hidden = model.last_hidden(batch.to(device))
        scores = (hidden @ weight.T).float()
        allowed = torch.ones_like(scores, dtype=torch.bool)
        allowed[:, 0] = False
        if mask_seen:
            seen_from = np.maximum(st, en - max_len) if mask_seen == "window" else st
            rows, flat = flat_slices(seen_from, en)
            allowed[
                torch.from_numpy(rows).to(device),
                torch.from_numpy(items[flat].astype(np.int64)).to(device),
            ] = False
        yield pos, scores, allowed


def sample_negatives(
    allowed: torch.Tensor, n: int, probs: torch.Tensor | None, gen: torch.Generator
) -> torch.Tensor:
    """[b, n] distinct items per row, drawn without replacement among the allowed ones
    (uniformly, or in proportion to ``probs``): a negative counted twice would push the target
    down twice, which no real candidate list does. Every row needs at least ``n`` allowed items
    of positive weight (`check_negatives` says so before any scoring)."""
    weights = allowed.float()
    if probs is not None:
        weights = weights * probs[None, :]
    return torch.multinomial(weights, n, replacement=False, generator=gen)


def check_negatives(
    n: int,
    n_items: int,
    items: np.ndarray,
    starts: np.ndarray,
    ends: np.ndarray,
    targets: np.ndarray,
    max_len: int,
    mask_seen: bool | str,
    popularity: np.ndarray | None = None,
) -> None:
    """Refuse, in one line, ``n`` negatives that some row cannot draw without replacement.

    A row draws from the catalogue minus PAD, its target and (with ``mask_seen``) the items of
    its history the evaluator masks; popularity sampling also skips items never seen in
    training. Exact counts are computed only for rows whose history is long enough to fail.
    """
    where = "--negatives / eval.n_negatives"
    if n < 1:
        raise SeqrecError(f"{where} must be at least 1, got {n}")
    drawable = np.ones(n_items + 1, dtype=bool)
    drawable[0] = False
    if popularity is not None:
        drawable &= np.asarray(popularity)[: n_items + 1] > 0
    pool = int(drawable.sum())
    if n > pool - 1:
        raise SeqrecError(
            f"{n} negatives cannot be drawn without replacement from {pool} catalogue items "
            f"({pool - 1} besides the target); pass {where} of at most {pool - 1}, or rank "
            "against the full catalogue (no --sampled)"
        )
    if not mask_seen or not len(ends):
        return
    seen_from = np.maximum(starts, ends - max_len) if mask_seen == "window" else starts
    risky = np.flatnonzero((ends - seen_from) + 1 > pool - n)  # the others have enough left
    if not len(risky):
        return
    rows, flat = flat_slices(seen_from[risky], ends[risky])
    width = n_items + 1
    keys = np.concatenate(
        [rows * width + items[flat], np.arange(len(risky)) * width + targets[risky]]
    )
    keys = np.unique(keys.astype(np.int64))
    keys = keys[drawable[keys % width]]
    left = pool - np.bincount(keys // width, minlength=len(risky))
    if (left < n).any():
        worst = int(np.argmin(left))
        raise SeqrecError(
            f"{n} negatives cannot be drawn without replacement: the user in row "
            f"{int(risky[worst])} has only {int(left[worst])} items left besides its seen "
            f"items and its target (users with fewer than {n}: {int((left < n).sum())}); pass "
            f"{where} of at most {int(left.min())}, keep seen items (--keep-seen), or rank "
            "against the full catalogue (no --sampled)"
        )


@torch.inference_mode()
def evaluate(
    model: nn.Module,
    items: np.ndarray,
    starts: np.ndarray,
    ends: np.ndarray,
    targets: np.ndarray,
    max_len: int,
    cfg: EvalConfig,
    device: torch.device | str = "cpu",
    popularity: np.ndarray | None = None,
    split_protocol: dict | None = None,
    seed: int = 0,
    timestamps: np.ndarray | None = None,
    behaviors: np.ndarray | None = None,
    domains: DomainLabels | None = None,
) -> EvalResult:
    """Rank each row's ``targets`` item given the history items[start:end] (and, for a model
    that reads them, the history's ``timestamps`` / ``behaviors``, aligned with ``items``).

    Where every target is the event right after its history (items[end], true of every split
    view) and timestamps are given, that event's time is the row's request time (a model with
    ``time_query=next`` reads it, as at serving time it would read the clock). ``domains``
    (multi-domain data) adds the per-domain metrics of eval/domains.py."""
    t0 = time.perf_counter()
    collect = start_domain_ranks(domains, cfg, items, starts, ends, targets, max_len, seed)
    ranks, repeats = rank_rows(model, items, starts, ends, targets, max_len, cfg, device,
                               popularity, seed, timestamps, behaviors, domains, collect)  # fmt: skip
    share = repeats / len(targets) if len(targets) else 0.0
    protocol = ranking_protocol(cfg, max_len, {**(split_protocol or {}), "repeat_share": share})
    result = result_from_ranks(ranks, cfg, protocol, time.perf_counter() - t0)
    return with_domain_metrics(result, ranks, collect, cfg)


def with_domain_metrics(
    result: EvalResult, ranks: np.ndarray, collect: DomainRanks | None, cfg: EvalConfig
) -> EvalResult:
    """``result`` with the per-domain metrics and protocol of ``collect`` (every row's ranks,
    ``ranks`` the joint ones before dropped rows left); unchanged without domains."""
    if collect is None:
        return result
    metrics, protocol = domain_metrics(ranks, collect, cfg)
    result.metrics.update(metrics)
    result.protocol["domains"] = protocol
    result.domain_ranks = collect
    return result


@torch.inference_mode()
def rank_rows(
    model: nn.Module,
    items: np.ndarray,
    starts: np.ndarray,
    ends: np.ndarray,
    targets: np.ndarray,
    max_len: int,
    cfg: EvalConfig,
    device: torch.device | str = "cpu",
    popularity: np.ndarray | None = None,
    seed: int = 0,
    timestamps: np.ndarray | None = None,
    behaviors: np.ndarray | None = None,
    domains: DomainLabels | None = None,
    collect: DomainRanks | None = None,
) -> tuple[np.ndarray, int]:
    """Each row's rank (`evaluate`'s arguments; 0 marks a row ``eval.repeat_targets=drop``
    leaves out, which `result_from_ranks` drops) and how many rows' targets are among their
    masked history items, read off the candidate mask the ranking builds anyway.
    ``collect`` (`start_domain_ranks`) receives the per-domain ranks of the same scores."""
    device = torch.device(device)
    was_training = model.training
    model.eval()
    ranks = np.empty(len(targets), dtype=np.int64)
    repeats = 0
    gen = torch.Generator(device=device).manual_seed(seed)
    probs = None
    if cfg.sampled == "popularity":
        if popularity is None:
            raise ValueError("popularity-sampled metrics need item popularity counts")
        probs = torch.as_tensor(popularity, dtype=torch.float32, device=device)
    if cfg.sampled is not None:
        n_items = int(model.item_weights.shape[0]) - 1
        check_negatives(
            cfg.n_negatives, n_items, items, starts, ends, targets, max_len, cfg.mask_seen,
            popularity if cfg.sampled == "popularity" else None,
        )  # fmt: skip
    events = None if domains is None else domains.events
    for pos, scores, allowed in score_chunks(
        model,
        items,
        starts,
        ends,
        max_len,
        cfg.batch_users,
        device,
        cfg.mask_seen,
        timestamps,
        behaviors,
        _request_times(items, ends, targets, timestamps),
        events,
        None if events is None else domains.items[targets],
    ):
        tgt = torch.as_tensor(targets[pos], dtype=torch.int64, device=device)
        rows = torch.arange(len(pos), device=device)
        target_score = scores[rows, tgt]
        repeat = ~allowed[rows, tgt]  # the target is one of the masked history items
        repeats += int(repeat.sum())
        allowed[rows, tgt] = False  # the target is ranked by its score, never a competitor
        if collect is not None:
            collect.add(pos, scores, allowed, target_score, repeat)
        if cfg.sampled is None:
            higher = (scores > target_score[:, None]) & allowed
            out = 1 + higher.sum(1)
        else:
            neg = sample_negatives(allowed, cfg.n_negatives, probs, gen)
            out = 1 + (scores.gather(1, neg) > target_score[:, None]).sum(1)
        if cfg.repeat_targets == "miss":  # after every candidate: no cut-off of the catalogue hits
            last = scores.shape[1] if cfg.sampled is None else cfg.n_negatives + 2
            out = torch.where(repeat, last, out)
        elif cfg.repeat_targets == "drop":
            out = torch.where(repeat, 0, out)
        ranks[pos] = out.cpu().numpy()
    model.train(was_training)
    return ranks, repeats


def repeat_share(
    items: np.ndarray,
    starts: np.ndarray,
    ends: np.ndarray,
    targets: np.ndarray,
    max_len: int,
    mask_seen: bool | str,
) -> float:
    """Share of rows whose target is among the history items the evaluator masks (0 when
    nothing is masked): the rows ``eval.repeat_targets`` treats differently. Evaluation counts
    them while it ranks; this is the same share from the data alone, without a model
    (benchmarks/repeat_share.py)."""
    if not mask_seen or not len(targets):
        return 0.0
    seen_from = np.maximum(starts, ends - max_len) if mask_seen == "window" else starts
    rows, flat = flat_slices(seen_from, ends)
    hit = np.asarray(items)[flat] == np.asarray(targets)[rows]
    return float(np.unique(rows[hit]).size / len(targets))


def _request_times(
    items: np.ndarray, ends: np.ndarray, targets: np.ndarray, timestamps: np.ndarray | None
) -> np.ndarray | None:
    """timestamps[end] when each target is the event at ``end``, else None (time unknown)."""
    if timestamps is None or not len(ends) or int(ends.max()) >= len(items):
        return None
    if not np.array_equal(np.asarray(items)[ends], targets):
        return None
    return np.asarray(timestamps, dtype=np.int64)[ends]


def ranking_protocol(cfg: EvalConfig, max_len: int, split_protocol: dict | None = None) -> dict:
    """The protocol description written next to every evaluation result."""
    return {
        **(split_protocol or {}),
        "ranking": "full"
        if cfg.sampled is None
        else f"sampled ({cfg.n_negatives} {cfg.sampled} negatives)",
        **({"negatives_drawn": "without replacement"} if cfg.sampled is not None else {}),
        "mask_seen": cfg.mask_seen,
        "repeat_targets": cfg.repeat_targets,
        "ties": "rank = 1 + #candidates scored strictly higher",
        "max_len": max_len,
    }


def result_from_ranks(
    ranks: np.ndarray, cfg: EvalConfig, protocol: dict, seconds: float
) -> EvalResult:
    """Metrics over the rows from their ranks (also used after gathering sharded ranks); rows
    of rank 0 (``eval.repeat_targets=drop``) are left out, ``users`` names the rows kept."""
    users = np.flatnonzero(ranks > 0)
    if len(users) < len(ranks):
        ranks = ranks[users]
    per_user = per_user_metrics(ranks, cfg.ks)
    return EvalResult(
        metrics=summarize(per_user),
        ranks=ranks,
        users=users,
        protocol=protocol,
        seconds=seconds,
        per_user=per_user,
    )
