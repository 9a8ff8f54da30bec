"""BSARec: the low-pass filter against a DFT written out by hand, the matrix fast path against
the paper's rfft/irfft, the left-padded window, and that it learns on prefixes."""

import numpy as np
import pytest
import torch

from conftest import adam_losses, seq_batch
from seqrec.models import build_model, model_config
from seqrec.models.bsarec import low_pass_matrix
from seqrec.objectives import build_objective
from seqrec.options import ObjectiveConfig
from seqrec.recipe import load_config
from seqrec.tasks.retrieval import last_target_only


def explicit_low_pass(x: np.ndarray, c: int) -> np.ndarray:
    """x [n, d] -> its low-frequency part by the textbook DFT: keep bins k and n - k for
    k < c // 2 + 1 (the real signal's spectrum is conjugate-symmetric), invert, real part."""
    n = x.shape[0]
    keep = c // 2 + 1
    t = np.arange(n)
    dft = np.exp(-2j * np.pi * np.outer(t, t) / n)
    spectrum = dft @ x
    kept = np.array([min(k, n - k) < keep for k in range(n)])
    spectrum[~kept] = 0
    return np.real(np.conj(dft).T @ spectrum) / n


@pytest.mark.parametrize(("n", "c"), [(50, 5), (7, 3), (8, 1), (12, 20), (9, 8)])
def test_low_pass_matrix_is_the_dft_filter(n, c):
    x = np.random.default_rng(n + c).normal(size=(n, 4))
    got = low_pass_matrix(n, c).double().numpy() @ x
    np.testing.assert_allclose(got, explicit_low_pass(x, c), atol=1e-6)


def _bsarec(**kw):
    torch.manual_seed(0)
    cfg = model_config("bsarec", **{"hidden": 8, "heads": 2, "c": 3, **kw})
    return build_model(cfg, n_items=20, max_len=9).eval()


def test_matrix_filter_matches_rfft_reference():
    model = _bsarec()
    batch = seq_batch([[3, 4, 5, 6, 7, 8, 9, 0, 0], [1, 2, 0, 0, 0, 0, 0, 0, 0]])
    with torch.no_grad():
        torch.testing.assert_close(model(batch), model(batch, reference=True))


def test_states_do_not_depend_on_the_batch_width():
    """Rows are moved into the fixed left-padded window, so trimming a batch changes nothing,
    and the last real slot is the user state."""
    model = _bsarec()
    wide = seq_batch([[3, 4, 5, 0, 0, 0, 0], [6, 7, 8, 9, 10, 0, 0]])
    narrow = seq_batch([[3, 4, 5, 0, 0], [6, 7, 8, 9, 10]])
    with torch.no_grad():
        a, b = model(wide), model(narrow)
        torch.testing.assert_close(a[:, :5], b)
        assert (a[:, 5:] == 0).all() and (b[0, 3:] == 0).all()
        torch.testing.assert_close(model.last_hidden(narrow), b[[0, 1], [2, 4]])


def test_the_filter_reads_later_items_and_padding():
    """Why the model trains on prefixes: slot 0's state moves when a later item does; and the
    paper's window runs its DFT over the PAD slots too, so one history in windows of different
    sizes gives different states."""
    model = _bsarec()
    a = seq_batch([[3, 4, 5, 6]])
    b = seq_batch([[3, 4, 5, 11]])
    with torch.no_grad():
        assert not torch.allclose(model(a)[:, 0], model(b)[:, 0])
    wider = build_model(model.cfg, n_items=20, max_len=12).eval()
    state = model.state_dict()
    # the same parameters; the 9 positions nearest the end are the narrow window's
    state["pos_emb.weight"] = torch.cat([torch.zeros(3, 8), state["pos_emb.weight"]])
    wider.load_state_dict(state)
    with torch.no_grad():
        assert not torch.allclose(model.last_hidden(a), wider.last_hidden(a))


def test_alpha_one_without_attention_and_zero_without_filter():
    """alpha weights the branches: with alpha = 0 the filter's parameters get no gradient."""
    model = _bsarec(alpha=0.0)
    batch = seq_batch([[3, 4, 5, 6, 0], [1, 2, 3, 0, 0]])
    model(batch).sum().backward()
    assert model.blocks[0].filter.sqrt_beta.grad.abs().sum() == 0
    model = _bsarec(alpha=1.0)
    model(batch).sum().backward()
    assert model.blocks[0].attention.qkv.weight.grad.abs().sum() == 0


def test_learns_a_cycle_from_prefixes():
    torch.manual_seed(0)
    cfg = model_config("bsarec", hidden=16, heads=2, dropout=0.0, c=3)
    model = build_model(cfg, n_items=30, max_len=8)
    lengths = torch.randint(1, 9, (48,))
    start = torch.randint(0, 30, (48, 1))
    seq = (start + torch.arange(9)) % 30 + 1
    slots = torch.arange(8)[None, :]
    items = torch.where(slots < lengths[:, None], seq[:, :8], 0)
    targets = torch.where(slots < lengths[:, None], seq[:, 1:], 0)
    batch = last_target_only(seq_batch(items, targets))
    losses = adam_losses(model, build_objective(ObjectiveConfig()), batch, 60, lr=0.01)
    assert losses[-1] < 0.3 * losses[0]


def test_preset_is_the_authors_beauty_run():
    cfg = load_config("bsarec-beauty")
    assert (cfg.model.alpha, cfg.model.c, cfg.model.heads, cfg.train.lr) == (0.7, 5, 1, 5e-4)
    assert cfg.train.samples == "prefixes"
