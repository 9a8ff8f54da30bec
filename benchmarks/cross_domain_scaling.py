"""Multi-domain scaling (issue 25): own-domain NDCG@10 against non-embedding parameters for
single-domain SASRec and the joint SASRec on the merged sequence, per domain, with power-law
fits and intervals.

    seqrec sweep benchmarks/sweeps/food-kitchen-domains.yaml --out runs/sweeps/food-kitchen-domains
    SEQREC_DATA_DIR=../shared/data python benchmarks/cross_domain_scaling.py \\
        runs/sweeps/food-kitchen-domains

Each finished run of the sweep is one point per domain it is tested in: a single-domain run
(``data.domain``) in its domain, a joint run in both (its own-domain ranks, re-scored from its
weights as `cross_domain.own_domain_ranks` does). Per domain and family the script fits
NDCG@10 = a * N^b (N: non-embedding parameters) in log space and asks whether joint modelling
helps (the gap at each width, paired over the same test users) and whether its curve is steeper
(b_joint - b_single).

The intervals come from resampling the test users (1,000 draws by default), the same draw for
every run of a domain, because with one seed per width the points have no other replicate: each
draw recomputes every point's mean and refits both lines, so the exponent's interval and the
slope difference's are the test set's uncertainty, paired across runs. Seed-to-seed variance is
not in them (cross_domain.py measures it at width 64: the per-seed spread of NDCG@10 there is
about 0.001).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from common import ROOT, data_dir, write_result
from cross_domain import TITLES, own_domain_ranks
from seqrec.eval.stats import normal_ci, paired_test, per_user_metrics
from seqrec.trainer.run import load_run_config

FIGURES = ROOT / "benchmarks" / "figures"
FAMILIES = ("single", "joint")


def collect(sweep: Path) -> list[dict]:
    """One record per finished run: family, width, non-embedding parameters, how it ended,
    and its own-domain test rank per user, by domain."""
    runs = []
    for results in sorted((sweep / "runs").glob("*/results.json")):
        run_dir = results.parent
        res = json.loads(results.read_text())
        cfg = load_run_config(run_dir)
        runs.append(
            {
                "run": run_dir.name,
                "family": "single" if cfg.data.domain else "joint",
                "hidden": cfg.model.hidden,
                "layers": cfg.model.layers,
                "non_embedding": res["params"]["non_embedding"],
                "epochs_run": res.get("epochs_run"),
                "best_epoch": res.get("best_epoch"),
                "stopped_by": res.get("stopped_by"),
                "train_seconds": res.get("train_seconds"),
                "ranks": own_domain_ranks(run_dir),
            }
        )
    return runs


def log_slopes(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares (log a, b) of log y = log a + b log x for each row of y [draws, points]."""
    lx = np.log(x)
    ly = np.log(y)
    cx = lx - lx.mean()
    b = (ly - ly.mean(axis=-1, keepdims=True)) @ cx / (cx @ cx)
    return ly.mean(axis=-1) - b * lx.mean(), b


def fit_power(
    x: np.ndarray, ndcg: np.ndarray, draws: np.ndarray
) -> tuple[float, float, np.ndarray]:
    """(log a, b) of the points' means ndcg [points, users] against x, and b on every user
    resample in ``draws`` [draws, users]."""
    log_a, b = log_slopes(x, ndcg.mean(axis=1)[None, :])
    _, b_boot = log_slopes(x, ndcg[:, draws].mean(axis=2).T)
    return float(log_a[0]), float(b[0]), b_boot


def analyse(runs: list[dict], n_boot: int, seed: int) -> dict:
    """Per domain: each family's points (mean and 95% CI over users), its power-law fit with a
    user-bootstrap interval of the exponent, joint minus single at each width (paired over
    users), and the exponent difference with its interval."""
    domains = sorted({d for r in runs for d in r["ranks"]})
    out = {}
    rng = np.random.default_rng(seed)
    for domain in domains:
        mine = [r for r in runs if domain in r["ranks"]]
        users = sorted(set.intersection(*(set(r["ranks"][domain]) for r in mine)))
        draws = rng.integers(0, len(users), (n_boot, len(users)))
        per_family, values = {}, {}
        for family in FAMILIES:
            pts = sorted((r for r in mine if r["family"] == family), key=lambda r: r["hidden"])
            if not pts:
                continue
            ndcg = np.stack(
                [
                    per_user_metrics(np.array([r["ranks"][domain][u] for u in users]), [10])[
                        "NDCG@10"
                    ]
                    for r in pts
                ]
            )  # [points, users]
            values[family] = (pts, ndcg)
            x = np.array([r["non_embedding"] for r in pts], dtype=np.float64)
            means = ndcg.mean(axis=1)
            points = [
                {
                    "hidden": r["hidden"],
                    "non_embedding": r["non_embedding"],
                    "ndcg10": float(m),
                    "ci": list(normal_ci(v)),
                    "epochs_run": r["epochs_run"],
                    "best_epoch": r["best_epoch"],
                    "stopped_by": r["stopped_by"],
                    "train_seconds": r["train_seconds"],
                    "run": r["run"],
                }
                for r, m, v in zip(pts, means, ndcg, strict=True)
            ]
            fit = {"points": points}
            if len(pts) >= 2:
                log_a, b, b_boot = fit_power(x, ndcg, draws)
                resid = np.log(means) - (log_a + b * np.log(x))
                total = np.log(means) - np.log(means).mean()
                fit |= {
                    "a": float(np.exp(log_a)),
                    "b": b,
                    "b_ci": [float(q) for q in np.quantile(b_boot, [0.025, 0.975])],
                    # R² needs a third point to mean anything and a slope to explain
                    "r2_log": float(1 - (resid @ resid) / (total @ total))
                    if len(pts) > 2 and total @ total > 0
                    else None,
                }
            per_family[family] = fit
        row: dict = {"users": len(users), **per_family}
        if set(per_family) == set(FAMILIES):
            # the exponents compared on the widths both families have, so that a family
            # trained over a wider range is not compared on a different stretch of its curve
            (s_pts, s_ndcg), (j_pts, j_ndcg) = values["single"], values["joint"]
            common = sorted({r["hidden"] for r in s_pts} & {r["hidden"] for r in j_pts})
            if len(common) >= 2:
                s_rows = [i for i, r in enumerate(s_pts) if r["hidden"] in common]
                j_rows = [i for i, r in enumerate(j_pts) if r["hidden"] in common]
                x = np.array([s_pts[i]["non_embedding"] for i in s_rows], dtype=np.float64)
                _, b_single, boot_single = fit_power(x, s_ndcg[s_rows], draws)
                _, b_joint, boot_joint = fit_power(x, j_ndcg[j_rows], draws)
                diff = boot_joint - boot_single
                row["b_joint_minus_single"] = {
                    "widths": common,
                    "b_single": b_single,
                    "b_joint": b_joint,
                    "diff": b_joint - b_single,
                    "ci": [float(q) for q in np.quantile(diff, [0.025, 0.975])],
                    "share_of_draws_steeper": float((diff > 0).mean()),
                }
            gaps = []
            s_by_width = {r["hidden"]: i for i, r in enumerate(s_pts)}
            for j, r in enumerate(j_pts):
                if r["hidden"] in s_by_width:
                    test = paired_test(s_ndcg[s_by_width[r["hidden"]]], j_ndcg[j])
                    gaps.append({"hidden": r["hidden"], **test})
            row["joint_minus_single"] = gaps
        out[domain] = row
    return out


def plot(record: dict, path: Path) -> None:
    """One panel per domain: NDCG@10 against non-embedding parameters (log-log), each family's
    points with their 95% CI over users and its fitted line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    domains = record["by_domain"]
    fig, axes = plt.subplots(1, len(domains), figsize=(5.2 * len(domains), 4), squeeze=False)
    colours = {"single": "tab:blue", "joint": "tab:orange"}
    for ax, (domain, row) in zip(axes[0], domains.items(), strict=True):
        for family in FAMILIES:
            fit = row.get(family)
            if not fit:
                continue
            x = np.array([p["non_embedding"] for p in fit["points"]], dtype=np.float64)
            y = np.array([p["ndcg10"] for p in fit["points"]])
            lo = y - np.array([p["ci"][0] for p in fit["points"]])
            hi = np.array([p["ci"][1] for p in fit["points"]]) - y
            label = "single-domain SASRec" if family == "single" else "joint SASRec (merged)"
            if "b" in fit:
                label += f", b = {fit['b']:.3f} [{fit['b_ci'][0]:.3f}, {fit['b_ci'][1]:.3f}]"
                grid = np.geomspace(x.min(), x.max(), 50)
                ax.plot(grid, fit["a"] * grid ** fit["b"], color=colours[family], lw=1)
            ax.errorbar(x, y, yerr=[lo, hi], fmt="o", color=colours[family], label=label, ms=4)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("non-embedding parameters")
        ax.set_ylabel(f"{domain}: own-domain test NDCG@10")
        ax.set_title(f"{domain} targets ({row['users']} users)")
        ax.legend(fontsize=7, loc="lower right")
    fig.suptitle(f"{record['title']}: single-domain vs joint SASRec, width sweep", fontsize=10)
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    tmp.replace(path)


def table(rec: dict) -> str:
    """RESULTS.md's section: each domain's points, fits and the joint-vs-single answers."""
    lines = [
        f"## Multi-domain scaling: {rec['title']} ([{rec['name']}](ARCHIVE.md#{rec['name']}))",
        "",
        "Own-domain test NDCG@10 against non-embedding parameters N (width sweep, 2 blocks, one "
        "seed per point), power law NDCG@10 = a N^b fitted in log space; intervals: 95% over "
        "test users (the points' CIs; the exponents' by resampling users, the same draw for "
        "every run of a domain). `joint - single`: paired over the same users at each width.",
        "",
        "| domain | family | width | N | NDCG@10 [95% CI] | ended | joint - single [95% CI] | p |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for domain, row in rec["metrics"]["by_domain"].items():
        gaps = {g["hidden"]: g for g in row.get("joint_minus_single", [])}
        for family in FAMILIES:
            for p in row.get(family, {}).get("points", []):
                gap = gaps.get(p["hidden"]) if family == "joint" else None
                cells = (
                    [f"{gap['diff']:+.4f} [{gap['diff_ci_low']:+.4f}, {gap['diff_ci_high']:+.4f}]",
                     f"{gap['p_ttest']:.2g}"]
                    if gap else ["—", "—"]
                )  # fmt: skip
                lines.append(
                    f"| {domain} | {family} | {p['hidden']} | {p['non_embedding']:,} | "
                    f"{p['ndcg10']:.4f} [{p['ci'][0]:.4f}, {p['ci'][1]:.4f}] | "
                    f"{p['stopped_by']} at epoch {p['epochs_run']} | " + " | ".join(cells) + " |"
                )
    lines += [
        "",
        "| domain | family | b [95% CI] | a | R² (log) | on the shared widths: b joint - b "
        "single [95% CI] | draws where joint is steeper |",
        "|---|---|---|---|---|---|---|",
    ]
    for domain, row in rec["metrics"]["by_domain"].items():
        steeper = row.get("b_joint_minus_single")
        for family in FAMILIES:
            fit = row.get(family, {})
            if "b" not in fit:
                continue
            r2 = "—" if fit["r2_log"] is None else f"{fit['r2_log']:.2f}"
            diff = (
                [f"{steeper['b_joint']:.3f} - {steeper['b_single']:.3f} = {steeper['diff']:+.3f} "
                 f"[{steeper['ci'][0]:+.3f}, {steeper['ci'][1]:+.3f}] (widths "
                 f"{', '.join(map(str, steeper['widths']))})",
                 f"{steeper['share_of_draws_steeper']:.0%}"]
                if steeper and family == "joint" else ["—", "—"]
            )  # fmt: skip
            lines.append(
                f"| {domain} | {family} | {fit['b']:.3f} [{fit['b_ci'][0]:.3f}, "
                f"{fit['b_ci'][1]:.3f}] | {fit['a']:.3g} | {r2} | " + " | ".join(diff) + " |"
            )
    figure = f"figures/{rec['name']}.png"
    if (ROOT / "benchmarks" / figure).is_file():
        lines += ["", f"![{rec['name']}]({figure})"]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("sweep", type=Path, help="the sweep folder (runs/, results.parquet)")
    ap.add_argument("--boot", type=int, default=1000, help="user resamples for the intervals")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--name", default="cross_domain_scaling_food_kitchen")
    args = ap.parse_args()
    data_dir()
    if not (args.sweep / "runs").is_dir():
        raise SystemExit(f"{args.sweep} holds no runs/ folder; pass the folder of a seqrec sweep")
    runs = collect(args.sweep)
    if not runs:
        raise SystemExit(f"no finished run in {args.sweep}/runs; train the sweep first")
    for r in runs:
        users = {d: len(v) for d, v in r["ranks"].items()}
        print(f"{r['run']}: {r['family']} width {r['hidden']}, test users per domain {users}")
    by_domain = analyse(runs, args.boot, args.seed)
    dataset = load_run_config(args.sweep / "runs" / runs[0]["run"]).data.dataset
    title = TITLES.get(dataset, dataset)
    path = FIGURES / f"{args.name}.png"
    plot({"by_domain": by_domain, "title": title}, path)
    print(f"figure: {path}")
    write_result(
        args.name,
        {"by_domain": by_domain},
        dataset=dataset,
        protocol="leave-one-out on the merged sequence; per target domain, full ranking among "
        "the target domain's items (own), seen items masked; one seed per point",
        extra={
            "title": title,
            "boot": args.boot,
            "runs": [{k: v for k, v in r.items() if k != "ranks"} for r in runs],
        },
    )


if __name__ == "__main__":
    main()
