"""Why does SASRec score higher on SASRec's ml-1m.txt than on the catalogue's ML-1M copy?

    SEQREC_DATA_DIR=../shared/data python benchmarks/ml1m_sasrec_file.py write OUT/ml-1m.txt
    SEQREC_DATA_DIR=../shared/data python experiments/ml1m_tie_order/ml1m_sasrec_file_compare.py \\
        --ours RUN [RUN ...] --sasrec-file RUN [RUN ...] --rebuilt OUT/ml-1m.txt

Both copies hold the same 6,040 users, 3,416 items and 999,611 ratings; they differ only in the
order of ratings given in the same second, and so in some users' validation and test targets.
This pairs runs trained on the catalogue's ML-1M (our copy) with the same configuration trained
on the rebuilt file, user by user (seeds averaged per user) through the user map that
benchmarks/ml1m_sasrec_file.py writes beside the file, separately for users whose targets the
two copies share and for users whose targets differ.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from seqrec.data import prepare
from seqrec.trainer.run import load_run_config

# benchmarks/ holds common.py and the rebuild tool whose user and item maps pair the copies
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from ml1m_file_order import _rel, at_root, mean_metrics, paired_groups

from common import write_result
from ml1m_sasrec_file import map_path


def compare(ours: list[Path], runs: list[Path], rebuilt: Path, name: str) -> None:
    """Paired per-user difference (rebuilt file - our copy), by whether the targets moved."""
    a, users_a = mean_metrics(ours)
    b, users_b = mean_metrics(runs)
    raw_of = _read_map(map_path(rebuilt, "users"))
    users_b = np.array([raw_of[u] for u in users_b.tolist()])
    order = np.argsort(users_b)[np.searchsorted(users_b, users_a, sorter=np.argsort(users_b))]
    if not np.array_equal(users_b[order], users_a):
        raise SystemExit("the two sets of runs rank different test users")
    b = {k: v[order] for k, v in b.items()}
    moved = _targets_moved(ours[0], runs[0], users_a, raw_of, rebuilt)
    metrics: dict = {"runs per arm": [len(ours), len(runs)]}
    groups = (("targets moved", moved), ("same targets", ~moved))
    metrics |= paired_groups(a, b, groups, ("our copy", "SASRec file"))
    write_result(
        name,
        metrics,
        dataset="ML-1M, 6,040 users, 3,416 items: the catalogue's copy vs SASRec's ml-1m.txt",
        protocol={"split": "leave-one-out", "ranking": "full", "mask_seen": True},
        notes="Per-user metrics are averaged over each arm's seeds, then paired through the "
        "rebuilt file's user map. 'targets moved' = users whose validation or test item differs "
        "between the copies (ratings given in the same second, ordered differently).",
        command="SEQREC_DATA_DIR=../shared/data python "
        "experiments/ml1m_tie_order/ml1m_sasrec_file_compare.py "
        f"--name {name} --ours {' '.join(_rel(ours))} --sasrec-file {' '.join(_rel(runs))} "
        f"--rebuilt {_rel([rebuilt])[0]}",
        extra={"runs": {"our copy": _rel(ours), "SASRec file": _rel(runs)}},
    )


def _read_map(path: Path) -> dict[int, int]:
    table = np.loadtxt(path, delimiter=",", skiprows=1, dtype=np.int64, ndmin=2)
    return dict(zip(table[:, 0].tolist(), table[:, 1].tolist(), strict=True))


def _last_two(run: Path, user_of: dict[int, int] | None, item_of: dict[int, int] | None):
    """Raw user id -> (second-to-last, last) raw item ids of that run's data."""
    store, _ = prepare(load_run_config(run).data)
    ends = np.asarray(store.offsets)[1:]
    ids = np.asarray(store.item_ids)[np.asarray(store.items)].astype(np.int64)
    tails = np.stack([ids[ends - 2], ids[ends - 1]], 1)
    users = np.asarray(store.user_ids).astype(np.int64).tolist()
    if item_of is not None:
        tails = np.vectorize(item_of.__getitem__)(tails)
    return {
        user_of[u] if user_of else u: tuple(t) for u, t in zip(users, tails.tolist(), strict=True)
    }


def _targets_moved(
    run_a: Path, run_b: Path, users: np.ndarray, raw_user_of: dict[int, int], rebuilt: Path
) -> np.ndarray:
    """Per raw user in ``users``: do their validation or test items differ between the copies?"""
    ours = _last_two(run_a, None, None)
    theirs = _last_two(run_b, raw_user_of, _read_map(map_path(rebuilt, "items")))
    return np.array([ours[u] != theirs[u] for u in users.tolist()])


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--ours", type=Path, nargs="+", required=True, help="runs on our copy")
    ap.add_argument("--sasrec-file", type=Path, nargs="+", required=True, help="runs on the file")
    ap.add_argument("--rebuilt", type=Path, required=True, help="the file `write` saved")
    ap.add_argument("--name", default="ml1m_sasrec_file", help="result file name")
    args = ap.parse_args()
    compare(*at_root(args.ours, args.sasrec_file, args.rebuilt), args.name)


if __name__ == "__main__":
    main()
