"""Does training on ratings.dat's order of same-second ratings change SASRec's ML-1M score?

    SEQREC_DATA_DIR=../shared/data python experiments/ml1m_tie_order/ml1m_file_order.py write OUT.seq.txt.gz
    SEQREC_DATA_DIR=../shared/data python experiments/ml1m_tie_order/ml1m_file_order.py compare \\
        --ours RUN [RUN ...] --file-order RUN [RUN ...]

Klenitskiy & Vasilev's ML-1M (the SASRec / BERT4Rec `ml-1m.txt`) orders ratings given in the same
second as ratings.dat lists them: a stable sort by timestamp. Our offline copy (DiffuRec's
sequence file) orders them differently (ml1m_tie_order.py), and ratings.dat with
timestamps is here for users 1..2,998 only. So:

* `write` saves a copy of our ML-1M in which those users follow (timestamp, file position) and
  every other user keeps our order: same users, items and multisets, only the within-second order
  (and therefore some test and validation targets) of about half of the users changes;
* `compare` pairs runs trained on our copy with runs trained on that copy (same config apart from
  the data file; seeds averaged per user) and reports the per-user test difference on the
  reordered users and, as a control, on the users whose data are identical in both copies.
"""

from __future__ import annotations

import argparse
import gzip
import os
import sys
from pathlib import Path

import numpy as np
import polars as pl

from seqrec.data import prepare
from seqrec.eval.metrics import confidence_interval, per_user_metrics
from seqrec.options import DataConfig
from seqrec.trainer.run import load_run_config

# benchmarks/common.py writes the result file, as every benchmark's does
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from ml1m_tie_order import file_order_items

from common import ROOT, write_result

KEYS = ("NDCG@10", "HR@10")


def write(out: Path) -> None:
    store, _ = prepare(DataConfig(dataset="ml-1m"))
    items, users, _ = file_order_items(store)
    user_of = np.repeat(np.arange(store.n_users), np.diff(store.offsets))
    frame = pl.DataFrame({
        "u": np.asarray(store.user_ids)[user_of].astype(str),
        "i": np.asarray(store.item_ids)[items].astype(str),
    })  # fmt: skip
    lines = (
        frame.group_by("u", maintain_order=True)
        .agg(pl.col("i").str.join(" "))
        .select(pl.concat_str(["u", "i"], separator=" "))
        .to_series()
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    with gzip.open(tmp, "wt") as fh:
        fh.write("\n".join(lines.to_list()) + "\n")
    os.replace(tmp, out)
    print(f"{out}: {store.n_users:,} users, {len(users):,} of them in ratings.dat's order")


def mean_metrics(runs: list[Path]) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Per-user metrics averaged over the runs' seeds, and the raw user ids in their order."""
    per, user_ids = [], None
    for run in runs:
        cfg = load_run_config(run)
        store, split = prepare(cfg.data)
        ids = np.asarray(store.user_ids).astype(np.int64)[split.test.users]
        if user_ids is not None and not np.array_equal(ids, user_ids):
            raise SystemExit(f"{run}: its test users differ from the other runs'")
        user_ids = ids
        per.append(per_user_metrics(np.load(run / "test_ranks.npy"), [10]))
    return {k: np.mean([p[k] for p in per], axis=0) for k in KEYS}, user_ids


def _rel(paths: list[Path]) -> list[str]:
    return [str(p.relative_to(ROOT)) if p.is_relative_to(ROOT) else str(p) for p in paths]


def paired_groups(a: dict, b: dict, groups, arms: tuple[str, str]) -> dict:
    """For each (label, user mask) and for all users: both arms' means and the paired per-user
    difference (second - first) with its 95% CI, for every key."""
    first, second = arms
    out: dict = {}
    everyone = np.ones(len(a[KEYS[0]]), dtype=bool)
    for group, sel in (*groups, ("all users", everyone)):
        out[f"{group}/count"] = int(sel.sum())
        for key in KEYS:
            diff = b[key][sel] - a[key][sel]
            out[f"{group}/{first} {key}"] = float(a[key][sel].mean())
            out[f"{group}/{second} {key}"] = float(b[key][sel].mean())
            out[f"{group}/{second} - {first} {key}"] = float(diff.mean())
            out[f"{group}/{second} - {first} {key} 95% CI"] = list(confidence_interval(diff))
    return out


ARMS = ("our copy", "file order")
GROUPS = ("reordered users", "unchanged users")
TIME_BIAS_NOTES = (
    "Per-user metrics are averaged over each arm's seeds before pairing. Both arms train on the "
    "same data (raw ML-1M, timestamps for users 1..2,998, 0 for the rest) and differ in one "
    "setting; the users without timestamps are the control."
)
FILE_ORDER_NOTES = (
    "Per-user metrics are averaged over each arm's seeds before pairing; the targets of the "
    "reordered users differ between the arms, so that difference is the point."
)


def compare(
    ours: list[Path],
    file_order: list[Path],
    name: str,
    arms: tuple[str, str] = ARMS,
    groups: tuple[str, str] = GROUPS,
    notes: str = FILE_ORDER_NOTES,
) -> None:
    """Paired per-user difference (second arm - first) on users 1..2,998 and on the rest.

    ``arms`` and ``groups`` only name things: the same pairing answers other questions about
    that user split, e.g. HSTU's time bias on ML-1M whose timestamps exist for exactly
    those users (experiments/hstu_time_bias/ml1m_partial_timestamps.py)."""
    a, users_a = mean_metrics(ours)
    b, users_b = mean_metrics(file_order)
    if not np.array_equal(users_a, users_b):
        raise SystemExit("the two sets of runs rank different test users")
    store, _ = prepare(DataConfig(dataset="ml-1m"))
    _, reordered_rows, _ = file_order_items(store)
    reordered = np.isin(users_a, np.asarray(store.user_ids).astype(np.int64)[reordered_rows])
    metrics: dict = {"runs per arm": [len(ours), len(file_order)]}
    metrics |= paired_groups(a, b, ((groups[0], reordered), (groups[1], ~reordered)), arms)
    first, second = arms
    labels = ""
    if arms != ARMS:
        labels += " --arms " + " ".join(f"'{x}'" for x in arms)
    if groups != GROUPS:
        labels += " --groups " + " ".join(f"'{x}'" for x in groups)
    write_result(
        name,
        metrics,
        dataset=f"ML-1M, 6,040 users; {int(reordered.sum()):,} users in {groups[0]}",
        protocol={"split": "leave-one-out", "ranking": "full", "mask_seen": True},
        notes=notes,
        command="SEQREC_DATA_DIR=../shared/data python experiments/ml1m_tie_order/ml1m_file_order.py compare "
        f"--name {name} --ours {' '.join(_rel(ours))} --file-order {' '.join(_rel(file_order))}"
        + labels,
        extra={"runs": {first: _rel(ours), second: _rel(file_order)}},
    )


def write_compare_parser(doc: str, write_help: str, other: str, name: str):
    """(parser, compare subparser) of a `write OUT` / `compare --ours RUN... --OTHER RUN...`
    benchmark: runs on our copy against runs on the copy that `write` saves."""
    ap = argparse.ArgumentParser(description=doc)
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("write", help=write_help).add_argument("out", type=Path)
    c = sub.add_parser("compare", help="paired per-user comparison of the two kinds of runs")
    c.add_argument("--ours", type=Path, nargs="+", required=True)
    c.add_argument(f"--{other}", type=Path, nargs="+", required=True)
    c.add_argument("--name", default=name)
    return ap, c


def at_root(*args):
    """Each command-line Path (or list of them) made absolute, then the work moves to the
    repository root, which the runs' relative data paths (.devdata/...) are relative to."""
    out = [[p.resolve() for p in a] if isinstance(a, list) else a.resolve() for a in args]
    os.chdir(ROOT)
    return out


def main() -> None:
    ap, c = write_compare_parser(
        __doc__, "save the reordered copy (a user-per-line sequence file)", "file-order",
        "ml1m_file_order",
    )  # fmt: skip
    c.add_argument("--arms", nargs=2, default=list(ARMS), help="arm labels")
    c.add_argument(
        "--groups", nargs=2, default=list(GROUPS), help="labels of users 1..2,998 and of the rest"
    )
    args = ap.parse_args()
    if args.cmd == "write":
        write(*at_root(args.out))
    else:
        ours, file_order = at_root(args.ours, args.file_order)
        arms, groups = tuple(args.arms), tuple(args.groups)
        notes = FILE_ORDER_NOTES if arms == ARMS else TIME_BIAS_NOTES
        compare(ours, file_order, args.name, arms, groups, notes)


if __name__ == "__main__":
    main()
