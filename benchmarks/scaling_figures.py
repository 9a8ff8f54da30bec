"""The PNGs of scaling_report.py; each takes the dict its analysis returned (the same numbers
that go into the result JSON)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

COLOURS = {"sasrec": "C0", "hstu": "C1", "llama": "C2"}


def _save(fig, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def families(rows: list[dict], fits: dict, path: Path) -> None:
    """Test NDCG@10 (95 % CI bars) vs non-embedding parameters, one colour per family, the
    power law fitted on all of a family's runs; held-out runs (largest 2) ringed."""
    fig, ax = plt.subplots(figsize=(7, 4.8))
    for fam, fit in fits.items():
        sel = sorted(
            (r for r in rows if r["model"] == fam), key=lambda r: r["non_embedding_params"]
        )
        x = np.array([r["non_embedding_params"] for r in sel], float)
        y = np.array([r["test_ndcg10"] for r in sel])
        err = np.array([[r["test_ndcg10"] - r["test_ndcg10_lo"] for r in sel],
                        [r["test_ndcg10_hi"] - r["test_ndcg10"] for r in sel]])  # fmt: skip
        c = COLOURS.get(fam)
        ax.errorbar(x, y, yerr=err, fmt="o", color=c, ms=4, capsize=2)
        held = {(h["layers"], h["hidden"]) for h in fit.get("heldout", {}).get("runs", [])}
        hx = [r["non_embedding_params"] for r in sel if (r["layers"], r["hidden"]) in held]
        hy = [r["test_ndcg10"] for r in sel if (r["layers"], r["hidden"]) in held]
        ax.scatter(hx, hy, s=110, facecolors="none", edgecolors=c, lw=1)
        grid = np.geomspace(x.min(), x.max(), 100)
        lo, hi = fit["b_ci95"]
        ax.plot(grid, fit["a"] * grid ** fit["b"], "-", color=c,
                label=f"{fam}: b = {fit['b']:.3f} [{lo:.3f}, {hi:.3f}], R² {fit['r2_fit']:.2f}")  # fmt: skip
    ax.set_xscale("log")
    ax.set_xlabel("non-embedding parameters")
    ax.set_ylabel("test NDCG@10 (ML-1M, full ranking)")
    ax.set_title("ML-1M: NDCG@10 = a N^b per family (ringed: held out in the check)")
    ax.legend(fontsize=8)
    _save(fig, path)


def iso_flop(rep: dict, path: Path) -> None:
    """Top: validation NDCG@10 after each epoch vs cumulative training FLOPs, one line per run,
    the compute frontier dashed. Bottom: iso-FLOP slices, best NDCG@10 within each budget vs
    non-embedding parameters (hollow: the run had already stopped below that budget)."""
    fams = list(rep["families"])
    fig, axes = plt.subplots(2, len(fams), figsize=(5 * len(fams), 8), squeeze=False)
    cmap = plt.get_cmap("viridis")
    budgets = rep["budgets_flops"]
    for j, fam in enumerate(fams):
        data, ax, bx = rep["families"][fam], axes[0, j], axes[1, j]
        curves = rep["_curves"][fam]
        sizes = np.log([c.size for c in curves])
        span = max(sizes.max() - sizes.min(), 1e-9)
        for c, s in zip(curves, sizes, strict=True):
            ax.plot(c.flops, c.metric, "-", color=cmap((s - sizes.min()) / span), lw=1,
                    label=c.name)  # fmt: skip
        fr = data["frontier"]
        ax.step(fr["flops"], fr["valid_ndcg10"], "k--", where="post", lw=1.2, label="frontier")
        for b in budgets:
            ax.axvline(b, color="grey", lw=0.5, ls=":")
        ax.set_xscale("log")
        ax.set_title(f"{fam}: validation curves (colour = size)")
        ax.set_xlabel("training FLOPs")
        ax.set_ylabel("valid NDCG@10")
        ax.legend(fontsize=6, ncol=2)
        for k, sl in enumerate(data["iso_flop"]):
            pts = sl["points"]
            if not pts:
                continue
            x = [p["size"] for p in pts]
            y = [p["best"] for p in pts]
            col = plt.get_cmap("plasma")(k / max(len(budgets) - 1, 1))
            bx.plot(x, y, "-", color=col, lw=1, label=f"{sl['budget_flops']:.2g} FLOPs")
            face = [col if p["truncated"] else "none" for p in pts]
            bx.scatter(x, y, facecolors=face, edgecolors=col, s=25)
        bx.set_xscale("log")
        bx.set_title(f"{fam}: iso-FLOP slices")
        bx.set_xlabel("non-embedding parameters")
        bx.set_ylabel("best valid NDCG@10 within budget")
        bx.legend(fontsize=7)
    _save(fig, path)


def sasrec_plus(rep: dict, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(7, 4.6))
    for k, (arm, pts) in enumerate(rep["by_arm"].items()):
        x = [p["non_embedding_params"] for p in pts.values()]
        y = [p["ndcg10"] for p in pts.values()]
        err = np.array([[p["ndcg10"] - p["ci95"][0] for p in pts.values()],
                        [p["ci95"][1] - p["ndcg10"] for p in pts.values()]])  # fmt: skip
        ax.errorbar(x, y, yerr=err, fmt="o", color=f"C{k}", capsize=2, ms=4)
        for name, xi, yi in zip(pts, x, y, strict=True):
            ax.annotate(name, (xi, yi), fontsize=6, xytext=(3, 3), textcoords="offset points")
        fit = rep["fits"].get(arm)
        label = arm
        if fit:
            grid = np.geomspace(min(x), max(x), 50)
            ax.plot(grid, fit["a"] * grid ** fit["b"], "-", color=f"C{k}")
            label += f": b = {fit['b']:.3f} [{fit['b_ci95'][0]:.3f}, {fit['b_ci95'][1]:.3f}]"
        ax.plot([], [], "o-", color=f"C{k}", label=label)
    ax.set_xscale("log")
    ax.set_xlabel("non-embedding parameters (width 64; depth labelled)")
    ax.set_ylabel("test NDCG@10 (ML-1M)")
    ax.set_title("SASRec + HSTU pieces across depth")
    ax.legend(fontsize=8)
    _save(fig, path)


def perf_law(rep: dict, title: str, path: Path) -> None:
    """Predicted vs measured NDCG@10 for every fit (fit runs filled, held-out hollow)."""
    fits = {k: v for k, v in rep.items() if "_all" in v}
    if not fits:
        return
    fig, axes = plt.subplots(1, len(fits), figsize=(4.2 * len(fits), 4.2), squeeze=False)
    for ax, (name, pl) in zip(axes[0], fits.items(), strict=True):
        pred, meas, held = (np.array(v) for v in zip(*pl["_all"], strict=True))
        held = held.astype(bool)
        ax.scatter(meas[~held], pred[~held], c="C0", s=20, label="fit runs")
        ax.scatter(meas[held], pred[held], facecolors="none", edgecolors="C3", s=50,
                   label="held out")  # fmt: skip
        lims = [min(meas.min(), pred.min()), max(meas.max(), pred.max())]
        ax.plot(lims, lims, "k--", lw=0.8)
        r2h = pl.get("r2_heldout")
        ax.set_title(f"{name}\nR² fit {pl['r2']:.3f}, held-out "
                     f"{'n/a' if r2h is None else f'{r2h:.3f}'}", fontsize=8)  # fmt: skip
        ax.set_xlabel("measured test NDCG@10")
        ax.set_ylabel("Performance Law prediction")
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    _save(fig, path)


def apen(record: dict, path: Path) -> None:
    m = record["metrics"]
    names = [k[: -len(" mean |ApEn|")] for k in m if k.endswith(" mean |ApEn|")]
    vals = [m[f"{n} mean |ApEn|"] for n in names]
    sds = [m.get(f"{n} std ApEn", 0.0) for n in names]
    fig, ax = plt.subplots(figsize=(6.5, 4))
    ax.bar(names, vals, yerr=sds, capsize=3, color="C4")
    for i, v in enumerate(vals):
        ax.annotate(f"{v:.3f}", (i, v), ha="center", xytext=(0, 3), textcoords="offset points")
    ax.set_ylabel("mean |ApEn| per user (m=2, r=0, last 50)")
    ax.set_title("Approximate entropy of item sequences (bars: std over users)")
    _save(fig, path)
