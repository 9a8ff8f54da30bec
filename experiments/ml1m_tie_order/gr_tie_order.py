"""How generative-recommenders orders ML-1M ratings given in the same second.

    PYTHONPATH=/path/to/pandas python experiments/ml1m_tie_order/gr_tie_order.py

Why: SASRec scores ~0.009 NDCG@10 higher on ratings.dat's order of same-second ratings than on a
random one (issue 2), so if GR's preprocessing kept that order, our ML-1M copy (random tie order)
would handicap HSTU against GR's README. GR sorts the whole ratings table with pandas'
``sort_values(by=["unix_timestamp"])`` (default kind: quicksort, not stable) and then groups by
user. This script applies that sort to the rows of ratings.dat present here (its first 487,650
lines: users 1..2,999, the last partly) and counts, over every pair of a user's consecutive
same-second ratings, how often the pair keeps ratings.dat's order: 1.0 means the file order
survives, 0.5 means it is scrambled. The same count with a stable sort is the control. pandas
is not a seqrec dependency; install it anywhere (e.g. ``pip install --target /tmp/pd pandas``)
and put it on PYTHONPATH.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

# benchmarks/common.py writes the result file, as every benchmark's does
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from ml1m_tie_order import PARTIAL

from common import data_dir, write_result


def kept_fraction(frame, kind: str) -> tuple[int, float]:
    """(number of consecutive same-second pairs, fraction in ratings.dat order) after a global
    sort by timestamp with ``kind`` and a per-user grouping that keeps the sorted order."""
    ordered = frame.sort_values(by=["unix_timestamp"], kind=kind)
    ordered = ordered.assign(pos=ordered.groupby("user_id", sort=False).cumcount())
    ordered = ordered.sort_values(["user_id", "pos"], kind="stable")
    user, ts, line = (ordered[c].to_numpy() for c in ("user_id", "unix_timestamp", "line"))
    tie = (user[1:] == user[:-1]) & (ts[1:] == ts[:-1])
    return int(tie.sum()), float((line[1:] > line[:-1])[tie].mean())


def main() -> None:
    try:
        import pandas as pd
    except ImportError:
        sys.exit("gr_tie_order.py needs pandas (what GR's preprocessor sorts with): "
                 "pip install --target /tmp/pd pandas, then PYTHONPATH=/tmp/pd")  # fmt: skip
    path = data_dir() / PARTIAL
    if not path.is_file():
        sys.exit(f"{path} is missing; point SEQREC_DATA_DIR at the shared data folder")
    cols = ["user_id", "movie_id", "rating", "unix_timestamp"]
    frame = pd.read_csv(path, sep="::", engine="python", names=cols)
    frame["line"] = np.arange(len(frame))
    pairs, kept_quick = kept_fraction(frame, "quicksort")
    _, kept_stable = kept_fraction(frame, "stable")
    write_result(
        "gr_tie_order",
        {
            "users": int(frame.user_id.nunique()),
            "ratings": len(frame),
            "consecutive same-second pairs": pairs,
            "kept in ratings.dat order, pandas default sort (GR)": kept_quick,
            "kept in ratings.dat order, stable sort (SASRec's file)": kept_stable,
        },
        dataset="ml-1m ratings.dat, first 487,650 lines (users 1..2,999)",
        protocol="sort_values(by=['unix_timestamp']) then groupby('user_id'), as GR's "
        "MovielensDataProcessor",
        notes=f"pandas {pd.__version__}, numpy {np.__version__}. A fraction near 0.5 means GR's "
        "tie order is as random as our ML-1M copy's, so the tie order explains none of the "
        "HSTU gap to GR's README.",
    )


if __name__ == "__main__":
    main()
