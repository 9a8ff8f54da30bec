"""ABXI (models/abxi.py): the vectorised per-slot domain streams against plain loops, causality,
the domain labels and task domains it reads, and a tiny two-domain run with per-domain
metrics."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import N_ITEMS, tiny_config, write_domain_log
from seqrec.data.batches import SeqBatch
from seqrec.errors import SeqrecError
from seqrec.models import model_config
from seqrec.models.abxi import ABXI, domain_subsequences
from seqrec.recipe import build_config

ROWS = [[3, 4, 5, 16, 17, 18, 19, 7], [20, 21, 2, 3, 0, 0, 0, 0], [25, 0, 0, 0, 0, 0, 0, 0]]


def _model(**options) -> ABXI:
    cfg = model_config("abxi", hidden=16, heads=2, dropout=0.0, ffn_inner=24, **options)
    model = ABXI(cfg, N_ITEMS, 12).eval()
    with torch.no_grad():  # adapters start at zero: give them weight so every branch shows
        for name, p in model.named_parameters():
            if name.endswith(".up"):
                p.normal_(std=0.3)
    return model


def _batch(rows, domains=None, target_domains=None) -> SeqBatch:
    items = torch.as_tensor(rows)
    if domains is None:
        domains = torch.where(items != 0, (items > 15).long() + 1, torch.zeros_like(items))
    lengths = (items != 0).sum(1)
    return SeqBatch(
        items, items, lengths, torch.arange(len(rows)), domains=domains,
        target_domains=target_domains,
    )  # fmt: skip


def test_domain_subsequences_match_a_plain_loop():
    gen = torch.Generator().manual_seed(0)
    items = torch.randint(1, N_ITEMS + 1, (6, 9), generator=gen)
    items[torch.arange(6), torch.randint(0, 9, (6,), generator=gen)] = 0
    items = torch.where(torch.cumprod(items != 0, 1).bool(), items, 0)  # right padding
    domains = torch.where(items != 0, torch.randint(1, 4, items.shape, generator=gen), 0)
    for code in (1, 2, 3):
        compact, last = domain_subsequences(items, domains, code)
        for b in range(items.shape[0]):
            own = [int(i) for i, d in zip(items[b], domains[b], strict=True) if i and d == code]
            assert compact[b].tolist() == own + [0] * (items.shape[1] - len(own))
            for t in range(items.shape[1]):
                seen = sum(1 for j in range(t + 1) if items[b, j] and domains[b, j] == code)
                assert int(last[b, t]) == seen - 1


def _reference(model: ABXI, items: torch.Tensor, domains: torch.Tensor, task) -> torch.Tensor:
    """Each slot separately: encode the merged prefix and the explicit list of each domain's
    events up to that slot, then the task domain's two branches (model dropout off)."""
    out = torch.zeros(*items.shape, model.cfg.hidden)
    for b in range(items.shape[0]):
        for t in range(int((items[b] != 0).sum())):
            prefix = items[b, : t + 1]
            h_x = model._stream(model._encode(prefix[None]), 0)[0, -1]
            k = int(task[b, t])
            own = [int(i) for i, d in zip(prefix, domains[b, : t + 1], strict=True) if d == k]
            h_k = torch.zeros_like(h_x)
            if own:
                h_k = model._stream(model._encode(torch.tensor([own])), k)[0, -1]
            inv = h_x + model.proj_invariant(h_x) + model.ilora[k - 1](h_x)
            out[b, t] = model.norm_invariant[k - 1](inv) + model.norm_domain[k - 1](
                h_k + model.proj_domain[k - 1](h_k)
            )
    return out


def test_forward_matches_the_per_slot_reference():
    torch.manual_seed(0)
    model = _model()
    batch = _batch(ROWS)
    flipped = torch.where(batch.items != 0, 3 - batch.domains, 0)  # predict the other domain
    with torch.no_grad():
        for task in (batch.domains, flipped):
            got = model(_batch(ROWS, target_domains=task))
            want = _reference(model, batch.items, batch.domains, task)
            torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def test_causal_and_reads_the_domains_and_task():
    torch.manual_seed(1)
    model = _model()
    batch = _batch(ROWS)
    real = batch.items != 0
    t = 3
    later = [r[: t + 1] + [(i + 13) % N_ITEMS + 1 if i else 0 for i in r[t + 1 :]] for r in ROWS]
    doms = batch.domains.clone()
    doms[:, t + 1 :] = torch.where(real[:, t + 1 :], 3 - doms[:, t + 1 :], 0)
    swapped = torch.where(real, 3 - batch.domains, 0)
    with torch.no_grad():
        base = model(batch)
        after = model(_batch(later, doms))
        relabelled = model(_batch(ROWS, swapped, target_domains=batch.domains))
        other_task = model(_batch(ROWS, target_domains=swapped))
    torch.testing.assert_close(after[:, : t + 1], base[:, : t + 1], rtol=1e-5, atol=1e-6)
    assert not torch.allclose(after[0, t + 1 :], base[0, t + 1 :])  # the check has teeth
    assert (relabelled - base)[real].abs().amax(-1).min() > 1e-4  # every real state moved
    assert (other_task - base)[real].abs().amax(-1).min() > 1e-4
    assert torch.equal(base[~real], torch.zeros_like(base[~real]))


def test_last_hidden_is_the_last_state_for_the_rows_task():
    torch.manual_seed(2)
    model = _model()
    batch = _batch(ROWS)
    lengths = batch.lengths
    rows = torch.arange(len(ROWS))
    target = torch.tensor([2, 1, 1])  # the domain each row is scored for
    full = batch.domains.clone()
    full[rows, lengths - 1] = target
    with torch.no_grad():
        want = model(_batch(ROWS, target_domains=full))[rows, lengths - 1]
        got = model.last_hidden(_batch(ROWS, target_domains=target))
        bare = model.last_hidden(batch)
        own = model(batch)[rows, lengths - 1]
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(bare, own, rtol=1e-5, atol=1e-6)  # no task: the input's domain
    assert not torch.allclose(got[0], bare[0])


def test_refused_in_one_line():
    model = _model()
    items = torch.as_tensor(ROWS)
    with pytest.raises(SeqrecError, match=r"batch\.domains") as err:
        model(SeqBatch(items, items, (items != 0).sum(1), torch.arange(3)))
    assert "\n" not in str(err.value)
    with pytest.raises(SeqrecError, match=r"set model\.domain_vocab=4"):
        model(_batch(ROWS, torch.where(items != 0, 3, 0)))


def test_learns_on_a_two_domain_log_with_per_domain_metrics(tmp_path):
    from seqrec.trainer.run import train_run

    data = write_domain_log(tmp_path / "log.csv")
    raw = tiny_config(data, model={"name": "abxi", "dropout": 0.0, "ffn_inner": 32})
    raw["data"]["domain_col"] = "domain"
    raw["train"].update(epochs=8, log_every=1)
    raw["eval"]["domain_negatives"] = 3  # of 15 items a domain
    res = train_run(build_config(raw), tmp_path / "run", progress=False)
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in lines if "loss" in r and "event" not in r]
    assert sum(losses[-4:]) < 0.8 * sum(losses[:4]), losses
    metrics = res["test"]["metrics"]
    for domain in ("a", "b"):
        for protocol in ("own", "joint", "sampled"):
            assert 0 <= metrics[f"domain:{domain}/{protocol}/NDCG@10"] <= 1
    assert metrics["domain:a/own/NDCG@10"] + metrics["domain:b/own/NDCG@10"] > 0.5
