"""Convert the ML-1M sequence file into a RecBole atomic ``.inter`` file.

Input : ``ml-1m.seq.txt.gz`` -- one user per line, ``user item1 item2 ...`` in chronological
        order, raw MovieLens ids (gzip, latin-1).
Output: ``<out>/ml-1m-seq/ml-1m-seq.inter`` with header
        ``user_id:token\titem_id:token\ttimestamp:float``; ``timestamp`` is the 0-based position of
        the interaction in the user's (filtered) sequence, so RecBole's ``TO`` ordering reproduces
        the given order exactly (no ties, no reliance on a stable sort).

Preprocessing (SASRec/BERT4Rec convention): drop items with fewer than 5 interactions, one pass,
no user filter. Expected result: 6,040 users, 3,416 items, 999,611 interactions (asserted).

Pure standard library; runs with any Python >= 3.10 (no venv needed). Writes outside the repo by
default (``/tmp/recbole-data``); never point ``--out`` inside the repository.

    python benchmarks/recbole/make_atomic.py [--src PATH] [--out /tmp/recbole-data]
"""

from __future__ import annotations

import argparse
import gzip
import os
import sys
from collections import Counter
from pathlib import Path

DEFAULT_SRC = "/work/shared/data/movielens/ml-1m/ml-1m.seq.txt.gz"
DATASET = "ml-1m-seq"
MIN_ITEM_COUNT = 5
EXPECTED = {"users": 6040, "items": 3416, "interactions": 999_611}


def read_sequences(src: str) -> list[tuple[str, list[str]]]:
    seqs: list[tuple[str, list[str]]] = []
    with gzip.open(src, "rt", encoding="latin-1") as fh:
        for line in fh:
            parts = line.split()
            if not parts:
                continue
            seqs.append((parts[0], parts[1:]))
    return seqs


def filter_items(seqs: list[tuple[str, list[str]]], min_count: int) -> list[tuple[str, list[str]]]:
    counts = Counter(item for _, items in seqs for item in items)
    keep = {item for item, c in counts.items() if c >= min_count}
    out = []
    for user, items in seqs:
        kept = [i for i in items if i in keep]
        if kept:
            out.append((user, kept))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--src", default=DEFAULT_SRC, help="ml-1m.seq.txt.gz path")
    ap.add_argument("--out", default="/tmp/recbole-data", help="RecBole data_path (dir)")
    ap.add_argument("--force", action="store_true", help="rewrite even if the file exists")
    args = ap.parse_args(argv)

    out_dir = Path(args.out) / DATASET
    out_file = out_dir / f"{DATASET}.inter"

    seqs = filter_items(read_sequences(args.src), MIN_ITEM_COUNT)
    stats = {
        "users": len(seqs),
        "items": len({i for _, items in seqs for i in items}),
        "interactions": sum(len(items) for _, items in seqs),
    }
    assert stats == EXPECTED, f"unexpected ML-1M stats after filtering: {stats} != {EXPECTED}"

    if out_file.exists() and not args.force:
        print(f"{out_file} exists (use --force to rewrite); stats {stats}", file=sys.stderr)
        return 0

    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out_file.with_suffix(".inter.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write("user_id:token\titem_id:token\ttimestamp:float\n")
        for user, items in seqs:
            fh.writelines(f"{user}\t{item}\t{pos}\n" for pos, item in enumerate(items))
    os.replace(tmp, out_file)
    print(f"wrote {out_file}: {stats}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
