"""BERT4Rec and its Cloze objective: masking, bidirectional attention, inference, training."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import adam_losses, cycle_sequences, seq_batch, tiny_config
from seqrec.data.batches import training_batch
from seqrec.errors import SeqrecError
from seqrec.models import model_config
from seqrec.models.bert4rec import BERT4Rec, key_mask
from seqrec.models.registry import flops_per_interaction
from seqrec.objectives.base import build_objective
from seqrec.objectives.cloze import cloze_mask, cloze_sequences
from seqrec.recipe import build_config
from seqrec.trainer.checkpoint import load_weights, save_weights


def _model(n_items=30, max_len=8, seed=0, **kw) -> BERT4Rec:
    torch.manual_seed(seed)
    cfg = dict(hidden=16, layers=2, heads=2, ffn_mult=4.0, dropout=0.0, norm="post")
    cfg.update(kw)
    return BERT4Rec(model_config(name="bert4rec", **cfg), n_items, max_len).eval()


def test_cloze_mask_statistics():
    gen = torch.Generator().manual_seed(0)
    n_rows, width, p = 4000, 30, 0.2
    lengths = torch.randint(1, width + 1, (n_rows,), generator=gen)
    real = torch.arange(width)[None, :] < lengths[:, None]
    seq = torch.where(real, torch.randint(1, 50, (n_rows, width), generator=gen), 0)
    inputs, labels = cloze_mask(seq, p, mask_token=51, generator=gen)
    chosen = labels != 0
    assert not (chosen & ~real).any()  # PAD is never masked
    assert chosen.any(1).all()  # every row trains
    assert torch.equal(inputs[chosen], torch.full_like(inputs[chosen], 51))
    assert torch.equal(labels[chosen], seq[chosen]) and torch.equal(inputs[~chosen], seq[~chosen])
    # expected masks per row: L p + (1 - p)^L (the forced one when none was drawn)
    expected = (lengths * p + (1 - p) ** lengths.double()).sum().item()
    assert abs(chosen.sum().item() / expected - 1) < 0.03
    long_rows = lengths >= 20  # the forced mask barely matters there: fraction ~ p
    frac = chosen[long_rows].sum() / real[long_rows].sum()
    assert abs(frac.item() - p) < 0.01


def test_forced_mask_is_uniform_over_real_positions():
    gen = torch.Generator().manual_seed(1)
    seq = torch.tensor([[5, 6, 7, 8, 0, 0]]).repeat(4000, 1)
    _, labels = cloze_mask(seq, 1e-6, mask_token=9, generator=gen)  # ~never drawn: forced
    assert (labels != 0).sum(1).eq(1).all()
    counts = (labels != 0).sum(0).double() / 4000
    assert torch.allclose(counts[:4], torch.full((4,), 0.25, dtype=torch.float64), atol=0.03)
    assert counts[4:].eq(0).all()


def test_cloze_sequences_rebuild_the_training_window():
    items = np.arange(1, 11, dtype=np.int32)  # user 0: [1, 2, 3], user 1: [4 .. 10]
    b = training_batch(items, None, np.array([0, 1]), np.array([0, 3]), np.array([3, 10]), 4)
    seq = cloze_sequences(b, max_len=4)
    assert seq.tolist() == [[1, 2, 3, 0], [7, 8, 9, 10]]  # short rows keep their first item
    b = training_batch(items, None, np.array([0]), np.array([0]), np.array([3]), 4)
    assert cloze_sequences(b, max_len=4).tolist() == [[1, 2, 3]]


def test_pad_keys_are_ignored():
    m = _model()
    items = torch.tensor([[3, 4, 5, 0, 0, 0], [7, 8, 9, 10, 11, 12]])
    real = items != 0
    before = m(seq_batch(items))
    with torch.no_grad():  # whatever a PAD slot holds must not reach a real position
        m.item_emb.weight[0].normal_(0, 5.0)
    torch.testing.assert_close(before[real], m(seq_batch(items))[real])
    x = torch.randn(2, 6, 16)
    noisy = torch.where(real[..., None], x, torch.randn(2, 6, 16) * 10)
    keep = key_mask(items)
    for block in m.blocks:  # each block, on arbitrary states, reads nothing from PAD slots
        torch.testing.assert_close(block(x, keep)[real], block(noisy, keep)[real])
    trimmed = m(seq_batch(items[:1, :3]))  # the same row without its PAD slots
    torch.testing.assert_close(before[0, :3], trimmed[0])
    changed = items.clone()
    changed[0, 2] = 20  # ...whereas a real item changes earlier positions too (bidirectional)
    assert not torch.allclose(m(seq_batch(changed))[0, :2], before[0, :2])


@pytest.mark.parametrize("norm", ["pre", "post"])
@pytest.mark.parametrize("positions", ["from_start", "from_end"])
def test_sdpa_path_matches_explicit_attention(norm, positions):
    m = _model(norm=norm, positions=positions)
    items = torch.tensor(
        [[3, 4, 5, 6, 7, 8, 9, 1], [2, 9, 31, 0, 0, 0, 0, 0], [5, 0, 0, 0, 0, 0, 0, 0]]
    )
    real = items != 0
    torch.testing.assert_close(m(seq_batch(items))[real], m(seq_batch(items), reference=True)[real])


def test_output_head_is_the_official_one():
    m = _model()
    with torch.no_grad():
        m.out_bias.normal_()
    h = torch.randn(5, 16)
    z = F.layer_norm(F.gelu(h @ m.head_proj.weight.T + m.head_proj.bias), (16,))
    z = z * m.head_ln.weight + m.head_ln.bias
    official = z @ m.item_emb.weight[:31].T + m.out_bias
    assert m.item_weights.shape == (31, 17)  # no mask-token row; bias as the last column
    torch.testing.assert_close(m.project(h) @ m.item_weights.T, official)


def test_tied_head_and_layout_checks():
    m = _model(bert_head="tied")
    h = torch.randn(5, 16)
    assert m.item_weights.shape == (31, 16) and not hasattr(m, "out_bias")
    torch.testing.assert_close(m.project(h) @ m.item_weights.T, h @ m.item_emb.weight[:31].T)
    with pytest.raises(SeqrecError, match=r"bert4rec takes model\.norm=post"):
        _model(norm="official")


def test_flops_count_bidirectional_attention_and_the_head():
    cfg = model_config(name="bert4rec", hidden=64, layers=2, heads=2, ffn_mult=4.0)
    got = flops_per_interaction(cfg, 3416, 50.0)["forward"]
    layer = 2 * (4 * 64 * 64 + 2 * 100 * 64 + 2 * 64 * 256)  # 100 = all keys of a 100-long row
    assert got == 2 * layer + 2 * 64 * 64 + 2 * 65 * 3417
    tied = flops_per_interaction(cfg.model_copy(update={"bert_head": "tied"}), 3416, 50.0)
    assert tied["forward"] == 2 * layer + 2 * 64 * 3417


def test_last_hidden_scores_an_appended_mask():
    m = _model(max_len=5)
    items = torch.tensor([[3, 4, 0, 0, 0], [6, 7, 8, 9, 10], [0, 0, 0, 0, 0]])
    got = m.last_hidden(seq_batch(items))
    mask = m.mask_token
    expect_rows = torch.tensor([[3, 4, mask, 0, 0], [7, 8, 9, 10, mask], [mask, 0, 0, 0, 0]])
    full = m.project(m(seq_batch(expect_rows)))
    torch.testing.assert_close(got, full[torch.arange(3), torch.tensor([2, 4, 0])])
    narrow = m.last_hidden(seq_batch(items[:1, :2]))  # a trimmed batch gives the same vector
    torch.testing.assert_close(narrow, got[:1])
    with torch.no_grad():
        m.item_emb.weight[mask].add_(1.0)  # the mask token's embedding is what it reads
    assert not torch.allclose(m.last_hidden(seq_batch(items)), got)


def test_save_load_gives_identical_scores(tmp_path):
    m = _model(n_items=30, max_len=8, seed=0)
    with torch.no_grad():
        m.out_bias.normal_()
    save_weights(tmp_path / "w.safetensors", m, {"model": "bert4rec"})
    other = _model(n_items=30, max_len=8, seed=1)
    load_weights(tmp_path / "w.safetensors", other)
    b = seq_batch(torch.tensor([[3, 4, 5, 0], [9, 8, 7, 6]]))
    assert torch.equal(
        m.last_hidden(b) @ m.item_weights.T, other.last_hidden(b) @ other.item_weights.T
    )


def test_cloze_loss_falls_on_generated_data():
    seqs = list(cycle_sequences().values())
    flat = np.array([int(i) - 99 for s in seqs for i in s], dtype=np.int32)  # ids 1..30
    ends = np.cumsum([len(s) for s in seqs])
    starts = ends - np.array([len(s) for s in seqs])
    batch = training_batch(flat, None, np.arange(len(seqs)), starts, ends, 12)
    m = _model(n_items=30, max_len=12).train()
    objective = build_objective(
        build_config(
            tiny_config("x", model={"name": "bert4rec"}, objective={"name": "cloze"})
        ).objective
    )
    losses = adam_losses(m, objective, batch, 60, lr=1e-2)
    assert np.mean(losses[:5]) > 3.2  # ~ln(30) at BERT's small init
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5])


def test_config_pairs_bert4rec_with_cloze_only():
    with pytest.raises(SeqrecError, match=r"bert4rec needs objective\.name=cloze"):
        build_config(tiny_config("x", model={"name": "bert4rec"}))
    with pytest.raises(SeqrecError, match=r"cloze needs model\.name=bert4rec"):
        build_config(tiny_config("x", objective={"name": "cloze"}))
    assert build_config(tiny_config("x")).objective.mask_prob == 0.2


def test_trainer_end_to_end(cycle_log, tmp_path, monkeypatch):
    from seqrec.run import Run
    from seqrec.trainer.run import train_run

    monkeypatch.chdir(tmp_path)
    cfg = build_config(
        tiny_config(
            cycle_log,
            model={"name": "bert4rec", "ffn_mult": 4.0, "norm": "post"},
            objective={"name": "cloze", "mask_prob": 0.3},
            train={"epochs": 8},
        )
    )
    res = train_run(cfg, tmp_path / "run", progress=False)
    for split in ("valid", "test"):
        metrics = res[split]["metrics"]
        assert all(0.0 <= v <= 1.0 for k, v in metrics.items() if k.startswith(("HR", "NDCG")))
    assert res["test"]["metrics"]["HR@10"] > 10 / 30  # beats random ranking on the cycle
    saved = json.loads((tmp_path / "run/results.json").read_text())
    assert saved["config"]["model"]["name"] == "bert4rec"
    again = Run(tmp_path / "run").evaluate()  # weights reloaded from best.safetensors
    assert np.array_equal(again.ranks, np.load(tmp_path / "run/test_ranks.npy"))
    rec = Run(tmp_path / "run").recommender()
    top, _ = rec.top_k([np.array([1, 2, 3])], k=5)
    assert top.shape == (1, 5) and (top > 0).all() and (top <= 30).all()


def test_interrupted_cloze_run_resumes_exactly(cycle_log, tmp_path, monkeypatch):
    """Masks come from torch's global CPU generator, which the checkpoint holds."""
    from conftest import interrupt_after
    from seqrec.trainer.loop import TrainingInterrupted
    from seqrec.trainer.run import train_run

    monkeypatch.chdir(tmp_path)
    cfg = build_config(
        tiny_config(
            cycle_log,
            model={"name": "bert4rec"},
            objective={"name": "cloze"},
            train={"epochs": 3},
        )
    )
    straight = train_run(cfg, tmp_path / "a", progress=False)
    with monkeypatch.context() as mp:
        interrupt_after(mp, 7)  # mid second epoch, after one validation
        with pytest.raises(TrainingInterrupted):
            train_run(cfg, tmp_path / "b", progress=False)
    torch.manual_seed(1234)  # resuming must not depend on the caller's RNG state
    resumed = train_run(None, tmp_path / "b", resume=True, progress=False)
    assert resumed["test"]["metrics"] == straight["test"]["metrics"]
    assert np.array_equal(
        np.load(tmp_path / "a/test_ranks.npy"), np.load(tmp_path / "b/test_ranks.npy")
    )
