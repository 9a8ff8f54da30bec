"""How often is a held-out item one the user has already seen? Per dataset, under seqrec's split.

    SEQREC_DATA_DIR=../shared/data python benchmarks/repeat_share.py

Published code in the ICLRec / BSARec family scores seen items by zeroing every training item
of the user, so a test item that repeats an earlier one is a miss there, while seqrec's default
(``eval.repeat_targets=rank``) ranks it by its score. This share is how many test (and
validation) targets the rule decides: on a dataset where it is large, numbers computed under
the two rules are not comparable. Writes benchmarks/results/repeat_share.json.
"""

from __future__ import annotations

import sys

import numpy as np

from common import write_result
from seqrec.data import prepare
from seqrec.eval.ranking import repeat_share
from seqrec.options import DataConfig

DATASETS = ("ml-1m", "ml-1m-sasrec", "amazon-beauty", "amazon-video", "lastfm", "ml-100k")


def shares(dataset: str) -> dict:
    cfg = DataConfig(dataset=dataset)
    store, split = prepare(cfg)
    out = {"users": int(store.n_users), "items": int(store.n_items)}
    for name in ("valid", "test"):
        view = getattr(split, name)
        out[f"{name}_repeat_share"] = repeat_share(
            np.asarray(store.items), view.starts, view.ends, view.targets, cfg.max_len, True
        )
    return out


def main() -> int:
    table = {}
    for dataset in DATASETS:
        try:
            table[dataset] = shares(dataset)
        except Exception as e:  # a dataset not on this machine: say so and go on
            print(f"{dataset}: skipped ({type(e).__name__}: {e})", file=sys.stderr)
            continue
        print(f"{dataset}: {table[dataset]}", file=sys.stderr)
    write_result(
        "repeat_share",
        {f"{d}/test": v["test_repeat_share"] for d, v in table.items()},
        dataset=", ".join(table),
        protocol="leave-one-out; a target repeats when it is among the user's earlier items "
        "(the whole history, as eval.mask_seen=true masks)",
        extra={"per_dataset": table},
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
