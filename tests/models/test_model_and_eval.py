import numpy as np
import pytest
import torch

from seqrec.data.batches import flat_slices, training_batch
from seqrec.eval.ranking import evaluate
from seqrec.models import model_config
from seqrec.models.sasrec import SASRec, count_parameters
from seqrec.models.sasrec_blocks import attention_mask
from seqrec.options import EvalConfig


def _model(n_items=30, max_len=8, **kw):
    torch.manual_seed(0)
    return SASRec(
        model_config(hidden=16, layers=2, heads=2, dropout=0.0, **kw), n_items, max_len
    ).eval()


def test_training_batch_shifts_targets_and_right_pads():
    items = np.arange(1, 11, dtype=np.int32)  # users: [1..4], [5..10]
    b = training_batch(
        items, None, np.array([0, 1]), np.array([0, 4]), np.array([4, 10]), max_len=3
    )
    assert b.items.tolist() == [[1, 2, 3], [7, 8, 9]]
    assert b.targets.tolist() == [[2, 3, 4], [8, 9, 10]]
    b = training_batch(items, None, np.array([0]), np.array([0]), np.array([3]), max_len=5)
    assert b.items.tolist() == [[1, 2]] and b.targets.tolist() == [[2, 3]]
    b = training_batch(
        items, None, np.array([0, 1]), np.array([0, 4]), np.array([2, 10]), max_len=4
    )
    assert b.items[0].tolist() == [1, 0, 0, 0] and b.targets[0].tolist() == [2, 0, 0, 0]
    assert b.lengths.tolist() == [1, 4]


def test_flat_slices():
    rows, flat = flat_slices(np.array([2, 7]), np.array([4, 10]))
    assert rows.tolist() == [0, 0, 1, 1, 1]
    assert flat.tolist() == [2, 3, 7, 8, 9]


@pytest.mark.parametrize("norm", ["pre", "official"])
def test_causal_model_never_sees_the_future(norm):
    m = _model(norm=norm)
    x = torch.tensor([[3, 4, 5, 6, 7, 8, 0, 0]])
    y = x.clone()
    y[0, 4] = 20
    from seqrec.data.batches import SeqBatch

    def h(z):
        return m(SeqBatch(items=z, targets=z, lengths=torch.tensor([6]), users=torch.tensor([0])))

    a, b = h(x), h(y)
    torch.testing.assert_close(a[0, :4], b[0, :4])
    assert not torch.allclose(a[0, 4:6], b[0, 4:6])


@pytest.mark.parametrize("positions", ["from_start", "from_end"])
def test_padding_and_trimming_do_not_change_outputs(positions):
    m = _model(positions=positions)
    from seqrec.data.batches import SeqBatch

    short = torch.tensor([[4, 5, 6]])
    padded = torch.tensor([[4, 5, 6, 0, 0, 0]])
    kw = dict(lengths=torch.tensor([3]), users=torch.tensor([0]))
    a = m.last_hidden(SeqBatch(items=short, targets=short, **kw))
    b = m.last_hidden(SeqBatch(items=padded, targets=padded, **kw))
    torch.testing.assert_close(a, b)


@pytest.mark.parametrize("positions", ["from_start", "from_end"])
@pytest.mark.parametrize(
    "variant",
    [
        {"norm": "pre"},
        {"norm": "post"},
        {"norm": "official", "attn_out_proj": True, "init": "normal", "ln_eps": 1e-8},
    ],
)
def test_fast_paths_match_reference(variant, positions):
    from seqrec.data.batches import SeqBatch

    m = _model(positions=positions, **variant)
    items = torch.tensor(
        [[3, 4, 5, 6, 7, 8, 9, 1], [2, 9, 4, 0, 0, 0, 0, 0], [5, 0, 0, 0, 0, 0, 0, 0]]
    )
    b = SeqBatch(items=items, targets=items, lengths=torch.tensor([8, 3, 1]), users=torch.arange(3))
    ref = m(b, reference=True)
    fast = m(b)
    valid = items != 0
    torch.testing.assert_close(fast[valid], ref[valid])
    last = ref[torch.arange(3), torch.tensor([7, 2, 0])]
    torch.testing.assert_close(m.last_hidden(b), last)


@pytest.mark.parametrize("norm", ["pre", "post", "official"])
def test_attn_residual_dropout_switch(norm):
    """With the FFN branch zeroed and no dropout on attention probabilities, a training-mode
    block is random only through the attention output's dropout: the reference code's layout
    (switch off) must then equal eval mode, and the default must not."""
    from seqrec.models.sasrec_blocks import Block

    x = torch.randn(2, 6, 16)
    outs = {}
    for switch in (True, False):
        torch.manual_seed(0)
        cfg = model_config(hidden=16, heads=2, dropout=0.5, attn_dropout=0.0, norm=norm)
        block = Block(cfg.model_copy(update={"attn_residual_dropout": switch}))
        torch.nn.init.zeros_(block.ffn.fc2.weight)
        torch.nn.init.zeros_(block.ffn.fc2.bias)
        expected = block.eval()(x)
        outs[switch] = (block.train()(x), expected)
    torch.testing.assert_close(*outs[False])
    assert not torch.allclose(*outs[True])


def test_sdpa_attention_matches_explicit_softmax():
    m = _model()
    attn = m.blocks[0].attn
    x = torch.randn(2, 5, 16)
    items = torch.tensor([[1, 2, 3, 0, 0], [1, 2, 3, 4, 5]])
    mask = attention_mask(items)
    got = attn(x, mask)
    b, L, d = x.shape
    q, k, v = attn.qkv(x).view(b, L, 3, 2, d // 2).unbind(2)
    q, k, v = (t.transpose(1, 2) for t in (q, k, v))
    s = q @ k.transpose(-1, -2) / (d // 2) ** 0.5
    s = s.masked_fill(~mask, float("-inf"))
    ref = (s.softmax(-1) @ v).transpose(1, 2).reshape(b, L, d)
    torch.testing.assert_close(got, ref)


def test_heads_must_divide_width():
    with pytest.raises(ValueError, match="divisible"):
        model_config(hidden=10, heads=3)


def test_parameter_count():
    m = _model()
    c = count_parameters(m)
    assert c["embedding"] == 31 * 16
    assert c["total"] == sum(p.numel() for p in m.parameters())


def _brute_force_ranks(m, items, starts, ends, targets, mask_seen):
    ranks = []
    w = m.item_weights
    for s, e, t in zip(starts, ends, targets, strict=True):
        from seqrec.data.batches import SeqBatch

        seq = torch.tensor(items[max(s, e - m.max_len) : e], dtype=torch.long)[None]
        h = m.last_hidden(
            SeqBatch(items=seq, targets=seq, lengths=torch.tensor([1]), users=torch.tensor([0]))
        )[0]
        sc = (w @ h).tolist()
        first = max(s, e - m.max_len) if mask_seen == "window" else s
        seen = set(items[first:e].tolist()) if mask_seen else set()
        better = sum(1 for j in range(1, len(sc)) if j != t and j not in seen and sc[j] > sc[t])
        ranks.append(1 + better)
    return np.array(ranks)


@pytest.mark.parametrize("mask_seen", [True, False, "window"])
def test_evaluator_matches_brute_force(mask_seen):
    """Histories of up to 11 items, a window of 6: "window" masks only what the model reads."""
    m = _model(n_items=40, max_len=6)
    rng = np.random.default_rng(0)
    lens = rng.integers(1, 12, size=23)
    items = rng.integers(1, 41, size=int(lens.sum())).astype(np.int32)
    ends = np.cumsum(lens)
    starts = ends - lens
    targets = rng.integers(1, 41, size=23)
    res = evaluate(
        m,
        items,
        starts,
        ends,
        targets,
        6,
        EvalConfig(batch_users=5, mask_seen=mask_seen, ks=[1, 10]),
    )
    ref = _brute_force_ranks(m, items, starts, ends, targets, mask_seen)
    assert res.ranks.tolist() == ref.tolist()
    assert res.protocol["ranking"] == "full" and res.protocol["mask_seen"] == mask_seen
    if mask_seen == "window":  # items seen before the window compete again with the target
        whole = _brute_force_ranks(m, items, starts, ends, targets, True)
        assert (res.ranks >= whole).all() and (res.ranks > whole).any()


def test_sampled_metrics_are_labelled_and_bounded():
    m = _model(n_items=40, max_len=6)
    items = np.arange(1, 21, dtype=np.int32)
    starts, ends = np.array([0, 10]), np.array([10, 20])
    res = evaluate(
        m,
        items,
        starts,
        ends,
        np.array([30, 31]),
        6,
        EvalConfig(sampled="uniform", n_negatives=5, ks=[1, 5]),
    )
    assert res.protocol["ranking"].startswith("sampled")
    assert (res.ranks >= 1).all() and (res.ranks <= 6).all()


def test_init_schemes_set_the_qkv_and_other_matrix_scales():
    """normal: every matrix N(0, 0.02); normal_xavier_qkv: the same except the fused Q/K/V
    projection, which is xavier-uniform over [3d, d] (torch MultiheadAttention's default)."""
    d = 64
    for scheme in ("normal", "normal_xavier_qkv"):
        torch.manual_seed(0)
        m = SASRec(model_config(hidden=d, layers=2, heads=1, init=scheme), 500, 8)
        for name, p in m.named_parameters():
            if p.dim() < 2:
                continue
            want = 0.02
            if scheme == "normal_xavier_qkv" and name.endswith("qkv.weight"):
                want = (2.0 / (d + 3 * d)) ** 0.5  # xavier-uniform std
            got = p.detach().std().item()
            assert abs(got - want) < 0.15 * want, (scheme, name, got, want)
