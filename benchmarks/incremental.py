"""Incremental training on real timestamps: train on period 1, update on period 2, test on
period 3, against a full retrain on periods 1 + 2 (issue 26: >= 98% of the retrain's NDCG@10
in <= 20% of its time).

    python benchmarks/incremental.py                 # Amazon Beauty, the sasrec-beauty preset
    python benchmarks/incremental.py --smoke         # 1,500 users, 2 epochs: under 2 minutes

Data: Amazon Beauty, S3-Rec's 5-core file with TiCoSeRec's day timestamps, aligned position by
position (../shared/data/SOURCES.md), or ``--log FILE`` (any log seqrec reads, with times).
Periods are global time cuts at quantiles of every event's time: P3 = the last ``--p3`` share
of events, P2 = the ``--p2`` share before it, P1 = the rest (a cut day goes to the later
period). ``--drop-last X`` leaves out the last X share of events first: the same cuts one
window earlier, a development window on which to choose an update's settings by their test
without touching the window that is reported. Each period is written as a
``user_id,item_id,timestamp`` file in (user, time, line) order, so same-day events keep the
source's order in every arm.

Arms, one preset and seed (``--set`` applies to all; the split is the preset's, leave-one-out
for sasrec-beauty, inside each arm's own data):

- ``base``: `seqrec train` on P1.
- ``update``: `seqrec train --continue-from base --events P2` with ``train.epochs=
  --update-epochs`` and ``train.patience=--update-patience`` (early stopping on the merged
  data's validation), ``--train-rows``, ``--new-items`` and any ``--update-set``.
- ``retrain``: `seqrec train` from scratch on P1 + P2, the preset's own schedule.
- ``stale``: base, not updated (what the update buys).

Test, the same for every arm: each user with a P3 event and an earlier event; target = the
user's first P3 event, history = all its P1 + P2 events; full ranking over the arm's
catalogue with the history masked (seen items never recommended). A target no arm has seen
(first seen in P3) is a miss for every arm; the stale arm drops history items it does not know
(a history left empty is a miss). NDCG@10 / HR@10 with 95% CIs over users, a paired test of
update against retrain, and the ratio of their NDCG@10 with a bootstrap CI over users.

Time: wall seconds of each arm's whole run (data, training, validation, the final test), so
the update's share is update / retrain.
"""

from __future__ import annotations

import argparse
import gzip
import json
import resource
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl
import torch

from common import data_dir, write_result
from seqrec.data.ingest import read_interactions
from seqrec.eval.metrics import confidence_interval, per_user_metrics
from seqrec.eval.ranking import evaluate
from seqrec.eval.stats import paired_test
from seqrec.options import EvalConfig
from seqrec.recipe import make_config
from seqrec.run.artifact import Run, continue_run, train


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux reports KiB


def beauty_log(root: Path) -> pl.DataFrame:
    """Beauty.txt (S3-Rec ids) with Beauty_time.txt's day stamps, line by line, position by
    position; ``order`` is the event's place in the file."""
    rows: list[tuple[str, str, int]] = []
    items_path, times_path = (
        root / "amazon/s3rec/Beauty.txt.gz",
        root / "amazon/ticoserec/Beauty_time.txt.gz",
    )
    with gzip.open(items_path, "rt") as fi, gzip.open(times_path, "rt") as ft:
        for n, (line, stamps) in enumerate(zip(fi, ft, strict=True), 1):
            user, *items = line.split()
            who, *times = stamps.split()
            if who != user or len(times) != len(items):
                raise SystemExit(f"{items_path} and {times_path} disagree at line {n}")
            rows.extend((user, i, int(t)) for i, t in zip(items, times, strict=True))
    frame = pl.DataFrame(rows, schema=["user", "item", "ts"], orient="row")
    return frame.with_row_index("order")


def periods(frame: pl.DataFrame, p2: float, p3: float) -> tuple[pl.DataFrame, ...]:
    """P1, P2, P3 by global time quantiles (numpy's "higher", as data/split.py cuts)."""
    ts = frame["ts"].to_numpy()
    q1, q2 = np.quantile(ts, [1 - p2 - p3, 1 - p3], method="higher")
    if not q1 < q2:
        raise SystemExit(f"the time cuts coincide at {q1}; raise --p2")
    ordered = frame.sort(["user", "ts", "order"])
    return (
        ordered.filter(pl.col("ts") < q1),
        ordered.filter((pl.col("ts") >= q1) & (pl.col("ts") < q2)),
        ordered.filter(pl.col("ts") >= q2),
    )


def write_log(frame: pl.DataFrame, path: Path) -> Path:
    frame.select(
        pl.col("user").alias("user_id"),
        pl.col("item").alias("item_id"),
        pl.col("ts").alias("timestamp"),
    ).write_csv(path)
    return path


def test_rows(history: pl.DataFrame, p3: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(users' P1+P2 histories, one target row per user: its first P3 event), for users with both."""
    first = p3.sort(["user", "ts", "order"]).group_by("user", maintain_order=True).first()
    users = first.join(history.select("user").unique(), on="user")["user"]
    return history.filter(pl.col("user").is_in(users.to_list())), first.filter(
        pl.col("user").is_in(users.to_list())
    )


def arm_ranks(run: Path, history: pl.DataFrame, targets: pl.DataFrame) -> tuple[np.ndarray, dict]:
    """Each test user's rank under ``run`` (np.inf: a miss the arm cannot rank)."""
    r = Run(run)
    ids = {v: i for i, v in enumerate(r.item_ids.tolist())}
    hist = history.with_columns(
        iid=pl.col("item").replace_strict(ids, default=0, return_dtype=pl.Int64)
    )
    known = hist.filter(pl.col("iid") > 0)
    counts = known.group_by("user", maintain_order=True).len()
    users = targets["user"]
    length = dict(zip(counts["user"].to_list(), counts["len"].to_list(), strict=True))
    lengths = np.array([length.get(u, 0) for u in users.to_list()], dtype=np.int64)
    order = {u: k for k, u in enumerate(users.to_list())}
    flat = known.with_columns(row=pl.col("user").replace_strict(order, return_dtype=pl.Int64)).sort(
        ["row", "ts", "order"]
    )
    items = flat["iid"].to_numpy().astype(np.int32)
    ends = np.cumsum(lengths)
    starts = ends - lengths
    target = np.array([ids.get(t, 0) for t in targets["item"].to_list()], dtype=np.int64)
    ok = (target > 0) & (lengths > 0)
    ranks = np.full(len(users), np.inf)
    cfg = r.config
    result = evaluate(
        r.load_model(), items, starts[ok], ends[ok], target[ok], cfg.data.max_len,
        EvalConfig(ks=[10], mask_seen=True), "cpu",
    )  # fmt: skip
    ranks[ok] = result.ranks
    info = {
        "unknown_targets": int((target == 0).sum()),
        "empty_histories": int((lengths == 0).sum()),
    }
    return ranks, info


def summary(ranks: np.ndarray) -> tuple[dict, dict]:
    per = per_user_metrics(np.where(np.isinf(ranks), 1e12, ranks), [10])
    out = {}
    for key in ("NDCG@10", "HR@10"):
        low, high = confidence_interval(per[key])
        out[key] = float(per[key].mean())
        out[f"{key}_ci"] = [low, high]
    return out, per


def ratio_ci(a: np.ndarray, b: np.ndarray, n: int = 2000, seed: int = 0) -> list[float]:
    """95% bootstrap CI over users of mean(a) / mean(b)."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(a), (n, len(a)))
    num, den = a[idx].mean(1), b[idx].mean(1)
    ratios = num[den > 0] / den[den > 0]
    return np.quantile(ratios, [0.025, 0.975]).tolist() if len(ratios) else [np.nan, np.nan]


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--log", help="an interaction log with timestamps (default: Amazon Beauty)")
    ap.add_argument("--preset", default="sasrec-beauty")
    ap.add_argument("--set", action="append", default=[], help="override for every arm (k=v)")
    ap.add_argument("--p2", type=float, default=0.1, help="share of events in period 2")
    ap.add_argument("--p3", type=float, default=0.1, help="share of events in period 3")
    ap.add_argument(
        "--drop-last",
        type=float,
        default=0.0,
        help="leave out the last share of events first, so the periods move earlier: a "
        "development window to choose an update's settings on, apart from the one reported",
    )
    ap.add_argument("--users", type=int, help="keep this many random users (smaller runs)")
    ap.add_argument("--update-epochs", type=int, default=10)
    ap.add_argument("--update-patience", type=int, default=2)
    ap.add_argument("--train-rows", choices=["all", "changed"], default="all")
    ap.add_argument(
        "--repeat-changed", type=int, default=1, help="users with new events K times an epoch"
    )
    ap.add_argument("--new-items", default="auto", help="auto | model | mean | features | context")
    ap.add_argument(
        "--update-set",
        action="append",
        default=[],
        help="a train.* / eval.* override for the update arm only (k=v), e.g. train.lr=0.002",
    )
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--work", help="keep the run folders here (default: a temporary folder)")
    ap.add_argument("--smoke", action="store_true", help="1,500 users, 2 epochs, 1 update epoch")
    ap.add_argument(
        "--reuse",
        action="store_true",
        help="with --work: keep the base and retrain runs (and their seconds) finished there "
        "by an earlier run with the same data and preset; only the update runs again",
    )
    ap.add_argument("--update-dir", default="update", help="the update arm's folder in --work")
    ap.add_argument("--name", default=None)
    args = ap.parse_args()
    if args.smoke:
        args.users = args.users or 1500
        args.set = ["train.epochs=2", *args.set]
        args.update_epochs = 1
    torch.set_num_threads(args.threads)
    root = data_dir()
    if args.log:
        frame = read_interactions(Path(args.log)).frame.select("user", "item", "ts", "order")
        frame = frame.with_columns(pl.col("user").cast(pl.Utf8), pl.col("item").cast(pl.Utf8))
        dataset = Path(args.log).name
    else:
        frame, dataset = beauty_log(root), "amazon-beauty (S3-Rec ids, TiCoSeRec day stamps)"
    if args.users:
        keep = np.random.default_rng(0).permutation(frame["user"].unique().sort().to_numpy())[
            : args.users
        ]
        frame = frame.filter(pl.col("user").is_in(keep.tolist()))
    if args.drop_last:
        cut = np.quantile(frame["ts"].to_numpy(), 1 - args.drop_last, method="higher")
        frame = frame.filter(pl.col("ts") < cut)
    p1, p2, p3 = periods(frame, args.p2, args.p3)
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="seqrec-incremental-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        record = run_arms(args, work, p1, p2, p3)
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    name = args.name or ("incremental_smoke" if args.smoke else "incremental")
    write_result(
        name, record.pop("metrics"), dataset=dataset, protocol=record.pop("protocol"), extra=record
    )


def run_arms(args, work: Path, p1, p2, p3) -> dict:
    f1, f2 = write_log(p1, work / "p1.csv"), write_log(p2, work / "p2.csv")
    f12 = write_log(pl.concat([p1, p2]).sort(["user", "ts", "order"]), work / "p12.csv")
    threads = [f"train.threads={args.threads}", "train.device=cpu"]

    def config(path: Path):
        return make_config(args.preset, [f"data.dataset={path}", *threads, *args.set])

    # each arm's wall seconds and the data/preset they were trained on, for --reuse
    clock = work / "seconds.json"
    spec = {"preset": args.preset, "set": args.set, "p2": args.p2, "p3": args.p3,
            "users": args.users, "log": args.log, "threads": args.threads}  # fmt: skip
    if args.drop_last:  # (absent otherwise, so earlier --work folders still match)
        spec["drop_last"] = args.drop_last
    saved = json.loads(clock.read_text()) if args.reuse and clock.is_file() else {}
    if saved and saved.get("spec") != spec:
        raise SystemExit(f"--reuse: {work} holds runs of another setting {saved.get('spec')}")
    seconds = saved.get("seconds", {})

    def run_arm(name: str, fn) -> None:
        if name in seconds and (work / name / "results.json").is_file():
            return  # --reuse: finished before with this data and preset
        seconds[name] = timed(fn)[1]
        clock.write_text(json.dumps({"spec": spec, "seconds": seconds}))

    run_arm("base", lambda: train(config(f1), work / "base", progress=False))
    update_set = [
        f"train.epochs={args.update_epochs}",
        f"train.patience={args.update_patience}",
        *args.update_set,
    ]
    update = args.update_dir
    shutil.rmtree(work / update, ignore_errors=True)  # the update arm always runs afresh
    seconds.pop(update, None)
    run_arm(update, lambda: continue_run(
        work / "base", work / update, [f2], update_set,
        train_rows=args.train_rows, new_items=args.new_items,
        repeat_changed=args.repeat_changed, progress=False,
    ))  # fmt: skip
    run_arm("retrain", lambda: train(config(f12), work / "retrain", progress=False))
    t_base, t_update, t_retrain = seconds["base"], seconds[update], seconds["retrain"]
    history, targets = test_rows(pl.concat([p1, p2]), p3)
    arms, per, info = {}, {}, {}
    folders = {"update": update, "retrain": "retrain", "stale": "base"}
    for name, folder in folders.items():
        ranks, info[name] = arm_ranks(work / folder, history, targets)
        arms[name], per[name] = summary(ranks)
    # where the arms differ: targets the base knew, first seen in P2, first seen in P3
    p1_items, p12_items = set(p1["item"].to_list()), set(pl.concat([p1, p2])["item"].to_list())
    kinds = np.array([
        "seen in P1" if t in p1_items else "first seen in P2" if t in p12_items
        else "first seen in P3" for t in targets["item"].to_list()
    ])  # fmt: skip
    by_target = {
        f"{name}/NDCG@10, target {k}": float(per[name]["NDCG@10"][kinds == k].mean())
        for name in folders
        for k in ("seen in P1", "first seen in P2")
        if (kinds == k).any()
    }
    target_kinds = {k: int((kinds == k).sum()) for k in np.unique(kinds).tolist()}
    seconds = {"base": t_base, "update": t_update, "retrain": t_retrain}
    valid = {}  # the selected weights' validation NDCG@10 on each arm's own (merged) data
    for name in ("update", "retrain"):
        res = Run(work / folders[name]).results
        info[name].update(
            epochs=res["epochs_run"], best_epoch=res["best_epoch"], stopped_by=res["stopped_by"]
        )
        valid[f"{name}/valid NDCG@10"] = res["valid"]["metrics"]["NDCG@10"]
    nd_u, nd_r = per["update"]["NDCG@10"], per["retrain"]["NDCG@10"]
    metrics = {
        **{
            f"{arm}/{k}": v
            for arm, vals in arms.items()
            for k, v in vals.items()
            if not k.endswith("_ci")
        },
        **by_target,
        **valid,
        "ndcg_ratio_update_over_retrain": float(nd_u.mean() / max(nd_r.mean(), 1e-12)),
        "ndcg_ratio_ci": ratio_ci(nd_u, nd_r),
        "time_ratio_update_over_retrain": t_update / t_retrain,
        "seconds": seconds,
        "peak_rss_gib": peak_rss_gib(),
    }
    goal = (
        metrics["ndcg_ratio_update_over_retrain"] >= 0.98
        and metrics["time_ratio_update_over_retrain"] <= 0.2
    )
    return {
        "metrics": {**metrics, "goal_met": bool(goal)},
        "protocol": {
            "periods": "global time quantiles: P1 < q1 <= P2 < q2 <= P3",
            "shares": {"p2": args.p2, "p3": args.p3, "dropped last": args.drop_last},
            "events": {"p1": p1.height, "p2": p2.height, "p3": p3.height},
            "test": "first P3 event per user, history = all P1+P2 events, full ranking, history masked",
            "test_users": targets.height,
            "test_targets": target_kinds,
            "unknown_targets_miss": True,
        },
        "arms": {
            arm: {**arms.get(arm, {}), **info.get(arm, {})}
            for arm in ("update", "retrain", "stale")
        },
        "paired_update_vs_retrain": {
            k: paired_test(per["retrain"][k], per["update"][k]) for k in ("NDCG@10", "HR@10")
        },
        "settings": {
            "preset": args.preset,
            "set": args.set,
            "update_epochs": args.update_epochs,
            "update_patience": args.update_patience,
            "train_rows": args.train_rows,
            "repeat_changed": args.repeat_changed,
            "new_items": args.new_items,
            "update_set": args.update_set,
            "users": args.users,
            "threads": args.threads,
            "reused base/retrain": bool(args.reuse),
        },
    }


if __name__ == "__main__":
    main()
