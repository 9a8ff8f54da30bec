"""Metrics per target domain: a hand-computed example, the sampled protocol's distribution,
nothing changed without domains, and labels that matter while file order does not."""

from __future__ import annotations

from math import comb, log2

import numpy as np
import pytest
import torch
from torch import nn

from seqrec.data import prepare
from seqrec.errors import SeqrecError
from seqrec.eval.domains import DomainLabels, domain_labels, start_domain_ranks
from seqrec.eval.ranking import (
    evaluate,
    rank_rows,
    ranking_protocol,
    result_from_ranks,
    with_domain_metrics,
)
from seqrec.models import model_config
from seqrec.models.sasrec import SASRec
from seqrec.options import DataConfig, EvalConfig


class TableScores(nn.Module):
    """Row ``r`` of the evaluation scores item ``i`` as ``table[r, i]`` (batch.users are the
    rows' positions), and records the batches it was given."""

    def __init__(self, table: np.ndarray) -> None:
        super().__init__()
        self.item_weights = nn.Parameter(torch.tensor(table.T, dtype=torch.float32))
        self.batches: list = []

    def last_hidden(self, batch):
        self.batches.append(batch)
        return nn.functional.one_hot(batch.users, self.item_weights.shape[1]).float()


# items 1-4 are domain A, 5-8 domain B; three rows (history, target, scores of items 1..8)
ROWS = [
    ([1, 5], 2, [0.9, 0.5, 0.6, 0.1, 0.95, 0.7, 0.2, 0.55]),
    ([2, 6, 3], 7, [0.1, 0.9, 0.8, 0.3, 0.35, 0.99, 0.4, 0.45]),
    ([4, 8], 1, [0.7, 0.8, 0.2, 0.9, 0.1, 0.75, 0.72, 0.3]),
]
LABELS = DomainLabels(np.array([0, 1, 1, 1, 1, 2, 2, 2, 2]), ("A", "B"))


def _example():
    items = np.array([i for h, _, _ in ROWS for i in h], dtype=np.int64)
    ends = np.cumsum([len(h) for h, _, _ in ROWS])
    starts = ends - [len(h) for h, _, _ in ROWS]
    targets = np.array([t for _, t, _ in ROWS])
    table = np.array([[-1.0, *s] for _, _, s in ROWS])
    return TableScores(table), items, starts, ends, targets


def _ndcg(rank: int, k: int) -> float:
    return 1 / log2(rank + 1) if rank <= k else 0.0


def test_per_domain_metrics_match_the_hand_computed_ranks():
    # row 0 (A): seen 1, 5; above 0.5 are 3 (A), 6, 8 (B): joint rank 4, own rank 2
    # row 1 (B): seen 2, 6, 3; above 0.4 is 8 (B) only: joint 2, own 2
    # row 2 (A): seen 4, 8; above 0.7 are 2 (A), 6, 7 (B): joint 4, own 2
    # each row's domain has 2 unseen items besides the target: 2 negatives = every one of them
    model, items, starts, ends, targets = _example()
    cfg = EvalConfig(ks=[1, 5], domain_negatives=2)
    res = evaluate(model, items, starts, ends, targets, 10, cfg, domains=LABELS)
    assert res.ranks.tolist() == [4, 2, 4]
    m = res.metrics
    expect = {
        "A/own": [2, 2], "A/joint": [4, 4], "A/sampled": [2, 2],
        "B/own": [2], "B/joint": [2], "B/sampled": [2],
    }  # fmt: skip
    for key, ranks in expect.items():
        assert m[f"domain:{key}/NDCG@5"] == pytest.approx(np.mean([_ndcg(r, 5) for r in ranks]))
        assert m[f"domain:{key}/HR@1"] == 0.0
        assert m[f"domain:{key}/MRR"] == pytest.approx(np.mean([1 / r for r in ranks]))
    block = res.protocol["domains"]
    assert block["rows"] == {"A": 2, "B": 1} and set(block["protocols"]) == {
        "own",
        "joint",
        "sampled",
    }
    assert block["protocols"]["sampled"].startswith("sampled (2 uniform negatives")
    assert res.domain_ranks.own.tolist() == [2, 2, 2]
    assert res.domain_ranks.target_domains.tolist() == [1, 2, 1]


def test_repeat_rules_apply_to_every_protocol():
    model, items, starts, ends, targets = _example()
    targets = targets.copy()
    targets[1] = 6  # row 1's target is one of its seen items
    for rule, expect in (("rank", 1), ("miss", 5), ("drop", None)):
        cfg = EvalConfig(ks=[1], domain_negatives=2, repeat_targets=rule)
        res = evaluate(model, items, starts, ends, targets, 10, cfg, domains=LABELS)
        if expect is None:
            assert "domain:B/own/MRR" not in res.metrics or np.isnan(
                res.metrics["domain:B/own/MRR"]
            )
        else:  # 6 outscores every B item: rank 1; a miss ranks after B's 4 items
            assert res.metrics["domain:B/own/MRR"] == pytest.approx(1 / expect)


def _hypergeometric(k: int, n_all: int, good: int, draws: int) -> float:
    return comb(good, k) * comb(n_all - good, draws - k) / comb(n_all, draws)


def test_sampled_ranks_follow_the_explicit_draws_distribution():
    """One row repeated: 10 own-domain candidates, 4 of them above the target, 3 negatives.
    Drawing 3 items without replacement puts k of the 4 among them with the hypergeometric
    probability; the ranks (1 + k) must show exactly those frequencies."""
    n_rows, own = 4000, 12
    table = np.zeros((n_rows, 2 * own + 1))
    table[:, 1 : own + 1] = np.r_[np.full(4, 0.9), 0.5, np.full(7, 0.1)]  # A: 4 above, target, 7
    table[:, own + 1 :] = 0.99  # B: all above the target, never A's negatives
    items = np.full(n_rows, own, dtype=np.int64)  # each row has seen item 12 (A)
    starts, ends = np.arange(n_rows), np.arange(n_rows) + 1
    targets = np.full(n_rows, 5)
    labels = DomainLabels(np.r_[0, np.ones(own, int), np.full(own, 2)], ("A", "B"))
    cfg = EvalConfig(domain_negatives=3)
    res = evaluate(TableScores(table), items, starts, ends, targets, 5, cfg, domains=labels)
    assert (res.ranks == own + 5).all() and (res.domain_ranks.own == 5).all()
    freq = np.bincount(res.domain_ranks.sampled - 1, minlength=4) / n_rows
    exact = [_hypergeometric(k, 10, 4, 3) for k in range(4)]
    np.testing.assert_allclose(freq, exact, atol=0.03)
    again = evaluate(TableScores(table), items, starts, ends, targets, 5, cfg, domains=labels)
    np.testing.assert_array_equal(again.domain_ranks.sampled, res.domain_ranks.sampled)


def test_too_many_domain_negatives_are_refused_before_scoring():
    model, items, starts, ends, targets = _example()
    with pytest.raises(
        SeqrecError, match=r"eval.domain_negatives=999 cannot be drawn .* at most 2, or to null$"
    ):
        evaluate(model, items, starts, ends, targets, 10, EvalConfig(), domains=LABELS)
    assert not model.batches


def test_nothing_changes_without_domains():
    model, items, starts, ends, targets = _example()
    cfg = EvalConfig(ks=[1, 5], sampled="uniform", n_negatives=3)
    plain = evaluate(model, items, starts, ends, targets, 10, cfg)
    off = evaluate(model, items, starts, ends, targets, 10, cfg.model_copy(update={"per_domain": False}), domains=LABELS)  # fmt: skip
    on = evaluate(model, items, starts, ends, targets, 10, cfg.model_copy(update={"domain_negatives": 2}), domains=LABELS)  # fmt: skip
    assert plain.metrics == off.metrics and plain.protocol == off.protocol
    np.testing.assert_array_equal(plain.ranks, on.ranks)  # the same sampled draws too
    assert {k: v for k, v in on.metrics.items() if not k.startswith("domain:")} == plain.metrics
    assert {k: v for k, v in on.protocol.items() if k != "domains"} == plain.protocol
    assert all(b.domains is None and b.target_domains is None for b in model.batches)


def test_a_model_that_reads_domains_gets_them_in_its_evaluation_batches():
    model, items, starts, ends, targets = _example()
    events = LABELS.items[items]
    labels = DomainLabels(LABELS.items, LABELS.names, events)
    evaluate(
        model, items, starts, ends, targets, 10, EvalConfig(domain_negatives=2), domains=labels
    )
    (batch,) = model.batches
    real = batch.items != 0
    assert torch.equal(batch.domains[real], torch.from_numpy(LABELS.items)[batch.items[real]])
    rows = batch.users.numpy()
    assert batch.target_domains.tolist() == LABELS.items[targets[rows]].tolist()


def _log(path, domain_of, order=None):
    """A csv log with a domain column; users walk items 1..24 from a random start."""
    rng = np.random.default_rng(0)
    rows = []
    for u in range(30):
        start = int(rng.integers(24))
        for t in range(int(rng.integers(5, 9))):
            item = (start + t) % 24 + 1
            rows.append(f"{u},{item},{1000 + 10 * t},{domain_of(item)}")
    if order is not None:
        rows = [rows[i] for i in order]
    path.write_text("user_id,item_id,timestamp,shop\n" + "\n".join(rows) + "\n")
    return path


def _domain_results(path):
    store, split = prepare(DataConfig(dataset=str(path), domain_col="shop"))
    torch.manual_seed(0)
    model = SASRec(model_config(hidden=8, layers=1, heads=1, dropout=0.0), store.n_items, 8)
    v = split.test
    cfg = EvalConfig(ks=[5, 10], domain_negatives=3)
    args = (store.items, v.starts, v.ends, v.targets, 8, cfg)
    return evaluate(model.eval(), *args, domains=domain_labels(store)).metrics


def test_shuffled_domain_labels_change_per_domain_results_a_permuted_file_does_not(tmp_path):
    by_half = lambda i: "x" if i <= 12 else "y"  # noqa: E731
    base = _domain_results(_log(tmp_path / "a.csv", by_half))
    n_rows = sum(1 for _ in (tmp_path / "a.csv").open()) - 1
    order = np.random.default_rng(1).permutation(n_rows)
    permuted = _domain_results(_log(tmp_path / "b.csv", by_half, order))
    assert permuted == base
    shuffled = _domain_results(_log(tmp_path / "c.csv", lambda i: "x" if i % 2 else "y"))
    headline = [k for k in base if not k.startswith("domain:")]
    assert {k: shuffled[k] for k in headline} == {k: base[k] for k in headline}
    assert any(shuffled[k] != base[k] for k in base if k.startswith("domain:x/own/"))


def test_sharded_ranks_merge_into_the_single_process_result():
    """Two "processes" rank rows [0] and [1, 2]; gathering their collectors and ranks gives the
    metrics of one process ranking all three (the DDP path's `DomainRanks.merged`)."""

    model, items, starts, ends, targets = _example()
    cfg = EvalConfig(ks=[1, 5], domain_negatives=2)
    whole = evaluate(model, items, starts, ends, targets, 10, cfg, domains=LABELS)
    parts = []
    for rows in (np.array([0]), np.array([1, 2])):
        args = (items, starts[rows], ends[rows], targets[rows], 10, cfg)
        collect = start_domain_ranks(LABELS, cfg, *args[:-2], 10)
        shard = TableScores(np.array([[-1.0, *ROWS[r][2]] for r in rows]))  # its rows' scores
        ranks, _ = rank_rows(shard, *args, domains=LABELS, collect=collect)
        parts.append((ranks, collect))
    ranks = np.concatenate([r for r, _ in parts])
    first, second = parts[0][1], parts[1][1]
    joined = {  # what an all-gather returns for each of this process's arrays
        id(first.own): np.concatenate([first.own, second.own]),
        id(first.sampled): np.concatenate([first.sampled, second.sampled]),
    }
    collect = first.merged(lambda a: joined[id(a)], targets)
    res = result_from_ranks(ranks, cfg, ranking_protocol(cfg, 10), 0.0)
    res = with_domain_metrics(res, ranks, collect, cfg)
    assert {k: v for k, v in res.metrics.items() if k.startswith("domain:")} == {
        k: v for k, v in whole.metrics.items() if k.startswith("domain:")
    }
