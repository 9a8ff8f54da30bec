"""task.knn_feature: the item-kNN score as a ranker input, with each training example's own
rating left out of the co-rating statistics it reads."""

from __future__ import annotations

import numpy as np
import pytest
from test_ranking import ranking_raw, write_rating_log

from seqrec.errors import SeqrecError
from seqrec.recipe import build_config
from seqrec.run import Run
from seqrec.tasks.ranking.inputs import load_ranking_data
from seqrec.tasks.ranking.itemknn import ItemKNN
from seqrec.trainer.loop import Trainer
from seqrec.trainer.run import train_run


@pytest.fixture
def rating_log(tmp_path, monkeypatch):
    monkeypatch.setenv("SEQREC_CACHE_DIR", str(tmp_path / "cache"))
    return write_rating_log(tmp_path / "ratings.csv")


def reference_score(store, values, t_valid, ex, n, history, drop_own):
    """One example from a dense user x item matrix, its own (user, candidate) entry zeroed
    when ``drop_own`` (the user's mean, which centres the row, unchanged)."""
    offsets = np.asarray(store.offsets)
    users = np.repeat(np.arange(store.n_users), np.diff(offsets))
    items = np.asarray(store.items)
    train = np.asarray(store.timestamps) < t_valid
    mean = np.bincount(users[train], values[train], store.n_users) / np.maximum(
        np.bincount(users[train], minlength=store.n_users), 1
    )
    m = np.zeros((store.n_users, store.n_items + 1))
    m[users[train], items[train]] = values[train] - mean[users[train]]
    if drop_own:
        m[ex.users[n], ex.items[n]] = 0.0
    gram = m.T @ m
    hist = np.arange(max(ex.starts[n], ex.ends[n] - history), ex.ends[n])
    c, js = ex.items[n], items[hist]
    den = np.sqrt(gram[c, c] * gram[js, js])
    sim = np.where(den > 0, np.clip(gram[c, js], 0, None) / np.where(den > 0, den, 1), 0.0)
    centred = values[hist] - values[hist].mean()
    return (sim * centred).sum() / (sim.sum() + 1e-3), np.log1p(sim.sum())


def test_training_examples_leave_their_own_rating_out(rating_log):
    store, data = load_ranking_data(build_config(ranking_raw(rating_log)))
    values = np.asarray(store.behaviors, dtype=np.float64)
    t_valid = data.protocol["t_valid"]
    knn = ItemKNN(store, values, t_valid)
    train = knn.scores(data.train, history=6, chunk=5)
    for n in range(0, len(data.train), 37):
        want = reference_score(store, values, t_valid, data.train, n, 6, drop_own=True)
        np.testing.assert_allclose(train[n], want, rtol=1e-4, atol=1e-6)
    # the correction matters: the plain similarities give other training scores
    full = reference_score(store, values, t_valid, data.train, 0, 6, drop_own=False)
    assert not np.allclose(train[0], full, rtol=1e-3)
    # validation examples were never rated in the training period: nothing to leave out
    valid = knn.scores(data.valid, history=6)
    for n in range(0, len(data.valid), 29):
        want = reference_score(store, values, t_valid, data.valid, n, 6, drop_own=False)
        np.testing.assert_allclose(valid[n], want, rtol=1e-4, atol=1e-6)


def test_untrained_ranker_adds_the_knn_score_to_the_prior_then_learns(rating_log, tmp_path):
    raw = ranking_raw(rating_log, train={"epochs": 4},
                      task={"knn_feature": True, "item_prior": True, "knn_history": 10,
                            "pairwise_weight": 1.0, "monitor": "GAUC"})  # fmt: skip
    cfg = build_config(raw)
    store, data = load_ranking_data(cfg)
    task = Trainer(cfg, store, data, tmp_path / "t", progress=False).task
    prior = np.asarray(task.model.prior_logit)[data.test.items]
    score = task.inputs.knn.scores(data.test, 10)[:, 0]
    np.testing.assert_allclose(
        task.predict(data.test), 1 / (1 + np.exp(-(prior + score))), rtol=1e-4, atol=1e-6
    )
    res = train_run(cfg, tmp_path / "run", progress=False)
    pop = train_run(
        build_config(ranking_raw(rating_log, task={"baseline": "popularity"})),
        tmp_path / "pop",
        progress=False,
    )
    assert res["test"]["metrics"]["GAUC"] > pop["test"]["metrics"]["GAUC"] + 0.2
    again = Run(tmp_path / "run").evaluate("test").metrics  # rebuilds the kNN statistics
    assert again["GAUC"] == pytest.approx(res["test"]["metrics"]["GAUC"], abs=1e-9)


def test_knn_feature_config_errors(rating_log):
    with pytest.raises(SeqrecError, match="knn_feature"):
        build_config(ranking_raw(rating_log, task={"knn_feature": True, "baseline": "logistic"}))


def test_train_min_age_fits_only_returning_visits(rating_log, tmp_path):
    """task.train_min_age_s: the weights see only events that long after the user's first;
    the popularity prior still counts every training event, valid/test are unchanged."""
    from seqrec.tasks.ranking.popularity import popularity_scores

    raw = ranking_raw(rating_log, train={"epochs": 1},
                      task={"train_min_age_s": 10_000, "item_prior": True})  # fmt: skip
    cfg = build_config(raw)
    store, data = load_ranking_data(cfg)
    task = Trainer(cfg, store, data, tmp_path / "t", progress=False).task
    fit = task.fit_data.train
    first = np.asarray(store.timestamps)[np.asarray(store.offsets)[:-1]]
    age = data.train.times - first[data.train.users]
    assert 0 < len(fit) < len(data.train)
    assert len(fit) == int((age >= 10_000).sum()) and (fit.times - first[fit.users] >= 10_000).all()
    assert task.fit_data.valid is data.valid and task.fit_data.test is data.test
    rate = popularity_scores(data, cfg.task.popularity_prior).clip(1e-4, 1 - 1e-4)
    np.testing.assert_allclose(np.asarray(task.model.prior_logit), np.log(rate / (1 - rate)),
                               rtol=1e-5)  # fmt: skip
    res = train_run(cfg, tmp_path / "run", progress=False)
    assert res["test"]["protocol"]["train_examples_fitted"] == len(fit)
    raw["task"]["train_min_age_s"] = 10**9
    with pytest.raises(SeqrecError, match="train_min_age_s"):
        Trainer(build_config(raw), store, data, tmp_path / "u", progress=False)
    with pytest.raises(SeqrecError, match="train_min_age_s"):
        build_config(ranking_raw(rating_log, task={"train_min_age_s": 5, "baseline": "itemknn"}))
