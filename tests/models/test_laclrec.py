"""LACLRec: corruption / restore labels, the vectorised edit application, the triplet loss, the
schedule, and the model inside the trainer (generated data only)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from conftest import N_ITEMS
from seqrec.data.batches import SeqBatch
from seqrec.errors import SeqrecError
from seqrec.models import model_config
from seqrec.models.lacl_augmenter import (
    DELETE,
    INSERT,
    KEEP,
    apply_edits,
    corrupt,
    corrupt_with,
)
from seqrec.models.laclrec import LACLRec, triplet_loss
from seqrec.recipe import build_config
from seqrec.trainer.checkpoint import load_weights, save_weights
from seqrec.trainer.run import train_run

V = 20  # catalogue size of the unit tests; EOS = 21, mask token = 21 for the random view
EOS = V + 1


def random_rows(n_rows: int, width: int, seed: int) -> torch.Tensor:
    """Right-padded rows of random lengths 0..width over items 1..V."""
    g = torch.Generator().manual_seed(seed)
    items = torch.randint(1, V + 1, (n_rows, width), generator=g)
    lengths = torch.randint(0, width + 1, (n_rows,), generator=g)
    return torch.where(torch.arange(width)[None, :] < lengths[:, None], items, 0)


# ------------------------------------------------------------------ per-row Python references
def corrupt_reference(row, delete, noise, noise_items, max_insert, eos):
    """Loop version of `corrupt_with` for one row: (items, ops, insert lists)."""
    n = sum(1 for x in row if x)
    items, ops, lists = [], [], []
    run: list[int] = []
    for i in range(n):
        if noise[i]:
            items.append(noise_items[i])
            ops.append(DELETE)
            lists.append([])
        if delete[i] and i < n - 1 and len(run) < max_insert:
            run.append(row[i])
            continue
        items.append(row[i])
        ops.append(INSERT if run else KEEP)
        lists.append([*run[::-1], eos] if run else [])
        run = []
    return items, ops, lists


def apply_reference(row, ops, inserts, n_items, out_len):
    """Loop version of `apply_edits` for one row."""
    out = []
    for x, op, ins in zip(row, ops, inserts, strict=True):
        if x == 0:
            continue
        if op == INSERT:
            run = []
            for t in ins:
                if not 1 <= t <= n_items:
                    break
                run.append(t)
            out.extend(run[::-1])
        if op != DELETE:
            out.append(x)
    return out[-out_len:] if out_len else []


def unpad(row) -> list[int]:
    return [int(x) for x in row if x]


# ------------------------------------------------------------------ corruption and edits
def test_corruption_matches_the_per_row_reference():
    items = random_rows(300, 9, seed=1)
    g = torch.Generator().manual_seed(2)
    delete = torch.rand(items.shape, generator=g) < 0.5
    noise = torch.rand(items.shape, generator=g) < 0.3
    noise_items = torch.randint(1, V + 1, items.shape, generator=g)
    c = corrupt_with(items, delete, noise, noise_items, max_insert=3, eos=EOS)
    for b in range(items.shape[0]):
        ref_items, ref_ops, ref_lists = corrupt_reference(
            items[b].tolist(),
            delete[b].tolist(),
            noise[b].tolist(),
            noise_items[b].tolist(),
            3,
            EOS,
        )
        m = len(ref_items)
        assert c.items[b, :m].tolist() == ref_items and not c.items[b, m:].any()
        assert c.ops[b, :m].tolist() == ref_ops and not c.ops[b, m:].any()
        for j, lst in enumerate(ref_lists):
            assert c.inserts[b, j].tolist() == lst + [0] * (4 - len(lst))
        assert not c.inserts[b, m:].any()


@pytest.mark.parametrize("max_insert", [1, 5])
def test_true_restore_edits_give_back_the_original(max_insert):
    """Corrupt many random rows, apply the restore labels with the vectorised `apply_edits`."""
    items = random_rows(500, 12, seed=3)
    torch.manual_seed(4)
    c = corrupt(items, V, max_insert, p_delete=0.45, p_noise=0.15)
    assert (c.ops == DELETE).any() and (c.ops == INSERT).any()
    runs = ((c.inserts >= 1) & (c.inserts <= V)).sum(-1)
    assert runs.max() == max_insert  # the run cap is reached and respected
    restored, total = apply_edits(c.items, c.ops, c.inserts, V, out_len=12)
    assert total.tolist() == (items != 0).sum(1).tolist()
    assert torch.equal(F.pad(restored, (0, 12 - restored.shape[1])), items)
    # the most recent item always survives and is never preceded by a deletion label
    last = (c.items != 0).sum(1) - 1
    rows = torch.arange(items.shape[0])
    real = items.any(1)
    assert torch.equal(c.items[rows, last][real], items[rows, (items != 0).sum(1) - 1][real])
    assert (c.ops[rows, last][real] != DELETE).all()


def test_apply_edits_matches_the_per_row_reference():
    items = random_rows(400, 8, seed=5)
    g = torch.Generator().manual_seed(6)
    ops = torch.randint(0, 3, items.shape, generator=g)
    # insert lists mix items with EOS, PAD and the mask token, which all end a run
    inserts = torch.randint(0, V + 3, (*items.shape, 4), generator=g)
    for out_len in (8, 5):
        out, _ = apply_edits(items, ops, inserts, V, out_len)
        assert out.shape[1] <= out_len
        for b in range(items.shape[0]):
            ref = apply_reference(
                items[b].tolist(), ops[b].tolist(), inserts[b].tolist(), V, out_len
            )
            assert unpad(out[b]) == ref
            assert out[b, : len(ref)].ne(0).all()  # right-padded, no holes


def test_triplet_loss_by_hand():
    h = torch.tensor([[1.0, 0.0], [0.5, 2.0]])
    pos = torch.tensor([[2.0, 1.0], [0.0, 1.0]])
    neg = torch.tensor([[0.0, 3.0], [1.0, 1.0]])
    # row 0: h·h⁺ = 2, h·h⁻ = 0; row 1: h·h⁺ = 2, h·h⁻ = 2.5
    expect = (math.log(1 + math.exp(0 - 2)) + math.log(1 + math.exp(2.5 - 2))) / 2
    assert triplet_loss(h, pos, neg).item() == pytest.approx(expect, rel=1e-6)
    expect_m = (math.log(1 + math.exp(0 - 2 + 1)) + math.log(1 + math.exp(2.5 - 2 + 1))) / 2
    assert triplet_loss(h, pos, neg, margin=1.0).item() == pytest.approx(expect_m, rel=1e-6)


# ------------------------------------------------------------------ the model
def _model(**kw) -> LACLRec:
    torch.manual_seed(0)
    cfg = model_config(name="laclrec", hidden=16, layers=1, heads=2, dropout=0.1, **kw)
    return LACLRec(cfg, V, 10)


def _batch(seqs: torch.Tensor) -> SeqBatch:
    """A training batch from full rows ``seqs`` (no PAD): inputs = all but the last item."""
    inp, tgt = seqs[:, :-1], seqs[:, 1:]
    return SeqBatch(
        items=inp, targets=tgt, lengths=(inp != 0).sum(1), users=torch.arange(len(seqs))
    )


def cycle_rows(n_rows: int, width: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    start = torch.randint(0, V, (n_rows, 1), generator=g)
    return (start + torch.arange(width)[None, :]) % V + 1


def test_learned_view_is_a_valid_right_padded_sequence():
    m = _model().train()
    items = random_rows(64, 10, seed=7)
    items[:, 0] = 1  # no empty row
    view, stats = m.augmenter.augment(items, out_len=10)
    assert m.augmenter.training  # the training mode is restored afterwards
    assert view.shape[1] <= 10 and (view >= 0).all() and (view <= V).all()
    lengths = (view != 0).sum(1)
    assert (lengths >= 1).all()
    assert torch.equal(view != 0, torch.arange(view.shape[1])[None, :] < lengths[:, None])
    assert sum(float(stats[k]) for k in ("keep", "delete", "insert")) == pytest.approx(1.0)


def test_schedule_switches_after_pretraining_and_the_step_is_saved():
    m = _model(lacl_augmenter_pretrain_steps=2).train()
    batch = _batch(cycle_rows(6, 8, seed=8))
    assert m.pretraining
    m.auxiliary_loss(batch)
    m.auxiliary_loss(batch)
    assert not m.pretraining and int(m.lacl_step) == 2
    m.auxiliary_loss(batch).backward()  # joint phase: contrastive terms reach the recommender
    assert m.encoder.blocks[0].attn.qkv.weight.grad is not None
    fresh = _model(lacl_augmenter_pretrain_steps=2)
    assert fresh.pretraining
    fresh.load_state_dict(m.state_dict())
    assert not fresh.pretraining and int(fresh.lacl_step) == 3
    m.eval()
    m.auxiliary_loss(batch)  # evaluation-mode calls do not advance the schedule
    assert int(m.lacl_step) == 3


def test_cosine_similarity_ignores_the_scale_of_the_states(monkeypatch):
    """With lacl_similarity=cos both terms see unit vectors: scaling every state by 10 leaves
    the loss unchanged, while the dot version changes."""
    seqs = cycle_rows(6, 8, seed=10)
    z = torch.randn(18, 16, generator=torch.Generator().manual_seed(0))
    losses = {}
    for sim in ("cos", "dot"):
        m = _model(lacl_similarity=sim, lacl_augmenter_pretrain_steps=0)
        for scale in (1.0, 10.0):
            monkeypatch.setattr(m, "represent", lambda v, s=scale: z * s)
            torch.manual_seed(1)
            losses[sim, scale] = m.contrastive_loss(seqs).item()
    assert losses["cos", 1.0] == pytest.approx(losses["cos", 10.0], rel=1e-5)
    assert losses["dot", 1.0] != pytest.approx(losses["dot", 10.0], rel=1e-2)


def test_random_view_ablation_skips_the_augmenter():
    """lacl_view=random: contrastive terms from the first step, two random views, and the
    augmenter (no restore task) gets no gradient."""
    m = _model(lacl_view="random", lacl_augmenter_pretrain_steps=100).train()
    assert not m.pretraining
    loss = m.auxiliary_loss(_batch(cycle_rows(6, 8, seed=11)))
    loss.backward()
    assert loss.item() > 0
    assert all(p.grad is None for p in m.augmenter.parameters())
    assert m.encoder.blocks[0].attn.qkv.weight.grad is not None


def test_frozen_augmenter_gets_no_gradient_after_pretraining():
    m = _model(lacl_augmenter_pretrain_steps=0, lacl_augmenter_joint=False).train()
    m.auxiliary_loss(_batch(cycle_rows(6, 8, seed=9))).backward()
    assert all(p.grad is None for p in m.augmenter.parameters())


def test_losses_fall_on_generated_data():
    """Restore loss (pre-training), then rec + contrastive loss, on cycle sequences."""
    from seqrec.objectives.base import build_objective
    from seqrec.options import ObjectiveConfig

    m = _model(lacl_augmenter_pretrain_steps=25).train()
    objective = build_objective(ObjectiveConfig(name="ce"))
    opt = torch.optim.Adam(m.parameters(), lr=0.01)
    batch = _batch(cycle_rows(16, 10, seed=10))
    losses, restore = [], []
    for _ in range(40):
        loss = objective(m, batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if len(losses) in (1, 25):
            restore.append(float(m.last_stats["op_ce"] + m.last_stats["gen_ce"]))
    assert sum(losses[20:25]) < 0.6 * sum(losses[:5])
    assert restore[1] < 0.6 * restore[0]
    assert sum(losses[-5:]) < sum(losses[25:30])


def test_save_load_gives_identical_scores(tmp_path):
    m = _model().eval()
    items = cycle_rows(5, 7, seed=11)
    b = SeqBatch(
        items=items, targets=items[:, 0], lengths=(items != 0).sum(1), users=torch.arange(5)
    )
    save_weights(tmp_path / "w.safetensors", m, {})
    other = _model(lacl_augmenter_pretrain_steps=7)
    for p in other.parameters():
        torch.nn.init.normal_(p)
    load_weights(tmp_path / "w.safetensors", other)
    other.eval()
    a = m.last_hidden(b) @ m.item_weights.T
    c = other.last_hidden(b) @ other.item_weights.T
    assert torch.equal(a, c) and a.shape == (5, V + 1)


def test_config_rejects_a_random_op_without_ratio():
    with pytest.raises(ValueError, match="lacl_random_ratios"):
        model_config(name="laclrec", lacl_random_ops=["crop", "insert"])


# ------------------------------------------------------------------ in the trainer
def test_trainer_end_to_end_and_resume_across_the_phase_switch(
    cycle_log, tmp_path, monkeypatch, in_tmp_dir
):
    from conftest import interrupt_after, tiny_config
    from seqrec.trainer.loop import TrainingInterrupted

    raw = tiny_config(
        cycle_log,
        model={"name": "laclrec", "lacl_augmenter_pretrain_steps": 6},
        train={"epochs": 3},
    )
    cfg = build_config(raw)
    straight = train_run(cfg, tmp_path / "a", progress=False)
    assert straight["test"]["metrics"]["HR@10"] > 10 / N_ITEMS  # better than random

    run = tmp_path / "b"
    with monkeypatch.context() as mp:
        interrupt_after(mp, 4)  # before the switch to joint training at step 6
        with pytest.raises(TrainingInterrupted):
            train_run(cfg, run, progress=False)
    ck = torch.load(run / "checkpoint.pt", weights_only=True)
    assert int(ck["model_state"]["lacl_step"]) == 4
    torch.manual_seed(1234)
    resumed = train_run(None, run, resume=True, progress=False)
    assert resumed["test"]["metrics"] == straight["test"]["metrics"]
    ca = torch.load(tmp_path / "a/checkpoint.pt", weights_only=True)["model_state"]
    cb = torch.load(run / "checkpoint.pt", weights_only=True)["model_state"]
    assert int(cb["lacl_step"]) == int(ca["lacl_step"]) == straight["steps"]
    assert all(torch.equal(ca[k], cb[k]) for k in ca)


def test_out_of_range_random_ratio_is_a_clear_config_error():
    with pytest.raises(SeqrecError, match="lacl_random_ratios"):
        build_config({"model": {"name": "laclrec", "lacl_random_ratios": {"crop": 2.0}}})
