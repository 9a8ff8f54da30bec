"""ICSRec: same-target partners, the FNM InfoNCE against a brute-force loop, the online k-means
against a numpy reference, λ = β = 0 as plain CE, the intent table's state, learning."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

from conftest import N_ITEMS, adam_losses_and_aux, cycle_sequences
from seqrec.data.batches import SeqBatch, training_batch
from seqrec.errors import SeqrecError
from seqrec.models import ModelConfig, model_config
from seqrec.models.icsrec import ICSRec, kmeans_step
from seqrec.models.pairs import info_nce, same_target_partners
from seqrec.models.registry import build_model
from seqrec.models.sasrec import SASRec
from seqrec.objectives.base import build_objective
from seqrec.ops.cross_entropy import chunked_cross_entropy
from seqrec.options import ObjectiveConfig
from seqrec.recipe import build_config


def cfg(**kw) -> ModelConfig:
    base = {"name": "icsrec", "hidden": 16, "layers": 1, "heads": 2, "dropout": 0.1}
    return model_config(**{**base, **kw})


def model_of(**kw) -> ICSRec:
    model = build_model(cfg(**kw), n_items=N_ITEMS, max_len=12)
    assert isinstance(model, ICSRec)
    return model


def cycle_batch(max_len: int = 12) -> SeqBatch:
    """Training rows of the generated cycle data (internal ids 1..N_ITEMS): many users pass
    through the same items, so most prefixes have a same-target partner in the batch."""
    seqs = cycle_sequences()
    flat = np.concatenate([[int(x) - 100 + 1 for x in s] for s in seqs.values()])
    lens = np.array([len(s) for s in seqs.values()])
    ends = np.cumsum(lens)
    return training_batch(flat, None, np.arange(len(lens)), ends - lens, ends, max_len)


# --------------------------------------------------------------------------- partners
def test_partner_is_another_prefix_with_the_same_target_or_none():
    g = torch.Generator().manual_seed(0)
    targets = torch.randint(1, 12, (200,), generator=g)
    targets[:3] = torch.tensor([50, 51, 52])  # three targets seen once
    counts = torch.bincount(targets)
    torch.manual_seed(0)
    for _ in range(20):
        partner = same_target_partners(targets)
        alone = counts[targets] == 1
        assert torch.equal(partner == torch.arange(len(targets)), alone)  # alone: itself
        idx = torch.nonzero(~alone).squeeze(1)
        assert (partner[idx] != idx).all()  # never the prefix itself
        assert torch.equal(targets[partner[idx]], targets[idx])  # never another target
    assert torch.equal(same_target_partners(torch.arange(1, 6)), torch.arange(5))
    assert torch.equal(same_target_partners(torch.tensor([4, 4])), torch.tensor([1, 0]))


def test_partner_is_drawn_uniformly_among_the_other_members():
    targets = torch.tensor([7, 3, 7, 7, 9, 7])  # group of 7 = positions 0, 2, 3, 5
    torch.manual_seed(1)
    draws = torch.stack([same_target_partners(targets) for _ in range(3000)])
    picked = torch.bincount(draws[:, 0], minlength=6).double() / 3000
    assert picked[[1, 4, 0]].sum() == 0
    np.testing.assert_allclose(picked[[2, 3, 5]].numpy(), [1 / 3] * 3, atol=0.04)
    assert (draws[:, 1] == 1).all() and (draws[:, 4] == 4).all()  # alone: itself


def test_anchors_are_capped_and_each_has_its_partner():
    model = model_of(cl_max_positions=5)
    targets = torch.tensor([1, 2, 1, 3, 2, 1, 4, 2, 5, 5, 6])
    torch.manual_seed(0)
    anchors, partners = model.pick_pairs(targets)
    assert anchors.numel() == 5 and anchors.unique().numel() == 5
    assert torch.equal(targets[anchors], targets[partners])
    assert (anchors != partners).all() and not torch.isin(anchors, torch.tensor([3, 6])).any()


# --------------------------------------------------------------------------- InfoNCE
def brute_info_nce(z1, z2, labels, tau, similarity) -> float:
    """ICSRec's loss one anchor at a time: the partner's logit over itself plus every state
    that is a true negative (a different label with FNM; anything but self and partner without)."""
    z = torch.cat([z1, z2]).double()
    n2 = len(z)
    lab = None if labels is None else [int(x) for x in labels] * 2

    def sim(a, b):
        if similarity == "cos":
            return float(a @ b / (a.norm() * b.norm())) / tau
        return float(a @ b) / tau

    total = 0.0
    for k in range(n2):
        partner = (k + n2 // 2) % n2
        if lab is None:
            negatives = [m for m in range(n2) if m not in (k, partner)]
        else:
            negatives = [m for m in range(n2) if lab[m] != lab[k]]
        num = math.exp(sim(z[k], z[partner]))
        denom = num + sum(math.exp(sim(z[k], z[m])) for m in negatives)
        total += -math.log(num / denom)
    return total / n2


@pytest.mark.parametrize("similarity", ["dot", "cos"])
@pytest.mark.parametrize("tau", [1.0, 0.3])
@pytest.mark.parametrize("fnm", [True, False])
def test_info_nce_equals_the_brute_force_loop(similarity, tau, fnm):
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(7, 5, generator=g), torch.randn(7, 5, generator=g)
    labels = torch.tensor([3, 8, 3, 1, 8, 3, 2]) if fnm else None
    got = info_nce(z1, z2, tau, similarity, labels)
    assert float(got) == pytest.approx(brute_info_nce(z1, z2, labels, tau, similarity), rel=1e-5)


def test_false_negatives_are_masked_and_distinct_labels_change_nothing():
    g = torch.Generator().manual_seed(2)
    z1, z2 = torch.randn(6, 4, generator=g), torch.randn(6, 4, generator=g)
    plain = info_nce(z1, z2, groups=None)
    assert torch.allclose(info_nce(z1, z2, groups=torch.arange(6)), plain)
    # a near-copy of an anchor's partner among the negatives: FNM removes it
    z1[1], z2[1] = z1[0], z2[0] + 1e-3
    same = torch.tensor([4, 4, 0, 1, 2, 3])
    assert info_nce(z1, z2, groups=same) < info_nce(z1, z2, groups=None)


# --------------------------------------------------------------------------- k-means
def numpy_kmeans(points, centres, iters, momentum):
    """Plain Lloyd from ``centres`` (empty clusters stay), then the momentum blend."""
    batch = centres.copy()
    hit = np.zeros(len(centres), dtype=bool)
    for _ in range(iters):
        assign = [int(np.argmin([((x - c) ** 2).sum() for c in batch])) for x in points]
        new, hit = batch.copy(), np.zeros(len(centres), dtype=bool)
        for j in range(len(centres)):
            members = [x for x, a in zip(points, assign, strict=True) if a == j]
            if members:
                new[j], hit[j] = np.mean(members, axis=0), True
        batch = new
    out = centres.copy()
    out[hit] = (1 - momentum) * centres[hit] + momentum * batch[hit]
    return out


@pytest.mark.parametrize(("iters", "momentum"), [(1, 1.0), (3, 0.1), (5, 0.5)])
def test_kmeans_step_matches_a_numpy_reference(iters, momentum):
    rng = np.random.default_rng(0)
    points = np.concatenate([rng.normal(m, 0.5, (30, 3)) for m in (-3.0, 0.0, 4.0)])
    centres = np.concatenate([points[[0, 40, 41, 89]], [[50.0, 50.0, 50.0]]])  # last: empty
    want = numpy_kmeans(points, centres, iters, momentum)
    got = kmeans_step(torch.from_numpy(points), torch.from_numpy(centres), iters, momentum)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-10, atol=1e-10)
    assert np.array_equal(want[4], centres[4])  # the far centre got no point and stays


def test_kmeans_reduce_sees_sums_and_counts():
    """Two identical ranks (the fake reduce doubles sums and counts) give one rank's result."""
    g = torch.Generator().manual_seed(0)
    points, centres = torch.randn(40, 3, generator=g), torch.randn(4, 3, generator=g)
    calls = []

    def double(t):
        calls.append(t.shape)
        t.mul_(2)

    got = kmeans_step(points, centres, 2, 0.5, reduce=double)
    torch.testing.assert_close(got, kmeans_step(points, centres, 2, 0.5))
    assert calls == [(4, 3), (4,)] * 2


# --------------------------------------------------------------------------- the model
def test_zero_weights_give_exactly_the_ce_loss():
    model = model_of(cl_weight=0.0, intent_weight=0.0, dropout=0.3).train()
    batch = cycle_batch()
    ce_cfg = ObjectiveConfig(name="ce")
    objective = build_objective(ce_cfg)
    torch.manual_seed(3)
    loss = objective(model, batch)
    torch.manual_seed(3)
    valid = batch.targets != 0
    hidden, weights = model(batch)[valid], model.item_weights
    ce = chunked_cross_entropy(hidden, weights, batch.targets[valid], ce_cfg.chunk_size)
    assert torch.equal(loss, ce)
    assert model.auxiliary_loss(batch) is None and int(model.intent_updates) == 0
    # teeth: with the terms on, the same draw gives another loss
    model.cfg.cl_weight = 0.1
    torch.manual_seed(3)
    assert not torch.equal(objective(model, batch), ce)


def test_auxiliary_loss_is_the_weighted_sum_of_its_terms():
    torch.manual_seed(0)
    model = model_of(cl_weight=0.3, intent_weight=0.2, num_intents=6, dropout=0.0).train()
    twin = copy.deepcopy(model)
    batch = cycle_batch()
    torch.manual_seed(5)
    loss = model.auxiliary_loss(batch)
    torch.manual_seed(5)
    z, targets = twin.prefix_states(batch)
    twin.update_intents(z.detach())
    a, p = twin.pick_pairs(targets)
    assert a.numel() > 10  # the cycle data gives many same-target pairs
    cicl = info_nce(z[a], z[p], groups=targets[a])
    ficl = twin.intent_loss(z[a]) + twin.intent_loss(z[p])
    assert loss.item() == pytest.approx((0.3 * cicl + 0.2 * ficl).item(), rel=1e-6)
    assert torch.equal(model.intent_centres, twin.intent_centres)
    loss.backward()
    assert model.blocks[0].attn.qkv.weight.grad.abs().sum() > 0


def test_fine_term_alone_trains_the_encoder_and_uses_the_nearest_unit_centroid():
    torch.manual_seed(0)
    model = model_of(cl_weight=0.0, intent_weight=1.0, num_intents=4, dropout=0.0).train()
    loss = model.auxiliary_loss(cycle_batch())
    loss.backward()
    assert loss > 0 and model.item_emb.weight.grad.abs().sum() > 0
    z = torch.randn(5, 16)
    ids = torch.cdist(z, model.intent_centres).argmin(1)
    labels = ids if model.cfg.false_negative_mask else None
    unit = model.intent_centres[ids] / model.intent_centres[ids].norm(dim=1, keepdim=True)
    want = info_nce(z, unit, groups=labels)
    assert float(model.intent_loss(z)) == pytest.approx(float(want), rel=1e-6)


def test_intent_table_is_seeded_updated_in_training_only_and_saved():
    torch.manual_seed(0)
    model = model_of(num_intents=8)
    batch = cycle_batch()
    model.eval()
    model.auxiliary_loss(batch)
    assert int(model.intent_updates) == 0 and not model.intent_centres.any()
    model.train()
    model.auxiliary_loss(batch)
    first = model.intent_centres.clone()
    assert int(model.intent_updates) == 1 and first.abs().sum(1).gt(0).all()
    model.auxiliary_loss(batch)
    assert int(model.intent_updates) == 2 and not torch.equal(first, model.intent_centres)
    fresh = model_of(num_intents=8)
    fresh.load_state_dict(model.state_dict())
    assert torch.equal(fresh.intent_centres, model.intent_centres)
    assert int(fresh.intent_updates) == 2


def test_losses_fall_on_generated_data():
    torch.manual_seed(0)
    model = model_of(num_intents=8)
    objective = build_objective(ObjectiveConfig(name="ce"))
    # the same pairs at each probe (seed 7): only the model changes
    totals, aux = adam_losses_and_aux(model, objective, cycle_batch(), 25, lr=0.01, aux_seed=7)
    assert np.mean(totals[-5:]) < 0.6 * np.mean(totals[:5])
    assert np.mean(aux[-5:]) < np.mean(aux[:5])


def test_flops_count_the_contrastive_encoder_pass():
    c = cfg()
    ics, sas = ICSRec.flops_per_interaction(c, 1000, 20), SASRec.flops_per_interaction(c, 1000, 20)
    assert ics["forward"] == sas["forward"] and sas["train"] < ics["train"] < 2 * sas["train"]


def test_bad_options_are_refused_with_the_key():
    with pytest.raises(SeqrecError, match="intent_momentum"):
        build_config({"model": {"name": "icsrec", "intent_momentum": 0}})
    with pytest.raises(SeqrecError, match="cl_max_positions"):
        build_config({"model": {"name": "icsrec", "cl_max_positions": 0}})
    with pytest.raises(SeqrecError, match="intent_weight"):
        build_config({"model": {"name": "sasrec", "intent_weight": 0.1}})
