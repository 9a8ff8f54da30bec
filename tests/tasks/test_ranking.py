"""Ranking (CTR) task: leak-free temporal examples, sampled negatives, rankers and the CLI.

The generated log has a signal only a history-aware ranker can use: every item belongs to one
of two groups and every user rates one group 5 and the other 2, so the label depends on the
(user, item) pair; item popularity carries none of it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from seqrec.cli import app
from seqrec.errors import SeqrecError
from seqrec.recipe import build_config
from seqrec.run import Run
from seqrec.tasks.ranking.examples import (
    epoch_examples,
    history_ends,
    history_ends_reference,
    sample_negatives,
)
from seqrec.tasks.ranking.inputs import load_ranking_data
from seqrec.trainer.checkpoint import load_weights
from seqrec.trainer.loop import Trainer
from seqrec.trainer.run import load_run_config, train_run

N_USERS, N_ITEMS, PER_USER = 120, 40, 24


def write_rating_log(path: Path, seed: int = 0) -> Path:
    """`user_id,item_id,timestamp,rating`; users interleaved in time, some ties in time."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(N_USERS):
        likes = u % 2
        items = rng.choice(N_ITEMS, PER_USER, replace=False)
        for t, i in enumerate(items):
            ts = 1_000_000 + 1_000 * t + (u // 3)  # users u, u+1, u+2 share timestamps
            ts -= 1_000 * (t % 5 == 1)  # the 2nd item of each 5 shares the previous item's time
            rating = 5 if i % 2 == likes else 2
            rows.append(f"{u + 1},{i + 1},{ts},{rating}")
    rows = [rows[j] for j in rng.permutation(len(rows))]
    path.write_text("user_id,item_id,timestamp,rating\n" + "\n".join(rows) + "\n")
    return path


def ranking_raw(dataset: Path, **sections) -> dict:
    raw = {
        "data": {"dataset": str(dataset), "behavior_col": "rating", "split": "temporal",
                 "max_len": 16, "temporal_valid_frac": 0.15, "temporal_test_frac": 0.15},
        "model": {"hidden": 16, "layers": 1, "heads": 1, "dropout": 0.0},
        "task": {"name": "ranking", "head_hidden": [16], "attention_hidden": 16,
                 "sampled_negatives": 0},
        "train": {"epochs": 10, "batch_size": 64, "lr": 0.01, "warmup_steps": 0, "patience": 50,
                  "device": "cpu", "threads": 1, "checkpoint_every": 1000},
    }  # fmt: skip
    for section, values in sections.items():
        raw.setdefault(section, {}).update(values)
    return raw


@pytest.fixture
def rating_log(tmp_path) -> Path:
    return write_rating_log(tmp_path / "ratings.csv")


@pytest.fixture(scope="module")
def ranking_run(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("ranking")
    data = write_rating_log(root / "ratings.csv")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SEQREC_CACHE_DIR", str(root / "cache"))
        res = train_run(build_config(ranking_raw(data)), root / "run", progress=False)
    return root / "run", res


def test_history_ends_match_reference_with_time_ties():
    rng = np.random.default_rng(0)
    lengths = rng.integers(0, 9, 30)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    ts = np.concatenate([np.sort(rng.integers(0, 6, n)) for n in lengths])
    np.testing.assert_array_equal(history_ends(offsets, ts), history_ends_reference(offsets, ts))


def test_split_has_no_leakage(rating_log):
    cfg = build_config(ranking_raw(rating_log))
    store, data = load_ranking_data(cfg)
    ts = np.asarray(store.timestamps)
    t_valid, t_test = data.protocol["t_valid"], data.protocol["t_test"]
    assert (data.train.times < t_valid).all()
    assert ((data.valid.times >= t_valid) & (data.valid.times < t_test)).all()
    assert (data.test.times >= t_test).all()
    for ex in (data.train, data.valid, data.test):
        assert len(ex) and (ex.ends > ex.starts).all()
        # the last history event is strictly older; the next one is at/after the candidate
        assert (ts[ex.ends - 1] < ex.times).all()
        assert (ts[ex.ends] >= ex.times).all()
        assert (ex.ends <= store.offsets[ex.users + 1]).all()
    # the candidate's own event (and its rating) is never inside its history: find each test
    # event's flat index (items do not repeat within a user here) and compare with the end
    offsets = np.asarray(store.offsets)
    key = data.test.users * (store.n_items + 1) + data.test.items
    users = np.repeat(np.arange(store.n_users), np.diff(offsets))
    flat_key = users * (store.n_items + 1) + np.asarray(store.items)
    order = np.argsort(flat_key)
    event = order[np.searchsorted(flat_key[order], key)]
    np.testing.assert_array_equal(data.test.events, event)
    assert (event >= data.test.ends).all()
    beh = np.asarray(store.behaviors)
    np.testing.assert_array_equal(data.test.labels, (beh[event] >= 4).astype(np.float32))
    # ties in time exist and the first timestamp of every user has no history
    assert data.protocol["dropped_without_history"] >= store.n_users


def test_sampled_negatives_are_unseen_and_epoch_deterministic(rating_log):
    _, data = load_ranking_data(build_config(ranking_raw(rating_log)))
    neg = sample_negatives(data, 3, np.random.default_rng(0))
    assert len(neg) == 3 * int(data.train.labels.sum())
    assert (neg.labels == 0).all() and (neg.events == -1).all()
    keys = neg.users * (data.n_items + 1) + neg.items
    assert not np.isin(keys, data.seen_keys).any()
    a, b = epoch_examples(data, 1, 7, 2), epoch_examples(data, 1, 7, 2)
    np.testing.assert_array_equal(a.items, b.items)
    c = epoch_examples(data, 1, 7, 3)
    assert not np.array_equal(a.items, c.items)


def test_ranker_learns_signal_and_beats_popularity(ranking_run, tmp_path):
    run, res = ranking_run
    log = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    aucs = [r["valid/AUC"] for r in log if r.get("event") == "valid"]
    assert aucs[-1] > aucs[0] + 0.1 or max(aucs) > 0.85
    assert res["test"]["metrics"]["AUC"] > 0.8
    cfg = build_config(ranking_raw(Path(res["config"]["data"]["dataset"])))
    pop = train_run(
        cfg.model_copy(update={"task": cfg.task.model_copy(update={"baseline": "popularity"})}),
        tmp_path / "pop",
        progress=False,
    )
    assert pop["test"]["metrics"]["AUC"] < res["test"]["metrics"]["AUC"] - 0.2


def test_saved_weights_reload_to_identical_predictions(ranking_run):
    run, _ = ranking_run
    cfg = load_run_config(run)
    store, data = load_ranking_data(cfg)
    task = Trainer(cfg, store, data, run / "reload", progress=False).task
    load_weights(run / "best.safetensors", task.model)
    saved = np.load(run / "test_predictions.npz")
    np.testing.assert_allclose(task.predict(data.test), saved["probs"], rtol=0, atol=1e-6)
    np.testing.assert_array_equal(saved["labels"], data.test.labels)


def test_interrupted_run_resumes_to_the_same_result(rating_log, tmp_path, monkeypatch):
    raw = ranking_raw(rating_log, train={"epochs": 2}, task={"sampled_negatives": 1})
    whole = train_run(build_config(raw), tmp_path / "whole", progress=False)
    real_step = Trainer._step
    calls = {"n": 0}

    def flaky(self, rows):
        calls["n"] += 1
        if calls["n"] == 30:  # mid-epoch
            raise KeyboardInterrupt
        return real_step(self, rows)

    monkeypatch.setattr(Trainer, "_step", flaky)
    with pytest.raises(SeqrecError, match="interrupted"):
        train_run(build_config(raw), tmp_path / "cut", progress=False)
    monkeypatch.setattr(Trainer, "_step", real_step)
    resumed = train_run(None, tmp_path / "cut", resume=True, progress=False)
    a = np.load(tmp_path / "whole" / "test_predictions.npz")["probs"]
    b = np.load(tmp_path / "cut" / "test_predictions.npz")["probs"]
    np.testing.assert_allclose(a, b, atol=1e-6)
    assert resumed["steps"] == whole["steps"]


def write_feature_files(folder: Path) -> tuple[Path, Path]:
    """MovieLens-style movies.dat / users.dat for the generated ids (genre = the item's group)."""
    movies = folder / "movies.dat"
    movies.write_text(
        "".join(f"{i}::Film {i} ({1990 + i % 7})::{'Comedy' if i % 2 else 'Drama|War'}\n"
                for i in range(1, N_ITEMS + 1))
    )  # fmt: skip
    users = folder / "users.dat"
    users.write_text(
        "".join(f"{u}::{'MF'[u % 2]}::{18 + u % 3}::{u % 5}::0{u % 9}123\n"
                for u in range(1, N_USERS + 1))
    )  # fmt: skip
    return movies, users


@pytest.mark.parametrize("baseline", ["logistic", None])
def test_rankers_with_features(rating_log, tmp_path, baseline):
    movies, users = write_feature_files(tmp_path)
    raw = ranking_raw(
        rating_log,
        data={"item_features": str(movies), "user_features": str(users)},
        task={"baseline": baseline, "features": True},
        train={"epochs": 2},
    )
    res = train_run(build_config(raw), tmp_path / "run", progress=False)
    m = res["test"]["metrics"]
    assert 0 <= m["AUC"] <= 1 and np.isfinite(m["LogLoss"]) and res["params"]["total"] > 0


def test_features_requested_but_not_configured(rating_log, tmp_path):
    raw = ranking_raw(rating_log, task={"baseline": "logistic", "features": True})
    with pytest.raises(SeqrecError, match="no features are configured"):
        train_run(build_config(raw), tmp_path / "run", progress=False)


def test_cli_train_task_ranking_end_to_end(rating_log, in_tmp_dir):
    runner = CliRunner()
    args = ["train", "--task", "ranking", "--out", "r", "--no-progress", "--model", "hstu",
            "-o", f"data.dataset={rating_log}", "-o", "data.behavior_col=rating",
            "-o", "data.max_len=16", "-o", "model.hidden=16", "-o", "model.layers=1",
            "-o", "train.epochs=1", "-o", "train.batch_size=128", "-o", "train.device=cpu",
            "-o", "task.head_hidden=[8]", "-o", "task.attention=dot",
            "-o", "model.time_bias=true", "-o", "model.time_query=next"]  # fmt: skip
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "AUC" in res.output and "GAUC" in res.output
    out = json.loads((in_tmp_dir / "r" / "results.json").read_text())
    assert {"AUC", "GAUC", "LogLoss", "ECE"} <= set(out["test"]["metrics"])
    assert out["test"]["protocol"]["task"] == "ranking"
    again = runner.invoke(app, ["train", "--resume", "r"])
    assert again.exit_code != 0
    ev = runner.invoke(app, ["evaluate", "r", "--json", "ev.json"])
    assert ev.exit_code == 0, ev.output
    redone = json.loads((in_tmp_dir / "ev.json").read_text())["metrics"]
    assert redone["AUC"] == pytest.approx(out["test"]["metrics"]["AUC"], abs=1e-9)
    # a baseline run has a config but no checkpoint: `evaluate` still knows it is ranking
    base = ["train", "--task", "ranking", "--out", "pop", "--no-progress",
            "-o", f"data.dataset={rating_log}", "-o", "data.behavior_col=rating",
            "-o", "task.baseline=popularity"]  # fmt: skip
    assert runner.invoke(app, base).exit_code == 0
    ev = runner.invoke(app, ["evaluate", "pop"])
    assert ev.exit_code == 0 and "GAUC" in ev.output, ev.output


def test_early_stopping_can_monitor_gauc(rating_log, tmp_path, monkeypatch):
    monkeypatch.setenv("SEQREC_CACHE_DIR", str(tmp_path / "cache"))
    raw = ranking_raw(rating_log, train={"epochs": 3}, task={"monitor": "GAUC"})
    res = train_run(build_config(raw), tmp_path / "run", progress=False)
    log = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    valid = [r for r in log if r.get("event") == "valid"]
    best = max(range(len(valid)), key=lambda i: (valid[i]["valid/GAUC"], -i))
    assert res["best_epoch"] == valid[best]["epoch"]


def test_ranking_config_errors(rating_log):
    with pytest.raises(SeqrecError, match=r"data\.split=temporal"):
        build_config(ranking_raw(rating_log, data={"split": "loo"}))
    gru = ranking_raw(rating_log, model={"name": "gru4rec"})
    del gru["model"]["heads"]  # a GRU has none
    with pytest.raises(SeqrecError, match="ranking head"):
        build_config(gru)
    raw = ranking_raw(rating_log, data={"behavior_col": None})
    with pytest.raises(SeqrecError, match="behavior_col"):
        load_ranking_data(build_config(raw))


def test_item_prior_offsets_by_the_popularity_logit_and_reloads(rating_log, tmp_path, monkeypatch):
    """task.item_prior: the fixed per-item offset is logit(popularity baseline rate); it is
    saved with the weights, so a reloaded model predicts the same."""
    import torch

    from seqrec.tasks.ranking.popularity import popularity_scores

    monkeypatch.setenv("SEQREC_CACHE_DIR", str(tmp_path / "cache"))
    raw = ranking_raw(rating_log, train={"epochs": 1}, task={"item_prior": True})
    cfg = build_config(raw)
    store, data = load_ranking_data(cfg)
    task = Trainer(cfg, store, data, tmp_path / "t", progress=False).task
    rate = popularity_scores(data, cfg.task.popularity_prior).clip(1e-4, 1 - 1e-4)
    np.testing.assert_allclose(task.model.prior_logit.numpy(), np.log(rate / (1 - rate)),
                               rtol=1e-5, atol=1e-5)  # fmt: skip
    # untrained, the ranker predicts exactly the popularity baseline
    np.testing.assert_allclose(task.predict(data.test), rate[data.test.items], atol=1e-5)
    res = train_run(cfg, tmp_path / "run", progress=False)
    again = Trainer(cfg, store, data, tmp_path / "reload", progress=False).task
    again.model.prior_logit.zero_()
    load_weights(tmp_path / "run" / "best.safetensors", again.model)
    assert torch.count_nonzero(again.model.prior_logit) > 0
    saved = np.load(tmp_path / "run" / "test_predictions.npz")
    np.testing.assert_allclose(again.predict(data.test), saved["probs"], rtol=0, atol=1e-6)
    assert np.isfinite(res["test"]["metrics"]["LogLoss"])
    with pytest.raises(SeqrecError, match="item_prior"):
        build_config(ranking_raw(rating_log, task={"item_prior": True, "baseline": "logistic"}))


def test_pairwise_loss_by_hand_and_user_grouping():
    import torch

    from seqrec.tasks.ranking.examples import Examples, group_by_user
    from seqrec.tasks.ranking.task import pairwise_loss

    logits = torch.tensor([2.0, 0.5, 1.0, -1.0, 3.0])
    labels = torch.tensor([1.0, 0.0, 1.0, 0.0, 0.0])
    users = torch.tensor([7, 7, 7, 8, 8])
    # user 7: positives {0, 2} vs negative {1}; user 8 has no positive
    sp = torch.nn.functional.softplus
    expect = (sp(torch.tensor(0.5 - 2.0)) + sp(torch.tensor(0.5 - 1.0))) / 2
    assert pairwise_loss(logits, labels, users).item() == pytest.approx(expect.item(), rel=1e-6)
    assert pairwise_loss(logits, torch.zeros(5), users).item() == 0.0
    n = 50
    rng = np.random.default_rng(0)
    ex = Examples(users=rng.integers(0, 6, n), starts=np.arange(n), ends=np.arange(n) + 1,
                  items=np.arange(n), labels=np.ones(n, np.float32), times=np.arange(n),
                  events=np.arange(n))  # fmt: skip
    g = group_by_user(ex, seed=0, epoch=3)
    assert sorted(g.items.tolist()) == list(range(n))  # a permutation of the same examples
    # runs of consecutive same-user examples: at most 8 long, and every user's count splits
    # into ceil(count / 8) of them
    starts = np.r_[0, np.flatnonzero(np.diff(g.users)) + 1]
    lengths = np.diff(np.r_[starts, n])
    assert lengths.max() <= 8
    counts = np.bincount(ex.users)
    assert len(starts) >= sum(-(-c // 8) for c in counts if c)  # neighbours may share a user
    assert np.array_equal(group_by_user(ex, 0, 3).items, g.items)  # replayable


def test_pairwise_training_runs_end_to_end(rating_log, tmp_path, monkeypatch):
    monkeypatch.setenv("SEQREC_CACHE_DIR", str(tmp_path / "cache"))
    raw = ranking_raw(rating_log, train={"epochs": 3}, task={"pairwise_weight": 1.0})
    res = train_run(build_config(raw), tmp_path / "run", progress=False)
    log = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    losses = [r["train_loss"] for r in log if r.get("event") == "valid"]
    assert losses[-1] < losses[0] and np.isfinite(res["test"]["metrics"]["GAUC"])


def test_behavior_pool_by_hand():
    """q = mean over real slots of (v_j - mean v) h_j, v starting at the standardised code;
    the score w . (q * e) starts at zero."""
    import torch

    from seqrec.tasks.ranking.head import BehaviorPool

    pool = BehaviorPool(5, 4)
    v = pool.value.weight.detach().squeeze(-1)
    assert v[0] == 0 and torch.allclose(
        v[1:], (torch.arange(1.0, 6) - 3) / torch.arange(1.0, 6).std()
    )
    states = torch.randn(2, 3, 4)
    levels = torch.tensor([[5, 1, 0], [3, 3, 3]])
    q = pool(states, levels, levels != 0)
    mean = (v[5] + v[1]) / 2
    expect = ((v[5] - mean) * states[0, 0] + (v[1] - mean) * states[0, 1]) / 2
    torch.testing.assert_close(q[0], expect)
    torch.testing.assert_close(q[1], torch.zeros(4))  # equal ratings carry no preference
    e = torch.randn(2, 4)
    assert torch.count_nonzero(pool.score(q, e)) == 0
    with torch.no_grad():
        pool.out.weight.fill_(1.0)
    torch.testing.assert_close(pool.score(q, e), (q * e).sum(-1))


def test_behavior_pool_learns_within_user_preference(rating_log, tmp_path, monkeypatch):
    """The generated users like odd or even items, so every item's positive rate is ~1/2 and
    the popularity prior cannot order a user's items; the pool's term alone must learn to."""
    import torch

    from seqrec.eval.ctr import group_auc

    monkeypatch.setenv("SEQREC_CACHE_DIR", str(tmp_path / "cache"))
    raw = ranking_raw(rating_log, train={"epochs": 6},
                      task={"behavior_pool": True, "item_prior": True, "pairwise_weight": 1.0})  # fmt: skip
    cfg = build_config(raw)
    store, data = load_ranking_data(cfg)
    task = Trainer(cfg, store, data, tmp_path / "t", progress=False).task
    rate = np.asarray(task.model.prior_logit)  # untrained: exactly the baseline
    np.testing.assert_allclose(task.predict(data.test), 1 / (1 + np.exp(-rate[data.test.items])),
                               atol=1e-5)  # fmt: skip
    train_run(cfg, tmp_path / "run", progress=False)
    load_weights(tmp_path / "run" / "best.safetensors", task.model)
    model, captured = task.model, {}  # the pool's q, read batch by batch
    model.pool.register_forward_hook(lambda m, i, o: captured.update(q=o))
    scores = []
    for a in range(0, len(data.test), 256):
        ex = data.test.take(np.arange(a, min(a + 256, len(data.test))))
        b = task.inputs.batch(ex, torch.device("cpu"))
        with torch.no_grad():
            model.eval()
            model(b.seq, b.candidates, b.feats)
            e = model.encoder.item_weights[b.candidates]
            scores.append(model.pool.score(captured["q"], e))
    gauc = group_auc(torch.cat(scores).numpy(), data.test.labels, data.test.users)[0]
    assert gauc > 0.8
    with pytest.raises(SeqrecError, match="history_behaviors"):
        build_config(
            ranking_raw(rating_log, task={"behavior_pool": True, "history_behaviors": False})
        )
    with pytest.raises(SeqrecError, match="behavior_pool"):
        build_config(ranking_raw(rating_log, task={"behavior_pool": True, "baseline": "logistic"}))


def test_itemknn_scores_match_a_loop_and_use_training_ratings_only(
    rating_log, tmp_path, monkeypatch
):
    from seqrec.tasks.ranking.itemknn import ItemKNN, item_similarity

    monkeypatch.setenv("SEQREC_CACHE_DIR", str(tmp_path / "cache"))
    store, data = load_ranking_data(build_config(ranking_raw(rating_log)))
    values = np.asarray(store.behaviors, dtype=np.float64)
    t_valid = data.protocol["t_valid"]
    sim = item_similarity(store, values, t_valid)
    assert sim.shape == (store.n_items + 1,) * 2 and sim.min() >= 0 and not np.diag(sim).any()
    # the similarities come from training events alone: rewriting later ratings changes nothing
    later = np.asarray(store.timestamps) >= t_valid
    assert later.any()
    np.testing.assert_array_equal(
        item_similarity(store, np.where(later, 9.0, values), t_valid), sim
    )
    items = np.asarray(store.items)
    ex = data.test
    got = ItemKNN(store, values, t_valid).scores(ex, history=5, chunk=7)[:, 0]
    for n in range(0, len(ex), 11):  # the formula, one example at a time
        hist = np.arange(max(ex.starts[n], ex.ends[n] - 5), ex.ends[n])
        w = sim[ex.items[n], items[hist]]
        want = (w * (values[hist] - values[hist].mean())).sum() / (w.sum() + 1e-3)
        assert got[n] == pytest.approx(want, rel=1e-5, abs=1e-7)  # float32 similarities


def test_itemknn_baseline_end_to_end(rating_log, tmp_path, monkeypatch):
    """The generated users like odd or even items: every item's positive rate is ~1/2, so
    popularity cannot order a user's items and co-rating statistics can."""
    monkeypatch.setenv("SEQREC_CACHE_DIR", str(tmp_path / "cache"))
    res = {}
    for name in ("popularity", "itemknn"):
        raw = ranking_raw(rating_log, task={"baseline": name, "knn_history": 10})
        res[name] = train_run(build_config(raw), tmp_path / name, progress=False)
    assert res["itemknn"]["test"]["metrics"]["GAUC"] > 0.9
    assert (
        res["itemknn"]["test"]["metrics"]["GAUC"]
        > res["popularity"]["test"]["metrics"]["GAUC"] + 0.2
    )
    assert res["itemknn"]["params"]["total"] == 0

    again = Run(tmp_path / "itemknn").evaluate("test").metrics
    assert again["GAUC"] == pytest.approx(res["itemknn"]["test"]["metrics"]["GAUC"])


def test_ranker_starts_from_a_retrieval_run(rating_log, tmp_path, monkeypatch):
    """train.init_from: a retrieval run of the same encoder on the same data starts the
    ranker's encoder (logged); a run over another catalogue is refused."""
    import torch
    from safetensors.torch import load_file

    from seqrec.trainer.run import train_run

    monkeypatch.setenv("SEQREC_CACHE_DIR", str(tmp_path / "cache"))
    pre = ranking_raw(rating_log, task={"name": "retrieval"}, train={"epochs": 1})
    train_run(build_config(pre), tmp_path / "pre", progress=False)
    raw = ranking_raw(rating_log, train={"epochs": 1, "init_from": str(tmp_path / "pre")})
    cfg = build_config(raw)
    store, data = load_ranking_data(cfg)
    trainer = Trainer(cfg, store, data, tmp_path / "rank", progress=False)
    monkeypatch.setattr(Trainer, "_run_epochs", lambda self, bar: None)  # the start, untrained
    trainer.fit()
    start = json.loads((tmp_path / "rank" / "metrics.jsonl").read_text().splitlines()[0])
    assert start["init"]["tensors"] == len(trainer.model.encoder.state_dict())
    source = load_file(str(tmp_path / "pre" / "best.safetensors"))
    for key, value in trainer.model.encoder.state_dict().items():
        torch.testing.assert_close(value, source[key])
    other = write_rating_log(tmp_path / "other.csv", seed=1)
    lines = other.read_text().splitlines()
    other.write_text("\n".join(lines[:1] + [x for x in lines[1:] if x.split(",")[1] != "3"]) + "\n")
    raw = ranking_raw(other, train={"epochs": 1, "init_from": str(tmp_path / "pre")})
    with pytest.raises(SeqrecError, match="another item catalogue"):
        train_run(build_config(raw), tmp_path / "bad", progress=False)
    # a retrieval run over a same-sized catalogue of other ids: the shapes match, the ids not
    shifted = tmp_path / "shifted.csv"
    rows = [r.split(",") for r in rating_log.read_text().splitlines()]
    rows = rows[:1] + [[u, str(int(i) + 100), *rest] for u, i, *rest in rows[1:]]
    shifted.write_text("\n".join(",".join(r) for r in rows) + "\n")
    raw = ranking_raw(shifted, task={"name": "retrieval"},
                      train={"epochs": 1, "init_from": str(tmp_path / "pre")})  # fmt: skip
    with pytest.raises(SeqrecError, match="another item catalogue"):
        train_run(build_config(raw), tmp_path / "bad_retrieval", progress=False)
