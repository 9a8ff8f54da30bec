"""HSTU: fast path == reference, causality, length normalisation, time bias, save/load, trainer."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from conftest import adam_losses, cycle_sequences, seq_batch
from seqrec.data import prepare
from seqrec.data.batches import history_batch, training_batch
from seqrec.errors import SeqrecError
from seqrec.eval.ranking import evaluate
from seqrec.models import build_model, model_config
from seqrec.models.common import embed_sequence
from seqrec.models.hstu import HSTU, flops_per_interaction
from seqrec.models.hstu_layer import bucket_lookup, time_buckets
from seqrec.objectives import build_objective
from seqrec.options import EvalConfig, ObjectiveConfig
from seqrec.run import Run
from seqrec.serve.batch import open_recommender
from seqrec.trainer.checkpoint import load_weights, save_weights
from seqrec.trainer.loop import Trainer
from seqrec.trainer.run import train_run

ITEMS = torch.tensor([[3, 4, 5, 6, 7, 8, 9, 1], [2, 9, 4, 0, 0, 0, 0, 0], [5, 0, 0, 0, 0, 0, 0, 0]])
LAST = torch.tensor([7, 2, 0])


def _model(n_items=30, max_len=8, **kw) -> HSTU:
    torch.manual_seed(0)
    cfg = dict(name="hstu", hidden=16, layers=2, heads=2, dropout=0.0) | kw
    m = HSTU(model_config(**cfg), n_items, max_len).eval()
    with torch.no_grad():  # rab starts near 0: make it matter in the comparisons
        for layer in m.layers:
            for w in (layer.pos_w, layer.time_w):
                if w is not None:
                    w.normal_()
    return m


def _timestamps(items: torch.Tensor, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    gaps = torch.randint(1, 10**6, items.shape, generator=g)
    return torch.cumsum(gaps, 1) * (items != 0)


@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"time_bias": True},
        {"time_bias": True, "time_query": "next"},
        {"hstu_rab": False},
        {"hstu_normalizer": "max_len", "l2_norm_output": True},
        {"heads": 1, "attn_dim": 6, "hstu_value_dim": 10, "positions": "from_end"},
    ],
)
def test_fast_path_and_last_hidden_match_reference(kw):
    m = _model(**kw)
    ts = _timestamps(ITEMS)
    b = replace(seq_batch(ITEMS, timestamps=ts), next_timestamps=_timestamps(ITEMS, seed=1))
    ref = m(b, reference=True)
    valid = ITEMS != 0
    torch.testing.assert_close(m(b)[valid], ref[valid], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(m.last_hidden(b), ref[torch.arange(3), LAST], atol=1e-5, rtol=1e-5)


def test_bucket_lookup_gradient_equals_plain_indexing():
    table = torch.randn(129, dtype=torch.float64, requires_grad=True)
    idx = torch.randint(0, 129, (3, 7, 7))
    weight = torch.randn(3, 7, 7, dtype=torch.float64)
    (plain,) = torch.autograd.grad((table[idx] * weight).sum(), table)
    out = bucket_lookup(table, idx)
    (fast,) = torch.autograd.grad((out * weight).sum(), table)
    torch.testing.assert_close(out, table[idx].detach())
    torch.testing.assert_close(fast, plain)


def test_time_bias_gradients_match_reference():
    m = _model(time_bias=True).train()
    b = seq_batch(ITEMS, timestamps=_timestamps(ITEMS))
    valid = ITEMS != 0
    grads = []
    for reference in (True, False):
        m.zero_grad()
        m(b, reference=reference)[valid].square().sum().backward()
        grads.append([layer.time_w.grad.clone() for layer in m.layers])
    for ref, fast in zip(*grads, strict=True):
        assert ref.abs().sum() > 0
        torch.testing.assert_close(fast, ref, atol=1e-5, rtol=1e-5)


def test_next_timestamps_are_each_positions_next_event():
    items = np.arange(1, 9)
    ts = np.array([10, 20, 30, 40, 50, 60, 70, 80])
    train = training_batch(items, ts, np.array([0]), np.array([0]), np.array([5]), 8)
    assert train.timestamps.tolist() == [[10, 20, 30, 40]]
    assert train.next_timestamps.tolist() == [[20, 30, 40, 50]]  # the targets' times
    args = (items, ts, np.array([0, 1]), np.array([0, 4]), np.array([3, 5]), np.zeros(2), 8)
    own = history_batch(*args)
    assert own.next_timestamps.tolist() == [[20, 30, 30], [50, 0, 0]]  # last slot: its own
    asked = history_batch(*args, request_times=np.array([99, 77]))
    assert asked.next_timestamps.tolist() == [[20, 30, 99], [77, 0, 0]]


def test_time_query_next_reads_the_request_time_in_evaluation():
    """evaluate() hands each held-out item's time to the row's last slot, and only a
    time_query=next model's output moves with it."""
    items = np.array([3, 4, 5, 6, 7, 8, 9, 2, 9, 4, 5, 6])
    ts = np.cumsum(np.array([1, 5, 60, 3600, 7, 9, 30, 1, 2, 3, 86400, 5]))
    starts, ends = np.array([0, 7]), np.array([6, 11])
    seen = []
    m = _model(n_items=10, time_bias=True, time_query="next")
    plain = m.last_hidden
    m.last_hidden = lambda batch: seen.append(batch) or plain(batch)
    evaluate(m, items, starts, ends, items[ends], 8, EvalConfig(ks=[10]), timestamps=ts)
    (batch,) = seen
    last = batch.lengths - 1
    got = batch.next_timestamps[torch.arange(2), last].tolist()
    assert sorted(got) == sorted(ts[ends].tolist())
    moved = ts[ends] + 10**7
    for query, changes in (("own", False), ("next", True)):
        m = _model(n_items=10, time_bias=True, time_query=query)
        rows, targets = np.arange(2), items[ends]
        out = [
            m.last_hidden(history_batch(items, ts, rows, starts, ends, targets, 8, None, t))
            for t in (ts[ends], moved)
        ]
        assert (not torch.allclose(out[0], out[1])) == changes


def test_time_query_next_is_refused_without_the_time_bias():
    with pytest.raises(ValueError, match=r"time_query=next .* model\.time_bias=false"):
        model_config(name="hstu", time_query="next")


def test_causal_a_later_item_or_time_never_changes_earlier_outputs():
    m = _model(time_bias=True)
    x = torch.tensor([[3, 4, 5, 6, 7, 8, 0, 0]])
    ts = _timestamps(x)
    y, ts2 = x.clone(), ts.clone()
    y[0, 4] = 20
    ts2[0, 4:6] += 10**7
    a, b = m(seq_batch(x, timestamps=ts)), m(seq_batch(y, timestamps=ts2))
    torch.testing.assert_close(a[0, :4], b[0, :4])
    assert not torch.allclose(a[0, 4:6], b[0, 4:6])


@pytest.mark.parametrize("normalizer", ["length", "max_len"])
def test_more_pad_slots_change_nothing(normalizer):
    m = _model(max_len=12, hstu_normalizer=normalizer, time_bias=True)
    short = torch.tensor([[4, 5, 6], [7, 8, 0]])
    padded = torch.cat([short, torch.zeros(2, 9, dtype=torch.long)], 1)
    ts_short = _timestamps(short)
    ts_padded = torch.cat([ts_short, torch.zeros(2, 9, dtype=torch.long)], 1)
    a, b = seq_batch(short, timestamps=ts_short), seq_batch(padded, timestamps=ts_padded)
    torch.testing.assert_close(m(a), m(b)[:, :3])
    torch.testing.assert_close(m.last_hidden(a), m.last_hidden(b))


def test_normaliser_is_the_true_length():
    """A one-layer model's attention output, divided by the row's length, matches by hand."""
    m = _model(layers=1, hstu_rab=False)
    layer = m.layers[0]
    items = torch.tensor([[4, 5, 6, 0, 0]])
    b = seq_batch(items)
    x, _ = embed_sequence(items, m.item_emb, m.pos_emb, "from_start", m.emb_scale, m.emb_dropout)
    u, v, q, k = layer.project(x)
    a = torch.nn.functional.silu(q @ k.transpose(-1, -2)).tril() / 3  # 3 real items
    want = layer.finish(x, u, a @ v)
    torch.testing.assert_close(m(b)[0, :3], want[0, :3])


def test_time_bias_reads_timestamps_and_refuses_batches_without():
    m = _model(time_bias=True)
    ts = _timestamps(ITEMS)
    later = ts.clone()
    later[:, :2] -= 10**5  # bigger gaps to the two oldest items
    a, b = (
        m.last_hidden(seq_batch(ITEMS, timestamps=ts)),
        m.last_hidden(seq_batch(ITEMS, timestamps=later)),
    )
    assert not torch.allclose(a[:2], b[:2])
    with pytest.raises(SeqrecError, match="time_bias"):
        m(seq_batch(ITEMS))
    plain = _model()  # without the option, timestamps are ignored
    torch.testing.assert_close(
        plain(seq_batch(ITEMS, timestamps=ts)), plain(seq_batch(ITEMS, timestamps=later))
    )


def test_time_buckets_are_log_spaced():
    t = torch.tensor([[0, 1, 2, 10, 1000, 10**9]])
    got = time_buckets(t, t)[0, :, 0].tolist()
    want = [min(int(np.floor(np.log(max(abs(x), 1)) / 0.301)), 128) for x in t[0].tolist()]
    assert got == want and got[-1] == 68


def test_dropout_is_applied_in_training_only():
    m = _model(dropout=0.3)
    b = seq_batch(ITEMS)
    m.train()
    assert not torch.allclose(m(b), m(b))
    m.eval()
    torch.testing.assert_close(m(b), m(b))


def test_published_shapes_follow_hidden_and_heads():
    base = HSTU(model_config(name="hstu", hidden=50, layers=2, heads=1), 3706, 200)
    large = HSTU(model_config(name="hstu", hidden=50, layers=8, heads=2), 3706, 200)
    assert (base.layers[0].dqk, base.layers[0].dv) == (50, 50)
    assert (large.layers[0].dqk, large.layers[0].dv, len(large.layers)) == (25, 25, 8)
    assert base.layers[0].uvqk.weight.shape == (4 * 50, 50) and base.layers[0].uvqk.bias is None
    f = flops_per_interaction(base.cfg, 3706, 100.0)
    assert f["train"] == 3 * f["forward"] > 0


@pytest.mark.parametrize(
    "init, std", [("trunc_normal", (1 / 50) ** 0.5), ("xavier", (2 / 250) ** 0.5)]
)
def test_position_table_init(init, std):
    """Truncated N(0, 1/d) stays inside 2 std (a narrower spread than std itself); xavier-normal
    has std sqrt(2 / (fan_in + fan_out)) and is not truncated."""
    torch.manual_seed(0)
    w = HSTU(model_config(name="hstu", hidden=50, hstu_pos_init=init), 100, 200).pos_emb.weight
    if init == "trunc_normal":
        assert w.abs().max() <= 2 * std and 0.8 * std < w.std() < 0.9 * std
    else:
        assert w.abs().max() > 2 * std and abs(w.std().item() - std) < 0.05 * std


def test_sampled_softmax_loss_falls_on_generated_sequences():
    torch.manual_seed(0)
    cfg = model_config(name="hstu", hidden=16, layers=1, heads=1, dropout=0.0, l2_norm_output=True)
    m = build_model(cfg, n_items=30, max_len=12)
    seqs = [[int(i) - 99 for i in s] for s in cycle_sequences().values()]  # ids 1..30
    flat = np.concatenate(seqs).astype(np.int32)
    ends = np.cumsum([len(s) for s in seqs])
    batch = training_batch(
        flat, None, np.arange(len(seqs)), ends - [len(s) for s in seqs], ends, 12
    )
    objective = build_objective(
        ObjectiveConfig(name="ssm", n_negatives=16, temperature=0.1, normalize=True)
    )
    losses = adam_losses(m, objective, batch, 30, lr=0.01)
    assert np.mean(losses[-5:]) < 0.6 * np.mean(losses[:5])


def test_save_load_gives_identical_scores(tmp_path):
    m = _model(time_bias=True, l2_norm_output=True)
    b = seq_batch(ITEMS, timestamps=_timestamps(ITEMS))
    save_weights(tmp_path / "w.safetensors", m, {"model": "hstu"})
    torch.manual_seed(1)
    other = HSTU(m.cfg, 30, 8).eval()
    load_weights(tmp_path / "w.safetensors", other)
    assert torch.equal(
        m.last_hidden(b) @ m.item_weights.T, other.last_hidden(b) @ other.item_weights.T
    )


@pytest.mark.parametrize("query", ["own", "next"])
def test_trainer_end_to_end_with_time_bias(cycle_log, config_for, tmp_path, query):
    model = {"name": "hstu", "heads": 1, "time_bias": True, "l2_norm_output": True}
    cfg = config_for(
        cycle_log,
        model=model | {"time_query": query},
        objective={"name": "ssm", "n_negatives": 16, "temperature": 0.1, "normalize": True},
    )
    res = train_run(cfg, tmp_path / "run", progress=False)
    # 30 items: a random ranking gives NDCG@10 ~ 0.15
    assert res["test"]["metrics"]["NDCG@10"] > 0.5
    assert res["params"]["total"] > 0 and res["flops_per_interaction"]["forward"] > 0
    # re-evaluating the saved run (best weights, timestamps from the store) gives the same ranks
    again = Run(tmp_path / "run").evaluate()
    assert again.metrics["NDCG@10"] == pytest.approx(res["test"]["metrics"]["NDCG@10"])
    # serving takes no timestamps: refused when the run is loaded, not at the first request
    with pytest.raises(SeqrecError, match=r"time_bias=true.*time_bias=false to serve"):
        open_recommender(tmp_path / "run")


def test_time_bias_is_refused_before_training_without_timestamps(tmp_path, config_for):
    seq = tmp_path / "log.txt"
    rows = [" ".join([u, *s]) for u, s in cycle_sequences().items()]
    seq.write_text("\n".join(rows) + "\n")
    cfg = config_for(seq, data={"format": "seq"}, model={"name": "hstu", "time_bias": True})
    store, split = prepare(cfg.data)
    assert store.timestamps is None
    with pytest.raises(SeqrecError, match="needs timestamps"):
        Trainer(cfg, store, split, tmp_path / "run", progress=False)
