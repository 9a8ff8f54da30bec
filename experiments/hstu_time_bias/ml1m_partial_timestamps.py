"""Write raw ML-1M with the timestamps this machine has, for HSTU's time-gap attention bias.

    SEQREC_DATA_DIR=../shared/data python experiments/hstu_time_bias/ml1m_partial_timestamps.py OUT.csv.gz

generative-recommenders' HSTU numbers use a relative attention bias on log-bucketed time gaps;
our offline ML-1M copy has no timestamps, so the `hstu-ml-1m` presets run with
`model.time_bias=false`. ratings.dat with timestamps is here for users 1..2,998 only. This file
holds every rating of raw ML-1M (6,040 users, 3,706 items): users 1..2,998 with their real
timestamps in ratings.dat's order, every other user in our copy's order with timestamp 0, so
all of their gaps fall in the zero-gap bucket and the bias is one constant for them (the same
bucket real same-second ratings use). Training HSTU on it with and without `model.time_bias`
and pairing the runs per user (experiments/ml1m_tie_order/`ml1m_file_order.py compare`: its "reordered users" are exactly
users 1..2,998) measures what the time bias is worth where timestamps exist, with the other
users as the control.

With ``--timed-only`` the file holds users 1..2,998 alone, in our copy's order (same-second
ratings at random, which is also what generative-recommenders' pandas sort leaves them in,
experiments/ml1m_tie_order/gr_tie_order.py) with each rating's real timestamp: data on which the time bias can
be switched on and off with nothing untimed in training.
"""

from __future__ import annotations

import argparse
import gzip
import os
import sys
from pathlib import Path

import numpy as np
import polars as pl

from seqrec.data import build_store
from seqrec.options import DataConfig

# benchmarks/common.py finds the data; the tie-order experiment reads ratings.dat
ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "benchmarks"), str(ROOT / "experiments" / "ml1m_tie_order")]

from ml1m_tie_order import PARTIAL, official_order  # noqa: E402

from common import data_dir  # noqa: E402


def timed_in_our_order(ours: pl.DataFrame, timed: pl.DataFrame) -> pl.DataFrame:
    """The timed users' ratings in our copy's order (``pos``), each with its ratings.dat
    timestamp; refuses the result unless every rating found its time and times never fall
    (``main`` has already checked that both hold the same number of ratings)."""
    frame = ours.join(timed, on=["user_id", "item_id"], how="left").sort("pos")
    if frame["timestamp"].null_count():
        raise SystemExit("our copy and ratings.dat disagree on the timed users' items")
    falls = frame.select((pl.col("timestamp").diff().over("user_id") < 0).any()).item()
    if falls:
        raise SystemExit("our copy's order is not chronological for the timed users")
    return frame.select("user_id", "item_id", "timestamp")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("out", type=Path, help="the CSV to write (.csv or .csv.gz)")
    ap.add_argument("--timed-only", action="store_true",
                    help="only the users with timestamps, in our copy's (random) tie order")  # fmt: skip
    args = ap.parse_args()
    timed = official_order(data_dir() / PARTIAL).select(
        pl.col("u").alias("user_id"), pl.col("i").cast(pl.Int64).alias("item_id"),
        pl.col("t").alias("timestamp"),
    )  # fmt: skip
    store = build_store(DataConfig(dataset="ml-1m", catalog_defaults=False))
    users = np.asarray(store.user_ids).astype(np.int64)
    rows = np.repeat(np.arange(store.n_users), np.diff(store.offsets))
    ours = pl.DataFrame({
        "user_id": users[rows],
        "item_id": np.asarray(store.item_ids)[store.items].astype(np.int64),
    }).with_row_index("pos")  # fmt: skip
    has_time = pl.col("user_id").is_in(timed["user_id"].unique().implode())
    if timed.height + ours.filter(~has_time).height != len(store.items):
        raise SystemExit("the partial ratings file does not cover its users completely")
    if args.timed_only:
        frame = timed_in_our_order(ours.filter(has_time), timed)
    else:
        untimed = ours.filter(~has_time).drop("pos").with_columns(timestamp=pl.lit(0, pl.Int64))
        frame = pl.concat([timed, untimed]).sort("user_id", maintain_order=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(args.out.name + ".tmp")
    with gzip.open(tmp, "wb") if args.out.suffix == ".gz" else open(tmp, "wb") as fh:
        frame.write_csv(fh)
    os.replace(tmp, args.out)
    print(f"{args.out}: {frame.height:,} ratings, {frame['user_id'].n_unique():,} users, "
          f"{timed['user_id'].n_unique():,} of them with timestamps")  # fmt: skip


if __name__ == "__main__":
    main()
