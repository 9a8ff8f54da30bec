"""Updating a finished run on new events (`seqrec train --continue-from`, trainer/continued.py,
trainer/grow.py): nothing new changes nothing, old ids keep their rows and moments, new items
are recommended after the update, and every contradiction is one line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch import nn

import seqrec
from badinput.harness import check_cli_error, check_message, run_cli
from conftest import cycle_sequences, tiny_config, write_csv_log, write_movies
from seqrec.data.features import FeatureField, Features, load_item_features
from seqrec.errors import SeqrecError
from seqrec.recipe import build_config
from seqrec.run.artifact import Run, continue_run, train
from seqrec.trainer.context_rows import reference_context_rows
from seqrec.trainer.continued import check_same_model, plan_continuation
from seqrec.trainer.grow import (
    grow_model_state,
    grow_optimizer_state,
    load_optimizer_state,
    neighbours,
    reference_neighbours,
)
from seqrec.trainer.loop import Trainer
from seqrec.trainer.rowwise import RowAdamW
from seqrec.trainer.run import train_run

NEW = [str(130 + i) for i in range(5)]  # items the base run never saw (cycle ids are 100..129)


@pytest.fixture(scope="module")
def base_run(tmp_path_factory) -> Path:
    """A finished SASRec run on the cycle log (read-only for the tests: copy to change it)."""
    root = tmp_path_factory.mktemp("incremental")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SEQREC_CACHE_DIR", str(root / "cache"))
        log = write_csv_log(root / "log.csv", cycle_sequences())
        train(build_config(tiny_config(log, train={"epochs": 4})), root / "base", progress=False)
    return root / "base"


def walk_events(path: Path, users: int = 24, start_user: int = 900, t0: int = 5_000_000) -> Path:
    """New users walking 125 -> ... -> 129 -> 130 -> ... -> 134 (five new items), eight steps
    each from staggered starts, after every event of the base log."""
    chain = [str(i) for i in range(125, 130)] + NEW
    lines = ["user_id,item_id,timestamp"]
    for u in range(users):
        first = u % 3
        for t, item in enumerate(chain[first : first + 8]):
            lines.append(f"{start_user + u},{item},{t0 + 100 * u + t}")
    path.write_text("\n".join(lines) + "\n")
    return path


def weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(run / "best.safetensors")


def test_an_update_with_no_new_data_changes_nothing(base_run, tmp_path):
    same = continue_run(base_run, tmp_path / "same", progress=False)
    old, new = weights(base_run), weights(tmp_path / "same")
    assert old.keys() == new.keys()
    assert all(torch.equal(old[k], new[k]) for k in old)  # bit-identical
    before, after = Run(base_run).results, same.results
    for split in ("valid", "test"):
        assert after[split]["metrics"] == before[split]["metrics"]
    np.testing.assert_array_equal(
        np.load(base_run / "test_ranks.npy"), np.load(tmp_path / "same" / "test_ranks.npy")
    )
    assert after["steps"] == 0 and after["stopped_by"] == "max_steps"
    assert after["continued"]["new_events"] == 0
    np.testing.assert_array_equal(same.item_ids, Run(base_run).item_ids)


def test_old_ids_keep_their_rows_and_moments_before_training_continues(base_run, tmp_path):
    update = plan_continuation(base_run, [walk_events(tmp_path / "ev.csv")], ["train.lr=0.002"])
    store, split = update.load_data()
    trainer = Trainer(update.cfg, store, split, tmp_path / "out", progress=False)
    fresh = trainer.model.item_emb.weight.detach().clone()
    update.start(trainer)
    n_old, n_new = update.source.n_items, store.n_items
    assert (n_old, n_new) == (30, 35)
    np.testing.assert_array_equal(store.item_ids[: n_old + 1], Run(base_run).item_ids)
    assert store.item_ids[n_old + 1 :].tolist() == NEW
    old = weights(base_run)
    state = trainer.model.state_dict()
    rows = state["item_emb.weight"]
    assert torch.equal(rows[: n_old + 1], old["item_emb.weight"])  # exactly the old rows
    assert torch.equal(rows[n_old + 1 :], fresh[n_old + 1 :])  # new: the model's own init
    assert all(torch.equal(state[k], old[k]) for k in old if k != "item_emb.weight")
    # moments: the old rows keep the checkpoint's, the new rows start at zero
    ck = torch.load(base_run / "checkpoint.pt", weights_only=True)["optimizer"]
    table = trainer.model.item_emb.weight
    order = [p for g in trainer.opt.param_groups for p in g["params"]]  # the saved state's keys
    live = trainer.opt.state[table]
    saved = ck["state"][next(i for i, p in enumerate(order) if p is table)]
    for key in ("exp_avg", "exp_avg_sq"):
        assert torch.equal(live[key][: n_old + 1], saved[key])
        assert not live[key][n_old + 1 :].any()
    assert torch.equal(live["step"], saved["step"])
    # this run's hyper-parameters, not the saved run's
    assert all(g["initial_lr"] == 0.002 for g in trainer.opt.param_groups)


def test_with_item_features_new_items_start_from_look_alike_items(tmp_path):
    log = write_csv_log(tmp_path / "log.csv", cycle_sequences())
    movies = write_movies(tmp_path / "movies.csv", list(range(100, 135)), 0)  # new items too
    raw = tiny_config(log, model={"side_fusion": "sum"}, train={"epochs": 2})
    raw["data"]["item_features"] = str(movies)
    train(build_config(raw), tmp_path / "base", progress=False)
    update = plan_continuation(tmp_path / "base", [walk_events(tmp_path / "ev.csv")])
    assert update.lineage.new_items == "features"  # auto: the run has item features
    store, split = update.load_data()
    trainer = Trainer(update.cfg, store, split, tmp_path / "out", progress=False)
    update.start(trainer)
    idx, ok = reference_neighbours(load_item_features(update.cfg.data, store), 30)
    assert ok.any(axis=1).all()  # every new item has look-alikes (a genre in common)
    old = weights(tmp_path / "base")["item_emb.weight"]
    want = torch.stack([old[1 + i[o]].mean(0) for i, o in zip(idx, ok, strict=True)])
    got = trainer.model.item_emb.weight.detach()
    assert torch.equal(got[:31], old)
    assert torch.allclose(got[31:], want, atol=1e-6)


def test_new_items_appear_in_recommendations_after_an_update(base_run, tmp_path):
    events = walk_events(tmp_path / "ev.csv")
    # through the top-level API, which is continue_run
    up = seqrec.update(str(base_run), str(tmp_path / "up"), [events], "train.epochs=8",
                       progress=False)  # fmt: skip
    stale = Run(base_run).recommender().recommend([["129", "130", "131"]], k=5)[0]
    assert stale.unknown_items == ["130", "131"]  # the base run cannot know them
    rec = up.recommender()
    # (leave-one-out holds each walk's last two items out, so 133 and 134 are never trained
    # targets; the transitions into 130..132 are)
    answers = rec.recommend([["128", "129", "130", "131"], ["128", "129", "130"]], k=3)
    assert answers[0].items[0] == "132" and answers[1].items[0] == "131"
    info = up.results["continued"]
    assert info["new_events"] == 24 * 8 and info["events"][0]["new_items"] == 5
    assert info["grown"] == ["item_emb.weight"] and info["new_items"] == "model"


def test_an_update_evaluates_exports_resumes_and_updates_again(base_run, tmp_path):
    up = continue_run(
        base_run, tmp_path / "up", [walk_events(tmp_path / "ev.csv")], ["train.epochs=1"],
        progress=False,
    )  # fmt: skip
    test = up.results["test"]["metrics"]
    assert up.evaluate().metrics == test  # rebuilt: base data + the events file
    pkg = up.export(tmp_path / "pkg")
    assert pkg.lineage is not None and pkg.lineage.events[0].sha256 == up.lineage.events[0].sha256
    assert pkg.evaluate().metrics == test
    # an interrupted update resumes on the same merged data
    (tmp_path / "up" / "results.json").unlink()
    again = train_run(None, tmp_path / "up", resume=True, progress=False)
    assert again["test"]["metrics"] == test and again["continued"]["update_files"] == 1
    # an update of an update: the catalogue grows again, every old id still in place
    more = walk_events(tmp_path / "ev2.csv", users=3, start_user=950, t0=9_000_000)
    more.write_text(more.read_text().replace("134", "777"))
    twice = continue_run(
        tmp_path / "up", tmp_path / "twice", [more], ["train.epochs=1"], progress=False
    )
    np.testing.assert_array_equal(twice.item_ids[:36], up.item_ids)
    assert twice.item_ids[36:].tolist() == ["777"]
    assert [Path(e.path).name for e in twice.lineage.events] == ["ev.csv", "ev2.csv"]
    assert twice.evaluate().metrics == twice.results["test"]["metrics"]


def test_an_updates_config_retrains_on_every_events_file(base_run, tmp_path):
    """config.yaml of an update names its events in data.updates: training that config from
    scratch sees the update's data, and updating that retrain keeps the files as its base."""
    events = walk_events(tmp_path / "ev.csv")
    up = continue_run(base_run, tmp_path / "up", [events], ["train.epochs=1"], progress=False)
    assert up.config.data.updates == [str(events.resolve())]
    cfg = up.config.model_copy(update={"train": up.config.train.model_copy(update={"epochs": 1})})
    again = train(cfg, tmp_path / "retrain", progress=False)
    np.testing.assert_array_equal(again.item_ids, up.item_ids)  # same ids, not only the base's
    assert again.results["test"]["n_users"] == up.results["test"]["n_users"]
    assert again.lineage is None  # a retrain from scratch, not an update
    more = walk_events(tmp_path / "ev2.csv", users=2, start_user=950, t0=9_000_000)
    plan = plan_continuation(tmp_path / "retrain", [more])
    assert [Path(e.path).name for e in plan.lineage.events] == ["ev.csv", "ev2.csv"]
    assert plan.cfg.data.updates == [e.path for e in plan.lineage.events]


def test_train_rows_changed_trains_only_users_with_new_events(base_run, tmp_path):
    up = continue_run(
        base_run, tmp_path / "up", [walk_events(tmp_path / "ev.csv", users=6)],
        ["train.epochs=1"], train_rows="changed", progress=False,
    )  # fmt: skip
    assert up.results["train_data"]["users"] == 6
    assert up.results["continued"]["train_rows"] == "changed"
    # validation and test are every user's, as in the source
    assert up.results["test"]["n_users"] == Run(base_run).results["test"]["n_users"] + 6


def test_repeat_changed_trains_users_with_new_events_k_times_an_epoch(base_run, tmp_path):
    """--repeat-changed 3: every base user's row once and each new user's row three times an
    epoch (steps follow), evaluation untouched; only with train_rows=all."""
    events = [walk_events(tmp_path / "ev.csv", users=6)]
    runs = {
        k: continue_run(
            base_run,
            tmp_path / f"r{k}",
            events,
            ["train.epochs=1"],
            repeat_changed=k,
            progress=False,
        )
        for k in (1, 3)
    }
    once, thrice = (runs[k].results for k in (1, 3))
    assert thrice["train_data"]["users"] == once["train_data"]["users"] + 2 * 6
    assert thrice["continued"]["repeat_changed"] == 3 and once["continued"]["repeat_changed"] == 1
    assert thrice["test"]["n_users"] == once["test"]["n_users"]
    with pytest.raises(SeqrecError, match="needs train_rows=all"):
        plan_continuation(base_run, events, train_rows="changed", repeat_changed=2)
    with pytest.raises(SeqrecError, match="whole number >= 1"):
        plan_continuation(base_run, events, repeat_changed=0)


# ------------------------------------------------------------------------------ growing rows


class Catalogue(nn.Module):
    """BERT4Rec's layout: a table with a trailing mask row, an output bias, a dense layer."""

    def __init__(self, n: int, d: int = 4):
        super().__init__()
        self.item_emb = nn.Embedding(n + 2, d, padding_idx=0)
        self.out_bias = nn.Parameter(torch.randn(n + 1))
        self.proj = nn.Linear(d, d)


@pytest.mark.parametrize("how", ["model", "mean", "features"])
def test_grown_rows_keep_old_ids_move_trailing_rows_and_start_as_asked(how):
    torch.manual_seed(0)
    old, new = Catalogue(5), Catalogue(8)
    near = (
        np.array([[0, 1], [2, 4], [3, 3]]),
        np.array([[True, True], [True, False], [False, False]]),
    )
    state, dims = grow_model_state(old.state_dict(), new, 5, 8, how, near)
    assert dims == {"item_emb.weight": 0, "out_bias": 0}
    emb, ow = state["item_emb.weight"], old.item_emb.weight.detach()
    assert torch.equal(emb[:6], ow[:6]) and torch.equal(emb[9], ow[6])  # the mask row moved
    assert torch.equal(state["proj.weight"], old.proj.weight)
    got = emb[6:9]
    if how == "model":
        assert torch.equal(got, new.item_emb.weight[6:9])
    elif how == "mean":
        assert torch.allclose(got, ow[1:6].mean(0).expand(3, -1))
    else:  # look-alikes' mean; an item with none keeps the model's init
        want = torch.stack([(ow[1] + ow[2]) / 2, ow[3], new.item_emb.weight[8]])
        assert torch.allclose(got, want)
        assert torch.allclose(state["out_bias"][6:8], torch.stack([
            (old.out_bias[1] + old.out_bias[2]) / 2, old.out_bias[3]]).detach())  # fmt: skip
    new.load_state_dict(state)  # strict: every key, every shape


def test_a_different_model_is_refused_by_name():
    with pytest.raises(SeqrecError) as err:
        grow_model_state(Catalogue(5, d=4).state_dict(), Catalogue(8, d=6), 5, 8)
    check_message(str(err.value), ["item_emb.weight", "retrain"])


def _steps(model, opt, rows: list[list[int]]):
    for r in rows:
        opt.zero_grad()
        model.item_emb(torch.tensor(r)).pow(2).sum().add(model.proj.weight.sum()).backward()
        opt.step()


def _optimizer(model, rowwise: bool):
    if not rowwise:
        return torch.optim.AdamW(model.parameters(), lr=0.1)
    model.item_emb.sparse = True
    table = model.item_emb.weight
    rest = [p for p in model.parameters() if p is not table]
    return RowAdamW([{"params": rest}, {"params": [table], "rows": True}], lr=0.1, foreach=False)


def _grown_optimizer(rowwise: bool):
    torch.manual_seed(0)
    old, new = Catalogue(5), Catalogue(8)
    opt_old = _optimizer(old, rowwise)
    _steps(old, opt_old, [[1, 2, 6], [2, 3]])
    state, dims = grow_model_state(old.state_dict(), new, 5, 8)
    new.load_state_dict(state)
    opt_new = _optimizer(new, rowwise)
    grown = grow_optimizer_state(opt_old.state_dict(), opt_new, new, dims, 5)
    return old, opt_old, new, opt_new, grown


@pytest.mark.parametrize("rowwise", [False, True], ids=["adamw", "row-adamw"])
def test_optimizer_state_grows_with_fresh_rows(rowwise):
    old, opt_old, _, _, grown = _grown_optimizer(rowwise)
    slot = next(i for i, p in enumerate(_flat(opt_old)) if p is old.item_emb.weight)
    before, after = opt_old.state[old.item_emb.weight], grown["state"][slot]
    assert set(after) == set(before)
    for key, value in before.items():
        if value.dim() == 0:  # AdamW's step count: one for every row
            assert torch.equal(after[key], value)
            continue
        assert after[key].shape[0] == 10  # 8 items + PAD + the trailing mask row
        assert torch.equal(after[key][:6], value[:6]) and torch.equal(after[key][9], value[6])
        assert not after[key][6:9].any()  # new items: zero moments (and zero row steps)
    other = next(i for i, p in enumerate(_flat(opt_old)) if p is old.proj.weight)
    assert all(
        torch.equal(grown["state"][other][k], v) for k, v in opt_old.state[old.proj.weight].items()
    )


def _flat(opt):
    return [p for g in opt.param_groups for p in g["params"]]


@pytest.mark.parametrize("rowwise", [False, True], ids=["adamw", "row-adamw"])
def test_the_grown_optimizer_trains_on(rowwise):
    _, _, new, opt_new, grown = _grown_optimizer(rowwise)
    load_optimizer_state(opt_new, grown)
    before = new.item_emb.weight.detach().clone()
    _steps(new, opt_new, [[7, 2]])
    assert new.item_emb.weight[7].ne(before[7]).any()


def test_feature_neighbours_match_the_reference():
    rng = np.random.default_rng(0)
    n = 40  # rows 0..40: PAD, 30 old items, 10 new
    fields = {
        "brand": FeatureField("brand", "categorical", rng.integers(0, 4, n + 1), 4),
        "tags": FeatureField("tags", "multi", rng.integers(0, 6, (n + 1, 3)), 6),
        "year": FeatureField("year", "numeric", rng.normal(size=n + 1).astype(np.float32), 1),
        "text": FeatureField("text", "vector", rng.normal(size=(n + 1, 5)).astype(np.float32), 5),
    }
    for chosen in (["brand"], list(fields)):  # one coarse field: many ties
        feats = Features({k: fields[k] for k in chosen}, n + 1, "test", 1.0)
        got, want = neighbours(feats, 30, k=4, chunk=3), reference_neighbours(feats, 30, k=4)
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])


# ------------------------------------------------------------------------------ refusals


def test_an_update_may_not_change_the_model(base_run):
    cfg = Run(base_run).config
    other = cfg.model_copy(update={"model": cfg.model.model_copy(update={"hidden": 32})})
    with pytest.raises(SeqrecError) as err:
        check_same_model(cfg, other)
    check_message(str(err.value), ["model.hidden=32", "16"])


@pytest.mark.parametrize(
    "damage, extra, says",
    [
        (None, ["-o", "model.hidden=32"], ["drop -o model.hidden"]),
        ("checkpoint.pt", [], ["no checkpoint.pt", "optimiser state"]),
        ("results.json", [], ["has not finished", "--resume"]),
        ("package", [], ["no checkpoint.pt", "package"]),
        (None, ["--events", "DUP"], ["repeats events", "item 104"]),
        (None, ["--events", "OLD"], ["older than their user's last event"]),
        ("config.yaml", [], ["fingerprint", "checkpoint"]),
    ],
    ids=[
        "other-model",
        "no-checkpoint",
        "unfinished",
        "a-package",
        "repeated-events",
        "old-events",
        "edited-config",
    ],
)
def test_bad_updates_are_one_line_and_create_nothing(base_run, tmp_path, damage, extra, says):
    source = tmp_path / "source"
    if damage == "package":
        Run(base_run).export(source)
    else:
        shutil.copytree(base_run, source)
        if damage == "config.yaml":  # another model's config beside this run's checkpoint
            text = (source / damage).read_text()
            (source / damage).write_text(text.replace("hidden: 16", "hidden: 32"))
        elif damage:
            (source / damage).unlink()
    dup = tmp_path / "dup.csv"
    dup.write_text("user_id,item_id,timestamp\n500,104,1000009\n")
    old = tmp_path / "old.csv"
    old.write_text("user_id,item_id,timestamp\n500,105,1000001\n")
    args = [a.replace("DUP", str(dup)).replace("OLD", str(old)) for a in extra]
    res = run_cli(["train", "--continue-from", source, "--out", tmp_path / "out", *args])
    check_cli_error(res, says)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "args, says",
    [
        (["--events", "x.csv"], ["--continue-from"]),
        (["--repeat-changed", "2"], ["--continue-from"]),
        (["--continue-from", "SRC"], ["--out"]),
        (["--continue-from", "SRC", "--out", "SRC"], ["new run folder"]),
        (["--continue-from", "SRC", "--out", "o", "-c", "quickstart"], ["drop -c"]),
    ],
    ids=["events-alone", "repeat-alone", "no-out", "out-is-source", "a-preset"],
)
def test_update_flags_are_checked(base_run, tmp_path, args, says):
    source = tmp_path / "source"
    shutil.copytree(base_run, source)
    res = run_cli(["train", *[str(source) if a == "SRC" else a for a in args]])
    check_cli_error(res, says)
    manifest = json.loads((source / "seqrec-run.json").read_text())
    assert "continued" not in manifest  # the source was not touched


def test_the_command_line_updates_a_run(base_run, tmp_path):
    events = walk_events(tmp_path / "ev.csv", users=4)
    out = tmp_path / "up"
    res = run_cli(
        ["train", "--continue-from", base_run, "--events", events, "--out", out,
         "-o", "train.epochs=1", "--train-rows", "changed", "--format", "json"]
    )  # fmt: skip
    assert res.code == 0, res.err
    results = json.loads(res.out)
    assert results["continued"]["train_rows"] == "changed"
    assert results["continued"]["new_events"] == 32
    manifest = json.loads((out / "seqrec-run.json").read_text())
    assert (
        manifest["continued"]["events"][0]["sha256"] == results["continued"]["events"][0]["sha256"]
    )


def test_context_rows_are_the_scaled_mean_state_before_each_new_item(base_run, tmp_path):
    """new_items=context: each new item that is a training target starts at the mean hidden
    state of the positions it follows (the batched pass equals the per-position loop), scaled
    to the old rows' mean norm; one never a target keeps the init; old rows stay exact."""
    update = plan_continuation(base_run, [walk_events(tmp_path / "ev.csv")], new_items="context")
    store, split = update.load_data()
    trainer = Trainer(update.cfg, store, split, tmp_path / "out", progress=False)
    fresh = trainer.model.item_emb.weight.detach().clone()
    base = weights(base_run)["item_emb.weight"]
    # the reference reads the grown model before its new rows change: load it the plain way
    plain = plan_continuation(base_run, [walk_events(tmp_path / "ev2.csv")], new_items="model")
    plain.load_data()
    probe = Trainer(plain.cfg, store, split, tmp_path / "probe", progress=False)
    plain.start(probe)
    want = reference_context_rows(probe.task, probe.model, 30, 35)
    update.start(trainer)
    got = trainer.model.item_emb.weight.detach()
    assert torch.equal(got[:31], base)
    # leave-one-out holds each walk's last two items out: 133 and 134 are never targets
    assert sorted(want) == [31, 32, 33]
    scale = base[1:].double().norm(dim=1).mean()
    for item, mean in want.items():
        row = (mean / mean.norm() * scale).float()
        torch.testing.assert_close(got[item], row, rtol=1e-5, atol=1e-6)
    assert torch.equal(got[34:], fresh[34:])
    assert update.report["context_items"] == 3


def test_context_rows_give_new_items_a_head_start(base_run, tmp_path):
    """One epoch after the update starts, a context-started item is ranked where the walk
    leads better than a model-initialised one (the walk 128 -> 129 -> 130 -> 131 -> 132)."""
    events = walk_events(tmp_path / "ev.csv")
    ranks = {}
    for how in ("model", "context"):
        run = continue_run(base_run, tmp_path / how, [events], ["train.epochs=1"],
                           new_items=how, progress=False)  # fmt: skip
        ranked = run.recommender().recommend([["128", "129", "130"]], k=30)[0].items
        ranks[how] = ranked.index("131")
    assert ranks["context"] < ranks["model"]


def test_context_rows_need_a_next_item_objective(tmp_path):
    log = write_csv_log(tmp_path / "log.csv", cycle_sequences())
    raw = tiny_config(log, model={"name": "bert4rec"}, objective={"name": "cloze"},
                      train={"epochs": 1})  # fmt: skip
    train(build_config(raw), tmp_path / "base", progress=False)
    update = plan_continuation(
        tmp_path / "base", [walk_events(tmp_path / "ev.csv")], new_items="context"
    )
    store, split = update.load_data()
    trainer = Trainer(update.cfg, store, split, tmp_path / "out", progress=False)
    with pytest.raises(SeqrecError, match="new_items=context reads the hidden state"):
        update.start(trainer)
