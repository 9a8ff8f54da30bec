"""Cross-domain benchmark (issue 25): single-domain vs joint models on Amazon Food-Kitchen
and Beauty-Electronics (``--dataset``).

    SEQREC_DATA_DIR=../shared/data python benchmarks/cross_domain.py --seeds 42
    SEQREC_DATA_DIR=../shared/data python benchmarks/cross_domain.py --arms joint,joint-file-order
    SEQREC_DATA_DIR=../shared/data python benchmarks/cross_domain.py --dataset beauty-electronics
    python benchmarks/cross_domain.py --seeds 42,1 --collect   # the finished runs, any seeds

A finished run stopped by its time budget is trained further (``seqrec train --resume RUN -o
train.time_budget_s=N``) when ``--time-budget`` is larger than the wall time it used, so a
larger budget converges the same runs instead of retraining them.

Each arm is a preset (plus overrides) trained per seed into ``--runs-dir/<arm>-s<seed>``; a
finished run is read, not retrained. Recorded per arm and domain, mean over seeds: NDCG@10 and
HR@10 within the target's own domain (``own``: all of that domain's items, seen ones masked),
over the joint catalogue (``joint``) and against 999 sampled in-domain negatives (``sampled``,
ABXI's published protocol, labelled as such). A single-domain arm (``data.domain``) ranks
within its domain only, so it has ``own`` and ``sampled`` rows. The ``joint-file-order`` arm
trains the joint SASRec on the files' own same-day order (domain A listed before B within a
day) instead of the default fixed-seed shuffle: its gap to ``joint`` is what a model gains
from that artefact. Note that file order also changes which target each user has, so the two
arms rank different test rows; the gap is a model-plus-data effect, read as such.

Every joint arm is paired with the single-domain SASRec of each target domain on the same test
users, per seed, and, where both hold two or more seeds, across seeds (`across_seeds`).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from scipy import stats

from common import ROOT, data_dir, write_result
from seqrec.data import prepare
from seqrec.eval.stats import normal_ci, paired_test, per_user_metrics, t_interval
from seqrec.recipe import load_config
from seqrec.run import Run
from seqrec.trainer.extend import extendable
from seqrec.trainer.run import train_run

DATASETS = {  # --dataset -> (catalogue name, preset suffix, its two domains)
    "food-kitchen": ("amazon-food-kitchen", "food-kitchen", ("food", "kitchen")),
    "beauty-electronics": (
        "amazon-beauty-electronics",
        "beauty-electronics",
        ("beauty", "electronics"),
    ),
}


TITLES = {name: f"Amazon {a.title()}-{b.title()}" for name, _, (a, b) in DATASETS.values()}


def arms_of(dataset: str) -> dict[str, tuple[str, list[str]]]:
    """Arm -> (preset, overrides) for one dataset. The single-domain arms are the joint
    SASRec's preset with ``data.domain`` set (Food-Kitchen keeps its own two presets, which
    are exactly that), so every arm shares one budget."""
    _, suffix, (a, b) = DATASETS[dataset]
    joint = f"sasrec-{suffix}"
    single = {
        d: (f"sasrec-{d}-only", []) if dataset == "food-kitchen" else (joint, [f"data.domain={d}"])
        for d in (a, b)
    }
    return {
        single_of(a): single[a],
        single_of(b): single[b],
        "joint": (joint, []),
        "joint-domain-emb": (f"sasrec-domains-{suffix}", []),
        "hstu-domain-emb": (f"hstu-domains-{suffix}", []),
        "abxi": (f"abxi-{suffix}", []),
        "joint-file-order": (joint, ["data.same_day_order=file"]),
    }


PROTOCOLS = ("own", "joint", "sampled")
KEYS = ("NDCG@10", "HR@10")


def run_arm(
    arm: str,
    spec: tuple[str, list[str]],
    seed: int,
    runs: Path,
    threads: int | None,
    budget: float | None,
) -> dict:
    """Train (or read) one arm's run for ``seed``; its per-domain test metrics and time."""
    preset, overrides = spec
    rules = []  # what an extension of a run already trained may change
    if threads:
        rules.append(f"train.threads={threads}")
    if budget:
        rules.append(f"train.time_budget_s={budget}")
    sets = [*overrides, f"train.seed={seed}", *rules]
    out = runs / f"{arm}-s{seed}"
    t0 = time.perf_counter()
    if (out / "results.json").is_file():
        # a run the budget stopped goes on from its checkpoint under a larger budget
        if budget and extendable(out, load_config(preset, sets)):
            train_run(None, out, resume=True, extend=rules)
            print(f"{arm} seed {seed}: extended in {time.perf_counter() - t0:.0f} s")
    elif (out / "checkpoint.pt").is_file():  # interrupted: finish it under this budget
        train_run(None, out, resume=True, extend=rules)
        print(f"{arm} seed {seed}: resumed in {time.perf_counter() - t0:.0f} s")
    else:
        train_run(load_config(preset, sets), out)
        print(f"{arm} seed {seed}: trained in {time.perf_counter() - t0:.0f} s")
    res = json.loads((out / "results.json").read_text())
    test = res["test"]["metrics"]
    per_domain = {k: v for k, v in test.items() if k.startswith("domain:")}
    return {
        "preset": preset,
        "overrides": sets,
        "run_dir": str(out),
        "test": per_domain,
        "epochs_run": res.get("epochs_run"),
        "best_epoch": res.get("best_epoch"),
        "train_seconds": res.get("train_seconds"),
        "stopped_by": res.get("stopped_by"),
        "wall_seconds": res.get("wall_seconds"),
        "extended": res.get("extended"),  # the earlier, shorter budgets' stops
        # how it was trained, from the run itself (a --collect call passes no settings)
        "trained_with": {
            k: res["config"]["train"].get(k) for k in ("threads", "time_budget_s", "patience")
        },
        "machine": res.get("machine"),
    }


def own_domain_ranks(run_dir: Path) -> dict[str, dict[str, int]]:
    """domain -> {user id: the test target's rank among its domain's items} of a finished run.

    Re-scored with the run's weights (a few seconds) because test_ranks.npy holds the headline
    (joint-catalogue) ranks only. A single-domain run ranks within its domain already, so its
    ranks are the own-domain ones."""
    run = Run(run_dir)
    store, split = prepare(run.config.data)
    result = run.evaluate("test")
    users = np.asarray(store.user_ids)[split.test.users]
    rows = result.domain_ranks
    if run.config.data.domain is not None:
        return {
            run.config.data.domain: dict(zip(users.tolist(), result.ranks.tolist(), strict=True))
        }
    out: dict[str, dict[str, int]] = {}
    for code, name in enumerate(rows.labels.names, start=1):
        mine = rows.target_domains == code
        out[name] = dict(zip(users[mine].tolist(), rows.own[mine].tolist(), strict=True))
    return out


def single_of(domain: str) -> str:
    """The arm of single-domain SASRec on ``domain``: the baseline of its targets."""
    return f"{domain}-only"


def paired_vs_single(rows: dict[str, list[dict]]) -> dict:
    """Each joint arm against the single-domain SASRec of each target domain, user for user
    (the same test rows: docs/CROSS_DOMAIN.md), on own-domain NDCG@10 and HR@10, per seed;
    every arm's own-domain means with their 95% CI over users (``ci``); and, for an arm paired
    on two or more seeds, the difference across seeds (``across_seeds``, `across_seeds`)."""
    ranks = {
        arm: [own_domain_ranks(Path(r["run_dir"])) for r in runs] for arm, runs in rows.items()
    }
    domains = sorted({d for per_seed in ranks.values() for got in per_seed for d in got})
    tests, cis, pairs = {}, {}, {}
    for arm, per_seed in ranks.items():
        for run, by_domain in zip(rows[arm], per_seed, strict=True):
            seed = seed_of(run["overrides"])
            for domain, by_user in by_domain.items():
                values = per_user_metrics(np.array(list(by_user.values())), [10])
                for metric in KEYS:
                    low, high = normal_ci(values[metric])
                    mean = float(values[metric].mean())
                    cis[f"{arm}/{domain}/own/{metric}/{seed}"] = [mean, low, high]
        if arm in map(single_of, domains):
            continue
        for domain in domains:
            base = single_of(domain)
            if base not in ranks:
                continue
            base_by_seed = {
                seed_of(r["overrides"]): got for r, got in zip(rows[base], ranks[base], strict=True)
            }
            for run, mine in zip(rows[arm], per_seed, strict=True):
                theirs = base_by_seed.get(seed_of(run["overrides"]))
                if theirs is None:  # no single-domain run of this seed to pair with
                    continue
                users = sorted(set(mine[domain]) & set(theirs[domain]))
                if len(users) != len(theirs[domain]) or len(users) != len(mine[domain]):
                    # joint-file-order: the files' order changes which event is each user's
                    # test target, so its rows are not the single-domain run's; no pairing
                    continue
                a = per_user_metrics(np.array([theirs[domain][u] for u in users]), [10])
                b = per_user_metrics(np.array([mine[domain][u] for u in users]), [10])
                for metric in KEYS:
                    key = f"{arm} - {base}/{domain}/own/{metric}/{seed_of(run['overrides'])}"
                    tests[key] = paired_test(a[metric], b[metric])
                    pairs.setdefault(f"{arm} - {base}/{domain}/own/{metric}", []).append(
                        (users, a[metric], b[metric])
                    )
    return {"tests": tests, "ci": cis, "across_seeds": across_seeds(pairs)}


def across_seeds(pairs: dict[str, list[tuple[list, np.ndarray, np.ndarray]]]) -> dict:
    """For each comparison paired on two or more seeds, two answers to "does B beat A over
    seeds", since one seed's paired test says nothing about seed-to-seed variance:

    * ``seed_t``: the per-seed differences (each a mean over users) as a sample of seeds, their
      mean with a Student-t 95% interval (n - 1 degrees of freedom) and one-sample t-test p;
      honest about seed variance, but with 3 seeds it has 2 degrees of freedom;
    * ``users_seed_mean``: each user's metric averaged over the seeds, for A and for B, then
      B - A paired over users: does the seed-averaged B beat the seed-averaged A on the same
      users (the test users are the same in every seed: the split does not depend on it).
    """
    out = {}
    for key, got in pairs.items():
        if len(got) < 2:
            continue
        users = got[0][0]
        if any(u != users for u, _, _ in got):  # not the same test users in every seed
            continue
        diffs = [float(b.mean() - a.mean()) for _, a, b in got]
        mean, low, high = t_interval(diffs)
        sd = float(np.std(diffs, ddof=1))
        t_p = 1.0 if sd == 0 else float(stats.ttest_1samp(diffs, 0.0).pvalue)
        a_mean = np.mean([a for _, a, _ in got], axis=0)
        b_mean = np.mean([b for _, _, b in got], axis=0)
        out[key] = {
            "seeds": len(got),
            "seed_t": {"diff": mean, "ci_low": low, "ci_high": high, "p": t_p},
            "users_seed_mean": paired_test(a_mean, b_mean),
        }
    return out


def seed_of(overrides: list[str]) -> str:
    return next(o for o in overrides if o.startswith("train.seed=")).split("=", 1)[1]


def summarise(rows: dict[str, list[dict]]) -> dict:
    """arm/domain/protocol/metric -> mean over seeds (only the keys each run reported)."""
    metrics: dict[str, float] = {}
    for arm, runs in rows.items():
        keys = sorted({k for r in runs for k in r["test"]})
        for key in keys:
            _, rest = key.split(":", 1)
            domain, protocol, metric = rest.split("/", 2)
            if protocol not in PROTOCOLS or metric not in KEYS:
                continue
            vals = [r["test"][key] for r in runs if key in r["test"]]
            metrics[f"{arm}/{domain}/{protocol}/{metric}"] = sum(vals) / len(vals)
    return metrics


def table(rec: dict) -> str:
    """RESULTS.md's cross-domain section: per arm and domain, the three protocols' NDCG@10 and
    HR@10 (mean over the record's seeds), and how each run ended."""
    m = rec["metrics"]
    domains = sorted({k.split("/")[1] for k in m})
    head = ["arm"] + [f"{d} {p} {k}" for d in domains for p in PROTOCOLS for k in KEYS]
    lines = [
        f"## Cross-domain: {TITLES.get(rec['dataset'], rec['dataset'])} "
        f"([{rec['name']}](ARCHIVE.md#{rec['name']}))",
        "",
        "Test metrics per target domain, mean over each arm's seeds (`seeds`): `own` ranks "
        "the target's domain, `joint` the "
        "whole catalogue, `sampled` 999 in-domain negatives (ABXI's protocol; sampled)."
        + (
            " `joint-file-order` trains and tests on the files' same-day order (the artefact); "
            "every other arm on the fixed-seed shuffle."
            if "joint-file-order" in rec["runs"]
            else " Same-day events in the fixed-seed shuffle."
        )
        + (
            " ABXI reads the target's domain, so its `joint` columns are conditioned on it: "
            "compare it on `own` and `sampled`."
            if "abxi" in rec["runs"]
            else ""
        ),
        "",
        "| " + " | ".join(head) + " | seeds | ended |",
        "|" + "---|" * (len(head) + 2),
    ]
    for arm, runs in rec["runs"].items():
        cells = [m.get(f"{arm}/{d}/{p}/{k}") for d in domains for p in PROTOCOLS for k in KEYS]
        ended = "; ".join(
            f"{r['stopped_by']} at epoch {r['epochs_run']}, {r['train_seconds']:.0f} s"
            for r in runs
            if r.get("train_seconds") is not None
        )
        shown = ["—" if v is None else f"{v:.4f}" for v in cells]
        seeds = ", ".join(seed_of(r["overrides"]) for r in runs)
        lines.append(f"| {arm} | " + " | ".join(shown) + f" | {seeds} | {ended} |")
    if paired := rec.get("paired_vs_single"):
        lines += paired_table(paired)
    return "\n".join(lines) + "\n"


def paired_table(paired: dict) -> list[str]:
    """Own-domain NDCG@10 / HR@10 with 95% CIs over users, and each joint arm minus the
    single-domain SASRec of the target's domain on the same users (paired t-test)."""
    lines = [
        "",
        "Own-domain test metrics per seed with 95% CIs over users, and the paired difference "
        "from single-domain SASRec on the same test users (B - A; p: paired t-test).",
        "",
        "| arm | domain | seed | NDCG@10 [95% CI] | HR@10 [95% CI] | NDCG@10 vs single | p | "
        "HR@10 vs single | p |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for key in sorted(k for k in paired["ci"] if "/NDCG@10/" in k):
        arm, domain, _, _, seed = key.split("/")
        cell = []
        for metric in KEYS:
            mean, low, high = paired["ci"][f"{arm}/{domain}/own/{metric}/{seed}"]
            cell.append(f"{mean:.4f} [{low:.4f}, {high:.4f}]")
        for metric in KEYS:
            test = paired["tests"].get(f"{arm} - {single_of(domain)}/{domain}/own/{metric}/{seed}")
            if test is None:
                cell += ["—", "—"]
                continue
            cell.append(
                f"{test['diff']:+.4f} [{test['diff_ci_low']:+.4f}, {test['diff_ci_high']:+.4f}]"
            )
            cell.append(f"{test['p_ttest']:.2g}")
        lines.append(f"| {arm} | {domain} | {seed} | " + " | ".join(cell) + " |")
    if paired.get("across_seeds"):
        lines += seeds_table(paired["across_seeds"])
    return lines


def seeds_table(across: dict) -> list[str]:
    """The joint arms against single-domain SASRec over seeds (`across_seeds`)."""
    lines = [
        "",
        "Over seeds (B - A): `seeds t` is the mean of the per-seed differences with a Student-t "
        "95% interval over seeds (n - 1 degrees of freedom) and its one-sample t-test; "
        "`seed-mean users` averages each user's metric over the seeds for each arm and tests "
        "the difference paired over users.",
        "",
        "| comparison | domain | metric | seeds | seeds t: diff [95% CI] | p | "
        "seed-mean users: diff [95% CI] | p |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for key in sorted(across):
        comparison, domain, _, metric = key.split("/")
        got = across[key]
        st, us = got["seed_t"], got["users_seed_mean"]
        lines.append(
            f"| {comparison} | {domain} | {metric} | {got['seeds']} | "
            f"{st['diff']:+.4f} [{st['ci_low']:+.4f}, {st['ci_high']:+.4f}] | {st['p']:.2g} | "
            f"{us['diff']:+.4f} [{us['diff_ci_low']:+.4f}, {us['diff_ci_high']:+.4f}] | "
            f"{us['p_ttest']:.2g} |"
        )
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--dataset", choices=sorted(DATASETS), default="food-kitchen")
    arms_help = ", ".join(arms_of("food-kitchen"))
    ap.add_argument(
        "--arms",
        help=f"comma list (default: all) of {arms_help}, with the "
        "dataset's own domains in the single-domain arms' names",
    )
    ap.add_argument("--seeds", default="42", help="comma list of seeds")
    ap.add_argument(
        "--runs-dir", type=Path, help="default: runs/cross_domain_<dataset> in the repository"
    )
    ap.add_argument("--threads", type=int, help="train.threads of every run")
    ap.add_argument(
        "--time-budget",
        type=float,
        help="train.time_budget_s of every run (stops before early "
        "stopping would; the runs record stopped_by)",
    )
    ap.add_argument("--name", help="result name (default: cross_domain_<dataset>)")
    ap.add_argument(
        "--collect",
        action="store_true",
        help="train nothing: record the (arm, seed) runs already finished in --runs-dir",
    )
    args = ap.parse_args()
    data_dir()
    specs = arms_of(args.dataset)
    tag = args.dataset.replace("-", "_")
    args.runs_dir = args.runs_dir or ROOT / "runs" / f"cross_domain_{tag}"
    arms = [a for a in (args.arms or ",".join(specs)).split(",") if a]
    unknown = [a for a in arms if a not in specs]
    if unknown:
        raise SystemExit(f"unknown arm(s) {', '.join(unknown)}; choose from {', '.join(specs)}")
    seeds = [int(s) for s in args.seeds.split(",")]
    if args.collect:  # the finished runs only: arms may hold different seeds
        done = lambda a, s: (args.runs_dir / f"{a}-s{s}" / "results.json").is_file()  # noqa: E731
        plan = {arm: [s for s in seeds if done(arm, s)] for arm in arms}
        plan = {arm: got for arm, got in plan.items() if got}
    else:
        plan = {arm: seeds for arm in arms}
    budget = None if args.collect else args.time_budget  # collecting never trains further
    rows = {
        arm: [run_arm(arm, specs[arm], s, args.runs_dir, args.threads, budget) for s in got]
        for arm, got in plan.items()
    }
    write_result(
        args.name or f"cross_domain_{tag}",
        summarise(rows),
        dataset=DATASETS[args.dataset][0],
        protocol="leave-one-out on the merged sequence; per target domain: own-domain full "
        "ranking, joint-catalogue full ranking, 999 sampled in-domain negatives (labelled)",
        extra={"seeds": seeds, "runs": rows, "paired_vs_single": paired_vs_single(rows)},
    )


if __name__ == "__main__":
    main()
