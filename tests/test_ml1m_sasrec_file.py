"""benchmarks/ml1m_sasrec_file.py: recovering two renumberings from partial copies."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))
import ml1m_sasrec_file as M  # noqa: E402


def renumbered(seed: int = 0, n_users: int = 100, n_items: int = 40):
    """Random histories, and the same histories with users and items renumbered and every
    user's second-to-last item dropped except for a few (gSASRec's validation users)."""
    rng = np.random.default_rng(seed)
    pop = rng.dirichlet(np.full(n_items, 2.0))  # no item so rare that it is ambiguous
    ours = [
        rng.choice(n_items, size=rng.integers(5, 25), replace=False, p=pop) for _ in range(n_users)
    ]
    user_perm, item_perm = rng.permutation(n_users), rng.permutation(n_items)
    relabel = np.empty(n_items, dtype=np.int64)
    relabel[item_perm] = np.arange(n_items)  # our item item_perm[s] is their item s
    missing = rng.random(n_users) < 0.8
    known = []
    for u in range(n_users):
        seq = relabel[ours[user_perm[u]]]
        known.append(np.delete(seq, -2) if missing[u] else seq)
    return ours, known, missing, user_perm, item_perm


def test_match_ids_recovers_both_renumberings():
    ours, known, missing, user_perm, item_perm = renumbered()
    umap, imap = M.match_ids(ours, known, missing, 40)
    np.testing.assert_array_equal(umap, user_perm)
    np.testing.assert_array_equal(imap, item_perm)


def test_match_ids_refuses_different_data():
    ours, known, missing, _, _ = renumbered()
    known[0] = known[0][:-1]  # one interaction fewer: the length profiles no longer agree
    with pytest.raises(SystemExit, match="lengths differ"):
        M.match_ids(ours, known, missing, 40)


def test_git_blob_id_is_gits():
    """Checked against `git hash-object`: the id SOURCES.md gives for SASRec's file."""
    assert M.git_blob_id(b"") == "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"
    assert M.git_blob_id(b"hello\n") == "ce013625030ba8dba906f756967f9e9ca394464a"
