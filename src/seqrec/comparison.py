"""Compare finished runs on the same test users: 95% CIs and paired per-user tests.

    import seqrec
    result = seqrec.compare(["runs/sasrec", "runs/hstu", "runs/llama"], baseline=True)
    print(result.to_text())
    result = seqrec.compare(["runs/a_s42,runs/a_s1,runs/a_s2", "runs/b_s42,runs/b_s1,runs/b_s2"])

Every run folder holds ``test_ranks.npy``, the full-ranking rank of each test user's held-out
item in the split's user order, so per-user HR@K and NDCG@K follow exactly and two runs on the
same data pair user by user. Two runs are paired only when they rank the same users, items and
targets under the same protocol; otherwise the refusal names what differs, because a paired
test between different test sets answers nothing. Several folders joined by commas (or given as
a list) are the seeds of one arm: its per-user values are the seeds' mean, which removes most
of the seed noise that one pair of runs carries without pretending the seeds are more users.
Seeds must share their whole configuration apart from the seed and ``RUN_ENVIRONMENT``.

The statistics live in ``seqrec.eval.stats``; this module only reads run folders.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from seqrec.errors import SeqrecError
from seqrec.eval import stats

DEFAULT_METRICS = ("NDCG@10", "HR@10", "NDCG@20", "HR@20", "NDCG@5", "HR@5")

# config fields that change where and how fast a run ran, or what it logged, but not what it
# learned; seeds of one arm (and one leaderboard row) may differ in these
RUN_ENVIRONMENT = frozenset({
    "train.seed",
    "train.device",
    "train.threads",
    "train.time_budget_s",
    "train.checkpoint_every",
    "train.log_every",
    "eval.batch_users",
    "objective.chunk_size",
    "data.cache_dir",
})  # fmt: skip

# data settings that leave the test users, items and targets unchanged: the window a model
# reads, who validates (which changes training, not the test) and extra feature inputs
_DATA_FREE = frozenset({
    "max_len", "valid_users", "cache_dir", "item_features", "item_feature_fields",
    "user_features", "user_feature_fields",
})  # fmt: skip

# test-protocol fields that describe validation or the window, not the test ranking
# repeat_share follows from the data and mask_seen, which are compared already
_PROTOCOL_FREE = frozenset({"max_len", "valid", "valid_users", "others_train_on_second_to_last",
                            "repeat_share"})  # fmt: skip


def repeat_rule(protocol: dict) -> str:
    """A test protocol's ``eval.repeat_targets``: runs from before the option recorded
    ``target_masked_if_seen: false``, which is the ``rank`` rule."""
    if "repeat_targets" in protocol:
        return protocol["repeat_targets"]
    return "miss" if protocol.get("target_masked_if_seen") else "rank"


def flatten(config: dict, prefix: str = "") -> dict:
    """{"train": {"seed": 1}} -> {"train.seed": 1}; dict-valued options stay whole values."""
    out = {}
    for key, value in config.items():
        if isinstance(value, dict) and not prefix:
            out.update(flatten(value, f"{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def config_differences(
    a: dict, b: dict, ignore: frozenset[str] = RUN_ENVIRONMENT
) -> dict[str, tuple]:
    """Dotted field -> (value in a, value in b) for every field both configs set differently.

    A field only one config has is skipped: it was added to seqrec between the two runs with a
    default that keeps the older behaviour, so it is not a difference between them.
    """
    fa, fb = flatten(a), flatten(b)
    return {
        k: (fa[k], fb[k])
        for k in sorted(fa.keys() & fb.keys())
        if k not in ignore and fa[k] != fb[k]
    }


@dataclass
class _Arm:
    """One compared arm: a run folder, or the seeds of one configuration averaged per user."""

    name: str
    paths: list[Path]
    results: dict
    item_ids: np.ndarray | None
    seed_ranks: list[np.ndarray] = field(default_factory=list)

    def per_user(self, ks: list[int]) -> dict[str, np.ndarray]:
        tables = [stats.per_user_metrics(r, ks) for r in self.seed_ranks]
        return {k: np.mean([t[k] for t in tables], axis=0) for k in tables[0]}

    def pairing_key(self) -> dict:
        data = self.results["config"]["data"]
        protocol = dict(self.results["test"]["protocol"])
        rule = repeat_rule(protocol)
        protocol.pop("target_masked_if_seen", None)  # the old name of the rule
        return {
            "data": {k: v for k, v in data.items() if k not in _DATA_FREE},
            "protocol": {
                **{k: v for k, v in protocol.items() if k not in _PROTOCOL_FREE},
                "repeat_targets": rule,
            },
            "test users": len(self.seed_ranks[0]),
        }


def _read_run(path: Path) -> _Arm:
    if not path.is_dir():
        raise SeqrecError(f"run folder {path} does not exist; check the paths given in runs")
    if not (path / "results.json").is_file() or not (path / "test_ranks.npy").is_file():
        raise SeqrecError(
            f"{path} is not a finished retrieval run (no results.json or test_ranks.npy); "
            "pass only run folders whose training ran to the end in runs"
        )
    results = json.loads((path / "results.json").read_text())
    if "config" not in results or "protocol" not in results.get("test", {}):
        raise SeqrecError(
            f"{path}/results.json has no config or test protocol; pass only folders that seqrec "
            "trained in runs"
        )
    ids = np.load(path / "item_ids.npy") if (path / "item_ids.npy").is_file() else None
    return _Arm(path.name, [path], results, ids, [np.load(path / "test_ranks.npy")])


def _unpairable(a: _Arm, b: _Arm) -> str | None:
    """What keeps a and b from ranking the same users, items and targets, or None."""
    ka, kb = a.pairing_key(), b.pairing_key()
    for section in ka:
        if ka[section] == kb[section]:
            continue
        if not isinstance(ka[section], dict):
            return f"{section} differ ({ka[section]} vs {kb[section]})"
        diff = {
            k: (ka[section].get(k), kb[section].get(k))
            for k in sorted(ka[section].keys() | kb[section].keys())
            if ka[section].get(k) != kb[section].get(k)
        }
        return f"{section} differs {diff}"
    if (
        a.item_ids is not None
        and b.item_ids is not None
        and not np.array_equal(a.item_ids, b.item_ids)
    ):
        return "their item id maps differ"
    return None


def _group_name(paths: list[Path]) -> str:
    """`arm_s42, arm_s1, arm_s2` -> `arm (3 seeds)`: the names' common prefix, less a seed tag."""
    names = [p.name for p in paths]
    n = next(
        (i for i, c in enumerate(zip(*names, strict=False)) if len(set(c)) > 1),
        min(map(len, names)),
    )
    prefix = names[0][:n].rstrip("_-")
    for tag in ("_seed", "-seed", "_s", "-s"):
        if prefix.endswith(tag):
            prefix = prefix[: -len(tag)]
            break
    return f"{prefix or names[0]} ({len(paths)} seeds)"


def _load_arm(spec: str | Path | Sequence[str | Path]) -> _Arm:
    if isinstance(spec, (str, Path)):
        spec = [p for p in str(spec).split(",") if p]
    paths = [Path(p).expanduser() for p in spec]
    if not paths:
        raise SeqrecError("an entry of runs is empty; give each arm as a run folder or its seeds")
    seeds = [_read_run(p) for p in paths]
    if len(seeds) == 1:
        return seeds[0]
    first = seeds[0]
    for other in seeds[1:]:
        problem = _unpairable(first, other)
        differs = config_differences(first.results["config"], other.results["config"])
        if problem is None and differs:
            problem = f"config differs {differs}"
        if problem:
            raise SeqrecError(
                f"{other.paths[0]} cannot be averaged with {first.paths[0]} as seeds of one arm: "
                f"{problem}; a comma-joined entry of runs must hold seeds of one configuration"
            )
    return _Arm(
        _group_name(paths), paths, first.results, first.item_ids, [s.seed_ranks[0] for s in seeds]
    )


def _check_metrics(metrics: Sequence[str]) -> list[str]:
    metrics = [metrics] if isinstance(metrics, str) else list(metrics)
    if not metrics:
        raise SeqrecError("metrics is empty; name at least one, e.g. metrics=['NDCG@10']")
    for m in metrics:
        name, _, k = m.partition("@")
        if (
            name not in ("HR", "NDCG", "Recall", "MRR")
            or (k and not k.isdigit())
            or (name != "MRR" and not k)
        ):
            raise SeqrecError(
                f"unknown metric {m!r} in metrics; use HR@K, NDCG@K, Recall@K, MRR@K or MRR"
            )
    return metrics


@dataclass
class CompareResult:
    """What `compare` measured, as plain data.

    ``rows``: one dict per (arm, metric) with the mean and its CI over test users (per-user
    seed means for a seed group, whose per-seed means and t-interval over seeds are added).
    ``pairs``: one dict per (pair, metric), ``b - a``, with the paired difference, its CI, the
    paired t-test and Wilcoxon p-values and the Holm-adjusted t-test p-value (adjusted over
    every pair and metric of this comparison).
    """

    metrics: list[str]
    level: float
    baseline: bool
    runs: dict[str, list[str]]
    rows: list[dict]
    pairs: list[dict]

    def to_dict(self) -> dict:
        """The nested form result files keep: ``runs`` name -> metric -> {mean, ci_low,
        ci_high}, ``pairs`` "b - a" -> metric -> test, plus the settings and run folders."""
        runs: dict[str, dict] = {}
        for row in self.rows:
            cell = {k: row[k] for k in ("mean", "ci_low", "ci_high")}
            if "seed_means" in row:
                cell |= {k: row[k] for k in ("seed_means", "seed_ci_low", "seed_ci_high")}
            runs.setdefault(row["run"], {})[row["metric"]] = cell
        pairs: dict[str, dict] = {}
        for p in self.pairs:
            test = {k: v for k, v in p.items() if k not in ("a", "b", "metric")}
            pairs.setdefault(f"{p['b']} - {p['a']}", {})[p["metric"]] = test
        return {
            "metrics": self.metrics,
            "level": self.level,
            "baseline": self.baseline,
            "paths": self.runs,
            "runs": runs,
            "pairs": pairs,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def to_text(self, width: int = 100) -> str:
        """Both tables, each line at most ``width`` characters: arms x metrics (as many metric
        columns per block as fit), then each pair's per-metric tests."""
        level = f"{self.level * 100:g}%"
        users = self.rows[0]["n_users"]
        lines = [
            f"mean [{level} CI] over {users:,} test users (seed groups: per-user mean of seeds)"
        ]
        names = {r["run"]: _fit(r["run"], 36) for r in self.rows}
        seeds = {r["run"]: r["seeds"] for r in self.rows}
        name_w = max(len(n) for n in names.values()) + 2
        cell_w = 26
        per_block = max(1, (width - name_w - 6) // cell_w)
        table = {(r["run"], r["metric"]): r for r in self.rows}
        for start in range(0, len(self.metrics), per_block):
            block = self.metrics[start : start + per_block]
            lines.append("")
            lines.append(
                f"{'run':<{name_w}}{'seeds':>5} " + "".join(f"{m:>{cell_w}}" for m in block)
            )
            for run, shown in names.items():
                cells = "".join(
                    f"{_ci(table[run, m], 'mean', 'ci_low', 'ci_high', '.4f'):>{cell_w}}"
                    for m in block
                )
                lines.append(f"{shown:<{name_w}}{seeds[run]:>5} {cells}")
        if self.pairs:
            lines += ["", f"paired per user, b - a: difference [{level} CI], p-values (Holm over "
                      f"{len(self.pairs)} t-tests)"]  # fmt: skip
        for (a, b), group in itertools.groupby(self.pairs, key=lambda p: (p["a"], p["b"])):
            lines.append("")
            lines.append(_fit(f"{b} - {a}", width))
            lines.append(
                f"  {'metric':<9}{'difference [CI]':>30}{'t-test':>11}{'Holm':>11}{'Wilcoxon':>11}"
            )
            for p in group:
                ci = _ci(p, "diff", "diff_ci_low", "diff_ci_high", "+.4f")
                lines.append(
                    f"  {p['metric']:<9}{ci:>30}{p['p_ttest']:>11.2e}"
                    f"{p['p_ttest_holm']:>11.2e}{p['p_wilcoxon']:>11.2e}"
                )
        return "\n".join(line.rstrip() for line in lines)


def _ci(row: dict, mean: str, low: str, high: str, spec: str) -> str:
    return f"{row[mean]:{spec}} [{row[low]:{spec}}, {row[high]:{spec}}]"


def _fit(text: str, width: int) -> str:
    """Shorten the middle of a long name so tables keep their columns."""
    if len(text) <= width:
        return text
    keep = width - 1
    return text[: keep - keep // 2] + "…" + text[-(keep // 2) :]


def compare(
    runs: Sequence[str | Path | Sequence[str | Path]],
    baseline: bool = False,
    *,
    metrics: Sequence[str] = DEFAULT_METRICS,
    level: float = 0.95,
) -> CompareResult:
    """Each arm's metrics with CIs over test users, and paired per-user tests between arms.

    ``runs``: finished run folders on the same data and test protocol; an entry that joins
    folders with commas (or is itself a list) is the seeds of one configuration. ``baseline``:
    test only the first arm against each other arm, k - 1 questions instead of k(k - 1)/2, so
    Holm's correction counts only those. ``metrics``: HR@K, NDCG@K, Recall@K, MRR@K or MRR.
    ``level``: the confidence level of every interval.
    """
    if isinstance(runs, (str, Path)):
        runs = [runs]
    if not runs:
        raise SeqrecError("runs is empty; pass at least one finished run folder")
    if not 0 < level < 1:
        raise SeqrecError(
            f"level={level} is not a confidence level; use a value in (0, 1), e.g. 0.95"
        )
    metrics = _check_metrics(metrics)
    arms = [_load_arm(spec) for spec in runs]
    for a, b in itertools.combinations(arms, 2):
        problem = _unpairable(a, b)
        if problem:
            raise SeqrecError(
                f"{a.paths[0]} and {b.paths[0]} cannot be paired: {problem}; pass runs on the "
                "same data and test protocol, and compare other runs in another call"
            )
    _unique_names(arms)
    ks = stats.metric_ks(metrics)
    per_user = [arm.per_user(ks) for arm in arms]
    rows = []
    for arm, values in zip(arms, per_user, strict=True):
        summary = stats.summarise(values, metrics, level)
        for m in metrics:
            row = {"run": arm.name, "metric": m, **summary[m], "seeds": len(arm.seed_ranks),
                   "n_users": len(arm.seed_ranks[0])}  # fmt: skip
            if len(arm.seed_ranks) > 1:
                means = [float(stats.per_user_metrics(r, ks)[m].mean()) for r in arm.seed_ranks]
                _, low, high = stats.t_interval(means, level)
                row |= {"seed_means": means, "seed_ci_low": low, "seed_ci_high": high}
            rows.append(row)
    n = len(arms)
    tested = [(0, j) for j in range(1, n)] if baseline else itertools.combinations(range(n), 2)
    pairs = []
    for i, j in tested:
        ua, ub = per_user[i], per_user[j]
        pairs += [{"a": arms[i].name, "b": arms[j].name, "metric": m,
                   **stats.paired_test(ua[m], ub[m], level)} for m in metrics]  # fmt: skip
    for p, adjusted in zip(pairs, stats.holm([p["p_ttest"] for p in pairs]), strict=True):
        p["p_ttest_holm"] = adjusted
    paths = {arm.name: [str(p) for p in arm.paths] for arm in arms}
    return CompareResult(metrics, level, baseline, paths, rows, pairs)


def _unique_names(arms: list[_Arm]) -> None:
    """Arms are named by folder; where two names clash, parent/name tells them apart."""
    names = [a.name for a in arms]
    for arm in arms:
        if names.count(arm.name) > 1:
            arm.name = f"{arm.paths[0].parent.name}/{arm.name}"
