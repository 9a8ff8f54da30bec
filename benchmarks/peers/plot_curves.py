"""Draw a time_to_quality result: valid NDCG@10 against training seconds, every side and seed.

    /tmp/replay-venv/bin/python benchmarks/peers/plot_curves.py RESULT.json OUT.png

Runs under the peer venv (the main environment has no matplotlib). One colour per side, one line
per seed; the dashed line is the common target (mean over seeds of the per-seed target) and a
ring marks where each run first reaches its seed's target.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

COLORS = {"seqrec": "#1f77b4", "replay": "#d62728", "kv": "#2ca02c"}
LABELS = {"seqrec": "seqrec", "replay": "RePlay SASRec", "kv": "Klenitskiy & Vasilev"}


def main() -> None:
    src, dst = Path(sys.argv[1]), Path(sys.argv[2])
    rec = json.loads(src.read_text())
    summary = rec.get("summary", {})
    targets = summary.get("target_per_seed", {})
    times = summary.get("time_to_target", {})
    fig, ax = plt.subplots(figsize=(8, 5), dpi=120)
    for side, runs in rec["runs"].items():
        for i, (seed, run) in enumerate(sorted(runs.items())):
            if not run["curve"]:
                continue
            xs = [p[0] for p in run["curve"]]
            ys = [p[1] for p in run["curve"]]
            label = f"{LABELS.get(side, side)}" if i == 0 else None
            ax.plot(xs, ys, ".-", color=COLORS.get(side), lw=1.4, ms=4, alpha=0.85, label=label)
            t = times.get(side, {}).get("per_seed", {}).get(seed)
            if t is not None and seed in targets:
                ax.plot([t], [targets[seed]], "o", mfc="none", color=COLORS.get(side), ms=8)
    if targets:
        mean_target = sum(targets.values()) / len(targets)
        ax.axhline(mean_target, color="gray", ls="--", lw=1,
                   label=f"target {mean_target:.4f} (mean of per-seed targets)")  # fmt: skip
    ratio = summary.get("seqrec_vs_replay", {}).get("time_ratio_of_means")
    m = rec.get("machine", {})
    title = f"{rec['dataset'].split(' (')[0]}: valid NDCG@10 vs training time"
    sub = f"{m.get('cpu', '?')}, {rec['protocol'].get('threads')} threads, torch {m.get('torch')}"
    if ratio is not None:
        sub += f"; time to target seqrec / RePlay = {ratio:.2f}"
    ax.set_title(f"{title}\n{sub}", fontsize=10)
    ax.set_xlabel("training wall seconds (validation excluded)")
    ax.set_ylabel("valid NDCG@10 (full ranking, seen masked)")
    ax.grid(alpha=0.3)
    ax.set_xlim(left=0)
    ax.legend(loc="best", fontsize=9)
    fig.tight_layout()
    dst.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(dst)


if __name__ == "__main__":
    main()
