"""SDPA's causal kernel against the explicit softmax reference."""

import torch

from seqrec.ops.attention import causal_sdpa, reference_causal_attention


def test_sdpa_causal_attention_matches_explicit_softmax():
    torch.manual_seed(0)
    q, k, v = torch.randn(3, 2, 2, 7, 8).unbind(0)
    torch.testing.assert_close(causal_sdpa(q, k, v), reference_causal_attention(q, k, v))
