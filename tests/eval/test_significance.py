"""benchmarks/significance.py: CIs, paired tests against their formulas, pairing checks, CLI."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCH))
import significance as S  # noqa: E402


def fake_run(path: Path, ranks: np.ndarray, dataset: str = "ml-1m", n_items: int = 100) -> Path:
    path.mkdir(parents=True)
    np.save(path / "test_ranks.npy", ranks)
    np.save(path / "item_ids.npy", np.array(["<pad>"] + [str(i) for i in range(n_items)]))
    protocol = {"ranking": "full", "mask_seen": True, "max_len": 50, "evaluated": "test"}
    results = {
        "config": {"data": {"dataset": dataset, "max_len": 50}},
        "test": {"protocol": protocol},
    }
    (path / "results.json").write_text(json.dumps(results))
    return path


def test_paired_t_test_matches_its_formula_and_identical_runs_give_one():
    rng = np.random.default_rng(0)
    a = rng.random(500)
    b = a + 0.05 + 0.2 * rng.standard_normal(500)
    got = S.paired_test(a, b)
    d = b - a
    t = d.mean() / (d.std(ddof=1) / math.sqrt(len(d)))
    assert got["diff"] == pytest.approx(d.mean())
    assert got["p_ttest"] == pytest.approx(2 * stats.t.sf(abs(t), len(d) - 1), rel=1e-9)
    half = 1.959963984540054 * d.std(ddof=1) / math.sqrt(len(d))
    assert (got["diff_ci_low"], got["diff_ci_high"]) == pytest.approx(
        (d.mean() - half, d.mean() + half)
    )
    assert got["p_wilcoxon"] < 1e-3
    same = S.paired_test(a, a)
    assert same["p_ttest"] == same["p_wilcoxon"] == 1.0 and same["n_nonzero"] == 0


def test_holm_adjustment():
    # sorted p: 0.01 (x4), 0.02 (x3 = 0.06), 0.03 (x2 = 0.06), 0.5 (x1); monotone, input order
    assert S.holm([0.03, 0.01, 0.5, 0.02]) == pytest.approx([0.06, 0.04, 0.5, 0.06])
    assert S.holm([0.9, 0.8]) == pytest.approx([1.0, 1.0])


def test_compare_runs_and_cli(tmp_path, monkeypatch, capsys):
    rng = np.random.default_rng(1)
    base = rng.integers(1, 101, 2000)
    better = np.maximum(1, base - rng.integers(0, 8, 2000))  # never worse, often better
    a = fake_run(tmp_path / "a", base)
    b = fake_run(tmp_path / "b", better)
    report = S.compare([S.Run(a), S.Run(b)], S.KEYS)
    hr10 = report["runs"]["a"]["HR@10"]
    assert hr10["mean"] == pytest.approx(np.mean(base <= 10))
    assert hr10["ci_low"] < hr10["mean"] < hr10["ci_high"]
    pair = report["pairs"]["b - a"]["NDCG@10"]
    assert pair["diff"] > 0 and pair["p_ttest"] < 1e-6 and pair["p_wilcoxon"] < 1e-6
    assert pair["p_ttest"] <= pair["p_ttest_holm"] <= 1

    monkeypatch.setattr(sys, "argv", ["significance.py", str(a), str(b), "--no-write"])
    S.main()
    out = capsys.readouterr().out
    assert "b - a" in out and "NDCG@20" in out and "p Wilcoxon" in out


def test_runs_on_different_data_are_not_paired(tmp_path):
    a = fake_run(tmp_path / "a", np.arange(1, 11))
    b = fake_run(tmp_path / "b", np.arange(1, 11), dataset="amazon-beauty")
    with pytest.raises(SystemExit, match="data differs"):
        S.compare([S.Run(a), S.Run(b)], S.KEYS)
    c = fake_run(tmp_path / "c", np.arange(1, 12))
    with pytest.raises(SystemExit, match="n_users differs"):
        S.compare([S.Run(a), S.Run(c)], S.KEYS)


def test_runs_validated_on_different_users_are_paired(tmp_path):
    """data.valid_users changes who validates (and so what trains), not the test: pairable."""
    a = fake_run(tmp_path / "a", np.arange(1, 11))
    b = fake_run(tmp_path / "b", np.arange(1, 11))
    res = json.loads((b / "results.json").read_text())
    res["config"]["data"]["valid_users"] = 512
    res["test"]["protocol"] |= {"valid": "second-to-last item of 512 fixed random users",
                                "valid_users": 512, "others_train_on_second_to_last": True}  # fmt: skip
    (b / "results.json").write_text(json.dumps(res))
    assert S.compare([S.Run(a), S.Run(b)], S.KEYS)["pairs"]["b - a"]["NDCG@10"]["diff"] == 0
    res["test"]["protocol"]["ranking"] = "sampled"  # a different test protocol still refuses
    (b / "results.json").write_text(json.dumps(res))
    with pytest.raises(SystemExit, match="protocol differs"):
        S.compare([S.Run(a), S.Run(b)], S.KEYS)


def test_baseline_mode_tests_only_the_first_run_against_the_others(tmp_path):
    rng = np.random.default_rng(2)
    ranks = [rng.integers(1, 101, 500) for _ in range(3)]
    runs = [S.Run(fake_run(tmp_path / n, r)) for n, r in zip("abc", ranks, strict=True)]
    every = S.compare(runs, S.KEYS)
    vs_first = S.compare(runs, S.KEYS, baseline=True)
    assert set(every["pairs"]) == {"b - a", "c - a", "c - b"}
    assert set(vs_first["pairs"]) == {"b - a", "c - a"}
    # the same differences; Holm counts 2 x 6 tests instead of 3 x 6, so it adjusts less
    for pair in vs_first["pairs"]:
        got, full = vs_first["pairs"][pair]["HR@10"], every["pairs"][pair]["HR@10"]
        assert got["diff"] == full["diff"] and got["p_ttest"] == full["p_ttest"]
        assert got["p_ttest_holm"] <= full["p_ttest_holm"]


def test_seed_groups_average_per_user_metrics_before_pairing(tmp_path, monkeypatch, capsys):
    """`A_s42,A_s1` is one run whose per-user metrics are the seeds' mean: user u's NDCG@10 is
    the mean of its two seeds' values, and a seed on other data is refused."""
    rng = np.random.default_rng(2)
    r1, r2, r3 = (rng.integers(1, 60, 300) for _ in range(3))
    a = [fake_run(tmp_path / "arm_s42", r1), fake_run(tmp_path / "arm_s1", r2)]
    b = fake_run(tmp_path / "other", r3)
    group = S.Run(a)
    assert group.name == "arm (2 seeds)"
    want = (S.per_user_metrics(r1, [10])["NDCG@10"] + S.per_user_metrics(r2, [10])["NDCG@10"]) / 2
    np.testing.assert_allclose(group.per_user([10])["NDCG@10"], want)
    pair = S.compare([group, S.Run(b)], S.KEYS)["pairs"]["other - arm (2 seeds)"]["NDCG@10"]
    assert pair["diff"] == pytest.approx(
        S.per_user_metrics(r3, [10])["NDCG@10"].mean() - want.mean()
    )

    monkeypatch.setattr(sys, "argv", ["significance.py", f"{a[0]},{a[1]}", str(b), "--no-write"])
    S.main()
    assert "arm (2 seeds)" in capsys.readouterr().out
    odd = fake_run(tmp_path / "odd", r2, dataset="amazon-beauty")
    with pytest.raises(SystemExit, match="cannot be averaged"):
        S.Run([a[0], odd])
