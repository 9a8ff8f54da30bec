"""The picture of a `seqrec fit` report: runs and the fitted curve, and predicted against
measured for the held-out runs. matplotlib is imported only when a plot is asked for."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from seqrec.errors import SeqrecError
from seqrec.scaling.curves import CurveFit


def plot_fit(report: dict[str, Any], path: Path) -> None:
    """Runs (one colour per model family, held-out ones hollow) with the fitted curve on a log
    x axis, and predicted vs measured for the held-out runs."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise SeqrecError("--plot needs matplotlib: `pip install matplotlib`") from None
    data, curve = report["_plot"], report["curve"]
    fit = CurveFit(curve["form"], curve["params"])
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4.5))
    families = sorted(set(data["model"]))
    colours = plt.get_cmap("tab10")
    model = np.array(data["model"])
    for i, fam in enumerate(families):
        sel = model == fam
        for held, face in ((False, colours(i)), (True, "none")):
            pick = sel & (data["held"] == held)
            if pick.any():
                ax.scatter(data["x"][pick], data["y"][pick], edgecolors=colours(i),
                           facecolors=face, label=fam + (" (held out)" if held else ""))  # fmt: skip
    grid = np.geomspace(data["x"].min(), data["x"].max(), 200)
    ax.plot(grid, fit.predict(grid), "k-", lw=1, label=f"{curve['form']} fit")
    ax.set_xscale("log")
    ax.set_xlabel(report["x"])
    ax.set_ylabel(report["y"])
    ax.legend(fontsize=8)
    ax.set_title(f"R² fit {curve['r2']:.3f}, held-out {_fmt(curve['r2_heldout'])}")
    pts = [("curve", curve["heldout_pred"], curve["heldout_true"])]
    pl = report.get("perf_law", {})
    if pl.get("heldout"):
        pts.append(("Performance Law", [h["predicted"] for h in pl["heldout"]],
                    [h["measured"] for h in pl["heldout"]]))  # fmt: skip
    for name, pred, true in pts:
        if pred:
            bx.scatter(true, pred, label=name)
    lims = [float(np.min(data["y"])), float(np.max(data["y"]))]
    bx.plot(lims, lims, "k--", lw=1)
    bx.set_xlabel(f"measured {report['y']}")
    bx.set_ylabel("predicted")
    bx.set_title("held-out runs")
    bx.legend(fontsize=8)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.3f}"
