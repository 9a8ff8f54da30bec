"""`seqrec tune` on tiny generated data: trials run, a rerun resumes the study, selection reads
validation only, and a bad space (or no optuna) is one clear line."""

from __future__ import annotations

import json
import sys

import pytest
import yaml

from conftest import tiny_config
from seqrec import cli
from seqrec.errors import SeqrecError
from seqrec.recipe import load_config
from seqrec.tuning import study as study_module
from seqrec.tuning.space import builtin_space

pytest.importorskip("optuna", reason="seqrec tune needs optuna: pip install 'seqrec[tune]'")
pytestmark = pytest.mark.usefixtures("in_tmp_dir")
SPACE = {"train.lr": {"low": 1e-3, "high": 3e-2, "log": True}, "model.dropout": {"low": 0.0,
         "high": 0.3}}  # fmt: skip


@pytest.fixture
def preset(tmp_path, cycle_log):
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_config(cycle_log, train={"epochs": 2})))
    return path


@pytest.fixture
def space(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(SPACE))
    return path


def test_trials_run_and_a_rerun_adds_trials_instead_of_restarting(preset, space, tmp_path):
    folder = tmp_path / "study"
    first = study_module.tune(str(preset), 3, space=space, folder=folder, seed=3)
    trials = json.loads((folder / "trials.json").read_text())["trials"]
    assert [t["state"] for t in trials] == ["complete"] * 3 and first.added == 3
    assert all(set(t["params"]) == set(SPACE) for t in trials)
    assert all(1e-3 <= t["params"]["train.lr"] <= 3e-2 for t in trials)
    best = max(trials, key=lambda t: t["valid"]["NDCG@10"])
    assert first.best["number"] == best["number"]
    text = (folder / "best.yaml").read_text()
    assert text.startswith("# seqrec tune: the best of 3 trials")
    assert "train.lr log [0.001, 0.03]" in text and "model.dropout float [0, 0.3]" in text
    cfg = load_config(str(folder / "best.yaml"))
    assert cfg.train.lr == pytest.approx(best["params"]["train.lr"])
    assert cfg.model.dropout == pytest.approx(best["params"]["model.dropout"])
    again = study_module.tune(str(preset), 5, space=space, folder=folder, seed=3)
    more = json.loads((folder / "trials.json").read_text())["trials"]
    assert again.added == 2 and len(more) == 5
    assert more[:3] == trials  # kept, not rerun
    assert len({t["params"]["train.lr"] for t in more}) == 5  # the resumed sampler moved on
    budget = json.loads((folder / "tune.json").read_text())["budget"]
    assert budget["trials"] == 5 and budget["complete"] == 5
    assert study_module.tune(str(preset), 5, space=space, folder=folder, seed=3).added == 0
    with pytest.raises(SeqrecError, match="another setup"):
        study_module.tune(str(preset), 6, space=space, folder=folder, seed=4)


class ReadTrap:
    """A results dict whose test split fails the test when read."""

    def __getitem__(self, key):
        raise AssertionError(f"the study read the test split ({key}) to score a trial")

    get = __getitem__


def test_selection_uses_validation_and_never_reads_test(preset, space, tmp_path, monkeypatch):
    """Each fake trial's validation score grows with lr and its test score falls: the trial
    chosen must be the best on validation, which is the worst on test."""

    def fake_train_run(cfg, run_dir, **_):
        run_dir.mkdir(parents=True)
        valid = {"NDCG@10": cfg.train.lr, "HR@10": 0.5}
        test = {"NDCG@10": 1.0 - cfg.train.lr, "HR@10": 0.5}
        (run_dir / "results.json").write_text(
            json.dumps({"valid": {"metrics": valid}, "test": {"metrics": test}})
        )
        return {"valid": {"metrics": valid}, "test": ReadTrap()}

    monkeypatch.setattr(study_module, "train_run", fake_train_run)
    res = study_module.tune(str(preset), 6, space=space, folder=tmp_path / "s")
    lrs = [t["params"]["train.lr"] for t in res.trials]
    assert res.best["params"]["train.lr"] == max(lrs)
    assert res.test["NDCG@10"] == pytest.approx(1.0 - max(lrs))  # the worst test of all
    assert all("test" not in t for t in res.trials)
    assert "test" not in (tmp_path / "s" / "trials.json").read_text()


def test_built_in_space_fits_the_model_family(cycle_log):
    sasrec = builtin_space(tiny_config(cycle_log))
    assert [p.key for p in sasrec] == [
        "train.lr", "train.weight_decay", "model.dropout", "model.hidden", "model.layers"
    ]  # fmt: skip
    lr = sasrec[0]
    assert (lr.low, lr.high, lr.log) == (1e-4, 3e-3, True)
    three_heads = builtin_space(tiny_config(cycle_log, model={"hidden": 24, "heads": 3}))
    assert "model.hidden" not in [p.key for p in three_heads]  # no size of the list divides
    gru = builtin_space(tiny_config(cycle_log, model={"name": "gru4rec"}))
    assert {p.key for p in gru} >= {"train.lr", "model.hidden"}


def cli_error(monkeypatch, capsys, *args) -> str:
    monkeypatch.setattr(sys, "argv", ["seqrec", *map(str, args)])
    with pytest.raises(SystemExit) as info:
        cli.main()
    err = capsys.readouterr().err.strip().splitlines()
    assert info.value.code == 2 and len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("train.lrr: {low: 0.001, high: 0.01}", "train.lrr=0.001 is refused: unknown config key"),
        ("train.lr: {low: 0.01, high: 0.001}", "needs numbers low < high"),
        ("train.lr: {low: 0.0, high: 0.1, log: true}", "a log range needs low > 0"),
        ("model.hidden: {choices: []}", "choices must be a non-empty list"),
        ("model.hidden: {choices: [16, 17]}", "model.hidden=17 is refused"),
        ("train.lr: {low: 0.001, hihg: 0.1}", "unknown field(s) hihg"),
        ("train.lr: 0.01", "must map to {low, high[, log]}"),
        ("- train.lr", "must be a mapping of config keys"),
        ("train.lr: {low: [", "is not valid YAML"),
    ],
)
def test_bad_space_file_is_one_line(text, fragment, preset, tmp_path, monkeypatch, capsys):
    space = tmp_path / "bad.yaml"
    space.write_text(text + "\n")
    line = cli_error(monkeypatch, capsys, "tune", "-c", preset, "--trials", 1, "--space", space,
                     "--dir", tmp_path / "s")  # fmt: skip
    assert fragment in line
    assert not (tmp_path / "s").exists()  # refused before any work


def test_missing_optuna_and_foreign_folders_are_one_line(preset, tmp_path, monkeypatch, capsys):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("x")
    line = cli_error(monkeypatch, capsys, "tune", "-c", preset, "--trials", 1, "--dir",
                     tmp_path / "mine")  # fmt: skip
    assert "not part of a seqrec tuning study (notes.txt)" in line
    monkeypatch.setitem(sys.modules, "optuna", None)  # what an absent package looks like
    line = cli_error(monkeypatch, capsys, "tune", "-c", preset, "--trials", 1)
    assert line == "error: seqrec tune needs optuna: pip install 'seqrec[tune]'"
