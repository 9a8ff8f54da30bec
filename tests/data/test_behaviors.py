"""Behaviours (data.behavior_col): readers, store cache round trip, batches, model tokens."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from seqrec.data.batches import history_batch, training_batch
from seqrec.data.store import SequenceStore, build_store
from seqrec.errors import SeqrecError
from seqrec.models import model_config
from seqrec.models.common import gather_last
from seqrec.models.hstu import HSTU
from seqrec.models.sasrec import SASRec
from seqrec.options import DataConfig


def _ml_dat(path: Path) -> Path:
    rng = np.random.default_rng(0)
    rows = [
        f"{u}::{i}::{int(rng.integers(1, 6))}::{1000 + 7 * i - u}"
        for u in range(1, 9)
        for i in rng.permutation(12)[:8] + 1
    ]
    path.write_text("\n".join(rows) + "\n")
    return path


def _expected(path: Path) -> dict[tuple[str, str], int]:
    out = {}
    for line in path.read_text().split():
        u, i, r, _ = line.split("::")
        out[(u, i)] = int(r)
    return out


@pytest.mark.parametrize("fmt", ["ml-dat", "pairs", "csv"])
def test_behaviours_follow_their_events_through_the_cache(tmp_path, fmt):
    src = _ml_dat(tmp_path / "ratings.dat")
    if fmt == "pairs":
        path = tmp_path / "u.data"
        path.write_text("\n".join("\t".join(x.split("::")) for x in src.read_text().split()))
        # small unsorted times are no evidence of time: detection would refuse, so say it
        kw = {"behavior_col": "rating", "format": "pairs"}
    elif fmt == "csv":
        path = tmp_path / "r.csv"
        path.write_text("userId,movieId,rating,timestamp\n" + src.read_text().replace("::", ","))
        kw = {"behavior_col": "rating"}
    else:
        path, kw = src, {"behavior_col": "rating"}
    cfg = DataConfig(dataset=str(path), **kw)
    store = build_store(cfg)
    again = build_store(cfg)  # from the cache
    assert again.behaviors is not None and again.behaviors.dtype == np.int16
    np.testing.assert_array_equal(store.behaviors, again.behaviors)
    truth = _expected(src)
    for u in range(store.n_users):
        lo, hi = store.offsets[u], store.offsets[u + 1]
        got = [truth[(store.user_ids[u], store.item_ids[i])] for i in store.items[lo:hi]]
        assert got == store.behaviors[lo:hi].tolist()
    plain_kw = {"format": kw["format"]} if "format" in kw else {}
    plain = build_store(DataConfig(dataset=str(path), **plain_kw))  # other key, no behaviours
    assert plain.behaviors is None and plain.meta["cache_key"] != store.meta["cache_key"]


def test_string_behaviours_are_coded_in_sorted_order(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("user_id,item_id,timestamp,act\n1,1,1,view\n1,2,2,buy\n1,3,3,cart\n")
    store = build_store(DataConfig(dataset=str(path), behavior_col="act"))
    assert store.behaviors.tolist() == [3, 1, 2]
    assert store.meta["behavior_values"] == ["buy", "cart", "view"]
    with pytest.raises(SeqrecError, match="behaviour column 'kind'"):
        build_store(DataConfig(dataset=str(path), behavior_col="kind"))


def test_batches_align_behaviours_with_items():
    items = np.arange(1, 21, dtype=np.int32)
    beh = (np.arange(20) % 5 + 1).astype(np.int16)
    starts, ends = np.array([0, 10]), np.array([4, 20])
    b = training_batch(items, None, np.arange(2), starts, ends, 6, beh)
    real = b.items != 0
    assert torch.equal(b.behaviors[real], torch.from_numpy(beh[b.items[real].numpy() - 1]).long())
    assert (b.behaviors[~real] == 0).all()
    has_t = b.targets != 0
    tb = torch.from_numpy(beh[b.targets[has_t].numpy() - 1]).long()
    assert torch.equal(b.target_behaviors[has_t], tb)
    h = history_batch(items, None, np.arange(2), starts, ends, np.zeros(2), 6, beh)
    real = h.items != 0
    assert torch.equal(h.behaviors[real], torch.from_numpy(beh[h.items[real].numpy() - 1]).long())


@pytest.mark.parametrize(
    "cls,tokens", [(SASRec, "embedding"), (SASRec, "interleave"), (HSTU, "embedding")]
)
def test_behaviour_tokens_are_causal(cls, tokens):
    torch.manual_seed(0)
    name = "hstu" if cls is HSTU else "sasrec"
    cfg = model_config(
        name, hidden=16, layers=2, heads=2, behavior_tokens=tokens, target_behavior=5
    )
    model = cls(cfg, 20, 8).eval()
    items = torch.randint(1, 21, (3, 8))
    beh = torch.randint(1, 6, (3, 8))
    batch = training_batch(
        items.numpy().ravel(),
        None,
        np.arange(3),
        np.array([0, 8, 16]),
        np.array([8, 16, 24]),
        8,
        beh.numpy().ravel(),
    )
    h = model(batch)
    later = batch.behaviors.clone()
    later[:, 4:] = (later[:, 4:] % 5) + 1  # change behaviours of slots 4.. only
    h2 = model(type(batch)(**{**batch.__dict__, "behaviors": later}))
    assert torch.allclose(h[:, :4], h2[:, :4], atol=1e-6)
    assert not torch.allclose(h[:, 4:], h2[:, 4:])
    last = model.last_hidden(batch)
    eval_batch = type(batch)(**{**batch.__dict__, "target_behaviors": None})
    full = gather_last(model(eval_batch), (batch.items != 0).sum(1))
    assert torch.allclose(last, full, atol=1e-5)


def test_store_without_behaviours_loads_as_before(tmp_path):
    s = SequenceStore(
        np.array([0, 2]),
        np.array([1, 2], np.int32),
        None,
        2,
        np.array(["u"]),
        np.array(["<pad>", "a", "b"]),
        "t",
    )
    loaded = SequenceStore.load(s.save(tmp_path / "s"))
    assert loaded.behaviors is None and not loaded.has_behaviors
