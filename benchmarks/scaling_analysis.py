"""The analyses behind scaling_report.py, on table rows (dicts with the results.parquet
columns): per-family power laws, paired family comparisons, SASRec+ arms, compute curves and
the Performance Law. Each returns a JSON-able dict; the figures are in scaling_figures.py."""

from __future__ import annotations

import json
from itertools import combinations
from pathlib import Path

import numpy as np

from seqrec.errors import SeqrecError
from seqrec.eval.metrics import confidence_interval, per_user_metrics
from seqrec.scaling.compute import budgets_between, frontier, iso_flop, run_curve
from seqrec.scaling.curves import fit_curve, holdout_mask
from seqrec.scaling.fit import fit_table
from seqrec.scaling.perf_law_forms import data_term, performance_law

FAMILIES = ("sasrec", "hstu", "llama")
N_BOOT = 500
HOLDOUT = "largest:2"
HOLDOUT_RULE = (
    "per family, the 2 runs with the most non-embedding parameters are held out; the power law "
    "is refitted on the rest and scored on them"
)


def r4(v):
    return None if v is None else round(float(v), 4)


def power(rows: list[dict], holdout: str = HOLDOUT) -> dict:
    """NDCG@10 = a * N^b over non-embedding parameters: the fit on all runs (exponent, CI, R²)
    and the held-out check (refit without the largest runs, R² and predictions on them)."""
    x = np.array([r["non_embedding_params"] for r in rows], float)
    y = np.array([r["test_ndcg10"] for r in rows], float)
    full = fit_curve(x, y, "power", n_boot=N_BOOT, seed=0)
    out = {
        "n_runs": len(rows),
        "b": full.params["b"],
        "b_ci95": list(full.ci["b"]),
        "a": full.params["a"],
        "r2_fit": full.r2,
    }
    if len(rows) >= 5:
        held = holdout_mask(holdout, x)
        part = fit_curve(x, y, "power", heldout=held, n_boot=0)
        out["heldout"] = {
            "rule": holdout,
            "b_without_heldout": part.params["b"],
            "r2_fit": part.r2,
            "r2_heldout": part.r2_heldout,
            "runs": [
                {"layers": r["layers"], "hidden": r["hidden"], "predicted": p, "measured": m}
                for r, p, m in zip(
                    [r for r, h in zip(rows, held, strict=True) if h],
                    part.heldout_pred,
                    part.heldout_true,
                    strict=True,
                )
            ],
        }
    return out


def slope_t(rows: list[dict]) -> dict:
    """log NDCG@10 = log a + b log N by least squares with the textbook t interval on b
    (n - 2 degrees of freedom): with 3-4 points a bootstrap over runs is degenerate (resamples
    with one distinct x), the t interval is honest about how little 3 points say."""
    from scipy.stats import t as student

    x = np.log([r["non_embedding_params"] for r in rows])
    y = np.log([r["test_ndcg10"] for r in rows])
    b, log_a = np.polyfit(x, y, 1)
    resid = y - (log_a + b * x)
    n = len(x)
    se = np.sqrt((resid**2).sum() / (n - 2) / ((x - x.mean()) ** 2).sum())
    half = float(student.ppf(0.975, n - 2) * se)
    r2 = 1 - (resid**2).sum() / ((y - y.mean()) ** 2).sum()
    return {"n_runs": n, "b": float(b), "b_ci95": [b - half, b + half], "a": float(np.exp(log_a)),
            "r2_fit_log": float(r2), "ci_method": f"t interval, {n - 2} df"}  # fmt: skip


def _user_ndcg(root: Path, row: dict) -> np.ndarray:
    ranks = np.load(root / "runs" / row["config_hash"] / "test_ranks.npy")
    return per_user_metrics(ranks, [10])["NDCG@10"]


def paired(root: Path, rows: list[dict], key: str = "model", names=FAMILIES, ref=None) -> dict:
    """Differences at matched (layers, width) points: the mean over points with a bootstrap CI
    over points, wins, and at the largest matched point a per-user paired CI (same test users)."""
    by = {(r[key], r["layers"], r["hidden"]): r for r in rows}
    pairs = [(ref, n) for n in names if n != ref] if ref else list(combinations(names, 2))
    rng = np.random.default_rng(0)
    out = {}
    for a, b in pairs:
        pts = sorted(
            {(la, h) for (m, la, h) in by if m == a} & {(la, h) for (m, la, h) in by if m == b}
        )
        if not pts:
            continue
        d = np.array([by[(b, *p)]["test_ndcg10"] - by[(a, *p)]["test_ndcg10"] for p in pts])
        boot = d[rng.integers(0, len(d), (N_BOOT, len(d)))].mean(1)
        big = max(pts, key=lambda p: by[(a, *p)]["non_embedding_params"])
        du = _user_ndcg(root, by[(b, *big)]) - _user_ndcg(root, by[(a, *big)])
        out[f"{b} - {a}"] = {
            "points": [f"L{la} d{h}" for la, h in pts],
            "diffs": d.tolist(),
            "mean_diff": float(d.mean()),
            "mean_diff_ci95_over_points": np.quantile(boot, [0.025, 0.975]).tolist(),
            f"{b}_wins": int((d > 0).sum()),
            "largest_point": f"L{big[0]} d{big[1]}",
            "largest_point_diff": float(du.mean()),
            "largest_point_diff_ci95_users": list(confidence_interval(du)),
        }
    return out


def _fmt(v) -> str:
    return "n/a" if v is None else f"{v:.2f}"


def _overlap(a, b) -> bool:
    return a[0] <= b[1] and b[0] <= a[1]


def family_conclusion(fits: dict, pairs: dict) -> str:
    ranked = sorted(fits, key=lambda f: fits[f]["b"], reverse=True)
    hi, lo = ranked[0], ranked[-1]
    text = [
        "Exponents b (NDCG@10 ~ N^b): "
        + ", ".join(
            f"{f} {fits[f]['b']:.3f} [{fits[f]['b_ci95'][0]:.3f}, {fits[f]['b_ci95'][1]:.3f}]"
            for f in ranked
        )
        + f". {hi} has the largest exponent; its CI "
        + ("overlaps" if _overlap(fits[hi]["b_ci95"], fits[lo]["b_ci95"]) else "does not overlap")
        + f" {lo}'s, so the slopes are "
        + (
            "not distinguishable with these runs."
            if _overlap(fits[hi]["b_ci95"], fits[lo]["b_ci95"])
            else "different at 95 %."
        )
        + " Power-law R² fit "
        + ", ".join(f"{f} {fits[f]['r2_fit']:.2f}" for f in ranked)
        + "; held-out R² on the 2 largest "
        + ", ".join(f"{f} {_fmt(fits[f].get('heldout', {}).get('r2_heldout'))}" for f in ranked)
        + (
            "): NDCG@10 is nearly flat over the sizes trained (widths 128-256), so the "
            "exponents are small and their ranking is weak evidence."
            if max(fits[f]["r2_fit"] for f in ranked) < 0.6
            else ")."
        )
    ]
    for name, p in pairs.items():
        b, a = name.split(" - ")
        lo_, hi_ = p["largest_point_diff_ci95_users"]
        verdict = "better" if lo_ > 0 else "worse" if hi_ < 0 else "not distinguishable"
        text.append(
            f"{b} vs {a}: mean paired difference {p['mean_diff']:+.4f} over {len(p['diffs'])} "
            f"matched points ({b} ahead at {p[f'{b}_wins']}); at the largest matched point "
            f"{p['largest_point']} {b} is {verdict} ({p['largest_point_diff']:+.4f}, per-user "
            f"95% CI [{lo_:+.4f}, {hi_:+.4f}])."
        )
    return " ".join(text)


ARMS = {
    (False, "standard"): "plain",
    (True, "standard"): "+rab",
    (False, "hstu"): "+hstu residual",
    (True, "hstu"): "+both",
}


def arm_of(row: dict) -> str:
    p = json.loads(row["point"])
    return ARMS[(bool(p.get("model.rab", False)), p.get("model.residual", "standard"))]


def sasrec_plus(root: Path, rows: list[dict]) -> dict:
    rows = [{**r, "arm": arm_of(r)} for r in rows]
    arms = [a for a in ARMS.values() if any(r["arm"] == a for r in rows)]
    out: dict = {"arms_present": arms, "missing": [], "by_arm": {}, "fits": {}}
    for arm in ARMS.values():
        have = {r["layers"] for r in rows if r["arm"] == arm}
        out["missing"] += [f"{arm} L{la}" for la in (1, 2, 4, 8) if la not in have]
    for arm in arms:
        sel = sorted((r for r in rows if r["arm"] == arm), key=lambda r: r["layers"])
        out["by_arm"][arm] = {
            f"L{r['layers']}": {
                "ndcg10": r["test_ndcg10"],
                "ci95": [r["test_ndcg10_lo"], r["test_ndcg10_hi"]],
                "non_embedding_params": r["non_embedding_params"],
                "epochs_run": r["epochs_run"],
                "best_epoch": r["best_epoch"],
            }
            for r in sel
        }
        if len(sel) >= 3:
            out["fits"][arm] = slope_t(sel)
    ref = "plain" if "plain" in arms else None
    out["vs_plain"] = paired(root, rows, "arm", arms, ref) if ref else {}
    out["conclusion"] = plus_conclusion(out)
    return out


def plus_conclusion(rep: dict) -> str:
    text = []
    if rep["missing"]:
        text.append("Not trained before the deadline: " + ", ".join(rep["missing"]) + ".")
    if "plain" not in rep["fits"]:
        text.append(
            "The plain SASRec arm has fewer than 3 depths in this sweep, so no arm's slope can be "
            "compared with it; only matched-depth differences are reported."
        )
    base = rep["fits"].get("plain")
    for arm, f in rep["fits"].items():
        if arm == "plain":
            continue
        s = f"{arm}: b = {f['b']:.3f} [{f['b_ci95'][0]:.3f}, {f['b_ci95'][1]:.3f}]"
        if base:
            same = _overlap(f["b_ci95"], base["b_ci95"])
            s += (
                f" vs plain {base['b']:.3f} [{base['b_ci95'][0]:.3f}, {base['b_ci95'][1]:.3f}]: "
                + ("CIs overlap, no evidence the slope changes" if same else "slope differs")
            )
        text.append(s + ".")
    for name, p in rep["vs_plain"].items():
        lo, hi = p["mean_diff_ci95_over_points"]
        shift = (
            "shifts the curve up" if lo > 0 else "shifts it down" if hi < 0 else "no clear shift"
        )
        text.append(
            f"{name}: mean matched-depth difference {p['mean_diff']:+.4f} over "
            f"{', '.join(p['points'])} (bootstrap CI over depths [{lo:+.4f}, {hi:+.4f}]): {shift}."
        )
    return " ".join(text)


def compute_curves(root: Path, rows: list[dict], n_budgets: int = 4) -> dict:
    """Validation NDCG@10 after every epoch vs cumulative training FLOPs, the frontier, and
    iso-FLOP slices per family. The budgets are shared by all families."""
    curves = {
        f: [
            run_curve(
                root / "runs" / r["config_hash"],
                f"L{r['layers']} d{r['hidden']}",
                r["non_embedding_params"],
            )
            for r in sorted(rows, key=lambda r: r["non_embedding_params"])
            if r["model"] == f
        ]
        for f in FAMILIES
    }
    curves = {f: c for f, c in curves.items() if c}
    everything = [c for cs in curves.values() for c in cs]
    budgets = budgets_between(everything, n_budgets)
    out = {
        "flops_rule": "flops_train per interaction x train_interactions x step / steps "
        "(results.json), at each validation (after every epoch)",
        "budgets_flops": budgets.tolist(),
        "families": {},
        "_curves": curves,
    }
    for f, cs in curves.items():
        fx, fy = frontier(cs)
        out["families"][f] = {
            "curves": {
                c.name: {"flops": c.flops.tolist(), "valid_ndcg10": c.metric.tolist()} for c in cs
            },
            "frontier": {"flops": fx.tolist(), "valid_ndcg10": fy.tolist()},
            "iso_flop": iso_flop(cs, budgets),
        }
    return out


def perf_law(rows: list[dict], holdouts=("random:3", "largest:3"), boot: int = 100) -> dict:
    """The Performance Law (seed law) on the rows, both data-term forms, each hold-out rule."""
    out = {}
    for hold in holdouts:
        for form in ("multiply", "divide"):
            name = f"{form}, holdout {hold}"
            try:
                rep = fit_table(rows, x="params", y="test_ndcg10", holdout=hold,
                                data_form=form, perf_law_boot=boot, n_boot=0)  # fmt: skip
            except SeqrecError as err:
                out[name] = {"error": str(err)}
                continue
            pl = rep["perf_law"]
            if "error" in pl:
                out[name] = pl
                continue
            by_hash = {r["config_hash"]: r for r in rows}
            for h in pl.get("heldout", []):
                r = by_hash[h["config_hash"]]
                h.update(layers=r["layers"], hidden=r["hidden"], data_fraction=r["data_fraction"])
            d_all = data_term([r["train_tokens"] for r in rows], [r["apen"] for r in rows], form)
            pred = performance_law([r["layers"] for r in rows], [r["hidden"] for r in rows],
                                   d_all, pl["params"], pl["law"])  # fmt: skip
            held = set(h["config_hash"] for h in pl.get("heldout", []))
            pl["_all"] = [
                (float(p), r["test_ndcg10"], r["config_hash"] in held)
                for r, p in zip(rows, pred, strict=True)
            ]
            out[name] = pl
    for form in ("multiply", "divide"):
        out[f"{form}, leave-one-out"] = perf_law_loo(rows, form)
    return out


def perf_law_loo(rows: list[dict], form: str) -> dict:
    """Every run predicted by the law fitted to the others (``seqrec fit --cv``), in the shape
    of a hold-out entry with every run held out (R² held-out = out-of-fold R²)."""
    try:
        rep = fit_table(rows, x="params", y="test_ndcg10", holdout="none", data_form=form,
                        perf_law_boot=0, n_boot=0, perf_law_cv=True)["perf_law"]  # fmt: skip
    except SeqrecError as err:
        return {"error": str(err)}
    cv = rep.get("cv", rep)  # a fit or leave-one-out error is the entry itself
    if "error" in cv:
        return {"error": cv["error"]}
    heldout = [
        {"config_hash": r["config_hash"], "predicted": p, "measured": m, "layers": r["layers"],
         "hidden": r["hidden"], "data_fraction": r["data_fraction"]}
        for r, p, m in zip(rows, cv["predicted"], cv["measured"], strict=True)
    ]  # fmt: skip
    return {"r2": rep["r2"], "r2_heldout": cv["r2_cv"], "mae_heldout": cv["mae_cv"],
            "params": rep["params"], "law": rep["law"], "heldout": heldout,
            "_all": [(h["predicted"], h["measured"], True) for h in heldout]}  # fmt: skip
