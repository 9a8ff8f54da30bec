"""seqrec.comparison: reading run folders, pairing refusals, seed groups, the text and JSON forms."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from seqrec.comparison import compare, config_differences
from seqrec.errors import SeqrecError
from seqrec.eval.stats import per_user_metrics


def fake_run(
    path: Path, ranks: np.ndarray, dataset: str = "ml-1m", seed: int = 42, **train
) -> Path:
    """A finished run folder as `seqrec train` leaves it, reduced to what compare reads."""
    path.mkdir(parents=True)
    np.save(path / "test_ranks.npy", ranks)
    np.save(path / "item_ids.npy", np.array(["<pad>"] + [str(i) for i in range(100)]))
    protocol = {"ranking": "full", "mask_seen": True, "max_len": 50, "evaluated": "test"}
    config = {
        "data": {"dataset": dataset, "max_len": 50},
        "model": {"name": "sasrec", "layers": 2},
        "train": {"seed": seed, "lr": 1e-3, "device": "auto", **train},
    }
    (path / "results.json").write_text(
        json.dumps({"config": config, "test": {"protocol": protocol}})
    )
    return path


def edit_results(path: Path, change) -> None:
    res = json.loads((path / "results.json").read_text())
    change(res)
    (path / "results.json").write_text(json.dumps(res))


def test_each_run_gets_its_mean_and_ci_and_each_pair_a_paired_test(tmp_path):
    rng = np.random.default_rng(1)
    base = rng.integers(1, 101, 2000)
    better = np.maximum(1, base - rng.integers(0, 8, 2000))  # never worse, often better
    result = compare([fake_run(tmp_path / "a", base), fake_run(tmp_path / "b", better)])
    hr10 = next(r for r in result.rows if r["run"] == "a" and r["metric"] == "HR@10")
    assert hr10["mean"] == pytest.approx(np.mean(base <= 10))
    assert hr10["ci_low"] < hr10["mean"] < hr10["ci_high"] and hr10["seeds"] == 1
    pair = next(p for p in result.pairs if p["metric"] == "NDCG@10")
    assert (pair["a"], pair["b"]) == ("a", "b")
    assert pair["diff"] > 0 and pair["p_ttest"] < 1e-6 and pair["p_wilcoxon"] < 1e-6
    assert pair["p_ttest"] <= pair["p_ttest_holm"] <= 1
    assert len(result.rows) == 2 * 6 and len(result.pairs) == 6


def test_text_fits_100_columns_and_json_keeps_the_result_file_shape(tmp_path):
    rng = np.random.default_rng(2)
    runs = [fake_run(tmp_path / f"a_rather_long_run_folder_name_number_{i}", rng.integers(1, 101, 300))
            for i in range(3)]  # fmt: skip
    result = compare(runs, baseline=True)
    text = result.to_text()
    assert max(len(line) for line in text.splitlines()) <= 100
    assert "NDCG@20" in text and "Wilcoxon" in text and "Holm over 12 t-tests" in text
    data = json.loads(result.to_json())
    first = "a_rather_long_run_folder_name_number_0"
    assert set(data["runs"]) == {first, f"{first[:-1]}1", f"{first[:-1]}2"}
    assert set(data["runs"][first]["HR@10"]) == {"mean", "ci_low", "ci_high"}
    assert f"{first[:-1]}1 - {first}" in data["pairs"]
    assert data["paths"][first] == [str(runs[0])]


def test_runs_on_different_data_or_users_are_refused_naming_the_difference(tmp_path):
    a = fake_run(tmp_path / "a", np.arange(1, 11))
    b = fake_run(tmp_path / "b", np.arange(1, 11), dataset="amazon-beauty")
    with pytest.raises(SeqrecError, match=r"cannot be paired: data differs .*amazon-beauty"):
        compare([a, b])
    c = fake_run(tmp_path / "c", np.arange(1, 12))
    with pytest.raises(SeqrecError, match=r"test users differ \(10 vs 11\)"):
        compare([a, c])
    d = fake_run(tmp_path / "d", np.arange(1, 11))
    np.save(d / "item_ids.npy", np.array(["<pad>"] + [str(i + 1) for i in range(100)]))
    with pytest.raises(SeqrecError, match="item id maps differ"):
        compare([a, d])


def test_runs_validated_on_different_users_are_paired(tmp_path):
    """data.valid_users changes who validates (and so what trains), not the test: pairable."""
    a = fake_run(tmp_path / "a", np.arange(1, 11))
    b = fake_run(tmp_path / "b", np.arange(1, 11))

    def gr_validation(res):
        res["config"]["data"]["valid_users"] = 512
        res["test"]["protocol"] |= {"valid": "second-to-last item of 512 fixed random users",
                                    "valid_users": 512, "others_train_on_second_to_last": True}  # fmt: skip

    edit_results(b, gr_validation)
    assert next(p for p in compare([a, b]).pairs if p["metric"] == "NDCG@10")["diff"] == 0
    edit_results(b, lambda res: res["test"]["protocol"].update(ranking="sampled"))
    with pytest.raises(SeqrecError, match="protocol differs"):
        compare([a, b])


def test_baseline_tests_only_the_first_run_against_the_others(tmp_path):
    rng = np.random.default_rng(2)
    runs = [fake_run(tmp_path / n, rng.integers(1, 101, 500)) for n in "abc"]
    every, vs_first = compare(runs), compare(runs, baseline=True)
    assert {(p["a"], p["b"]) for p in every.pairs} == {("a", "b"), ("a", "c"), ("b", "c")}
    assert {(p["a"], p["b"]) for p in vs_first.pairs} == {("a", "b"), ("a", "c")}
    # the same differences; Holm counts 2 x 6 tests instead of 3 x 6, so it adjusts less
    full = {(p["a"], p["b"], p["metric"]): p for p in every.pairs}
    for p in vs_first.pairs:
        other = full[p["a"], p["b"], p["metric"]]
        assert p["diff"] == other["diff"] and p["p_ttest"] == other["p_ttest"]
        assert p["p_ttest_holm"] <= other["p_ttest_holm"]


def test_a_seed_group_is_one_arm_of_per_user_seed_means(tmp_path):
    """`arm_s42,arm_s1` is one arm whose user u has the mean of its seeds' values for u."""
    rng = np.random.default_rng(2)
    r1, r2, r3 = (rng.integers(1, 60, 300) for _ in range(3))
    seeds = [fake_run(tmp_path / "arm_s42", r1), fake_run(tmp_path / "arm_s1", r2, seed=1)]
    other = fake_run(tmp_path / "other", r3)
    for spec in (f"{seeds[0]},{seeds[1]}", seeds):  # a comma-joined string or a list
        result = compare([spec, other], metrics=["NDCG@10"])
        want = (per_user_metrics(r1, [10])["NDCG@10"] + per_user_metrics(r2, [10])["NDCG@10"]) / 2
        row = result.rows[0]
        assert row["run"] == "arm (2 seeds)" and row["seeds"] == 2
        assert row["mean"] == pytest.approx(want.mean())
        assert row["seed_means"] == pytest.approx([np.mean(per_user_metrics(r, [10])["NDCG@10"])
                                                   for r in (r1, r2)])  # fmt: skip
        assert row["seed_ci_low"] < row["mean"] < row["seed_ci_high"]
        (pair,) = result.pairs
        assert pair["a"] == "arm (2 seeds)"
        assert pair["diff"] == pytest.approx(
            per_user_metrics(r3, [10])["NDCG@10"].mean() - want.mean()
        )


def test_seeds_of_different_data_or_configs_are_not_averaged(tmp_path):
    ranks = np.arange(1, 31)
    first = fake_run(tmp_path / "arm_s42", ranks)
    odd_data = fake_run(tmp_path / "odd_s1", ranks, dataset="amazon-beauty", seed=1)
    with pytest.raises(
        SeqrecError, match=r"cannot be averaged .* as seeds of one arm: data differs"
    ):
        compare([[first, odd_data]])
    odd_lr = fake_run(tmp_path / "lr_s1", ranks, seed=1, lr=3e-4)
    with pytest.raises(SeqrecError, match=r"config differs \{'train.lr': \(0.001, 0.0003\)\}"):
        compare([[first, odd_lr]])
    # where and how fast a seed ran is not a difference
    fine = fake_run(tmp_path / "arm_s1", ranks, seed=1, device="cuda", time_budget_s=300)
    assert compare([[first, fine]]).rows[0]["seeds"] == 2


def test_config_differences_skip_fields_only_one_run_has_and_the_run_environment():
    old = {"train": {"seed": 1, "lr": 1e-3}, "model": {"ratios": {"crop": 0.6}}}
    new = {"train": {"seed": 2, "lr": 1e-3, "log_test": False}, "model": {"ratios": {"crop": 0.5}}}
    assert config_differences(old, new) == {"model.ratios": ({"crop": 0.6}, {"crop": 0.5})}


def test_bad_inputs_are_refused_with_the_argument_to_fix(tmp_path):
    with pytest.raises(SeqrecError, match=r"does not exist; .* in runs"):
        compare([tmp_path / "missing"])
    (tmp_path / "unfinished").mkdir()
    (tmp_path / "unfinished" / "config.yaml").write_text("{}")
    with pytest.raises(SeqrecError, match=r"not a finished retrieval run .* in runs"):
        compare([tmp_path / "unfinished"])
    run = fake_run(tmp_path / "a", np.arange(1, 11))
    with pytest.raises(SeqrecError, match="runs is empty"):
        compare([])
    with pytest.raises(SeqrecError, match="unknown metric 'AUC' in metrics"):
        compare([run], metrics=["AUC"])
    with pytest.raises(SeqrecError, match="level=95"):
        compare([run], level=95)


def test_folders_with_the_same_name_are_told_apart_by_their_parent(tmp_path):
    a = fake_run(tmp_path / "x" / "best", np.arange(1, 11))
    b = fake_run(tmp_path / "y" / "best", np.arange(1, 11))
    assert {r["run"] for r in compare([a, b]).rows} == {"x/best", "y/best"}


def test_the_benchmark_wrapper_prints_the_table(tmp_path, monkeypatch, capsys):
    """benchmarks/significance.py, which recorded commands still call, is a thin wrapper."""
    bench = Path(__file__).resolve().parents[1] / "benchmarks"
    monkeypatch.syspath_prepend(str(bench))
    sys.modules.pop("significance", None)
    import significance

    rng = np.random.default_rng(0)
    a = fake_run(tmp_path / "a", rng.integers(1, 101, 200))
    b = fake_run(tmp_path / "b", rng.integers(1, 101, 200))
    monkeypatch.setattr(sys, "argv", ["significance.py", str(a), str(b), "--no-write"])
    significance.main()
    out = capsys.readouterr().out
    assert "b - a" in out and "NDCG@20" in out and "Wilcoxon" in out
