"""ReaRec: K = 0 is SASRec exactly, the cached slot-wise chain equals re-encoding every prefix
plus its reasoning tokens from scratch, the chain is causal, ERL's and PRL's terms equal
brute-force loops, and it learns."""

from __future__ import annotations

import math

import pytest
import torch

from conftest import adam_losses, seq_batch
from seqrec.errors import SeqrecError
from seqrec.models import build_model, model_config
from seqrec.models.rearec import ReaRec, pairwise_kl, step_cross_entropy, step_info_nce
from seqrec.objectives import build_objective
from seqrec.options import ObjectiveConfig
from seqrec.recipe import build_config, load_config

N = 30
ROWS = [[3, 4, 5, 6, 0, 0], [1, 2, 3, 4, 5, 6], [7, 0, 0, 0, 0, 0], [9, 8, 0, 0, 0, 0]]


def _model(seed: int = 0, **kw) -> ReaRec:
    torch.manual_seed(seed)
    base = {"hidden": 16, "layers": 2, "heads": 2, "dropout": 0.0, "reasoning_steps": 2}
    return build_model(model_config("rearec", **{**base, **kw}), n_items=N, max_len=8)


def _real(batch) -> torch.Tensor:
    return batch.items != 0


# --------------------------------------------------------------------------- K = 0
def test_zero_steps_is_sasrec_with_the_same_weights():
    torch.manual_seed(0)
    shape = {"hidden": 16, "layers": 2, "heads": 2, "dropout": 0.3}
    sasrec = build_model(model_config("sasrec", **shape), n_items=N, max_len=8)
    rearec = build_model(model_config("rearec", reasoning_steps=0, **shape), n_items=N, max_len=8)
    rearec.load_state_dict(sasrec.state_dict())  # strict: the very same parameters
    batch = seq_batch(ROWS)
    for m in (sasrec, rearec):
        m.eval()
    with torch.no_grad():
        assert torch.equal(rearec(batch), sasrec(batch))
        assert torch.equal(rearec.last_hidden(batch), sasrec.last_hidden(batch))
    assert rearec.auxiliary_loss(batch) is None
    objective = build_objective(ObjectiveConfig(name="ce"))
    losses = []
    for m in (sasrec, rearec):
        m.train()
        torch.manual_seed(7)  # the same dropout draws
        losses.append(objective(m, batch))
    assert torch.equal(losses[0], losses[1])


# --------------------------------------------------------------------------- the chain
@pytest.mark.parametrize("norm", ["pre", "post", "official"])
@pytest.mark.parametrize("method", ["erl", "prl"])
@pytest.mark.parametrize("steps", [1, 3])
def test_cached_chain_equals_re_encoding_every_prefix(norm, method, steps):
    model = _model(norm=norm, reasoning_method=method, reasoning_steps=steps).eval()
    batch = seq_batch(ROWS)
    real = _real(batch)
    with torch.no_grad():
        fast, slow = model(batch), model(batch, reference=True)
        torch.testing.assert_close(fast[real], slow[real], rtol=1e-5, atol=1e-5)
        last = fast[torch.arange(len(ROWS)), real.sum(1) - 1]
        torch.testing.assert_close(model.last_hidden(batch), last, rtol=1e-5, atol=1e-5)
        # the reference itself: K + 1 distinct states, the first one SASRec's
        chain = model.reference_steps(batch.items[1, :6])
        assert chain.shape == (steps + 1, 16)
        sasrec_state = super(ReaRec, model).forward(batch)[1, 5]
        torch.testing.assert_close(chain[0], sasrec_state, rtol=1e-5, atol=1e-5)
        assert not torch.allclose(chain[1], chain[0], atol=1e-3)


def test_erl_ranks_the_step_mean_and_prl_the_last_step():
    prefix = torch.tensor([4, 5, 6, 7])
    batch = seq_batch([[4, 5, 6, 7]])
    for method, pick in (("erl", lambda s: s.mean(0)), ("prl", lambda s: s[-1])):
        model = _model(reasoning_method=method, reasoning_steps=3).eval()
        with torch.no_grad():
            want = pick(model.reference_steps(prefix))
            torch.testing.assert_close(model.last_hidden(batch)[0], want, rtol=1e-5, atol=1e-5)


def test_reasoning_reads_only_the_prefix_and_its_own_chain():
    model = _model(reasoning_steps=3).eval()
    a = seq_batch([[3, 4, 5, 6, 7, 8], [1, 2, 3, 0, 0, 0]])
    b = seq_batch([[3, 4, 5, 20, 21, 22], [1, 2, 3, 0, 0, 0]])
    with torch.no_grad():
        sa, sb = model(a), model(b)
        torch.testing.assert_close(sa[:, :3], sb[:, :3])  # slot 2's chain never sees slot 3
        assert not torch.allclose(sa[0, 3:], sb[0, 3:])
        # one row's chains do not see another row: a row alone gives the same states
        alone = model(seq_batch([[1, 2, 3]]))
        torch.testing.assert_close(alone[0], sa[1, :3], rtol=1e-5, atol=1e-6)


def test_reasoning_embeddings_get_gradients_from_both_losses():
    model = _model(dropout=0.2).train()
    batch = seq_batch(ROWS)
    model(batch)[_real(batch)].sum().backward()
    assert model.reason_pos.weight.grad.abs().sum() > 0
    model.zero_grad()
    model.auxiliary_loss(batch).backward()
    assert model.reason_pos.weight.grad.abs().sum() > 0


# --------------------------------------------------------------------------- loss terms
def _brute_ce(logits: torch.Tensor, target: int) -> float:
    """-log softmax over items 1..V-1 (PAD excluded), one row."""
    z = logits[1:].detach().double()
    return float(torch.logsumexp(z, 0) - z[target - 1])


def test_step_cross_entropy_with_temperatures_equals_a_loop():
    g = torch.Generator().manual_seed(0)
    steps, weight = torch.randn(5, 3, 4, generator=g), torch.randn(N + 1, 4, generator=g)
    targets = torch.randint(1, N + 1, (5,), generator=g)
    temps = torch.tensor([25.0, 5.0, 1.0])
    want = [
        _brute_ce(weight @ steps[n, k] / temps[k], int(targets[n]))
        for n in range(5)
        for k in range(3)
    ]
    got = step_cross_entropy(steps, weight, targets, temps)
    assert float(got) == pytest.approx(sum(want) / len(want), rel=1e-5)
    plain = step_cross_entropy(steps, weight, targets)
    want = [_brute_ce(weight @ steps[n, k], int(targets[n])) for n in range(5) for k in range(3)]
    assert float(plain) == pytest.approx(sum(want) / len(want), rel=1e-5)


def _brute_kl(logits: torch.Tensor) -> torch.Tensor:
    """mean over rows and ordered pairs i != j of sum_v p_j (log p_j - sg(log p_i))."""
    total, count = 0.0, 0
    for row in logits:
        for i in range(len(row)):
            for j in range(len(row)):
                if i == j:
                    continue
                p_j = row[j].softmax(0)
                log_p_i = row[i].detach().log_softmax(0)
                total = total + (p_j * (p_j.log() - log_p_i)).sum()
                count += 1
    return total / count


def test_pairwise_kl_value_and_gradient_equal_a_loop():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(4, 3, 7, generator=g, dtype=torch.float64)
    a, b = logits.clone().requires_grad_(), logits.clone().requires_grad_()
    got, want = pairwise_kl(a), _brute_kl(b)
    assert float(got.detach()) == pytest.approx(float(want.detach()), rel=1e-10)
    got.backward()
    want.backward()
    torch.testing.assert_close(a.grad, b.grad)
    assert float(pairwise_kl(torch.zeros(2, 3, 5))) == 0.0  # identical steps: no divergence


def test_step_info_nce_equals_a_loop():
    g = torch.Generator().manual_seed(2)
    anchors, positives = torch.randn(5, 2, 4, generator=g), torch.randn(5, 2, 4, generator=g)
    tau, total = 0.5, 0.0
    for s in range(2):
        for n in range(5):
            sims = [float(anchors[n, s] @ positives[m, s]) / tau for m in range(5)]
            total += math.log(sum(math.exp(x) for x in sims)) - sims[n]
    assert float(step_info_nce(anchors, positives, tau)) == pytest.approx(total / 10, rel=1e-5)


def _last_slot_batch():
    """Training rows whose last real slot has a target (the only one the step terms read)."""
    items = torch.tensor([[3, 4, 5, 0], [6, 7, 8, 9], [10, 11, 0, 0]])
    targets = torch.tensor([[4, 5, 12, 0], [7, 8, 9, 13], [11, 14, 0, 0]])
    return seq_batch(items, targets), torch.tensor([12, 13, 14])


def test_erl_auxiliary_loss_equals_brute_force_terms():
    model = _model(reasoning_method="erl", reasoning_steps=2, step_weight=0.7, kl_weight=0.3)
    model.eval()  # no dropout: the brute force below re-encodes without it
    batch, last = _last_slot_batch()
    w = model.item_weights
    chains = [model.reference_steps(row[row != 0]) for row in batch.items]
    ce = [_brute_ce(w @ h, int(t)) for chain, t in zip(chains, last, strict=True) for h in chain]
    kl = _brute_kl(torch.stack([chain @ w[1:].T for chain in chains]))
    want = 0.7 * sum(ce) / len(ce) - 0.3 * float(kl.detach())
    assert float(model.auxiliary_loss(batch).detach()) == pytest.approx(want, rel=1e-4)


def test_prl_auxiliary_loss_equals_brute_force_terms():
    options = {"step_weight": 0.5, "anneal_base": 3.0, "cl_weight": 0.4, "cl_temperature": 0.2}
    model = _model(reasoning_method="prl", reasoning_steps=2, noise_std=0.05, **options).eval()
    batch, last = _last_slot_batch()
    torch.manual_seed(3)
    got = float(model.auxiliary_loss(batch).detach())
    torch.manual_seed(3)  # the same noise
    steps = model._last_steps(batch.items, views=2).detach()
    clean, noisy = steps[:, 0], steps[:, 1]
    w = model.item_weights
    # the clean chain is the brute-force chain; the noisy one differs from step 1 on
    for row, chain in zip(batch.items, clean, strict=True):
        torch.testing.assert_close(chain, model.reference_steps(row[row != 0]), atol=1e-5, rtol=0)
    torch.testing.assert_close(noisy[:, 0], clean[:, 0])
    assert not torch.allclose(noisy[:, 1:], clean[:, 1:])
    ce = [
        _brute_ce(w @ clean[n, k] / 3.0 ** (2 - k), int(last[n]))
        for n in range(3)
        for k in range(2)
    ]
    nce = 0.0
    for k in (1, 2):
        for n in range(3):
            sims = [float(noisy[n, k] @ clean[m, k]) / 0.2 for m in range(3)]
            nce += math.log(sum(math.exp(x) for x in sims)) - sims[n]
    want = 0.5 * sum(ce) / len(ce) + 0.4 * nce / 6
    assert got == pytest.approx(want, rel=1e-4)


def test_step_terms_read_only_each_rows_last_target():
    model = _model(reasoning_method="erl").eval()
    batch, last = _last_slot_batch()
    other = batch.targets.clone()
    other[0, 0], other[1, 1] = 20, 21  # earlier targets: not the step terms' business
    only_last = torch.zeros_like(batch.targets)
    only_last[[0, 1, 2], [2, 3, 1]] = last
    base = model.auxiliary_loss(batch)
    assert torch.equal(model.auxiliary_loss(seq_batch(batch.items, other)), base)
    assert torch.equal(
        model.auxiliary_loss(seq_batch(batch.items, only_last)), base
    )  # a train.samples=prefixes row


# --------------------------------------------------------------------------- learns
@pytest.mark.parametrize("method", ["erl", "prl"])
def test_loss_falls_on_a_cycle(method):
    model = _model(reasoning_method=method, dropout=0.1)
    start = torch.randint(0, N, (16, 1), generator=torch.Generator().manual_seed(0))
    rows = (start + torch.arange(9)) % N + 1  # item j -> j + 1
    batch = seq_batch(rows[:, :-1], rows[:, 1:])
    main = build_objective(ObjectiveConfig())  # the ranked state's CE (+ the step terms)
    totals = adam_losses(model, main, batch, 40, lr=0.02)
    # the step terms have floors of their own (CE at temperature alpha^K, InfoNCE over rows):
    # the total falls, and the ranked state's CE falls as SASRec's would
    assert totals[-1] < 0.6 * totals[0], totals
    with torch.no_grad():
        ranked = model.eval()(batch)[_real(batch)]
        ce = float(
            step_cross_entropy(ranked[:, None], model.item_weights, batch.targets[_real(batch)])
        )
    assert ce < 0.5, ce


# --------------------------------------------------------------------------- config, presets
def test_config_refusals_name_the_key_and_the_fix():
    with pytest.raises(SeqrecError, match=r"model\.rab=false"):
        build_config({"model": {"name": "rearec", "rab": True}})
    with pytest.raises(SeqrecError, match=r"model\.residual=standard"):
        build_config({"model": {"name": "rearec", "residual": "hstu"}})
    with pytest.raises(SeqrecError, match=r"model\.cl_weight is not read"):
        build_config({"model": {"name": "rearec", "reasoning_method": "erl", "cl_weight": 0.5}})
    with pytest.raises(SeqrecError, match=r"model\.kl_weight is not read"):
        build_config({"model": {"name": "rearec", "reasoning_method": "prl", "kl_weight": 0.1}})


@pytest.mark.parametrize("dataset", ["beauty", "ml-1m"])
def test_presets_mirror_sasrec_with_the_reasoning_options(dataset):
    ours, sasrec = load_config(f"rearec-{dataset}"), load_config(f"sasrec-{dataset}")
    for section in ("data", "objective", "train", "eval"):
        assert getattr(ours, section) == getattr(sasrec, section), section
    shape = ("hidden", "layers", "heads", "dropout", "ffn_mult", "norm", "positions")
    for key in shape:
        assert getattr(ours.model, key) == getattr(sasrec.model, key), key
    assert ours.model.reasoning_steps == 2
    assert load_config(f"rearec-{dataset}", ["model.reasoning_method=prl"]).model.cl_weight == 1.0


def test_flops_grow_with_the_reasoning_steps():
    counts = [
        ReaRec.flops_per_interaction(model_config("rearec", reasoning_steps=k), 100, 25.0)
        for k in (0, 1, 3)
    ]
    assert counts[0]["forward"] < counts[1]["forward"] < counts[2]["forward"]
    assert all(c["train"] > 3 * c["forward"] - 1e-6 for c in counts)
