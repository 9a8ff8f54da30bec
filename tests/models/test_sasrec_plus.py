"""SASRec+ switches (model.rab, model.residual=hstu, model.norm_type=rmsnorm): defaults are the
plain SASRec bit for bit, each switch learns, stays causal, and its fast paths (SDPA with a float
bias mask, ``last_hidden``) agree with the explicit-mask reference and an explicit softmax."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import N_ITEMS, adam_losses, seq_batch
from seqrec.data.batches import SeqBatch
from seqrec.models import model_config
from seqrec.models.common import count_parameters
from seqrec.models.sasrec import SASRec, flops_per_interaction
from seqrec.models.sasrec_blocks import attention_mask
from seqrec.models.sasrec_plus import GatedBlock, RelativePositionBias
from seqrec.objectives import build_objective
from seqrec.options import ObjectiveConfig
from seqrec.recipe import build_config

VARIANTS = [
    {"rab": True},
    {"residual": "hstu"},
    {"norm_type": "rmsnorm"},
    {"rab": True, "residual": "hstu"},
    {"rab": True, "residual": "hstu", "norm_type": "rmsnorm", "positions": "from_end"},
    {"rab": True, "norm": "official", "attn_out_proj": True, "norm_type": "rmsnorm"},
    {"rab": True, "norm": "post"},
]
IDS = ["rab", "hstu", "rms", "rab+hstu", "all3", "rab+official", "rab+post"]


def _model(seed: int = 0, n_items: int = 30, max_len: int = 8, **kw) -> SASRec:
    torch.manual_seed(seed)
    cfg = model_config(**{"hidden": 16, "layers": 2, "heads": 2, "dropout": 0.0, **kw})
    return SASRec(cfg, n_items, max_len).eval()


RAGGED = torch.tensor(
    [[3, 4, 5, 6, 7, 8, 9, 1], [2, 9, 4, 0, 0, 0, 0, 0], [5, 0, 0, 0, 0, 0, 0, 0]]
)


def test_defaults_reproduce_the_plain_sasrec():
    """Values recorded from SASRec before the switches existed (same seed, same batch)."""
    torch.manual_seed(0)
    m = SASRec(model_config(hidden=8, layers=2, heads=2, dropout=0.0), 12, 8).eval()
    items = torch.tensor([[3, 4, 5, 6, 7, 8, 9, 1], [2, 9, 4, 0, 0, 0, 0, 0]])
    # fmt: off
    expected = torch.tensor([
        [-0.9034638404846191, 0.29429471492767334, 0.7809596061706543, -1.32740318775177,
         1.465206503868103, 1.1715385913848877, -0.9739898443222046, -0.5071423053741455],
        [-1.2378602027893066, 1.1028984785079956, 1.2549304962158203, 0.8000109791755676,
         -0.6981504559516907, -0.0855119600892067, 0.40551814436912537, -1.541835069656372],
    ])
    # fmt: on
    with torch.no_grad():
        torch.testing.assert_close(m.last_hidden(seq_batch(items)), expected, rtol=1e-6, atol=1e-6)
    assert not any("rab" in n or "gate" in n for n, _ in m.named_parameters())


def test_a_zero_bias_is_the_plain_model_and_other_weights_are_shared():
    """rab draws no random numbers at construction: at the same seed every other weight equals
    the plain model's, and with the bias zeroed the outputs agree."""
    plain, rab = _model(seed=3), _model(seed=3, rab=True)
    p = dict(plain.named_parameters())
    for name, w in rab.named_parameters():
        assert name.endswith("rab.weight") or torch.equal(w, p[name]), name
    with torch.no_grad():
        for block in rab.blocks:
            block.attn.rab.weight.zero_()
    b = seq_batch(RAGGED)
    torch.testing.assert_close(rab(b)[RAGGED != 0], plain(b)[RAGGED != 0])
    torch.testing.assert_close(rab.last_hidden(b), plain.last_hidden(b))


def test_rab_attention_matches_explicit_softmax():
    m = _model(rab=True)
    attn = m.blocks[0].attn
    with torch.no_grad():
        attn.rab.weight.normal_()  # large enough to matter
    x = torch.randn(2, 5, 16)
    items = torch.tensor([[1, 2, 3, 0, 0], [1, 2, 3, 4, 5]])
    mask = attention_mask(items)
    b, length, d = x.shape
    q, k, v = attn.qkv(x).view(b, length, 3, 2, d // 2).unbind(2)
    q, k, v = (t.transpose(1, 2) for t in (q, k, v))
    i, j = torch.arange(length)[:, None], torch.arange(length)[None, :]
    bias = attn.rab.weight[(i - j).clamp(min=0)]
    s = q @ k.transpose(-1, -2) / (d // 2) ** 0.5 + bias
    explicit = (s.masked_fill(~mask, float("-inf")).softmax(-1) @ v).transpose(1, 2)
    explicit = explicit.reshape(b, length, d)
    torch.testing.assert_close(attn(x, mask), explicit)  # boolean mask (reference path)
    torch.testing.assert_close(attn(x)[1], explicit[1])  # causal float mask (fast path)
    torch.testing.assert_close(attn(x)[0, :3], explicit[0, :3])
    lengths = torch.tensor([3, 5])
    last = attn.forward_last(x[torch.arange(2), lengths - 1], x, lengths)
    torch.testing.assert_close(last, explicit[torch.arange(2), lengths - 1])


@pytest.mark.parametrize("kw", VARIANTS, ids=IDS)
def test_fast_paths_match_reference(kw):
    m = _model(**kw)
    for module in m.modules():  # make the bias visible in the outputs
        if isinstance(module, RelativePositionBias):
            torch.nn.init.normal_(module.weight)
    b = seq_batch(RAGGED)
    ref = m(b, reference=True)
    valid = RAGGED != 0
    torch.testing.assert_close(m(b)[valid], ref[valid])
    last = ref[torch.arange(3), torch.tensor([7, 2, 0])]
    torch.testing.assert_close(m.last_hidden(b), last)


@pytest.mark.parametrize("kw", VARIANTS, ids=IDS)
def test_a_later_item_never_changes_earlier_outputs(kw):
    m = _model(**kw)
    x = torch.tensor([[3, 4, 5, 6, 7, 8, 0, 0]])
    y = x.clone()
    y[0, 4] = 20
    a, c = m(seq_batch(x)), m(seq_batch(y))
    torch.testing.assert_close(a[0, :4], c[0, :4])
    assert not torch.allclose(a[0, 4:6], c[0, 4:6])
    short = torch.tensor([[4, 5, 6]])
    torch.testing.assert_close(
        m.last_hidden(seq_batch(short)), m.last_hidden(seq_batch(torch.tensor([[4, 5, 6, 0, 0]])))
    )


def _cycle_batch(n_rows: int = 32, width: int = 8) -> SeqBatch:
    """Rows walking item j -> j+1 (mod n) with ragged lengths, targets = the next item."""
    rng = np.random.default_rng(0)
    start = rng.integers(N_ITEMS, size=(n_rows, 1))
    seq = (start + np.arange(width + 1)) % N_ITEMS + 1
    lengths = rng.integers(2, width + 1, size=n_rows)
    keep = np.arange(width)[None, :] < lengths[:, None]
    items = torch.from_numpy(np.where(keep, seq[:, :-1], 0))
    return seq_batch(items, torch.from_numpy(np.where(keep, seq[:, 1:], 0)))


@pytest.mark.parametrize("kw", VARIANTS[:5], ids=IDS[:5])
def test_loss_falls_on_generated_data(kw):
    model = _model(n_items=N_ITEMS, **{**kw, "dropout": 0.1}).train()
    loss_fn = build_objective(ObjectiveConfig(name="ce"))
    batch = _cycle_batch()
    losses = adam_losses(model, loss_fn, batch, 30, lr=1e-2)
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5])
    rab = [mod.weight for mod in model.modules() if isinstance(mod, RelativePositionBias)]
    assert all(w.grad is not None and w.grad[:8].abs().sum() > 0 for w in rab)


def test_hstu_residual_has_one_gated_sublayer_and_matches_the_parameter_count():
    plain, gated = _model(), _model(residual="hstu")
    assert all(isinstance(b, GatedBlock) for b in gated.blocks)
    assert not any("ffn" in n for n, _ in gated.named_parameters())
    # ffn_mult=1: Q, K, V + FFN (2 d^2) vs Q, K, V + U + W_o, biases and norms alike
    assert count_parameters(gated) == count_parameters(plain)
    cfg = model_config(hidden=16, residual="hstu")
    assert flops_per_interaction(cfg, 30, 4.0) == flops_per_interaction(
        model_config(hidden=16), 30, 4.0
    )


def test_rmsnorm_replaces_every_norm():
    m = _model(norm_type="rmsnorm", residual="hstu")
    assert not any(isinstance(mod, torch.nn.LayerNorm) for mod in m.modules())


def test_configs_that_do_not_fit_are_refused():
    with pytest.raises(ValueError, match="pre-norm"):
        model_config(residual="hstu", norm="post")
    with pytest.raises(ValueError, match="laclrec"):
        model_config(name="laclrec", rab=True)
    model_config(name="cl4srec", rab=True, residual="hstu", norm_type="rmsnorm")


def test_trainer_end_to_end_with_all_switches(cycle_log, tmp_path):
    from conftest import tiny_config
    from seqrec.trainer.run import train_run

    raw = tiny_config(cycle_log, model={"rab": True, "residual": "hstu", "norm_type": "rmsnorm"})
    raw["train"]["epochs"] = 3
    res = train_run(build_config(raw), tmp_path / "run", progress=False)
    assert res["test"]["metrics"]["NDCG@10"] > 0.5
