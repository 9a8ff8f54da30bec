"""benchmarks/time_to_quality.py and its peers' shared protocol: the pure parts.

The peers rank with a copy of seqrec's full-ranking rule (they run in another venv, without
seqrec), so the copy is checked against seqrec's evaluator here; the summary's targets, times
and ratios are checked on hand-made curves. Nothing here trains or touches the real data.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from seqrec.eval.ranking import evaluate
from seqrec.options import EvalConfig

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(BENCH / "peers"))
import protocol as P  # noqa: E402
from kv_side import check_repo  # noqa: E402

import time_to_quality as T  # noqa: E402


class BagModel(nn.Module):
    """Hidden state = sum of a fixed table over the (windowed) history; a scorer both sides can
    reproduce exactly."""

    def __init__(self, n_items: int, dim: int = 8, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.table = torch.randn(n_items + 1, dim, generator=g)
        self.table[0] = 0
        w = torch.randn(n_items + 1, dim, generator=g)
        w[2] = w[3]  # two items always tie: "strictly higher" must not count the tie
        self.w = w

    @property
    def item_weights(self) -> torch.Tensor:
        return self.w

    def last_hidden(self, batch) -> torch.Tensor:
        return self.table[batch.items].sum(1)


def random_rows(rng, n_rows: int, n_items: int):
    items, starts, ends, targets = [], [], [], []
    pos = 0
    for r in range(n_rows):
        h = rng.integers(1, n_items + 1, size=rng.integers(1, 12))
        t = int(h[0]) if r % 4 == 0 else int(rng.integers(1, n_items + 1))  # some re-consumed
        if r % 7 == 0:
            t = 3  # tied with item 2
        items += [*h, t]
        starts.append(pos)
        ends.append(pos + len(h))
        targets.append(t)
        pos += len(h) + 1
    return (np.array(items, dtype=np.int64), np.array(starts), np.array(ends),
            np.array(targets, dtype=np.int64))  # fmt: skip


@pytest.mark.parametrize("max_len", [3, 50])
def test_the_peers_rank_as_seqrec_evaluates(max_len):
    rng = np.random.default_rng(1)
    n_items = 30
    items, starts, ends, targets = random_rows(rng, 60, n_items)
    model = BagModel(n_items)
    cfg = EvalConfig(batch_users=16)
    want = evaluate(model, items, starts, ends, targets, max_len, cfg).ranks
    hists = [items[s:e] for s, e in zip(starts, ends, strict=True)]
    hidden = torch.stack([model.table[h[-max_len:]].sum(0) for h in hists])
    got = P.seqrec_rule_ranks(hidden @ model.w.T, hists, targets)
    assert np.array_equal(got, want)


def test_ndcg_matches_seqrec_metrics():
    from seqrec.eval.metrics import per_user_metrics

    ranks = np.array([1, 2, 10, 11, 3416])
    assert P.ndcg_at(ranks) == pytest.approx(per_user_metrics(ranks, [10])["NDCG@10"].mean())


def test_padding_helpers_keep_the_last_items():
    hists = [np.array([5, 6, 7, 8]), np.array([9])]
    ids, mask = P.left_padded(hists, 3, pad=99, shift=-1)
    assert ids.tolist() == [[5, 6, 7], [99, 99, 8]]
    assert mask.tolist() == [[True, True, True], [False, False, True]]
    ids, last = P.right_padded(hists, 3)
    assert ids.tolist() == [[6, 7, 8], [9, 0, 0]]
    assert last.tolist() == [2, 0]


def test_gather_rows_is_the_csr_of_the_slices():
    items = np.arange(100, 120)
    starts, ends = np.array([3, 0, 10, 7]), np.array([6, 2, 10, 12])
    offsets, flat = T.gather_rows(items, starts, ends)
    assert offsets.tolist() == [0, 3, 5, 5, 10]
    for r, (s, e) in enumerate(zip(starts, ends, strict=True)):
        assert flat[offsets[r] : offsets[r + 1]].tolist() == items[s:e].tolist()


def run(side, seed, curve, test=0.1, stopped="patience"):
    return {"side": side, "seed": seed, "curve": curve,
            "best_valid_ndcg10": max(v for _, v in curve), "test_ndcg10": test,
            "test_hr10": 2 * test, "sec_per_epoch_mean": curve[0][0], "stopped_by": stopped}  # fmt: skip


def test_time_to_is_the_first_epoch_at_or_above_the_target():
    curve = [[10.0, 0.05], [20.0, 0.09], [30.0, 0.12], [40.0, 0.11]]
    assert T.time_to(curve, 0.09) == 20.0
    assert T.time_to(curve, 0.10) == 30.0
    assert T.time_to(curve, 0.13) is None


def test_summary_targets_times_and_the_criterion():
    runs = {
        "seqrec": {
            42: run("seqrec", 42, [[5.0, 0.10], [10.0, 0.15], [15.0, 0.16]], test=0.15),
            1: run("seqrec", 1, [[5.0, 0.12], [10.0, 0.17]], test=0.16),
            2: run("seqrec", 2, [[5.0, 0.14], [10.0, 0.16]], test=0.155),
        },
        "replay": {
            42: run("replay", 42, [[20.0, 0.08], [40.0, 0.14], [60.0, 0.15]], test=0.14),
            1: run("replay", 1, [[20.0, 0.10], [40.0, 0.13]], test=0.13),
            2: run("replay", 2, [[20.0, 0.15], [40.0, 0.16]], test=0.15),
        },
    }
    s = T.summarize(runs)
    assert s["seeds_complete"] == [1, 2, 42]
    assert s["target_per_seed"] == {42: 0.15, 1: 0.13, 2: 0.16}
    assert s["time_to_target"]["seqrec"]["per_seed"] == {42: 10.0, 1: 10.0, 2: 10.0}
    assert s["time_to_target"]["replay"]["per_seed"] == {42: 60.0, 1: 40.0, 2: 40.0}
    ratio = s["seqrec_vs_replay"]["time_ratio_of_means"]
    assert ratio == pytest.approx(10.0 / (140.0 / 3))
    assert s["seqrec_vs_replay"]["met"]  # 3 seeds, ratio <= 0.5, test 0.155 >= 0.14
    # mean rule: replay's mean best (0.15 + 0.13 + 0.16) / 3 is the target; seed 1 of replay
    # (best 0.13) never reaches it
    mr = s["mean_rule"]
    assert mr["target"] == pytest.approx((0.15 + 0.13 + 0.16) / 3)
    assert mr["time_to_target"]["replay"]["per_seed"][1] is None
    assert mr["time_to_target"]["replay"]["reached"] == 2
    assert s["all_plateaued"]
    m = T.headline(s)
    assert m["criterion met"] is True and m["seeds"] == 3


def test_the_criterion_fails_on_test_quality_or_too_few_seeds():
    fast_but_worse = {
        "seqrec": {42: run("seqrec", 42, [[1.0, 0.2]], test=0.10)},
        "replay": {42: run("replay", 42, [[9.0, 0.2]], test=0.12, stopped="time_budget")},
    }
    s = T.summarize(fast_but_worse)
    assert not s["seqrec_vs_replay"]["met"]
    assert not s["all_plateaued"]
    assert T.summarize({"seqrec": {}, "replay": {}}) == {"sides": [], "seeds_complete": []}


def test_a_kv_path_without_their_code_is_refused_in_one_line(tmp_path):
    assert "no src/models.py" in check_repo(str(tmp_path))
    (tmp_path / "src").mkdir()
    for name in ("models", "modules", "datasets"):
        (tmp_path / "src" / f"{name}.py").write_text("")
    assert "does not define class SASRec" in check_repo(str(tmp_path))
    (tmp_path / "src/models.py").write_text("class SASRec: ...\n")
    (tmp_path / "src/modules.py").write_text("class SeqRec: ...\n")
    (tmp_path / "src/datasets.py").write_text(
        "class CausalLMDataset: ...\nclass PaddingCollateFn: ...\n"
    )
    assert check_repo(str(tmp_path)) is None
