"""Caser: the vectorised sliding-window convolutions against the paper's per-window formulas,
causality, and that it learns."""

import pytest
import torch

from conftest import adam_losses, seq_batch
from seqrec.models import build_model, model_config
from seqrec.objectives import build_objective
from seqrec.options import ObjectiveConfig
from seqrec.recipe import load_config


def _caser(**kw):
    torch.manual_seed(0)
    cfg = model_config("caser", **{"hidden": 8, "window": 4, "n_h": 3, "n_v": 2, **kw})
    return build_model(cfg, n_items=20, max_len=9).eval()


@pytest.mark.parametrize("kw", [{}, {"n_v": 0}, {"window": 1}, {"conv_activation": "tanh"}])
def test_fast_path_matches_per_window_reference(kw):
    model = _caser(**kw)
    batch = seq_batch([[3, 4, 5, 6, 7, 8, 9, 0, 0], [1, 2, 0, 0, 0, 0, 0, 0, 0]])
    with torch.no_grad():
        torch.testing.assert_close(model(batch), model(batch, reference=True))


def test_states_never_read_later_items():
    model = _caser()
    a = seq_batch([[3, 4, 5, 6, 7, 8, 9, 10, 11]])
    b = seq_batch([[3, 4, 5, 6, 7, 1, 2, 19, 11]])
    with torch.no_grad():
        torch.testing.assert_close(model(a)[:, :5], model(b)[:, :5])
        # slot 8 reads items 5..8 only (window 4): slot 4's item cannot reach it
        c = seq_batch([[3, 4, 5, 6, 12, 8, 9, 10, 11]])
        torch.testing.assert_close(model(a)[:, 8], model(c)[:, 8])


def test_last_hidden_is_the_last_real_slot():
    model = _caser()
    batch = seq_batch([[3, 4, 5, 0, 0], [6, 7, 8, 9, 10]])
    with torch.no_grad():
        full = model(batch)
        torch.testing.assert_close(model.last_hidden(batch), full[[0, 1], [2, 4]])


def test_loss_falls_on_a_cycle():
    torch.manual_seed(0)
    cfg = model_config("caser", hidden=16, window=3, n_h=4, n_v=2, dropout=0.0)
    model = build_model(cfg, n_items=30, max_len=12)
    start = torch.randint(0, 30, (16, 1))
    rows = (start + torch.arange(13)) % 30 + 1  # item j -> j + 1, every row full
    batch = seq_batch(rows[:, :-1], rows[:, 1:])
    loss_fn = build_objective(ObjectiveConfig())
    losses = adam_losses(model, loss_fn, batch, 40, lr=0.02)
    assert losses[-1] < 0.3 * losses[0]


def test_preset_loads_and_layers_is_refused():
    assert load_config("caser-ml-1m").model.window == 5
    with pytest.raises(ValueError, match="no meaning for caser"):
        model_config("caser", layers=4)
