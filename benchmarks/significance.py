"""Confidence intervals and paired significance tests between finished runs.

    python benchmarks/significance.py runs/sasrec-beauty runs/cl4srec-beauty
    python benchmarks/significance.py RUN_A RUN_B RUN_C --name beauty_significance
    python benchmarks/significance.py A_s42,A_s1,A_s2 B_s42,B_s1,B_s2   # seed means, paired

Every run folder holds `test_ranks.npy`: the 1-based full-ranking rank of each test user's
held-out item, in the split's user order (train/run.py). Per-user HR@K and NDCG@K follow from
the ranks exactly (eval/metrics.py), so two runs on the same data can be compared user by user:

* each run: the mean of every metric with a 95% normal-approximation CI (thousands of users);
* each pair (A, B): the mean paired difference B − A with its 95% CI, the paired t-test p-value
  (scipy `ttest_rel`) and the Wilcoxon signed-rank p-value (`wilcoxon`, zero differences dropped;
  it tests whether the per-user differences are centred on 0 without assuming normality, which
  matters because HR values are 0/1 and NDCG values are mostly 0). Holm's step-down adjustment
  over all (pair, metric) t-tests is reported too, since a table of p-values invites picking.

Runs are paired only when their data agree (same data settings apart from max_len, same item
map, same number of test users, same ranking protocol); otherwise the script stops with the
difference. A result file benchmarks/results/NAME.json is written through common.write_result.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

import numpy as np
from scipy import stats

from common import write_result
from seqrec.eval.metrics import confidence_interval, per_user_metrics

KEYS = ["HR@5", "HR@10", "HR@20", "NDCG@5", "NDCG@10", "NDCG@20"]
# settings that leave the users, items and held-out targets unchanged (features are extra inputs)
_DATA_FREE = {
    "max_len",
    "valid_users",  # which users validate changes training, not the test users or targets
    "cache_dir",
    "item_features",
    "item_feature_fields",
    "user_features",
    "user_feature_fields",
}

# protocol fields that leave the test users, targets and ranking unchanged
_PROTOCOL_FREE = {"max_len", "valid", "valid_users", "others_train_on_second_to_last"}


class Run:
    """A finished run's per-user test metrics and what must match for a paired comparison.

    Several folders (the seeds of one configuration) make one run whose per-user metrics are
    the mean over the seeds: pairing seed means user by user removes most of the seed noise
    that a single pair of runs carries, without pretending the seeds are more users.
    """

    def __init__(self, paths: Path | list[Path]) -> None:
        paths = [paths] if isinstance(paths, Path) else list(paths)
        self.paths, self.path = paths, paths[0]
        if len(paths) > 1:
            seeds = [Run(p) for p in paths]
            for other in seeds[1:]:
                check_pairable(seeds[0], other, "averaged")
            self.results, self.item_ids = seeds[0].results, seeds[0].item_ids
            self.seed_ranks = [r.ranks for r in seeds]
            self.name = _group_name(paths)
        else:
            path = self.path
            if not (path / "test_ranks.npy").is_file() or not (path / "results.json").is_file():
                sys.exit(f"{path} is not a finished run (no test_ranks.npy / results.json)")
            self.seed_ranks = [np.load(path / "test_ranks.npy")]
            self.results = json.loads((path / "results.json").read_text())
            self.item_ids = (
                np.load(path / "item_ids.npy") if (path / "item_ids.npy").exists() else None
            )
            self.name = path.name
        self.ranks = self.seed_ranks[0]

    def per_user(self, ks: list[int]) -> dict[str, np.ndarray]:
        """Per-user metrics, averaged over the seeds."""
        tables = [per_user_metrics(r, ks) for r in self.seed_ranks]
        return {k: np.mean([t[k] for t in tables], axis=0) for k in tables[0]}

    def pairing_key(self) -> dict:
        data = {k: v for k, v in self.results["config"]["data"].items() if k not in _DATA_FREE}
        protocol = {
            k: v for k, v in self.results["test"]["protocol"].items() if k not in _PROTOCOL_FREE
        }
        return {"data": data, "protocol": protocol, "n_users": len(self.ranks)}


def _group_name(paths: list[Path]) -> str:
    """`name_s42,name_s1,name_s2` -> `name (3 seeds)`."""
    names = [p.name for p in paths]
    n = next(
        (i for i, c in enumerate(zip(*names, strict=False)) if len(set(c)) > 1),
        min(map(len, names)),
    )
    prefix = names[0][:n].rstrip("_")
    prefix = prefix[:-2] if prefix.endswith("_s") else prefix
    return f"{prefix or paths[0].name} ({len(paths)} seeds)"


def check_pairable(a: Run, b: Run, verb: str = "paired") -> None:
    """Exit naming the difference unless a and b rank the same users, items and targets."""
    ka, kb = a.pairing_key(), b.pairing_key()
    for section in ka:
        if ka[section] != kb[section]:
            diff = ka[section]
            if isinstance(diff, dict):
                diff = {
                    k: (ka[section].get(k), kb[section].get(k))
                    for k in sorted(set(ka[section]) | set(kb[section]))
                    if ka[section].get(k) != kb[section].get(k)
                }
            sys.exit(f"{a.path} and {b.path} cannot be {verb}: {section} differs {diff}")
    if (
        a.item_ids is not None
        and b.item_ids is not None
        and not np.array_equal(a.item_ids, b.item_ids)
    ):
        sys.exit(f"{a.path} and {b.path} cannot be {verb}: their item id maps differ")


def summarise(run: Run | np.ndarray, keys: list[str], level: float = 0.95) -> dict[str, dict]:
    """Metric -> {mean, ci_low, ci_high} from a run's per-user test ranks (seeds averaged per
    user) or from one array of ranks."""
    ks = _ks(keys)
    per_user = run.per_user(ks) if isinstance(run, Run) else per_user_metrics(run, ks)
    out = {}
    for key in keys:
        low, high = confidence_interval(per_user[key], level)
        out[key] = {"mean": float(per_user[key].mean()), "ci_low": low, "ci_high": high}
    return out


def paired_test(a: np.ndarray, b: np.ndarray, level: float = 0.95) -> dict[str, float]:
    """B − A for per-user values of one metric: mean, its CI, t-test and Wilcoxon p-values.

    Identical runs (every difference 0) get p = 1 from both tests, where scipy would return
    NaN or raise.
    """
    diff = np.asarray(b, dtype=np.float64) - np.asarray(a, dtype=np.float64)
    low, high = confidence_interval(diff, level)
    if not np.any(diff):
        p_t = p_w = 1.0
    else:
        p_t = float(stats.ttest_rel(b, a).pvalue)
        p_w = float(stats.wilcoxon(diff, zero_method="wilcox").pvalue)
    return {
        "diff": float(diff.mean()),
        "diff_ci_low": low,
        "diff_ci_high": high,
        "p_ttest": p_t,
        "p_wilcoxon": p_w,
        "n_users": int(diff.size),
        "n_nonzero": int(np.count_nonzero(diff)),
    }


def holm(pvalues: list[float]) -> list[float]:
    """Holm–Bonferroni adjusted p-values (step-down, monotone, capped at 1), input order kept."""
    m = len(pvalues)
    order = np.argsort(pvalues, kind="stable")
    adjusted = np.empty(m)
    running = 0.0
    for i, j in enumerate(order):
        running = max(running, min(1.0, (m - i) * pvalues[j]))
        adjusted[j] = running
    return adjusted.tolist()


def compare(runs: list[Run], keys: list[str], level: float = 0.95, baseline: bool = False) -> dict:
    """Per-run CIs and the pairs' paired tests (with Holm-adjusted t-test p-values).

    With `baseline` only (first run, other run) pairs are tested: a model table "beside
    SASRec" asks k − 1 questions, not k(k − 1)/2, and Holm's correction should count only those.
    """
    for a, b in itertools.combinations(runs, 2):
        check_pairable(a, b)
    per_run = {r.name: summarise(r, keys, level) for r in runs}
    pairs = {}
    tested = [(runs[0], r) for r in runs[1:]] if baseline else itertools.combinations(runs, 2)
    for a, b in tested:
        ua, ub = a.per_user(_ks(keys)), b.per_user(_ks(keys))
        pairs[f"{b.name} - {a.name}"] = {k: paired_test(ua[k], ub[k], level) for k in keys}
    flat = [(p, k) for p in pairs for k in keys]
    for (p, k), adj in zip(flat, holm([pairs[p][k]["p_ttest"] for p, k in flat]), strict=True):
        pairs[p][k]["p_ttest_holm"] = adj
    return {"runs": per_run, "pairs": pairs}


def _ks(keys: list[str]) -> list[int]:
    return sorted({int(k.split("@")[1]) for k in keys if "@" in k})


def _unique_names(runs: list[Run]) -> None:
    """Runs are labelled by folder name; fall back to the parent/name path when names clash."""
    names = [r.name for r in runs]
    for r in runs:
        if names.count(r.name) > 1:
            r.name = f"{r.path.parent.name}/{r.path.name}"


def print_report(report: dict, keys: list[str]) -> None:
    width = max(len(n) for n in report["runs"]) + 2
    print(f"{'run':<{width}}" + "".join(f"{k:>26}" for k in keys))
    for name, metrics in report["runs"].items():
        cells = "".join(
            f"{m['mean']:>10.4f} [{m['ci_low']:.4f},{m['ci_high']:.4f}]"
            for m in (metrics[k] for k in keys)
        )
        print(f"{name:<{width}}{cells}")
    for pair, tests in report["pairs"].items():
        print(f"\n{pair}")
        print(
            f"  {'metric':<9}{'diff':>9}{'95% CI':>20}{'p t-test':>11}{'Holm':>9}{'p Wilcoxon':>12}"
        )
        for k in keys:
            t = tests[k]
            ci = f"[{t['diff_ci_low']:+.4f},{t['diff_ci_high']:+.4f}]"
            print(
                f"  {k:<9}{t['diff']:>+9.4f}{ci:>20}{t['p_ttest']:>11.2e}"
                f"{t['p_ttest_holm']:>9.2e}{t['p_wilcoxon']:>12.2e}"
            )


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "runs",
        nargs="+",
        help="finished run folders (same data); RUN_S42,RUN_S1,... averages seeds per user",
    )
    ap.add_argument("--name", help="result file name (default significance_<run names>)")
    ap.add_argument("--level", type=float, default=0.95, help="confidence level of the CIs")
    ap.add_argument(
        "--baseline",
        action="store_true",
        help="test only the first run against each other run (not every pair)",
    )
    ap.add_argument("--no-write", action="store_true", help="print only, write no result file")
    args = ap.parse_args()
    runs = [Run([Path(p) for p in arg.split(",")]) for arg in args.runs]
    _unique_names(runs)
    report = compare(runs, KEYS, args.level, baseline=args.baseline)
    print_report(report, KEYS)
    if args.no_write:
        return
    first = runs[0].results
    metrics = {
        f"{name}/{k}": v["mean"] for name, table in report["runs"].items() for k, v in table.items()
    }
    write_result(
        args.name or "significance_" + "_vs_".join(r.path.name for r in runs),
        metrics,
        dataset=first["config"]["data"]["dataset"],
        protocol=first["test"]["protocol"],
        notes=(
            f"{int(args.level * 100)}% normal CIs over {len(runs[0].ranks)} test users; paired "
            "t-test and Wilcoxon signed-rank (zeros dropped) on per-user values; Holm over all "
            + ("(first run, other run)" if args.baseline else "pair")
            + " x metric t-tests"
        ),
        extra={"runs": {r.name: [str(p) for p in r.paths] for r in runs}, "report": report},
    )


if __name__ == "__main__":
    main()
