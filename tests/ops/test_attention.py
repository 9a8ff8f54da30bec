"""The causal attention paths against the explicit softmax reference."""

import math

import pytest
import torch

from seqrec.ops.attention import (
    blocked_causal_attention,
    causal_attention,
    causal_sdpa,
    reference_causal_attention,
)
from seqrec.ops.dropout import LEVELS, keep_mask, keep_threshold


def test_sdpa_causal_attention_matches_explicit_softmax():
    torch.manual_seed(0)
    q, k, v = torch.randn(3, 2, 2, 7, 8).unbind(0)
    torch.testing.assert_close(causal_sdpa(q, k, v), reference_causal_attention(q, k, v))
    torch.testing.assert_close(causal_attention(q, k, v), reference_causal_attention(q, k, v))


def replayed_keep(shape, length, blocks, p, seed):
    """The [B, H, L, L] scaled dropout mask the blocked path drew, rebuilt by replaying the
    generator block by block (keys past a block's end are never attended, so any value)."""
    torch.manual_seed(seed)
    keep = torch.zeros(*shape, length, length)
    step = math.ceil(length / blocks)
    for start in range(0, length, step):
        end = min(length, start + step)
        mask = keep_mask((*shape, end - start, end), p, torch.device("cpu"))
        keep[..., start:end, :end] = mask.float() * LEVELS / keep_threshold(p)
    return keep


@pytest.mark.parametrize(("length", "blocks"), [(7, 4), (13, 4), (16, 1), (5, 8)])
def test_blocked_path_matches_reference_with_the_same_dropout_mask(length, blocks):
    torch.manual_seed(0)
    q, k, v = torch.randn(3, 2, 3, length, 8, dtype=torch.float64).unbind(0)
    q.requires_grad_()
    torch.manual_seed(7)
    out = blocked_causal_attention(q, k, v, 0.3, blocks)
    keep = replayed_keep((2, 3), length, blocks, 0.3, seed=7).double()
    ref = reference_causal_attention(q, k, v, keep)
    torch.testing.assert_close(out, ref)
    (g_out,) = torch.autograd.grad(out.sum(), q)
    (g_ref,) = torch.autograd.grad(ref.sum(), q)
    torch.testing.assert_close(g_out, g_ref)


def test_blocked_path_without_dropout_is_plain_causal_attention():
    torch.manual_seed(1)
    q, k, v = torch.randn(3, 2, 1, 10, 4).unbind(0)
    out = blocked_causal_attention(q, k, v, 1e-9)  # below 2**-17: nothing is dropped
    torch.testing.assert_close(out, reference_causal_attention(q, k, v))
