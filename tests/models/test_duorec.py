"""DuoRec: InfoNCE and the whole contrastive term against per-anchor loops, same-target partner
draws, the reuse of the objective's pass, λ = 0, learning, config and presets."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from conftest import adam_losses_and_aux, seq_batch
from seqrec.errors import SeqrecError
from seqrec.models import model_config
from seqrec.models.duorec import DuoRec
from seqrec.models.pairs import info_nce, same_target_partners, sample_pairs
from seqrec.models.registry import build_model
from seqrec.objectives.base import build_objective
from seqrec.ops.cross_entropy import chunked_cross_entropy
from seqrec.options import ObjectiveConfig
from seqrec.recipe import build_config, load_config

N_ITEMS = 12


def duorec(**kw) -> DuoRec:
    torch.manual_seed(0)
    base = {"name": "duorec", "hidden": 8, "layers": 1, "heads": 2, "dropout": 0.0}
    return build_model(model_config(**{**base, **kw}), n_items=N_ITEMS, max_len=6)


def tiny_batch():
    """Three users over a small catalogue, so several prefixes share a target (item 4 follows
    3 in every row; 6 is the target of one prefix only)."""
    rows = [[1, 2, 3, 4, 5, 6, 7], [9, 3, 4, 5, 0, 0, 0], [2, 3, 4, 8, 5, 0, 0]]
    seqs = torch.tensor(rows)
    items, targets = seqs[:, :-1].clone(), seqs[:, 1:].clone()
    items[targets == 0] = 0
    return seq_batch(items, targets)


def loop_info_nce(z1, z2, tau, similarity, groups=None) -> float:
    """Per-anchor InfoNCE: view k's positive is its pair's other view; every other view is a
    negative unless ``groups`` puts it in k's group."""
    z = torch.cat([z1, z2]).double()
    g = None if groups is None else [int(x) for x in torch.cat([groups, groups])]
    n2 = len(z)

    def sim(a, b):
        if similarity == "cos":
            return float(a @ b / (a.norm() * b.norm())) / tau
        return float(a @ b) / tau

    total = 0.0
    for k in range(n2):
        positive = (k + n2 // 2) % n2
        others = [m for m in range(n2) if m != k and (g is None or m == positive or g[m] != g[k])]
        denom = sum(math.exp(sim(z[k], z[m])) for m in others)
        total += -math.log(math.exp(sim(z[k], z[positive])) / denom)
    return total / n2


@pytest.mark.parametrize("similarity", ["dot", "cos"])
@pytest.mark.parametrize("tau", [1.0, 0.5])
@pytest.mark.parametrize("grouped", [False, True])
def test_info_nce_equals_a_per_anchor_loop(similarity, tau, grouped):
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(7, 4, generator=g), torch.randn(7, 4, generator=g)
    groups = torch.tensor([1, 2, 1, 3, 2, 1, 4]) if grouped else None
    got = float(info_nce(z1, z2, tau, similarity, groups))
    assert got == pytest.approx(loop_info_nce(z1, z2, tau, similarity, groups), rel=1e-5)


def test_partners_are_other_prefixes_with_the_same_target():
    torch.manual_seed(0)
    for trial in range(200):
        targets = torch.randint(1, 2 + trial % 9, (1 + trial % 40,))
        partners = same_target_partners(targets)
        counts = torch.bincount(targets)[targets]
        assert torch.equal(targets[partners], targets)  # never another target
        own = partners == torch.arange(len(targets))
        assert torch.equal(own, counts == 1)  # itself exactly when its target is unique


def test_partner_is_uniform_among_the_others():
    torch.manual_seed(0)
    targets = torch.tensor([5, 2, 5, 7, 5, 5])  # prefix 0 has three same-target others
    draws = torch.stack([same_target_partners(targets)[0] for _ in range(3000)])
    freq = torch.bincount(draws, minlength=6).double() / len(draws)
    assert torch.allclose(freq[[2, 4, 5]], torch.full((3,), 1 / 3, dtype=torch.double), atol=0.04)
    assert freq[[0, 1, 3]].sum() == 0


def test_sample_pairs_draws_distinct_anchors_up_to_the_cap():
    torch.manual_seed(0)
    targets = torch.tensor([3, 1, 3, 2, 1, 3, 4, 4])
    anchors, positives = sample_pairs(targets, 5)
    assert len(anchors) == 5 and len(set(anchors.tolist())) == 5
    assert torch.equal(targets[positives], targets[anchors])
    assert len(sample_pairs(targets, 100)[0]) == len(targets)


@pytest.mark.parametrize("masked", [False, True])
def test_auxiliary_loss_equals_a_loop_over_separately_encoded_prefixes(masked):
    model = duorec(cl_weight=0.3, cl_max_positions=5, cl_mask_same_target=masked)
    batch = tiny_batch()
    torch.manual_seed(7)  # dropout 0: the only draws are the anchors and their partners
    got = model.auxiliary_loss(batch).item()
    torch.manual_seed(7)
    prefixes = (batch.targets.reshape(-1) != 0).nonzero().squeeze(1)
    targets = batch.targets.reshape(-1)[prefixes]
    anchors, positives = sample_pairs(targets, 5)
    model.eval()

    def encode(flat_index):  # the prefix alone, its state at its last item
        row, slot = divmod(int(prefixes[flat_index]), batch.items.shape[1])
        items = batch.items[row : row + 1, : slot + 1]
        assert int(batch.targets[row, slot]) == int(targets[flat_index])
        with torch.no_grad():
            return model.last_hidden(seq_batch(items))[0]

    z1 = torch.stack([encode(a) for a in anchors])
    z2 = torch.stack([encode(p) for p in positives])
    groups = targets[anchors] if masked else None
    assert got == pytest.approx(0.3 * loop_info_nce(z1, z2, 1.0, "dot", groups), rel=1e-4)


def test_anchor_twin_is_contrasted_with_the_positive_in_the_other_pass():
    model = duorec(dropout=0.3, cl_max_positions=6)
    batch = tiny_batch()
    torch.manual_seed(5)
    got = model.auxiliary_loss(batch)
    torch.manual_seed(5)  # the same draws: first pass, twin pass, then anchors and partners
    first, twin = model(batch).reshape(-1, 8), model(batch).reshape(-1, 8)
    assert not torch.allclose(first, twin)  # two passes, two dropout masks
    prefixes = (batch.targets.reshape(-1) != 0).nonzero().squeeze(1)
    anchors, positives = sample_pairs(batch.targets.reshape(-1)[prefixes], 6)
    want = 0.1 * info_nce(twin[prefixes[anchors]], first[prefixes[positives]])
    torch.testing.assert_close(got, want)


def test_the_objectives_pass_is_reused_exactly_and_then_released():
    model = duorec(dropout=0.3)
    batch = tiny_batch()
    torch.manual_seed(3)
    model(batch)  # the objective's pass
    reused = model.auxiliary_loss(batch)
    assert model._main_pass is None
    torch.manual_seed(3)  # no pass to reuse: the first view is recomputed with the same draws
    assert torch.equal(model.auxiliary_loss(batch), reused)
    # a pass over another batch object (equal content) is not taken for this batch's
    other = tiny_batch()
    torch.manual_seed(4)
    model(other)
    guarded = model.auxiliary_loss(batch)
    torch.manual_seed(4)
    model(other)
    model._main_pass = None
    assert torch.equal(model.auxiliary_loss(batch), guarded)
    model.eval()
    model(batch)
    assert model._main_pass is None  # evaluation keeps nothing


def test_lambda_zero_is_exactly_the_ce_loss():
    model = duorec(dropout=0.3, cl_weight=0.0)
    batch = tiny_batch()
    objective = build_objective(ObjectiveConfig(name="ce"))
    torch.manual_seed(1)
    loss = objective(model, batch)
    assert model._main_pass is None  # released even though unused
    torch.manual_seed(1)
    hidden = model(batch)
    valid = batch.targets != 0
    ce = chunked_cross_entropy(
        hidden[valid], model.item_weights, batch.targets[valid], ObjectiveConfig().chunk_size
    )
    assert torch.equal(loss, ce)


def test_ce_and_contrastive_losses_fall_on_a_cycle():
    torch.manual_seed(0)
    model = build_model(
        model_config("duorec", hidden=16, layers=1, heads=2, dropout=0.1), n_items=20, max_len=10
    )
    start = torch.randint(0, 20, (24, 1))
    rows = (start + torch.arange(11)) % 20 + 1  # item j -> j + 1: many prefixes share targets
    batch = seq_batch(rows[:, :-1], rows[:, 1:])
    objective = build_objective(ObjectiveConfig(name="ce"))
    totals, contrastive = adam_losses_and_aux(model, objective, batch, 30, lr=0.01)
    assert np.mean(totals[-5:]) < 0.5 * np.mean(totals[:5])
    assert np.mean(contrastive[-5:]) < np.mean(contrastive[:5])


def test_bad_config_is_refused_with_the_key():
    with pytest.raises(SeqrecError, match="cl_max_positions"):
        build_config({"model": {"name": "duorec", "cl_max_positions": 1}})
    with pytest.raises(SeqrecError, match="cl_similarity"):
        build_config({"model": {"name": "duorec", "cl_similarity": "l2"}})


@pytest.mark.parametrize("dataset", ["beauty", "ml-1m"])
def test_presets_mirror_the_sasrec_presets(dataset):
    duo, sas = load_config(f"duorec-{dataset}"), load_config(f"sasrec-{dataset}")
    assert duo.model.name == "duorec"
    for section in ("data", "objective", "train", "eval"):
        assert getattr(duo, section) == getattr(sas, section), section
    shared = ("hidden", "layers", "heads", "dropout", "ffn_mult", "norm", "positions")
    assert all(getattr(duo.model, k) == getattr(sas.model, k) for k in shared)
