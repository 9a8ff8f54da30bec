"""SRT (models/srt.py), its item tokens (data/item_tokens.py) and train.init_from.

The catalogue-independence claims are tested directly: the parameter count does not move with
n_items, and weights trained on one catalogue score another one built from features only.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from conftest import ITEM_OFFSET, cycle_sequences, tiny_config, write_csv_log, write_movies
from seqrec.data.batches import SeqBatch
from seqrec.data.item_tokens import hash_tokens, item_tokens
from seqrec.errors import SeqrecError
from seqrec.models import ModelConfig, build_model, model_config
from seqrec.models.common import count_parameters
from seqrec.models.srt import SRT
from seqrec.recipe import build_config
from seqrec.trainer.checkpoint import load_weights, save_weights
from seqrec.trainer.init_from import load_initial_weights

FIELDS = {"genres": 2, "title_tokens": 3, "year": 2}


def srt_cfg(**kw) -> ModelConfig:
    base = dict(name="srt", hidden=16, layers=1, heads=2, dropout=0.0, srt_fields=FIELDS)
    base["srt_buckets"] = 257
    return model_config(**{**base, **kw})


def random_tokens(n_items: int, seed: int, buckets: int = 257) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    tok = torch.randint(0, buckets + 1, (n_items + 1, sum(FIELDS.values())), generator=g)
    tok[0] = 0
    return tok


def batch_of(items: list[list[int]]) -> SeqBatch:
    width = max(len(r) for r in items)
    x = torch.tensor([r + [0] * (width - len(r)) for r in items])
    lengths = (x != 0).sum(1)
    return SeqBatch(items=x, targets=torch.zeros_like(x), lengths=lengths, users=lengths * 0)


def test_parameter_count_does_not_depend_on_catalogue_size():
    small, large = SRT(srt_cfg(), 30, 12), SRT(srt_cfg(), 30_000, 12)
    assert count_parameters(small) == count_parameters(large)
    assert count_parameters(small)["embedding"] == 0
    # the optional per-id residual is the one part that grows with the catalogue
    res = SRT(srt_cfg(srt_id_residual=True), 30, 12)
    assert count_parameters(res)["embedding"] == 31 * 16
    assert count_parameters(res)["non_embedding"] == count_parameters(small)["total"]


def test_embedding_bag_table_matches_reference_and_is_cached():
    for pooling in ("sum", "mean"):
        model = SRT(srt_cfg(srt_pooling=pooling, srt_id_residual=True), 20, 8)
        model.set_item_tokens(random_tokens(20, 1))
        with torch.no_grad():
            model.item_emb.weight.normal_()
        torch.testing.assert_close(model.item_weights, model.reference_item_weights())
        assert torch.all(model.item_weights[0] == 0)
    # training: forward computes the table once and item_weights reuses that very tensor
    model = SRT(srt_cfg(), 20, 8)
    model.set_item_tokens(random_tokens(20, 2))
    batch = batch_of([[1, 2, 3], [4, 5, 0]])
    model(batch)
    first = model.item_weights
    assert first is model.item_weights and first.requires_grad
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    (model(batch).sum() + model.item_weights.sum()).backward()
    opt.step()  # parameters changed: the cached table must not be served any more
    assert not torch.equal(model.item_weights, first)
    torch.testing.assert_close(model.item_weights, model.reference_item_weights())


def test_last_hidden_matches_forward_at_last_position():
    model = SRT(srt_cfg(layers=2), 20, 8).eval()
    model.set_item_tokens(random_tokens(20, 3))
    batch = batch_of([[1, 2, 3, 4], [5, 6, 0, 0], [7, 0, 0, 0]])
    with torch.no_grad():
        full = model(batch)[torch.arange(3), batch.lengths - 1]
        torch.testing.assert_close(model.last_hidden(batch), full, rtol=1e-5, atol=1e-5)


def test_same_weights_score_another_catalogue_built_from_features():
    """Catalogue B (50 items) reuses some of catalogue A's items under other ids: with A's
    weights, B scores those items exactly as A does, so nothing depends on the ids."""
    a = SRT(srt_cfg(), 30, 8).eval()
    tok_a = random_tokens(30, 4)
    a.set_item_tokens(tok_a)
    perm = torch.randperm(30, generator=torch.Generator().manual_seed(0)) + 1  # A id -> B id
    tok_b = random_tokens(50, 5)
    tok_b[perm] = tok_a[1:]
    b = SRT(srt_cfg(), 50, 8).eval()
    state = {k: v for k, v in a.state_dict().items() if k not in a.catalogue_keys}
    b.load_state_dict(state, strict=False)
    b.set_item_tokens(tok_b)
    with torch.no_grad():
        torch.testing.assert_close(b.item_weights[perm], a.item_weights[1:])
        hist = [[3, 7, 1], [12, 30, 0]]
        hist_b = [[int(perm[i - 1]) if i else 0 for i in row] for row in hist]
        ua, ub = a.last_hidden(batch_of(hist)), b.last_hidden(batch_of(hist_b))
        torch.testing.assert_close(ub, ua)
        torch.testing.assert_close((ub @ b.item_weights.T)[:, perm], ua @ a.item_weights[1:].T)


def test_save_load_roundtrip_restores_catalogue(tmp_path):
    model = SRT(srt_cfg(), 20, 8).eval()
    model.set_item_tokens(random_tokens(20, 6))
    save_weights(tmp_path / "w.safetensors", model, {"model": "srt"})
    fresh = SRT(srt_cfg(), 20, 8).eval()  # zero tokens, other random weights
    load_weights(tmp_path / "w.safetensors", fresh)
    batch = batch_of([[1, 2, 3], [9, 0, 0]])
    with torch.no_grad():
        assert torch.equal(fresh.item_tokens, model.item_tokens)
        assert torch.equal(fresh.item_weights, model.item_weights)
        assert torch.equal(fresh.last_hidden(batch), model.last_hidden(batch))


def test_set_item_tokens_validates():
    model = SRT(srt_cfg(), 20, 8)
    with pytest.raises(ValueError, match=r"n_items \+ 1, 7"):
        model.set_item_tokens(torch.zeros(21, 5, dtype=torch.long))
    with pytest.raises(ValueError, match=r"0\.\.257"):
        model.set_item_tokens(torch.full((21, 7), 300))
    res = SRT(srt_cfg(srt_id_residual=True), 20, 8)
    with pytest.raises(ValueError, match="srt_id_residual"):
        res.set_item_tokens(random_tokens(25, 0))


# --------------------------------------------------------------------------- tokens
def _field(kind, values, vocab=0, labels=None, raw=None):
    return SimpleNamespace(
        kind=kind, values=np.asarray(values), vocab=vocab, labels=labels, raw=raw
    )


def test_tokens_hash_names_not_vocabulary_ids():
    """Two files numbering the same genres differently give the same tokens."""
    a = SimpleNamespace(
        n_rows=3,
        fields={"genres": _field("multi", [[0, 0], [1, 2], [2, 0]], 3, ["", "Comedy", "Drama"])},
    )
    b = SimpleNamespace(
        n_rows=3,
        fields={"genres": _field("multi", [[0, 0], [2, 1], [1, 0]], 3, ["", "Drama", "Comedy"])},
    )
    ta, report = item_tokens(a, {"genres": 2}, 1000)
    tb, _ = item_tokens(b, {"genres": 2}, 1000)
    assert report == {"genres": "by name"}
    assert sorted(ta[1]) == sorted(tb[1]) and ta[2, 0] == tb[2, 0]
    assert ta[2, 0] == hash_tokens(["genres=Drama"], 1000)[0]
    assert (ta[0] == 0).all() and ta[2, 1] == 0


def test_numeric_tokens_value_and_decade_and_missing_field_error():
    feats = SimpleNamespace(
        n_rows=4,
        fields={"year": _field("numeric", [0, 0.1, 0.2, 0], raw=[np.nan, 1995, 1999, np.nan])},
    )
    tok, report = item_tokens(feats, {"year": 2}, 5000)
    assert report == {"year": "value + decade"}
    assert tok[1, 0] != tok[2, 0] and tok[1, 1] == tok[2, 1]  # same decade token
    assert tok[1, 0] == hash_tokens(["year=1995"], 5000)[0]
    assert (tok[3] == 0).all()
    with pytest.raises(SeqrecError, match="do not provide"):
        item_tokens(feats, {"genres": 2}, 5000)


# --------------------------------------------------------------------------- training
def srt_run_config(tmp_path: Path, log: Path, movies: Path, **train):
    raw = tiny_config(
        log,
        model={
            "name": "srt",
            "srt_fields": FIELDS,
            "srt_buckets": 4096,
            "dropout": 0.0,
            "hidden": 16,
            "heads": 2,
        },
        train={"epochs": 8, "lr": 0.02, **train},
    )
    raw["data"]["item_features"] = str(movies)
    return build_config(raw)


def test_srt_trains_and_fine_tunes_across_catalogues(tmp_path):
    """Pre-train on one generated catalogue, fine-tune on another with other ids and size:
    the loss falls, init_from loads the weights, and the run's weights serve again."""
    from seqrec.run import Run
    from seqrec.trainer.run import train_run

    seqs = cycle_sequences()
    log_a = write_csv_log(tmp_path / "a.csv", seqs)
    movies_a = write_movies(tmp_path / "a" / "movies.csv", [ITEM_OFFSET + j for j in range(30)], 0)
    res = train_run(srt_run_config(tmp_path, log_a, movies_a), tmp_path / "pre", progress=False)
    valid = [
        json.loads(line)["valid/NDCG@10"]
        for line in (tmp_path / "pre" / "metrics.jsonl").read_text().splitlines()
        if json.loads(line).get("event") == "valid"
    ]
    # CE starts at log(30) (near-zero logits) and must fall well below it
    assert res["train_loss"] < np.log(30) - 1.0 and valid[-1] > valid[0]
    assert res["test"]["metrics"]["HR@10"] > 10 / 30
    # another catalogue: 20 items with other ids (their features share the title words)
    seqs_b = cycle_sequences(n_users=30, n_items=20, seed=1)
    seqs_b = {u: [str(int(i) + 1000) for i in s] for u, s in seqs_b.items()}
    log_b = write_csv_log(tmp_path / "b.csv", seqs_b)
    movies_b = write_movies(
        tmp_path / "b" / "movies.csv", [ITEM_OFFSET + 1000 + j for j in range(20)], 1
    )
    cfg = srt_run_config(tmp_path, log_b, movies_b, epochs=1, init_from=str(tmp_path / "pre"))
    train_run(cfg, tmp_path / "fine", progress=False)
    start = json.loads((tmp_path / "fine" / "metrics.jsonl").read_text().splitlines()[0])
    assert start["init"]["kept_from_target"] == ["item_tokens"]
    assert start["params"]["total"] == res["params"]["total"]
    rec = Run(tmp_path / "fine").recommender()
    assert rec.model.n_items == 20 and int(rec.model.item_tokens.count_nonzero()) > 0


def test_init_from_loads_weights_and_refuses_other_shapes(tmp_path):
    src = SRT(srt_cfg(), 30, 8)
    src.set_item_tokens(random_tokens(30, 7))
    save_weights(tmp_path / "best.safetensors", src, {"model": "srt", "n_items": "30"})
    dst = SRT(srt_cfg(), 50, 8)
    dst.set_item_tokens(random_tokens(50, 8))
    tokens_before = dst.item_tokens.clone()
    info = load_initial_weights(dst, tmp_path, "srt")
    assert info["kept_from_target"] == ["item_tokens"]
    assert torch.equal(dst.item_tokens, tokens_before)  # catalogue stays the target's
    assert torch.equal(dst.adapter.weight, src.adapter.weight)
    assert torch.equal(dst.token_emb.weight, src.token_emb.weight)
    with pytest.raises(SeqrecError, match=r"adapter\.weight|token_emb\.weight"):
        load_initial_weights(SRT(srt_cfg(hidden=32), 30, 8), tmp_path, "srt")
    with pytest.raises(SeqrecError, match=r"pos_emb\.weight"):
        load_initial_weights(SRT(srt_cfg(), 30, 16), tmp_path, "srt")
    with pytest.raises(SeqrecError, match="missing"):
        load_initial_weights(SRT(srt_cfg(layers=2), 30, 8), tmp_path, "srt")
    with pytest.raises(SeqrecError, match="holds srt weights"):
        load_initial_weights(
            build_model(model_config(hidden=16, heads=2), 30, 8), tmp_path, "sasrec"
        )
    # an id-based table cannot move to a catalogue of another size
    sas = build_model(model_config(hidden=16, heads=2), 30, 8)
    save_weights(tmp_path / "sas.safetensors", sas, {"model": "sasrec"})
    other = build_model(model_config(hidden=16, heads=2), 50, 8)
    with pytest.raises(SeqrecError, match=r"item_emb\.weight"):
        load_initial_weights(other, tmp_path / "sas.safetensors", "sasrec")
    (tmp_path / "unvalidated").mkdir()
    with pytest.raises(SeqrecError, match=r"no best\.safetensors"):
        load_initial_weights(dst, tmp_path / "unvalidated", "srt")
    with pytest.raises(SeqrecError, match="does not exist"):
        load_initial_weights(dst, tmp_path / "nowhere", "srt")


def test_srt_config_requires_item_features(tmp_path):
    raw = tiny_config(tmp_path / "x.csv", model={"name": "srt"})
    with pytest.raises(SeqrecError, match="item_features"):
        build_config(raw)
