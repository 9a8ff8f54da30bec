"""The conformance suite: what every registered model must do, tested for every one of them.

Each test is parametrized over ``seqrec.models.registry.MODELS``, so a model added to the
registry is tested here with no edit to this file (docs/ADDING_A_MODEL.md). Nothing below names
a model: the small config is built from the model's own config class (``hidden=16``,
``heads=2`` where it has heads, no dropout, its first declared objective), and what a model
needs or promises is read from the class (``needs()``, ``objectives``, ``training_samples``,
``causal``, ``catalogue_keys``), never from its name.

One tiny run per model (a module-scoped fixture) is shared by the learning, save/load, export,
resume and contract tests, so the whole suite trains each model twice: once straight through
and once interrupted and resumed.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file

import seqrec.run
from conftest import (
    ITEM_OFFSET,
    N_ITEMS,
    N_USERS,
    cycle_sequences,
    interrupt_after,
    tiny_config,
    write_csv_log,
    write_domain_log,
    write_movies,
)
from seqrec.data.batches import SeqBatch, history_batch
from seqrec.errors import SeqrecError
from seqrec.models.registry import MODELS, model_names
from seqrec.models.side_info import SideOptions
from seqrec.recipe import RunConfig, build_config
from seqrec.run import Run

NAMES = model_names()
BATCH_SIZE = 20
EPOCHS = 20
STEPS_PER_EPOCH = math.ceil(N_USERS / BATCH_SIZE)  # every generated user trains (>= 6 items)
"""Two steps an epoch, forty in all: the slowest learner (a bidirectional encoder on the cloze
task, whose masks make every step's loss noisy) needs about that many to show it learns. A
model trained on prefixes (``train.samples=prefixes``) has one row per prefix instead."""
MAX_LEN = 12


# --------------------------------------------------------------------------- configs
def small_model_section(name: str) -> dict:
    """A small instance of model ``name``, from its config class alone: width 16 and no dropout
    (fields every model has), heads=2 where the class has heads; every other option keeps its
    default, which docs/ADDING_A_MODEL.md requires to be valid (``layers`` too: a model may
    refuse a depth it does not have)."""
    fields = MODELS[name].config_class.model_fields
    section = {"name": name, "hidden": 16, "dropout": 0.0}
    if "heads" in fields:
        section["heads"] = 2
    return section


def small_config(name: str, root: Path) -> RunConfig:
    """A run config of model ``name`` on generated cycle data under ``root`` (written here).

    Item features are given where the model's items are their features (a side-information
    model with its default, fusion off, reads none); the generated log always carries
    timestamps, so a model that reads them gets them from ``data.time_col``'s default.
    """
    cls = MODELS[name].config_class
    model = cls.model_validate(small_model_section(name))
    log = root / "log.csv"
    data = {"max_len": MAX_LEN}
    if model.needs().domains:  # a model that reads domains gets the two-domain log
        log, data["domain_col"] = root / "domain_log.csv", "domain"
    if not log.is_file():
        write_domain_log(log) if model.needs().domains else write_csv_log(log, cycle_sequences())
    if model.needs().item_features and not issubclass(cls, SideOptions):
        ids = [ITEM_OFFSET + j for j in range(N_ITEMS)]
        data["item_features"] = str(write_movies(root / "meta" / "movies.csv", ids, 0))
    raw = tiny_config(
        log,
        data=data,
        model=small_model_section(name),
        objective={"name": cls.objectives[0]},
        train={
            "epochs": EPOCHS,
            "batch_size": BATCH_SIZE,
            "log_every": 1,
            "samples": cls.training_samples[0],
        },
        eval={"ks": [1, 5, 10]} | ({"domain_negatives": 3} if model.needs().domains else {}),
    )
    raw["model"] = small_model_section(name)  # the family's own small shape, nothing else
    cfg = build_config(raw)
    if model.needs().timestamps:  # the generated log has a time column: check it is read
        assert cfg.data.time_col in log.read_text().splitlines()[0].split(",")
    return cfg


@dataclass
class Trained:
    """One finished tiny run of one model: its name, config and run folder."""

    name: str
    cfg: RunConfig
    out: Path


@pytest.fixture(scope="module", params=NAMES)
def trained(request, tmp_path_factory) -> Trained:
    """Train each model once; tests that write (export, resume) write beside it, not into it."""
    name = request.param
    root = tmp_path_factory.mktemp(f"conformance-{name}")
    cfg = small_config(name, root)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SEQREC_CACHE_DIR", str(root / "cache"))
        seqrec.run.train(cfg, root / "run", progress=False)
    return Trained(name, cfg, root / "run")


def histories(cfg: RunConfig, rows: list[list[int]]) -> SeqBatch:
    """An inference batch of internal-id histories (right-padded, built as evaluation builds
    its batches), with timestamps where the model declares it reads them."""
    lens = np.array([len(r) for r in rows])
    ends = np.cumsum(lens)
    flat = np.concatenate([np.asarray(r, dtype=np.int64) for r in rows])
    times = None
    if cfg.model.needs().timestamps:
        times = 1_000_000 + 1_000 * np.arange(len(flat), dtype=np.int64)
    users, targets = np.arange(len(rows)), np.zeros(len(rows))
    doms = np.where(flat <= 15, 1, 2) if cfg.model.needs().domains else None  # write_domain_log
    return history_batch(
        flat, times, users, ends - lens, ends, targets, cfg.data.max_len, domains=doms
    )


FIXED_ROWS = [[1, 2, 3, 4, 5, 6, 7, 8], [9, 10, 11], [30, 1], [17]]
"""Histories (internal ids) of several lengths, so padding is exercised too."""


def steps_per_epoch(cfg: RunConfig) -> int:
    """Rows per epoch / batch: users, or every prefix of every training sequence (each
    generated user holds out 2 of its items, so a user of n items gives n - 3 prefixes)."""
    if cfg.train.samples == "sequences":
        return STEPS_PER_EPOCH
    lengths = [len(s) for s in cycle_sequences().values()]
    return math.ceil(sum(n - 3 for n in lengths) / BATCH_SIZE)


def scores(model, batch: SeqBatch) -> torch.Tensor:
    """Every item's score for each history, computed as evaluation and serving compute it."""
    with torch.inference_mode():
        return model.last_hidden(batch) @ model.item_weights.T


# --------------------------------------------------------------------------- 1. learns
def test_a_few_steps_lower_the_loss(trained):
    """A model that trains at all lowers its objective on data this regular (each user walks
        one cycle) within a few epochs: the mean loss of the last four steps falls at least 10% below
    that of the first four (means, because each step's batch and masks differ)."""
    lines = [json.loads(x) for x in (trained.out / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in lines if "loss" in r and "event" not in r]
    assert len(losses) == EPOCHS * steps_per_epoch(trained.cfg)
    assert all(math.isfinite(x) for x in losses)
    first, last = np.mean(losses[:4]), np.mean(losses[-4:])
    assert last < 0.9 * first, losses


# --------------------------------------------------------------------------- 2. save -> load
def test_saved_weights_load_and_score_identically(trained):
    """What evaluation, serving and export load (`Run.load_model`) is exactly what the trainer
    saved and tested: every saved tensor arrives unchanged, two loads score alike bit for bit,
    and re-ranking the test split reproduces the run's own test ranks exactly."""
    run = Run(trained.out)
    assert run.config == trained.cfg  # config.yaml re-validates to what was trained
    model, again = run.load_model(), Run(trained.out).load_model()
    assert not model.training
    saved = load_file(run.weights_path)
    state = model.state_dict()
    for key, tensor in saved.items():
        assert torch.equal(state[key], tensor), key
    batch = histories(trained.cfg, FIXED_ROWS)
    assert torch.equal(scores(model, batch), scores(again, batch))
    ranks = run.evaluate("test").ranks
    assert np.array_equal(ranks, np.load(trained.out / "test_ranks.npy"))


# --------------------------------------------------------------------------- 3. export
def test_exported_package_recommends_identically(trained, tmp_path):
    """A package is an exported run read by the same loader: it loads for every model (issue
    21: SRT's once did not) and recommends what the run folder recommends."""
    if trained.cfg.model.needs().domains:
        pytest.skip("serving histories carry no domain codes (models/domain_inputs.py)")
    package = Run(trained.out).export(tmp_path / "pkg")
    assert package.kind == "package"
    from_pkg, from_run = seqrec.run.load(package.path), seqrec.run.load(trained.out)
    assert np.array_equal(from_pkg.item_ids, from_run.item_ids)
    # the same histories, in original ids (internal id i is the catalogue's i-th item)
    original = [[str(x) for x in from_run.item_ids[row]] for row in FIXED_ROWS]
    for a, b in zip(from_pkg.encode(original), from_run.encode(original), strict=True):
        assert np.array_equal(a, b)
    got, want = from_pkg.recommend(original, k=10), from_run.recommend(original, k=10)
    for a, b in zip(got, want, strict=True):
        assert a.items == b.items and len(a.items) == 10 and not a.unknown_items
        np.testing.assert_allclose(a.scores, b.scores, rtol=1e-5)


# --------------------------------------------------------------------------- 4. resume
def test_interrupted_run_resumes_to_identical_weights(trained, tmp_path, monkeypatch):
    """Ctrl-C mid-epoch, halfway through training, then resume: the weights the run keeps are the
    uninterrupted run's bit for bit, whatever the model draws at random (masks, augmentations,
    negatives) or keeps as state."""
    out = tmp_path / "cut"
    stop_at = steps_per_epoch(trained.cfg) * (EPOCHS // 2) + 1  # inside an epoch
    with monkeypatch.context() as mp:
        interrupt_after(mp, stop_at)
        with pytest.raises(SeqrecError, match="--resume"):  # TrainingInterrupted
            seqrec.run.train(trained.cfg, out, progress=False)
    assert not (out / "results.json").exists()
    torch.manual_seed(1234)  # resuming must not depend on the caller's RNG state
    resumed = seqrec.run.train(None, out, resume=True, progress=False)
    straight, again = load_file(trained.out / "best.safetensors"), load_file(resumed.weights_path)
    assert straight.keys() == again.keys()
    for key in straight:
        assert torch.equal(straight[key], again[key]), key
    assert np.array_equal(np.load(out / "test_ranks.npy"), np.load(trained.out / "test_ranks.npy"))


# --------------------------------------------------------------------------- 5. causality
def test_causal_models_never_see_the_future(trained):
    """A causal model's state at slot t reads slots <= t only: changing every later item
    leaves the states up to t unchanged. For a bidirectional model the same perturbation must
    show (so the check has teeth)."""
    model = Run(trained.out).load_model()
    t = 3
    rows = [[1, 2, 3, 4, 5, 6, 7, 8], [11, 12, 13, 14, 15, 16, 17, 18]]
    changed = [r[: t + 1] + [(i + 13) % N_ITEMS + 1 for i in r[t + 1 :]] for r in rows]
    assert all(a[t + 1 :] != b[t + 1 :] for a, b in zip(rows, changed, strict=True))
    with torch.inference_mode():
        before = model(histories(trained.cfg, rows))[:, : t + 1]
        after = model(histories(trained.cfg, changed))[:, : t + 1]
    if type(model).causal:
        torch.testing.assert_close(after, before, rtol=1e-5, atol=1e-6)
    else:
        assert not torch.allclose(after, before)


# --------------------------------------------------------------------------- 6. config
@pytest.mark.parametrize("name", NAMES)
def test_config_round_trips(name, tmp_path):
    """A run's config is saved as JSON-able YAML (config.yaml) and re-validated on resume,
    evaluation and export: both trips must give the same config and fingerprint."""
    cfg = small_config(name, tmp_path)
    dumped = cfg.model_dump(mode="json")
    for raw in (dumped, yaml.safe_load(yaml.safe_dump(dumped, sort_keys=False))):
        back = build_config(raw)
        assert back == cfg
        assert type(back.model) is type(cfg.model)
        assert back.fingerprint() == cfg.fingerprint()
        assert back.model_dump(mode="json") == dumped


# --------------------------------------------------------------------------- 7. contract
def test_model_contract_shapes(trained):
    """The contract everything outside models/ relies on: one item-table row per item plus
    PAD, user states as wide as that table (evaluation and serving multiply them), one state
    per slot; a causal model's states are table-wide (the next-item objectives score each
    slot) and its user state is the state at each row's last real slot (what is ranked is what
    was trained); catalogue-bound state names real state entries; the FLOP count is positive
    (the scaling tools divide by it). A bidirectional model projects its states in its own
    objective, so only the user state's width is asked of it."""
    cls = MODELS[trained.name]
    model = Run(trained.out).load_model()
    n_items = Run(trained.out).n_items
    batch = histories(trained.cfg, FIXED_ROWS)
    with torch.inference_mode():
        table = model.item_weights
        states = model(batch)
        user = model.last_hidden(batch)
    assert table.shape[0] == n_items + 1
    assert user.shape == (len(FIXED_ROWS), table.shape[1])
    assert states.shape[:2] == batch.items.shape
    if cls.causal:  # the next-item objectives score every slot's state against the table
        assert states.shape[2] == table.shape[1]
        last = states[torch.arange(len(FIXED_ROWS)), batch.lengths - 1]
        torch.testing.assert_close(user, last, rtol=1e-5, atol=1e-6)
    assert set(model.catalogue_keys) <= set(model.state_dict())
    flops = cls.flops_per_interaction(trained.cfg.model, n_items, MAX_LEN / 2)
    assert flops["forward"] > 0 and flops["train"] > 0
