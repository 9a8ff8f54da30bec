"""How much does the ML-1M copy's order of same-second ratings change the leave-one-out task?

    SEQREC_DATA_DIR=../shared/data python experiments/ml1m_tie_order/ml1m_tie_order.py runs/sasrec_ml1m_ce_kv_cpu

Our ML-1M is DiffuRec's sequence copy (SOURCES.md), whose within-second order is neither the
official file's nor item-id order; SASRec's `ml-1m.txt` and generative-recommenders sort the
official ratings.dat by timestamp. The test target is each user's last item, so wherever the last
second holds several ratings the two copies can disagree on the task itself. ratings.dat with
timestamps is here only for users 1..2,999 (a partial file; the last user is dropped in case it
is cut). For those users this script

* counts how often the two orders agree (whole sequence, last item, second-to-last) and how many
  users' last timestamp is shared by more than one rating;
* evaluates one finished run (trained on our order) on the same users twice: test target and
  history from our copy, and from ratings.dat sorted by (timestamp, file position), with the
  paired per-user difference.

The model never saw the second order in training, so the difference is a lower bound on what a
model trained on that order would gain.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import polars as pl

from seqrec.data import prepare
from seqrec.data.batches import flat_slices
from seqrec.data.ingest import read_interactions
from seqrec.eval.metrics import confidence_interval, per_user_metrics
from seqrec.eval.ranking import evaluate
from seqrec.run import Run
from seqrec.trainer.run import load_run_config

# benchmarks/common.py writes the result file, as every benchmark's does
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from common import data_dir, write_result

PARTIAL = "movielens/ml-1m/ratings.PARTIAL_first487650lines.dat.gz"


def official_order(path: Path) -> pl.DataFrame:
    """(user, item, timestamp, position in the file) for the complete users, in timestamp order
    with the file position breaking ties (a stable sort, as SASRec-style preprocessing does).
    The file is read by seqrec's own ratings.dat reader, whose ``order`` is the file position."""
    frame = read_interactions(path, "ml-dat").frame
    frame = frame.select(u="user", i=pl.col("item").cast(pl.Utf8), t="ts", f="order")
    return frame.filter(pl.col("u") < pl.col("u").max()).sort(["u", "t", "f"])


def file_order_items(store) -> tuple[np.ndarray, np.ndarray, pl.DataFrame]:
    """`store.items` with the users of the partial ratings.dat put in (timestamp, file position)
    order; also the store rows of those users and their (user, item, t, ...) frame. Every other
    user keeps our copy's order."""
    df = official_order(data_dir() / PARTIAL)
    ids = pl.DataFrame({"i": np.asarray(store.item_ids).astype(str)}).with_row_index("idx")
    rows = pl.DataFrame({"u": np.asarray(store.user_ids).astype(np.int64)}).with_row_index("r")
    df = df.join(ids, on="i", how="inner").join(rows, on="u", how="inner")  # keeps the sort
    df = df.with_columns(pos=pl.int_range(pl.len()).over("r"))
    r = df["r"].to_numpy().astype(np.int64)
    flat = store.offsets[r] + df["pos"].to_numpy()
    items = store.items.copy()
    items[flat] = df["idx"].to_numpy()
    users = np.unique(r)
    # same multiset per user: the reorder must only permute each user's own items
    seg, span = flat_slices(store.offsets[users], store.offsets[users + 1])
    a = np.lexsort((store.items[span], seg))
    b = np.lexsort((items[span], seg))
    if not np.array_equal(store.items[span][a], items[span][b]) or len(span) != len(flat):
        raise SystemExit("the partial ratings file and the sequence copy hold different items")
    return items, users, df


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("run", type=Path, help="a finished ML-1M run folder")
    args = ap.parse_args()
    cfg = load_run_config(args.run)
    rec = Run(args.run).recommender()
    store, split = prepare(cfg.data)
    items, users, df = file_order_items(store)
    seg, span = flat_slices(store.offsets[users], store.offsets[users + 1])
    last, second = store.offsets[users + 1] - 1, store.offsets[users + 1] - 2
    moved = np.bincount(seg, weights=store.items[span] != items[span], minlength=len(users))
    same_seq = moved == 0
    last_t = df.group_by("r").agg(tied=(pl.col("t") == pl.col("t").last()).sum() > 1)
    metrics = {
        "users compared": len(users),
        "share with the same whole order": float(same_seq.mean()),
        "share with the same test item (last)": float((store.items[last] == items[last]).mean()),
        "share with the same valid item (2nd-to-last)": float(
            (store.items[second] == items[second]).mean()
        ),
        "share whose last second holds > 1 rating": float(last_t["tied"].mean()),
    }
    view = split.test
    sel = np.flatnonzero(np.isin(view.users, users))
    ks = [10]
    per = {}
    for name, its in (("our copy", store.items), ("timestamp + file order", items)):
        res = evaluate(rec.model, its, view.starts[sel], view.ends[sel], its[view.ends[sel]],
                       cfg.data.max_len, cfg.eval, rec.device)  # fmt: skip
        per[name] = per_user_metrics(res.ranks, ks)
        for key in ("NDCG@10", "HR@10"):
            metrics[f"{name}/test {key}"] = float(per[name][key].mean())
    for key in ("NDCG@10", "HR@10"):
        diff = per["timestamp + file order"][key] - per["our copy"][key]
        metrics[f"file order - our copy/{key}"] = float(diff.mean())
        metrics[f"file order - our copy/{key} 95% CI"] = list(confidence_interval(diff))
    write_result(
        "ml1m_tie_order",
        metrics,
        dataset=f"ML-1M users 1..{int(df['u'].max())} ({len(users):,} users), {store.n_items:,} items",
        protocol={
            "split": "leave-one-out",
            "ranking": "full",
            "mask_seen": cfg.eval.mask_seen,
            "model": str(args.run),
        },
        notes="The run was trained on our copy's order; both evaluations use its best weights.",
        command=f"SEQREC_DATA_DIR=../shared/data python experiments/ml1m_tie_order/ml1m_tie_order.py {args.run}",
    )
    for k, v in metrics.items():
        print(f"{k}: {v}")


if __name__ == "__main__":
    main()
