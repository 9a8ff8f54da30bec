"""SIGMA: the fast paths against the per-position / per-prefix reference, the DS Gate and the
FE-GRU against their formulas, the flip's per-prefix meaning, options, and that it learns."""

import pytest
import torch
import torch.nn.functional as F

from conftest import adam_losses, seq_batch
from seqrec.errors import SeqrecError
from seqrec.models import build_model, model_config
from seqrec.models.sigma import FEGRU, DSGate, PFMamba, gru_step
from seqrec.objectives import build_objective
from seqrec.options import ObjectiveConfig
from seqrec.recipe import load_config

ROWS = [
    [3, 4, 5, 6, 7, 8, 9, 10, 0],
    [1, 2, 0, 0, 0, 0, 0, 0, 0],
    [11, 12, 13, 14, 15, 16, 17, 18, 19],
]


def _sigma(**kw):
    torch.manual_seed(0)
    options = {"hidden": 8, "d_state": 4, "flip_keep": 2, "dropout": 0.0, "gate_dropout": 0.0}
    cfg = model_config("sigma", **{**options, **kw})
    return build_model(cfg, n_items=20, max_len=9).double().eval()


@pytest.mark.parametrize(
    "kw",
    [{}, {"layers": 2}, {"flip": "off", "flip_keep": 5}, {"released_flip_gate": True},
     {"flip_keep": 1, "learn_mix": True}],
)  # fmt: skip
@pytest.mark.parametrize("path", ["packed", "vectorised"])
def test_fast_paths_match_the_per_position_and_per_prefix_reference(kw, path, monkeypatch):
    monkeypatch.setattr(PFMamba, "path", path)
    model = _sigma(**kw)
    batch = seq_batch(ROWS)
    real = (batch.items != 0)[..., None]
    with torch.no_grad():  # PAD slots are never read (the packed path leaves them unscanned)
        torch.testing.assert_close(model(batch) * real, model(batch, reference=True) * real)


def test_slot_t_is_the_state_of_the_prefix_ending_at_t():
    """The flip is relative to each query: a row's slot t equals the last slot of the row cut
    after t (one training row = every prefix as its own sample)."""
    model = _sigma(layers=2)
    full = seq_batch([ROWS[2]])
    with torch.no_grad():
        states = model(full)
        for t in (0, 3, 5, 8):
            prefix = seq_batch([ROWS[2][: t + 1]])
            torch.testing.assert_close(states[0, t], model(prefix)[0, -1])


def test_the_flip_changes_long_prefixes_only():
    """r = 2: a prefix of <= 3 items reads the same either way, a longer one does not (B and C
    drawn at scale 1: the code's N(0, 0.02) init makes the scan's share small at first)."""
    model = _sigma()
    with torch.no_grad():
        model.layers[0].mamba.x_proj.weight.normal_()
        x = model.emb_norm(model.item_emb(torch.tensor([ROWS[2]])))
        forward, flipped = model.layers[0].mamba(x, torch.tensor([9]))
    torch.testing.assert_close(flipped[:, :3], forward[:, :3])
    assert not torch.isclose(flipped[:, 3:], forward[:, 3:]).all(-1).any()


def test_ds_gate_is_its_formula():
    torch.manual_seed(0)
    gate = DSGate(6, p=0.0)
    h, s = torch.randn(2, 5, 6), torch.randn(2, 5, 6)
    a, b = gate.silu_path, gate.sigmoid_path
    by_hand = h * torch.sigmoid(h) @ a.weight.T + a.bias + torch.sigmoid(s) @ b.weight.T + b.bias
    torch.testing.assert_close(gate(h, s), by_hand)
    assert gate(h).shape == (2, 5, 6)
    torch.testing.assert_close(gate(h), gate(h, h))


def test_gru_step_is_torchs_gru_cell():
    torch.manual_seed(0)
    cell = torch.nn.GRUCell(6, 6, bias=False)
    x, h = torch.randn(4, 6), torch.randn(4, 6)
    torch.testing.assert_close(gru_step(x, h, cell.weight_ih, cell.weight_hh), cell(x, h))


def test_fe_gru_is_the_released_block_run_on_each_prefix():
    """Slot t = GRU over Conv1d(kernel 3, padding 1) of x_0..x_t alone: the right tap of the
    last slot reads the zero padding. Written out with nn.GRUCell for slot 3."""
    torch.manual_seed(0)
    fe = FEGRU(6).double()
    x = torch.randn(2, 7, 6, dtype=torch.float64)
    out = fe(x)
    assert out.shape == (2, 7, 6)
    torch.testing.assert_close(out, fe(x, reference=True))
    w = fe.conv.weight
    cell = torch.nn.GRUCell(6, 6, bias=False).double()
    cell.weight_ih.data, cell.weight_hh.data = fe.gru.weight_ih_l0.data, fe.gru.weight_hh_l0.data
    h = torch.zeros(2, 6, dtype=torch.float64)
    prefix = F.pad(x[:, :4], (0, 0, 1, 1))  # zero before slot 0 and after slot 3
    for s in range(4):
        g = sum(prefix[:, s + k] @ w[:, :, k].T for k in range(3)) + fe.conv.bias
        h = cell(g, h)
    torch.testing.assert_close(out[:, 3], h)


def test_states_never_read_later_items():
    model = _sigma()
    a = seq_batch([[3, 4, 5, 6, 7, 8, 9, 10, 11]])
    b = seq_batch([[3, 4, 5, 6, 7, 1, 2, 19, 11]])
    with torch.no_grad():
        torch.testing.assert_close(model(a)[:, :5], model(b)[:, :5])
        assert not torch.allclose(model(a)[:, 5:], model(b)[:, 5:])


def test_last_hidden_is_the_last_real_slot():
    model = _sigma()
    batch = seq_batch(ROWS)
    with torch.no_grad():
        torch.testing.assert_close(model.last_hidden(batch), model(batch)[[0, 1, 2], [7, 1, 8]])


def test_loss_falls_on_a_cycle():
    torch.manual_seed(0)
    cfg = model_config("sigma", hidden=16, d_state=4, dropout=0.0, gate_dropout=0.0)
    model = build_model(cfg, n_items=30, max_len=12)
    start = torch.randint(0, 30, (16, 1))
    rows = (start + torch.arange(13)) % 30 + 1  # item j -> j + 1, every row full
    batch = seq_batch(rows[:, :-1], rows[:, 1:])
    losses = adam_losses(model, build_objective(ObjectiveConfig()), batch, 40, lr=0.01)
    assert losses[-1] < 0.3 * losses[0]


def test_presets_and_bad_options():
    for preset, max_len in (("sigma-beauty", 50), ("sigma-ml-1m", 200)):
        cfg = load_config(preset)
        assert cfg.model.name == "sigma" and cfg.data.max_len == max_len
    with pytest.raises(ValueError, match=r"model\.flip=off removes"):
        model_config("sigma", flip="off", flip_keep=3)
    with pytest.raises(SeqrecError, match="leaves nothing to flip"):
        build_model(model_config("sigma", flip_keep=8), n_items=5, max_len=9)
    build_model(model_config("sigma", flip="off"), n_items=5, max_len=3)  # nothing to flip: fine
