"""Rebuild SASRec's `data/ml-1m.txt` byte for byte from the two partial copies in shared/data.

    SEQREC_DATA_DIR=../shared/data python benchmarks/ml1m_sasrec_file.py write OUT/ml-1m.txt

The file SASRec, BERT4Rec, Klenitskiy & Vasilev and gSASRec all train on (git blob 9ab8e3ed;
6,040 users, 3,416 items, 999,611 interactions) is not in shared/data, and neither is the raw
ratings.dat that would sort into it. What is here:

* DiffuRec's complete copy (`movielens/ml-1m/ml-1m.seq.txt.gz`): raw ids, every interaction,
  but ratings given in the same second in another order than ratings.dat's;
* gSASRec's split of ml-1m.txt (`movielens/ml-1m-sasrec-gsasrec-split/`): SASRec ids and order,
  but each user's second-to-last item is missing except for the 512 validation users.

Together they determine the file. SASRec renumbered users and items, so the two id spaces are
matched first: items by popularity rank (nearly exact for the frequent ones), then users by
maximum item overlap within each sequence length (a linear assignment per length), then items
again by co-occurrence over the matched users; one round already matches every user's item set
exactly. A user's missing item is then the one item of their DiffuRec set that gSASRec's files
lack. The result is accepted only if its git blob id is 9ab8e3ed, i.e. it equals the published
file. The raw user and item behind every SASRec id are saved beside it (`<out>.users.csv`,
`<out>.items.csv`), which is how experiments/ml1m_tie_order/ml1m_sasrec_file_compare.py pairs
users across the two copies. `dataset=ml-1m-sasrec` reads the file from
`$SEQREC_DATA_DIR/movielens/ml-1m-sasrec/ml-1m.txt`, where benchmarks/gpu/prepare_devdata.py
writes it.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
from itertools import pairwise
from pathlib import Path

import numpy as np
from scipy import sparse
from scipy.optimize import linear_sum_assignment

from common import data_dir
from seqrec.data import prepare
from seqrec.options import DataConfig
from seqrec.trainer.checkpoint import atomic_write_bytes

GIT_BLOB = "9ab8e3edb8742f8d8cc4911e3dee25e82a6fcc24"
SPLIT = "movielens/ml-1m-sasrec-gsasrec-split"


def _read_lines(path: Path) -> list[np.ndarray]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as fh:
        return [np.array(line.split(), dtype=np.int64) for line in fh.read().splitlines()]


def gsasrec_sequences(root: Path) -> tuple[list[np.ndarray], np.ndarray]:
    """Per SASRec user (line order): the known items in SASRec order, and whether the
    second-to-last one is missing (every user outside gSASRec's 512 validation users)."""
    train = _read_lines(root / SPLIT / "train_input.txt.gz")
    test = np.concatenate(_read_lines(root / SPLIT / "test_output.txt"))
    val_in = _read_lines(root / SPLIT / "val_input.txt.gz")
    val_out = np.concatenate(_read_lines(root / SPLIT / "val_output.txt"))
    # a validation user's training line is their validation input without its last item
    row_of = {seq.tobytes(): u for u, seq in enumerate(train)}
    known, missing = list(train), np.ones(len(train), dtype=bool)
    for seq, target in zip(val_in, val_out, strict=True):
        u = row_of[seq[:-1].tobytes()]
        known[u], missing[u] = np.append(seq, target), False
    return [np.append(seq, t) for seq, t in zip(known, test, strict=True)], missing


def _matrix(seqs: list[np.ndarray], n_cols: int) -> sparse.csr_matrix:
    lengths = np.array([len(s) for s in seqs])
    indptr = np.concatenate([[0], np.cumsum(lengths)])
    cols = np.concatenate(seqs)
    return sparse.csr_matrix((np.ones(len(cols)), cols, indptr), shape=(len(seqs), n_cols))


def match_ids(ours: list[np.ndarray], known: list[np.ndarray], missing: np.ndarray, n: int):
    """(user map, item map): SASRec user u is our user ``umap[u]``; SASRec item s (0-based) is
    our item ``imap[s]``. Both copies use 0-based dense item ids here."""
    R, S = _matrix(ours, n), _matrix(known, n)
    ours_len = np.diff(R.indptr)
    sas_len = np.diff(S.indptr) + missing
    if not np.array_equal(np.sort(ours_len), np.sort(sas_len)):
        raise SystemExit("the two copies' sequence lengths differ: they are not the same data")
    pop_r, pop_s = np.asarray(R.sum(0)).ravel(), np.asarray(S.sum(0)).ravel()
    imap = np.empty(n, dtype=np.int64)
    imap[np.argsort(-pop_s, kind="stable")] = np.argsort(-pop_r, kind="stable")
    for _ in range(5):
        mapped = sparse.csr_matrix((S.data, imap[S.indices], S.indptr), shape=S.shape)
        overlap = (mapped @ R.T).toarray()
        umap = np.empty(len(known), dtype=np.int64)
        for length in np.unique(sas_len):
            rows, cols = np.flatnonzero(sas_len == length), np.flatnonzero(ours_len == length)
            r, c = linear_sum_assignment(overlap[np.ix_(rows, cols)], maximize=True)
            umap[rows[r]] = cols[c]
        co = (R[umap].T @ S).toarray()  # our items x SASRec items over matched users
        r, c = linear_sum_assignment(co, maximize=True)
        new = np.empty(n, dtype=np.int64)
        new[c] = r
        if np.array_equal(new, imap):
            break
        imap = new
    if not np.array_equal(co[imap, np.arange(n)], pop_s):
        raise SystemExit("no exact id matching found: some SASRec item's users are not a subset")
    return umap, imap


def rebuild(root: Path) -> tuple[bytes, np.ndarray, np.ndarray]:
    """The file's bytes and the raw user / item id behind each SASRec user / item id."""
    store, _ = prepare(DataConfig(dataset="ml-1m"))  # our copy, items with < 5 ratings removed
    offsets, items = np.asarray(store.offsets), np.asarray(store.items) - 1
    ours = [items[a:b] for a, b in pairwise(offsets)]
    known, missing = gsasrec_sequences(root)
    known0 = [k - 1 for k in known]
    umap, imap = match_ids(ours, known0, missing, store.n_items)
    sas_of = np.empty(store.n_items, dtype=np.int64)
    sas_of[imap] = np.arange(store.n_items)
    lines = []
    for u, seq in enumerate(known0):
        full = sas_of[ours[umap[u]]]
        if missing[u]:
            extra = np.setdiff1d(full, seq)
            if len(extra) != 1:
                raise SystemExit(f"SASRec user {u + 1}: {len(extra)} candidate missing items")
            seq = np.concatenate([seq[:-1], extra, seq[-1:]])
        lines.append(np.char.add(f"{u + 1} ", (seq + 1).astype(str)))
    text = ("\n".join(np.concatenate(lines)) + "\n").encode()
    raw_users = np.asarray(store.user_ids).astype(np.int64)[umap]
    raw_items = np.asarray(store.item_ids)[imap + 1].astype(np.int64)
    return text, raw_users, raw_items


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def write(out: Path) -> None:
    text, raw_users, raw_items = rebuild(data_dir())
    blob = git_blob_id(text)
    if blob != GIT_BLOB:
        raise SystemExit(f"rebuilt file has git blob {blob}, not {GIT_BLOB}: nothing written")
    atomic_write_bytes(out, text)
    for kind, raw in (("users", raw_users), ("items", raw_items)):
        table = f"sasrec_{kind[:-1]},raw_{kind[:-1]}\n" + "".join(
            f"{k + 1},{r}\n" for k, r in enumerate(raw.tolist())
        )
        atomic_write_bytes(map_path(out, kind), table.encode())
    sha = hashlib.sha256(text).hexdigest()
    print(f"{out}: git blob {blob} (= SASRec's data/ml-1m.txt), sha256 {sha}")
    raw = raw_id_copy(text, raw_users, raw_items)
    atomic_write_bytes(raw_copy_path(out), gzip.compress(raw, mtime=0))
    print(f"{raw_copy_path(out)}: the same interactions and order in raw MovieLens ids")


def raw_copy_path(out: Path) -> Path:
    return out.with_name(f"{out.stem}.rawids.seq.txt.gz")


def raw_id_copy(text: bytes, raw_users: np.ndarray, raw_items: np.ndarray) -> bytes:
    """The file as a user-per-line sequence file in raw MovieLens ids, users in raw id order:
    runs on it share user and item ids with runs on the catalogue's copy, so a model trained
    on either can be evaluated on the other's split and per-user results pair directly."""
    pairs = np.array(text.split(), dtype=np.int64).reshape(-1, 2)
    users, items = raw_users[pairs[:, 0] - 1], raw_items[pairs[:, 1] - 1]
    order = np.argsort(users, kind="stable")  # each user's items keep the file's order
    users, items = users[order], items[order]
    starts = np.flatnonzero(np.diff(users, prepend=-1))
    lines = [
        " ".join(map(str, [u, *seq]))
        for u, seq in zip(users[starts], np.split(items, starts[1:]), strict=True)
    ]
    return ("\n".join(lines) + "\n").encode()


def map_path(rebuilt: Path, kind: str) -> Path:
    return rebuilt.with_name(f"{rebuilt.name}.{kind}.csv")


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = ap.add_subparsers(dest="cmd", required=True)
    write_cmd = sub.add_parser("write", help="rebuild ml-1m.txt and check its git blob id")
    write_cmd.add_argument("out", type=Path)
    args = ap.parse_args()
    write(args.out.resolve())


if __name__ == "__main__":
    main()
