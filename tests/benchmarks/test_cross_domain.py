"""benchmarks/cross_domain.py: the arms of each dataset and the test across seeds, on hand-made
per-user values. Nothing here trains or touches the real data."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from seqrec.eval.stats import paired_test
from seqrec.recipe import load_config

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCH))
import cross_domain as X  # noqa: E402


@pytest.mark.parametrize("dataset", sorted(X.DATASETS))
def test_every_arm_is_a_loadable_preset_on_its_dataset(dataset):
    name, _, domains = X.DATASETS[dataset]
    arms = X.arms_of(dataset)
    assert {X.single_of(d) for d in domains} <= set(arms)
    for arm, (preset, overrides) in arms.items():
        config = load_config(preset, overrides)
        assert config.data.dataset == name, arm
        if arm in {X.single_of(d) for d in domains}:
            assert config.data.domain == arm.removesuffix("-only")
        else:
            assert config.data.domain is None


def test_single_domain_arms_match_the_joint_preset_but_for_the_domain():
    """Food-Kitchen's own single-domain presets are the joint preset plus data.domain, as the
    Beauty-Electronics arms are by construction: one budget for every arm."""
    for dataset in X.DATASETS:
        arms = X.arms_of(dataset)
        joint = load_config(*arms["joint"]).model_dump()
        for domain in X.DATASETS[dataset][2]:
            single = load_config(*arms[X.single_of(domain)]).model_dump()
            assert single["data"]["domain"] == domain and joint["data"]["domain"] is None
            single["data"]["domain"] = None
            assert single == joint


def test_across_seeds_by_hand():
    rng = np.random.default_rng(0)
    users = list(range(200))
    got = []
    for shift in (0.01, 0.02, 0.04):
        a = rng.random(200)
        got.append((users, a, a + shift + rng.normal(0, 0.05, 200)))
    out = X.across_seeds({"joint - food-only/food/own/NDCG@10": got})
    row = out["joint - food-only/food/own/NDCG@10"]
    diffs = [b.mean() - a.mean() for _, a, b in got]
    assert row["seeds"] == 3
    assert row["seed_t"]["diff"] == pytest.approx(np.mean(diffs))
    assert row["seed_t"]["p"] == pytest.approx(stats.ttest_1samp(diffs, 0).pvalue)
    half = stats.t.ppf(0.975, 2) * np.std(diffs, ddof=1) / np.sqrt(3)
    assert row["seed_t"]["ci_high"] - row["seed_t"]["diff"] == pytest.approx(half)
    a_mean = np.mean([a for _, a, _ in got], axis=0)
    b_mean = np.mean([b for _, _, b in got], axis=0)
    assert row["users_seed_mean"] == paired_test(a_mean, b_mean)


def test_across_seeds_needs_two_seeds_on_the_same_users():
    a, b = np.zeros(3), np.ones(3)
    assert X.across_seeds({"k/d/own/HR@10": [([1, 2, 3], a, b)]}) == {}
    assert X.across_seeds({"k/d/own/HR@10": [([1, 2, 3], a, b), ([1, 2, 4], a, b)]}) == {}


def test_identical_seed_differences_give_p_one_not_nan():
    a, b = np.zeros(3), np.array([1.0, 2.0, 3.0])
    row = X.across_seeds({"k/d/own/HR@10": [([1, 2, 3], a, b)] * 2})["k/d/own/HR@10"]
    assert row["seed_t"]["p"] == 1.0 and row["seed_t"]["diff"] == 2.0
