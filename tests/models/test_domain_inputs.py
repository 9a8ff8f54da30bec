"""Domain embeddings (models/domain_inputs.py) for SASRec, HSTU and Llama: off changes nothing,
on reads the domain of each real input slot and nothing else, stays causal, trains on
multi-domain data with per-domain metrics, and is refused in one line where it cannot run."""

from __future__ import annotations

import pytest
import torch

from conftest import (
    ITEM_OFFSET,
    N_ITEMS,
    cycle_sequences,
    tiny_config,
    write_csv_log,
    write_domain_log,
)
from seqrec.data.batches import SeqBatch
from seqrec.errors import SeqrecError
from seqrec.models import model_config
from seqrec.models.hstu import HSTU
from seqrec.models.llama import Llama
from seqrec.models.sasrec import SASRec
from seqrec.recipe import build_config
from seqrec.run import Run

FAMILIES = [("sasrec", SASRec), ("hstu", HSTU), ("llama", Llama)]
SMALL = {"hidden": 16, "layers": 2, "heads": 2, "dropout": 0.1}


def _domain_of(item: int) -> int:
    """Internal cycle items 1..15 are domain 1 ("a"), 16..N_ITEMS domain 2 ("b")."""
    return 1 if item <= 15 else 2


def _model(name, cls, **options):
    return cls(model_config(name, **SMALL, **options), N_ITEMS, 12).eval()


def _batch(rows, domains=None) -> SeqBatch:
    items = torch.as_tensor(rows)
    if domains is None:
        domains = torch.where(items != 0, (items > 15).long() + 1, torch.zeros_like(items))
    return SeqBatch(items, items, (items != 0).sum(1), torch.arange(len(rows)), domains=domains)


ROWS = [[3, 4, 5, 16, 17, 18, 19, 7], [20, 21, 2, 3, 0, 0, 0, 0]]


@pytest.mark.parametrize(("name", "cls"), FAMILIES)
def test_off_has_no_parameters_and_ignores_domains(name, cls):
    torch.manual_seed(0)
    off = _model(name, cls)
    torch.manual_seed(0)
    explicit = _model(name, cls, domain_embedding=False, domain_vocab=5)
    assert not off.cfg.needs().domains
    assert not any("domain" in k for k in off.state_dict())
    for k, v in off.state_dict().items():  # off, domain_vocab draws nothing (golden: history)
        assert torch.equal(v, explicit.state_dict()[k]), k
    batch = _batch(ROWS)
    with torch.no_grad():
        bare = SeqBatch(batch.items, batch.targets, batch.lengths, batch.users)
        torch.testing.assert_close(off(batch), off(bare), rtol=0, atol=0)
        torch.testing.assert_close(off.last_hidden(batch), off.last_hidden(bare), rtol=0, atol=0)


@pytest.mark.parametrize(("name", "cls"), FAMILIES)
def test_on_equals_the_plain_model_with_domain_vectors_folded_into_the_items(name, cls):
    """Explicit reference: each item has one domain, so e(i) + d(domain(i)) in the item table
    of the model without the group must give the same states (the same other weights)."""
    torch.manual_seed(1)
    on = _model(name, cls, domain_embedding=True)
    off = _model(name, cls)
    table = on.domain.emb.weight.detach()
    assert on.cfg.needs().domains and torch.equal(table[0], torch.zeros_like(table[0]))
    state = {k: v.clone() for k, v in on.state_dict().items() if not k.startswith("domain.")}
    codes = torch.tensor([0] + [_domain_of(i) for i in range(1, N_ITEMS + 1)])
    state["item_emb.weight"] += table[codes]
    off.load_state_dict(state)
    batch = _batch(ROWS)
    with torch.no_grad():
        want = off(SeqBatch(batch.items, batch.targets, batch.lengths, batch.users))
        torch.testing.assert_close(on(batch), want, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(on.last_hidden(batch), want[[0, 1], [7, 3]])


@pytest.mark.parametrize(("name", "cls"), FAMILIES)
def test_states_read_real_slots_domains_only(name, cls):
    torch.manual_seed(2)
    model = _model(name, cls, domain_embedding=True)
    batch = _batch(ROWS)
    real = batch.items != 0
    swapped = torch.where(real, 3 - batch.domains, batch.domains)  # 1 <-> 2: shuffled labels
    junk = torch.where(real, batch.domains, torch.full_like(batch.domains, 2))  # PAD slots only
    with torch.no_grad():
        base = model(batch)
        moved = model(_batch(ROWS, swapped))
        same = model(_batch(ROWS, junk))
    assert (moved - base)[real].abs().amax(-1).min() > 1e-4  # every real state moved
    torch.testing.assert_close(same, base, rtol=0, atol=0)


@pytest.mark.parametrize(("name", "cls"), FAMILIES)
def test_on_stays_causal(name, cls):
    """Changing the items and domains of every slot after t leaves the states up to t."""
    torch.manual_seed(3)
    model = _model(name, cls, domain_embedding=True)
    t = 3
    later = [r[: t + 1] + [(i + 13) % N_ITEMS + 1 if i else 0 for i in r[t + 1 :]] for r in ROWS]
    batch = _batch(ROWS)
    doms, tail = batch.domains.clone(), batch.items[:, t + 1 :] != 0
    doms[:, t + 1 :] = torch.where(tail, 3 - doms[:, t + 1 :], 0)  # every later label moves
    changed = _batch(later, doms)
    assert not torch.equal(batch.domains[:, t + 1 :], changed.domains[:, t + 1 :])
    with torch.no_grad():
        before, after = model(batch), model(changed)
    torch.testing.assert_close(after[:, : t + 1], before[:, : t + 1], rtol=1e-5, atol=1e-6)
    assert not torch.allclose(after[0, t + 1 :], before[0, t + 1 :])  # the check has teeth


def _raw(data, name, **model):
    raw = tiny_config(data, model={"name": name, "domain_embedding": True, **model})
    raw["data"]["domain_col"] = "domain"
    raw["train"].update(epochs=2, max_steps=6)
    raw["eval"]["domain_negatives"] = 3  # of 15 items a domain
    return raw


@pytest.mark.parametrize("name", ["sasrec", "hstu", "llama"])
def test_trains_on_multi_domain_data_with_per_domain_metrics(tmp_path, name):
    from seqrec.trainer.run import train_run

    data = write_domain_log(tmp_path / "log.csv")
    res = train_run(build_config(_raw(data, name)), tmp_path / "run", progress=False)
    metrics = res["test"]["metrics"]
    for domain in ("a", "b"):
        for protocol in ("own", "joint", "sampled"):
            assert 0 <= metrics[f"domain:{domain}/{protocol}/NDCG@10"] <= 1
    run = Run(tmp_path / "run")
    assert run.load_model().domain.emb.weight.shape == (3, 16)
    again = run.evaluate("test")  # a reloaded run passes the domain codes too
    assert again.metrics["NDCG@10"] == pytest.approx(metrics["NDCG@10"], abs=1e-6)
    with pytest.raises(SeqrecError, match=r"batch\.domains") as err:  # ids carry no domains
        run.recommender().recommend_ids([str(ITEM_OFFSET + 3), str(ITEM_OFFSET + 4)], k=3)
    assert "\n" not in str(err.value)


def test_refused_in_one_line_where_it_cannot_run(tmp_path):
    from seqrec.trainer.run import train_run

    plain = write_csv_log(tmp_path / "plain.csv", cycle_sequences())
    raw = tiny_config(plain, model={"domain_embedding": True})
    with pytest.raises(SeqrecError, match="reads each event's domain") as err:
        train_run(build_config(raw), tmp_path / "r1", progress=False)
    assert "\n" not in str(err.value)
    data = write_domain_log(tmp_path / "log.csv")
    with pytest.raises(SeqrecError, match=r"set model\.domain_vocab=3") as err:
        train_run(build_config(_raw(data, "hstu", domain_vocab=2)), tmp_path / "r2", progress=False)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "r2" / "checkpoint.pt").exists()
