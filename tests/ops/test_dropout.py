"""The cheap-mask dropout against torch's: keep rate, scale, independence, gradient."""

import math

import pytest
import torch
import torch.nn.functional as F

from seqrec.ops.dropout import LEVELS, Dropout, dropout, keep_mask, keep_threshold


@pytest.mark.parametrize("p", [0.1, 0.2, 0.5, 0.9])
def test_keep_rate_is_the_stated_probability(p):
    torch.manual_seed(0)
    n = 2_000_000
    mask = keep_mask((n,), p, torch.device("cpu"))
    keep = keep_threshold(p) / LEVELS
    assert abs(keep - (1 - p)) <= 0.5 / LEVELS
    # within 5 standard errors of the exact keep probability
    assert abs(mask.float().mean().item() - keep) < 5 * math.sqrt(keep * (1 - keep) / n)


def test_kept_values_scaled_by_exact_inverse_and_mean_preserved():
    torch.manual_seed(1)
    x = torch.full((1000, 1000), 3.0)
    y = dropout(x, 0.3)
    kept = y[y != 0]
    torch.testing.assert_close(kept, torch.full_like(kept, 3.0 * LEVELS / keep_threshold(0.3)))
    # E[y] = x: the mean over 1e6 draws within 5 standard errors
    keep = keep_threshold(0.3) / LEVELS
    se = 3.0 * math.sqrt((1 - keep) / keep / x.numel())
    assert abs(y.mean().item() - 3.0) < 5 * se


def test_lanes_of_one_word_are_independent():
    """Four elements share one 64-bit draw: neighbours must not be correlated, and each lane
    position (element index mod 4) must keep at the same rate."""
    torch.manual_seed(2)
    m = keep_mask((4_000_000,), 0.5, torch.device("cpu")).float().view(-1, 4)
    rates = m.mean(0)
    assert (rates - 0.5).abs().max() < 5 * math.sqrt(0.25 / m.shape[0])
    corr = torch.corrcoef(m.T)
    off = corr[~torch.eye(4, dtype=torch.bool)]
    assert off.abs().max() < 5 / math.sqrt(m.shape[0])


def test_odd_shapes_and_eval_mode():
    torch.manual_seed(3)
    x = torch.randn(3, 5, 7)
    assert dropout(x, 0.2).shape == x.shape
    assert dropout(x, 0.2, training=False) is x
    assert dropout(x, 0.0) is x
    layer = Dropout(0.2).eval()
    assert layer(x) is x
    with pytest.raises(ValueError, match="dropout probability"):
        dropout(x, 1.0)


def test_gradient_is_the_mask_times_scale():
    torch.manual_seed(4)
    x = torch.randn(64, 33, requires_grad=True)
    y = dropout(x, 0.25)
    y.sum().backward()
    expected = (y != 0).float() * LEVELS / keep_threshold(0.25)
    torch.testing.assert_close(x.grad, expected)


def test_matches_torch_dropout_in_distribution():
    """Same first two moments as torch's dropout on the same input."""
    torch.manual_seed(5)
    x = torch.randn(500_000)
    ours, theirs = dropout(x, 0.1), F.dropout(x, 0.1)
    assert abs(ours.var().item() - theirs.var().item()) < 0.01
    assert abs((ours == 0).float().mean().item() - (theirs == 0).float().mean().item()) < 0.003
