"""One PNG per board: its rows ranked by test NDCG@10, each with its 95% CI bar.

matplotlib is optional: without it the table is written without figures, and the command
says so in one line (`MISSING`). Filled markers are CIs over seeds; open markers are one
seed's CI over test users, which leaves out seed noise, as the table's † says.
"""

from __future__ import annotations

import io
import textwrap

MISSING = (
    "matplotlib is not installed, so no leaderboard-<dataset>.png was written: "
    "pip install matplotlib"
)


def matplotlib_pyplot():
    """matplotlib's pyplot on the file-only Agg backend, or None when it is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def figure_png(board: dict, plt) -> bytes:
    """The board's figure as PNG bytes (the caller writes them atomically)."""
    rows = board["rows"][::-1]  # the best at the top
    fig, ax = plt.subplots(figsize=(8, 0.35 * len(rows) + 1.4))
    for y, row in enumerate(rows):
        cell = row["NDCG@10"]
        seeds = cell["ci"] == "seeds"
        ax.errorbar(cell["mean"], y, xerr=cell["half_width"], fmt="o", capsize=3,
                    color="C0" if seeds else "C1", mfc="C0" if seeds else "white")  # fmt: skip
    labels = [f"{r['label']} ({len(r['seeds'])} seed{'s' * (len(r['seeds']) > 1)})" for r in rows]
    ax.set_yticks(range(len(rows)), labels, fontsize=8)
    ax.set_xlabel("test NDCG@10, 95% CI (filled: over seeds; open: over users, one seed)")
    title = (
        f"{board['dataset']} ({board['users']:,} users, {board['items']:,} items): "
        f"{board['training_text']}"
    )
    ax.set_title(textwrap.fill(title, 80), fontsize=9)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()
