"""CL4SRec: the mask-token row, NT-Xent against a brute-force loop, learning, the trainer."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from conftest import N_ITEMS, adam_losses_and_aux, cycle_sequences, interrupt_after, tiny_config
from seqrec.data.batches import SeqBatch, training_batch
from seqrec.errors import SeqrecError
from seqrec.models import ModelConfig, model_config
from seqrec.models.augment import mask_token
from seqrec.models.cl4srec import CL4SRec, nt_xent
from seqrec.models.registry import build_model
from seqrec.objectives.base import build_objective
from seqrec.options import ObjectiveConfig
from seqrec.recipe import build_config
from seqrec.trainer.run import train_run


def cfg(**kw) -> ModelConfig:
    base = {"name": "cl4srec", "hidden": 16, "layers": 1, "heads": 2, "dropout": 0.1}
    return model_config(**{**base, **kw})


def cycle_batch(max_len: int = 12) -> SeqBatch:
    """Training rows of the generated cycle data (internal ids 1..N_ITEMS)."""
    seqs = cycle_sequences()
    flat = np.concatenate([[int(x) - 100 + 1 for x in s] for s in seqs.values()])
    lens = np.array([len(s) for s in seqs.values()])
    ends = np.cumsum(lens)
    return training_batch(flat, None, np.arange(len(lens)), ends - lens, ends, max_len)


def brute_nt_xent(z1, z2, tau, similarity):
    z = torch.cat([z1, z2]).double()
    n2 = len(z)
    total = 0.0
    for k in range(n2):
        partner = (k + n2 // 2) % n2

        def sim(a, b):
            if similarity == "cos":
                return float(a @ b / (a.norm() * b.norm())) / tau
            return float(a @ b) / tau

        denom = sum(math.exp(sim(z[k], z[m])) for m in range(n2) if m != k)
        total += -math.log(math.exp(sim(z[k], z[partner])) / denom)
    return total / n2


@pytest.mark.parametrize("similarity", ["dot", "cos"])
@pytest.mark.parametrize("tau", [1.0, 0.5])
def test_nt_xent_equals_brute_force(similarity, tau):
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(6, 4, generator=g), torch.randn(6, 4, generator=g)
    got = nt_xent(z1, z2, tau, similarity)
    assert float(got) == pytest.approx(brute_nt_xent(z1, z2, tau, similarity), rel=1e-5)
    # identical well-separated views give a near-zero loss
    z = torch.eye(6) * 10
    assert float(nt_xent(z, z, 1.0, "dot")) < 1e-6


def test_mask_token_has_a_row_that_is_never_scored():
    model = build_model(cfg(), n_items=N_ITEMS, max_len=12)
    assert isinstance(model, CL4SRec)
    assert model.item_emb.weight.shape == (N_ITEMS + 2, 16)
    assert model.item_weights.shape == (N_ITEMS + 1, 16)
    assert torch.equal(model.item_emb.weight[0], torch.zeros(16))
    assert model.item_emb.weight[mask_token(N_ITEMS)].abs().sum() > 0  # initialised like the rest
    # a view with mask tokens encodes; the eval path is SASRec's
    items = torch.tensor([[3, mask_token(N_ITEMS), 5, 0]])
    model.eval()
    b = SeqBatch(items, torch.zeros(1, dtype=torch.long), torch.tensor([3]), torch.tensor([0]))
    full = model(b)[0, 2]
    assert torch.allclose(model.last_hidden(b)[0], full, atol=1e-5)


def test_auxiliary_loss_is_lambda_times_nt_xent_of_the_views_and_reproducible():
    torch.manual_seed(0)
    model = build_model(cfg(cl_weight=0.3, dropout=0.0), n_items=N_ITEMS, max_len=12)
    batch = cycle_batch()
    torch.manual_seed(5)
    loss = model.auxiliary_loss(batch)
    torch.manual_seed(5)  # the same global RNG state gives the same views
    assert torch.equal(model.auxiliary_loss(batch), loss)
    torch.manual_seed(5)
    v1, v2 = model.augment_views(batch.targets)
    z = model.represent(torch.cat([v1, v2]))
    n = len(v1)
    assert loss.item() == pytest.approx(0.3 * nt_xent(z[:n], z[n:]).item(), rel=1e-6)
    # views are made from the training sequence (targets), never from the inputs in place
    assert torch.equal(batch.items, cycle_batch().items)
    loss.backward()
    assert model.item_emb.weight.grad.abs().sum() > 0
    assert model.blocks[0].attn.qkv.weight.grad.abs().sum() > 0


def test_represent_is_the_state_at_each_views_last_real_item():
    torch.manual_seed(0)
    model = build_model(cfg(dropout=0.0), n_items=N_ITEMS, max_len=12).eval()
    views = torch.tensor([[4, 5, 6, 0, 0], [7, 0, 0, 0, 0], [1, 2, 3, 4, 0]])
    z = model.represent(views)
    for i, row in enumerate(views):
        n = int((row != 0).sum())
        single = SeqBatch(row[None, :n], torch.zeros(1), torch.tensor([n]), torch.tensor([0]))
        assert torch.allclose(z[i], model(single)[0, n - 1], atol=1e-5)


def test_rows_without_items_are_left_out_and_tiny_batches_give_zero():
    model = build_model(cfg(), n_items=N_ITEMS, max_len=12)
    targets = torch.tensor([[3, 4, 0], [0, 0, 0]])
    b = SeqBatch(targets, targets, torch.tensor([1, 0]), torch.tensor([0, 1]))
    assert model.auxiliary_loss(b).item() == 0.0  # one usable row: no negatives
    model.cfg.cl_weight = 0.0
    assert model.auxiliary_loss(cycle_batch()).item() == 0.0


def test_contrastive_and_total_losses_fall_on_generated_data():
    torch.manual_seed(0)
    model = build_model(cfg(), n_items=N_ITEMS, max_len=12)
    objective = build_objective(ObjectiveConfig(name="ce"))
    totals, cls = adam_losses_and_aux(model, objective, cycle_batch(), 25, lr=0.01)
    assert np.mean(totals[-5:]) < 0.6 * np.mean(totals[:5])
    assert np.mean(cls[-5:]) < np.mean(cls[:5])


def test_config_validation_is_clear():
    with pytest.raises(SeqrecError, match="aug_ops is empty"):
        build_config({"model": {"name": "cl4srec", "aug_ops": []}})
    with pytest.raises(SeqrecError, match="at least two"):
        build_config({"model": {"name": "cl4srec", "aug_ops": ["crop"], "aug_distinct": True}})
    with pytest.raises(SeqrecError, match="aug_ops"):
        build_config({"model": {"name": "cl4srec", "aug_ops": ["crop", "shuffle"]}})


@pytest.mark.usefixtures("in_tmp_dir")
def test_trainer_end_to_end(cycle_log, tmp_path):
    raw = tiny_config(
        cycle_log,
        model={"name": "cl4srec", "aug_distinct": True, "aug_ops": ["crop", "mask", "reorder"]},
    )
    res = train_run(build_config(raw), tmp_path / "run", progress=False)
    assert res["valid"]["metrics"]["NDCG@10"] > 0.6
    assert res["test"]["metrics"]["NDCG@10"] > 0.6
    ranks = np.load(tmp_path / "run" / "test_ranks.npy")
    assert ranks.max() <= N_ITEMS  # the mask token is never ranked


@pytest.mark.usefixtures("in_tmp_dir")
def test_interrupted_run_resumes_with_the_same_views(cycle_log, tmp_path, monkeypatch):
    cfg_ = build_config(tiny_config(cycle_log, model={"name": "cl4srec"}, train={"epochs": 2}))
    straight = train_run(cfg_, tmp_path / "a", progress=False)
    with monkeypatch.context() as mp:
        interrupt_after(mp, 7)
        with pytest.raises(Exception, match="--resume"):
            train_run(cfg_, tmp_path / "b", progress=False)
    torch.manual_seed(99)
    resumed = train_run(None, tmp_path / "b", resume=True, progress=False)
    assert resumed["test"]["metrics"] == straight["test"]["metrics"]
    a = np.load(tmp_path / "a" / "test_ranks.npy")
    assert np.array_equal(a, np.load(tmp_path / "b" / "test_ranks.npy"))
