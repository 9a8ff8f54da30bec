"""The faiss indexes (HNSW, IVF) against brute force: exact top-k and recall references, ANN
answers equal to exact ones where the index is made exhaustive, effort tuning to a recall
target, and `--index auto`'s choice on each side of its (overridden) threshold."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from seqrec.errors import SeqrecError
from seqrec.models import build_model
from seqrec.recipe import RunConfig
from seqrec.run import Recommender
from seqrec.serve.ann import (
    exact_top_k,
    recall_at_k,
    reference_top_k,
    sample_histories,
    user_vectors,
)
from seqrec.serve.index import (
    AUTO_EXACT_BELOW,
    HnswIndex,
    IndexConfig,
    IvfIndex,
    choose_index,
    describe,
    resolve_kind,
)

N_ITEMS = 2000


@pytest.fixture(scope="module")
def rec() -> Recommender:
    """An untrained SASRec over a clustered item table (the structure a trained one has)."""
    torch.manual_seed(0)
    cfg = RunConfig.model_validate(
        {
            "data": {"dataset": "synthetic", "max_len": 20},
            "model": {"name": "sasrec", "hidden": 16, "layers": 1, "heads": 1},
        }
    )
    model = build_model(cfg.model, N_ITEMS, 20).eval()
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((40, 16))
    table = centres[rng.integers(0, 40, N_ITEMS)] + 0.5 * rng.standard_normal((N_ITEMS, 16))
    with torch.no_grad():
        model.item_emb.weight[1:] = torch.from_numpy(table).float()
    pop = np.concatenate([[0], rng.zipf(1.5, N_ITEMS)]).astype(np.int64)
    pop[1::7] = 0  # items never seen in training
    ids = np.array(["<pad>", *(f"i{i}" for i in range(1, N_ITEMS + 1))])
    return Recommender(model, ids, 20, torch.device("cpu"), popularity=pop)


@pytest.fixture(scope="module")
def faiss():
    return pytest.importorskip("faiss")


def histories(n: int, seed: int = 1) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(1, N_ITEMS + 1, rng.integers(1, 30)) for _ in range(n)]


def test_blocked_exact_top_k_equals_a_full_sort():
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((500, 8)).astype(np.float32)
    queries = rng.standard_normal((25, 8)).astype(np.float32)
    want = reference_top_k(queries, vectors, 10)
    for block in (7, 64, 500, 4096):  # ragged last block, one block, block > table
        np.testing.assert_array_equal(exact_top_k(queries, vectors, 10, block=block), want)
    few = exact_top_k(queries, vectors[:5], 10)  # fewer rows than k: all of them, ranked
    np.testing.assert_array_equal(few, reference_top_k(queries, vectors[:5], 5))


def test_recall_counts_the_share_of_the_true_top_k_found():
    rng = np.random.default_rng(0)
    truth = np.stack([rng.permutation(50)[:10] for _ in range(30)])
    # unique ids per row, as an index returns them; -1: a slot faiss could not fill
    found = np.stack([rng.permutation(np.arange(-1, 20))[:10] for _ in range(30)])
    ref = np.mean(
        [len(set(f.tolist()) & set(t.tolist())) / 10 for f, t in zip(found, truth, strict=True)]
    )
    assert recall_at_k(found, truth) == pytest.approx(ref)
    assert recall_at_k(truth[:, ::-1], truth) == 1.0  # order does not matter
    assert recall_at_k(np.full_like(truth, -1), truth) == 0.0


def test_sampled_histories_follow_the_given_users_or_popularity(rec):
    given = histories(40)
    sample, source = sample_histories(rec, 10, histories=given)
    assert len(sample) == 10 and "10 of 40 given user histories" in source
    assert all(any(np.array_equal(s, g) for g in given) for s in sample)
    sample, source = sample_histories(rec, 200)
    assert "training popularity" in source and len(sample) == 200
    drawn = np.concatenate(sample)
    assert drawn.min() >= 1 and (rec.popularity[drawn] > 0).all()  # unseen items never drawn
    assert max(len(s) for s in sample) <= rec.max_len


@pytest.mark.parametrize("cls", [HnswIndex, IvfIndex])
def test_an_exhaustive_index_answers_exactly(rec, faiss, cls):
    index = cls(rec, threads=1)
    index.effort = index.max_effort  # IVF: every cell; HNSW: ef above the catalogue
    hists = [*histories(12), np.arange(1, 40)]
    for exclude in (True, False):
        a_items, a_scores = index.search(rec, hists, 10, exclude, [None] * len(hists))
        b_items, b_scores = rec.top_k(hists, 10, exclude)
        np.testing.assert_array_equal(a_items, b_items)
        np.testing.assert_allclose(a_scores, b_scores, rtol=1e-5, atol=1e-6)
    assert index.fallbacks == 0
    cands = [np.array([3, 4, 5])] + [None] * (len(hists) - 1)
    a_items, _ = index.search(rec, hists, 10, True, cands)
    np.testing.assert_array_equal(a_items, rec.top_k(hists, 10, True, candidates=cands)[0])
    assert index.fallbacks == 1  # the filtered row, answered exactly


def test_ivf_ranks_by_inner_product_not_by_distance(rec, faiss):
    """The augmentation makes L2 order the inner-product order: raw faiss ids at full nprobe
    equal the exact inner-product top-10 even though item norms differ widely."""
    index = IvfIndex(rec, threads=1)
    norms = np.linalg.norm(index.vectors, axis=1)
    assert norms.max() > 2 * norms.min()
    index.effort = index.nlist
    queries = user_vectors(rec, histories(30))
    np.testing.assert_array_equal(
        index.raw_search(queries, 10), reference_top_k(queries, index.vectors, 10)
    )


def test_tuning_raises_effort_until_the_target_and_reports_true_recall(rec, faiss):
    index = IvfIndex(rec, threads=1)
    queries = user_vectors(rec, histories(60, seed=3))
    report = index.tune(queries, target=1.0)
    assert report["met"] and report["recall_at_10"] == 1.0
    efforts = [e for e, _ in report["tried"]]
    assert efforts[0] == IvfIndex.first_effort and efforts[-1] == report["effort"]["nprobe"]
    assert all(b == min(2 * a, index.nlist) for a, b in itertools.pairwise(efforts))
    assert all(r < 1.0 for _, r in report["tried"][:-1])  # it stopped at the first that met
    truth = reference_top_k(queries, index.vectors, 10)
    for effort, recall in report["tried"]:  # every reported recall is the brute-force one
        index.effort = effort
        assert recall == round(recall_at_k(index.raw_search(queries, 10), truth), 4)
    capped = index.tune(queries, target=1.0, cap=1)
    assert capped["tried"] == [[1, capped["recall_at_10"]]] and not capped["met"]


def test_auto_picks_exact_below_the_threshold_and_ivf_above(rec, faiss):
    small = IndexConfig(kind="auto", exact_below=N_ITEMS + 1, sample_users=50)
    index, report = choose_index(rec, small, threads=1)
    assert index is None and report["kind"] == "exact" and "2,000 items < 2,001" in report["reason"]
    big = IndexConfig(kind="auto", exact_below=N_ITEMS, sample_users=50)
    index, report = choose_index(rec, big, threads=1)
    assert isinstance(index, IvfIndex) and report["kind"] == "faiss-ivf"
    assert report["met"] and report["recall_at_10"] >= 0.98
    assert report["sample"]["users"] == 50 and "popularity" in report["sample"]["source"]
    assert index.report is report and "recall@10" in describe(report)
    assert index.effort == report["effort"]["nprobe"]
    _, given_report = choose_index(rec, big, threads=1, histories=histories(80))
    assert "50 of 80 given user histories" in given_report["sample"]["source"]
    assert resolve_kind(IndexConfig(kind="faiss"), 10)[0] == "faiss-hnsw"
    assert resolve_kind(IndexConfig(), AUTO_EXACT_BELOW - 1)[0] == "exact"
    assert resolve_kind(IndexConfig(), AUTO_EXACT_BELOW)[0] == "faiss-ivf"


def test_bad_index_options_are_one_line(rec):
    from seqrec.serve.index import build_index

    with pytest.raises(SeqrecError, match="--index must be one of auto, exact"):
        build_index("annoy", rec)
    with pytest.raises(SeqrecError, match="index option target_recall"):
        build_index("faiss-ivf", rec, target_recall=1.5)
    with pytest.raises(SeqrecError, match="nlist"):
        pytest.importorskip("faiss")
        IvfIndex(rec, nlist=N_ITEMS + 1)
