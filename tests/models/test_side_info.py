"""Side-information fusion (models/side_info.py) through models, the trainer and reloading."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import ITEM_OFFSET, N_ITEMS, cycle_sequences, tiny_config, write_csv_log
from seqrec.data.batches import training_batch
from seqrec.data.features import align, parse_file
from seqrec.errors import SeqrecError
from seqrec.models import model_config
from seqrec.models.hstu import HSTU
from seqrec.models.sasrec import SASRec
from seqrec.objectives import build_objective
from seqrec.recipe import build_config
from seqrec.run import Run


def _movies(path: Path) -> Path:
    genres = ["Action", "Comedy", "Drama"]
    lines = [
        f"{ITEM_OFFSET + j}::Film {j} ({1990 + j % 7})::{genres[j % 3]}|{genres[(j + 1) % 3]}"
        for j in range(N_ITEMS)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def _features(tmp_path: Path):
    ids = np.array(["<pad>"] + [str(ITEM_OFFSET + j) for j in range(N_ITEMS)])
    return align(parse_file(_movies(tmp_path / "movies.dat")), ids, True, "movies.dat")


def _batch():
    seqs = [[int(x) - ITEM_OFFSET + 1 for x in s] for s in cycle_sequences().values()]
    flat = np.concatenate(seqs).astype(np.int32)
    lens = np.array([len(s) for s in seqs])
    ends = np.cumsum(lens)
    return training_batch(flat, None, np.arange(len(seqs)), ends - lens, ends, 12)


@pytest.mark.parametrize(("name", "cls"), [("sasrec", SASRec), ("hstu", HSTU)])
@pytest.mark.parametrize("fusion", ["sum", "concat", "gated"])
def test_fusion_trains_and_stays_causal(tmp_path, name, cls, fusion):
    torch.manual_seed(0)
    cfg = model_config(name, hidden=16, layers=1, heads=2, dropout=0.0, side_fusion=fusion)
    model = cls(cfg, N_ITEMS, 12)
    model.attach_item_features(_features(tmp_path))
    batch, loss_fn = _batch(), build_objective(build_config({}).objective)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    losses = []
    for _ in range(30):
        loss = loss_fn(model, batch)
        loss = loss[0] if isinstance(loss, tuple) else loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]
    model.eval()
    h = model(batch)
    changed = batch.items.clone()
    changed[:, 5:] = torch.where(changed[:, 5:] > 0, changed[:, 5:] % N_ITEMS + 1, 0)
    h2 = model(type(batch)(**{**batch.__dict__, "items": changed}))
    assert torch.allclose(h[:, :5], h2[:, :5], atol=1e-5)
    real = batch.items != 0  # PAD states differ between the paths and are never scored
    assert torch.allclose(model(batch, reference=True)[real], h[real], atol=1e-5)


def test_side_output_and_buffers_not_in_state_dict(tmp_path):
    cfg = model_config(hidden=16, layers=1, heads=2, side_fusion="gated", side_output=True)
    model = SASRec(cfg, N_ITEMS, 12)
    model.attach_item_features(_features(tmp_path))
    assert not any(k.startswith("side.table_") for k in model.state_dict())
    w = model.item_weights
    assert w.shape == (N_ITEMS + 1, 16) and (w[0] == 0).all()
    assert not torch.allclose(w[1:], model.item_emb.weight[1:])


def test_trainer_run_reloads_with_identical_scores(tmp_path, monkeypatch):
    from seqrec.trainer.run import train_run

    monkeypatch.setenv("SEQREC_CACHE_DIR", str(tmp_path / "cache"))
    data = write_csv_log(tmp_path / "log.csv", cycle_sequences())
    raw = tiny_config(data, model={"side_fusion": "gated"}, train={"epochs": 3})
    raw["data"]["item_features"] = str(_movies(tmp_path / "movies.dat"))
    res = train_run(build_config(raw), tmp_path / "run", progress=False)
    rec = Run(tmp_path / "run").recommender()
    hist = [[str(ITEM_OFFSET + j) for j in range(3, 9)]]
    first = rec.recommend_ids(hist[0], k=5)
    again = Run(tmp_path / "run").recommender().recommend_ids(hist[0], k=5)
    assert first == again
    saved = json.loads((tmp_path / "run" / "results.json").read_text())
    assert saved["test"]["metrics"] == res["test"]["metrics"]


def test_missing_features_refused_before_training(tmp_path, monkeypatch):
    from seqrec.trainer.run import train_run

    monkeypatch.setenv("SEQREC_CACHE_DIR", str(tmp_path / "cache"))
    data = write_csv_log(tmp_path / "log.csv", cycle_sequences())
    raw = tiny_config(data, model={"side_fusion": "sum"})
    with pytest.raises(SeqrecError, match="needs item features") as err:
        train_run(build_config(raw), tmp_path / "r1", progress=False)
    assert "\n" not in str(err.value)
    raw["data"]["item_features"] = str(_movies(tmp_path / "movies.dat"))
    raw["data"]["item_feature_fields"] = ["genres", "budget"]
    with pytest.raises(SeqrecError, match="budget"):
        train_run(build_config(raw), tmp_path / "r2", progress=False)
    raw = tiny_config(data, model={"behavior_tokens": "embedding"})
    with pytest.raises(SeqrecError, match="behavior_col"):
        train_run(build_config(raw), tmp_path / "r3", progress=False)
    assert not (tmp_path / "r3" / "checkpoint.pt").exists()
