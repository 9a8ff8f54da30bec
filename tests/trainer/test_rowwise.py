"""Sparse item-table updates (train.item_updates=sparse): row-wise AdamW and sparse gradients.

The checks are against independent references: torch's own AdamW where every row is touched
(where the two must agree), a plain per-row loop where only some are (lazy Adam), and the
dense gradients of the unchanged losses for the sparse ones.
"""

import pytest
import torch
from pydantic import ValidationError

from conftest import tiny_config
from seqrec.data import prepare
from seqrec.errors import SeqrecError
from seqrec.objectives.gbce import gbce_loss
from seqrec.objectives.rows import touched_rows
from seqrec.objectives.sampled_softmax import sample_negatives, sampled_softmax_loss
from seqrec.recipe import build_config
from seqrec.trainer.loop import Trainer
from seqrec.trainer.optim import clip_grad_norm
from seqrec.trainer.rowwise import RowAdamW, reference_row_adamw

BETAS, LR, EPS = (0.9, 0.98), 0.01, 1e-8


def sparse_grad(rows: dict[int, torch.Tensor], shape) -> torch.Tensor:
    idx = torch.tensor(sorted(rows))[None]
    values = torch.stack([rows[r] for r in sorted(rows)])
    return torch.sparse_coo_tensor(idx, values, shape, check_invariants=True)


@pytest.mark.parametrize("decay", [0.0, 0.1])
def test_every_row_touched_every_step_is_adamw_exactly(decay):
    torch.manual_seed(0)
    start = torch.randn(6, 4)
    dense = torch.nn.Parameter(start.clone())
    rows = torch.nn.Parameter(start.clone())
    ref = torch.optim.AdamW([dense], lr=LR, betas=BETAS, eps=EPS, weight_decay=decay)
    fast = RowAdamW(
        [{"params": [rows], "rows": True}], lr=LR, betas=BETAS, eps=EPS, weight_decay=decay
    )
    for _ in range(5):
        g = torch.randn(6, 4)
        dense.grad = g.clone()
        rows.grad = sparse_grad({r: g[r] for r in range(6)}, g.shape)
        ref.step()
        fast.step()
    torch.testing.assert_close(rows.data, dense.data, rtol=1e-6, atol=1e-7)


def test_untouched_rows_keep_their_weights_and_moments_lazy_adam():
    torch.manual_seed(1)
    start = torch.randn(5, 3)
    p = torch.nn.Parameter(start.clone())
    opt = RowAdamW([{"params": [p], "rows": True}], lr=LR, betas=BETAS, eps=EPS, weight_decay=0.2)
    plan = [{0: torch.randn(3), 2: torch.randn(3)}, {2: torch.randn(3)}, {1: torch.randn(3)}]
    for step in plan:
        p.grad = sparse_grad(step, p.shape)
        opt.step()
    expected = reference_row_adamw(start.clone(), plan, LR, BETAS, EPS, 0.2)
    torch.testing.assert_close(p.data, expected, rtol=1e-6, atol=1e-7)
    assert torch.equal(p.data[3:], start[3:])  # never touched: exactly as initialised
    assert opt.state[p]["step"].tolist() == [1, 1, 2, 0, 0]


def test_duplicate_rows_in_one_gradient_are_summed_once():
    p = torch.nn.Parameter(torch.zeros(3, 2))
    q = torch.nn.Parameter(torch.zeros(3, 2))
    opt_p = RowAdamW([{"params": [p], "rows": True}], lr=LR, betas=BETAS)
    opt_q = RowAdamW([{"params": [q], "rows": True}], lr=LR, betas=BETAS)
    g = torch.tensor([[1.0, -2.0], [0.5, 0.5]])
    p.grad = torch.sparse_coo_tensor(torch.tensor([[1, 1]]), g, (3, 2), check_invariants=True)
    q.grad = sparse_grad({1: g.sum(0)}, (3, 2))
    opt_p.step()
    opt_q.step()
    assert torch.equal(p.data, q.data)


def test_dense_gradient_on_the_row_group_is_refused_in_one_line():
    p = torch.nn.Parameter(torch.zeros(3, 2))
    opt = RowAdamW([{"params": [p], "rows": True}], lr=LR)
    p.grad = torch.ones(3, 2)
    with pytest.raises(SeqrecError, match=r"dense gradient.*train\.item_updates=dense"):
        opt.step()


def test_clip_takes_sparse_gradients_like_their_dense_form():
    torch.manual_seed(2)
    a, b = torch.nn.Parameter(torch.zeros(4, 3)), torch.nn.Parameter(torch.zeros(2))
    g_rows, g_b = torch.randn(3, 3), torch.randn(2)
    a.grad = torch.sparse_coo_tensor(
        torch.tensor([[0, 2, 0]]), g_rows, (4, 3), check_invariants=True
    )
    b.grad = g_b.clone()
    da, db = torch.nn.Parameter(torch.zeros(4, 3)), torch.nn.Parameter(torch.zeros(2))
    da.grad, db.grad = a.grad.to_dense(), g_b.clone()
    norm = clip_grad_norm([a, b], 0.5)
    ref = torch.nn.utils.clip_grad_norm_([da, db], 0.5)
    torch.testing.assert_close(norm, ref)
    torch.testing.assert_close(a.grad.to_dense(), da.grad)
    torch.testing.assert_close(b.grad, db.grad)


@pytest.mark.parametrize("shared", [False, True])
def test_touched_rows_give_the_dense_loss_and_its_gradient(shared):
    torch.manual_seed(3)
    n_items, dim = 40, 8
    hidden = torch.randn(12, dim)
    targets = torch.randint(1, n_items + 1, (12,))
    neg, _, _ = sample_negatives(targets, n_items, 7, shared=shared)
    assert (neg.stride(0) == 0) == shared
    w_dense = torch.nn.Parameter(torch.randn(n_items + 1, dim))
    w_sparse = torch.nn.Parameter(w_dense.data.clone())
    sampled_softmax_loss(hidden, w_dense, targets, neg).backward()
    sub, (t2, n2) = touched_rows(w_sparse, targets, neg, sparse=True)
    assert sub.shape[0] == len(set(targets.tolist()) | set(neg.reshape(-1).tolist()))
    loss = sampled_softmax_loss(hidden, sub, t2, n2)
    loss.backward()
    torch.testing.assert_close(loss, sampled_softmax_loss(hidden, w_dense, targets, neg))
    assert w_sparse.grad.is_sparse
    torch.testing.assert_close(w_sparse.grad.to_dense(), w_dense.grad)


def test_gbce_on_touched_rows_keeps_the_catalogue_size_in_its_calibration():
    torch.manual_seed(4)
    hidden, weight = torch.randn(6, 5), torch.randn(31, 5)
    targets = torch.randint(1, 31, (6,))
    neg, _, _ = sample_negatives(targets, 30, 4)
    sub, (t2, n2) = touched_rows(weight, targets, neg, sparse=False)
    full = gbce_loss(hidden, weight, targets, neg, 0.75)
    torch.testing.assert_close(gbce_loss(hidden, sub, t2, n2, 0.75, n_items=30), full)
    assert not torch.allclose(gbce_loss(hidden, sub, t2, n2, 0.75), full)  # beta from C != V


def train_weights(cycle_log, tmp_path, updates: str, objective: dict, steps: int = 4):
    raw = tiny_config(
        cycle_log,
        objective=objective,
        train={"item_updates": updates, "weight_decay": 0.1, "grad_clip": 1.0},
    )
    cfg = build_config(raw)
    store, split = prepare(cfg.data)
    trainer = Trainer(cfg, store, split, tmp_path / updates, progress=False)
    torch.manual_seed(7)
    rows = trainer.task.train_rows
    for s in range(steps):
        trainer._step(rows[s * 8 : (s + 1) * 8])
    return {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}, trainer


def test_sparse_training_equals_dense_when_every_row_is_touched(cycle_log, tmp_path):
    # 30 items, 256 shared uniform negatives a step: every row is drawn every step
    objective = {"name": "ssm", "n_negatives": 256, "shared_negatives": True}
    dense, _ = train_weights(cycle_log, tmp_path, "dense", objective)
    sparse, trainer = train_weights(cycle_log, tmp_path, "sparse", objective)
    assert isinstance(trainer.opt, RowAdamW) and trainer.model.item_emb.sparse
    assert dense.keys() == sparse.keys()
    # The attention's key bias has an exactly zero gradient (softmax ignores a shift shared by
    # a query's scores), so Adam turns the two runs' different rounding noise into +-lr steps:
    # compare its query and value parts only.
    width = trainer.model.item_emb.weight.shape[1]
    key = slice(width, 2 * width)
    dense["blocks.0.attn.qkv.bias"][key] = sparse["blocks.0.attn.qkv.bias"][key]
    for k in dense:
        torch.testing.assert_close(sparse[k], dense[k], rtol=1e-5, atol=1e-6, msg=k)


def test_sparse_training_moves_only_the_rows_a_step_reads(cycle_log, tmp_path):
    objective = {"name": "gbce", "n_negatives": 2}
    cfg = build_config(
        tiny_config(cycle_log, objective=objective, train={"item_updates": "sparse"})
    )
    store, split = prepare(cfg.data)
    trainer = Trainer(cfg, store, split, tmp_path / "run", progress=False)
    before = trainer.model.item_emb.weight.detach().clone()
    trainer._step(trainer.task.train_rows[:2])
    moved = (trainer.model.item_emb.weight.detach() != before).any(1)
    touched = trainer.opt.state[trainer.model.item_emb.weight]["step"] > 0
    assert torch.equal(moved, touched) and 0 < int(moved.sum()) < before.shape[0]


@pytest.mark.parametrize(
    ("sections", "match"),
    [
        ({"train": {"item_updates": "sparse"}}, "needs a sampled objective"),
        (
            {"objective": {"name": "gbce", "shared_negatives": True}},
            "applies to objective.name=ssm",
        ),
    ],
)
def test_config_refusals_name_the_fix(cycle_log, sections, match):
    with pytest.raises((ValidationError, SeqrecError), match=match):
        build_config(tiny_config(cycle_log, **sections))


def test_a_model_whose_output_table_is_computed_is_refused(cycle_log, tmp_path):
    raw = tiny_config(
        cycle_log,
        model={"l2_norm_output": True},
        objective={"name": "ssm", "normalize": True},
        train={"item_updates": "sparse"},
    )
    cfg = build_config(raw)
    store, split = prepare(cfg.data)
    with pytest.raises(SeqrecError, match="computed from the whole item table"):
        Trainer(cfg, store, split, tmp_path / "run", progress=False)


def test_state_survives_a_checkpoint_round_trip():
    """A sparse run resumes: the row-wise state loads back (torch's Adam reads a 'step' per
    parameter, and must not cast the per-row counts) and the next step is the same."""
    torch.manual_seed(5)
    start = torch.randn(4, 3)

    def fresh():
        p = torch.nn.Parameter(start.clone())
        return p, RowAdamW([{"params": [p], "rows": True}], lr=LR, betas=BETAS, weight_decay=0.1)

    p, opt = fresh()
    grads = [{0: torch.randn(3), 3: torch.randn(3)}, {3: torch.randn(3)}]
    p.grad = sparse_grad(grads[0], p.shape)
    opt.step()
    saved = torch.load(_round_trip(opt.state_dict()), weights_only=True)
    q, opt_q = fresh()
    q.data.copy_(p.data)
    opt_q.load_state_dict(saved)
    assert opt_q.state[q]["step"].dtype == torch.int64
    for param, o in ((p, opt), (q, opt_q)):
        param.grad = sparse_grad(grads[1], param.shape)
        o.step()
    assert torch.equal(p.data, q.data)


def _round_trip(obj):
    import io

    buf = io.BytesIO()
    torch.save(obj, buf)
    buf.seek(0)
    return buf
