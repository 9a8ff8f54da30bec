"""Bad input gives one clear line: a SeqrecError in the library, `error: ...` + exit 2 in the CLI."""

from __future__ import annotations

import json
import sys

import pytest
import torch
import yaml
from typer.testing import CliRunner

from conftest import N_ITEMS, USER_OFFSET, cycle_sequences, tiny_config, write_csv_log
from seqrec import cli
from seqrec.errors import SeqrecError
from seqrec.recipe import load_config
from seqrec.trainer.checkpoint import load_checkpoint
from seqrec.trainer.run import train_run

pytestmark = pytest.mark.usefixtures("in_tmp_dir")


@pytest.fixture
def cli_error(monkeypatch, capsys):
    """cli_error(*argv) -> the single `error: ...` line `seqrec` printed before exiting with 2."""

    def run(*args) -> str:
        capsys.readouterr()  # drop what set-up code (e.g. a helper training run) printed
        monkeypatch.setattr(sys, "argv", ["seqrec", *map(str, args)])
        with pytest.raises(SystemExit) as info:
            cli.main()
        captured = capsys.readouterr()
        assert info.value.code == 2, captured
        assert "Traceback" not in captured.out + captured.err
        lines = [ln for ln in captured.err.splitlines() if not ln.startswith("epoch ")]
        assert len(lines) == 1, captured.err
        assert lines[0].startswith("error: ")
        return lines[0]

    return run


@pytest.fixture
def config_file(tmp_path, cycle_log):
    """config_file(**sections) -> a tiny YAML config on the generated log."""

    def write(name="tiny.yaml", **sections):
        path = tmp_path / name
        path.write_text(yaml.safe_dump(tiny_config(cycle_log, **sections)))
        return path

    return write


@pytest.fixture
def unfinished(run_copy):
    """The finished run minus results.json: what a crash after the last checkpoint leaves."""
    (run_copy / "results.json").unlink()
    return run_copy


# ----------------------------------------------------------------- configuration


def test_unknown_preset_suggests_the_nearest(cli_error):
    with pytest.raises(
        SeqrecError, match=r"unknown preset 'quickstrat'\. Did you mean 'quickstart'"
    ):
        load_config("quickstrat")
    msg = cli_error("train", "-c", "quickstrat")
    assert "Did you mean 'quickstart'?" in msg and "Nearest of the" in msg
    assert len(msg) < 400  # a few names, not the whole zoo


def test_missing_config_file(cli_error, tmp_path):
    assert "does not exist" in cli_error("train", "-c", tmp_path / "nope.yaml")


def test_unknown_override_key_suggests_the_field(cli_error, config_file):
    with pytest.raises(
        SeqrecError, match=r"unknown config key 'model\.layer'\. Did you mean 'model\.layers'"
    ):
        load_config(None, ["model.layer=3"])
    msg = cli_error("train", "-c", config_file(), "-o", "model.layer=3")
    assert "Did you mean 'model.layers'?" in msg


def test_unknown_key_in_a_yaml_file_suggests_the_field(cli_error, tmp_path):
    path = tmp_path / "typo.yaml"
    path.write_text("model:\n  layer: 3\ntrain:\n  epoch: 2\n")
    msg = cli_error("train", "-c", path)
    assert "unknown config key 'model.layer'. Did you mean 'model.layers'?" in msg
    assert "unknown config key 'train.epoch'. Did you mean 'train.epochs'?" in msg


def test_bad_value_types_and_ranges(cli_error, config_file):
    msg = cli_error("train", "-c", config_file(), "-o", "train.epochs=many")
    assert "train.epochs" in msg and "integer" in msg
    msg = cli_error("train", "-c", config_file(), "-o", "train.lr=-1")
    assert "train.lr" in msg and "greater than 0" in msg
    msg = cli_error("train", "-c", config_file(), "-o", "objective.name=softmax")
    assert "objective.name" in msg and "'ce'" in msg
    assert "has no '='" in cli_error("train", "-c", config_file(), "-o", "model.layers")


def test_width_not_divisible_by_heads(cli_error, config_file):
    with pytest.raises(SeqrecError, match=r"not divisible by model\.heads=3"):
        load_config(None, ["model.hidden=10", "model.heads=3"])
    msg = cli_error("train", "-c", config_file(), "-o", "model.hidden=10", "-o", "model.heads=3")
    assert "model.hidden=10 is not divisible by model.heads=3" in msg


def test_invalid_yaml_is_one_line(cli_error, tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("model:\n  hidden: [16\n")
    msg = cli_error("train", "-c", path)
    assert "is not valid YAML" in msg and "line" in msg


def test_empty_or_scalar_sections_with_overrides(cli_error, tmp_path):
    path = tmp_path / "sections.yaml"
    path.write_text("model:\ntrain: 3\n")
    msg = cli_error("train", "-c", path, "-o", "train.epochs=2")
    assert "config section 'train' must be a mapping" in msg
    path.write_text("data:\n  dataset: /nowhere/log.csv\nmodel:\n")
    # an empty section takes overrides (and the missing data file is the next problem)
    assert "does not exist" in cli_error("train", "-c", path, "-o", "model.layers=1")


def test_missing_cuda_device(cli_error, config_file, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is visible")
    out = tmp_path / "run"
    for _ in range(2):
        msg = cli_error("train", "-c", config_file(), "-o", "train.device=cuda", "--out", out)
        assert "no CUDA device" in msg and "train.device=cpu" in msg


# ----------------------------------------------------------------- data files


def test_missing_data_file(cli_error, config_file, tmp_path, in_tmp_dir):
    missing = tmp_path / "nope.csv"
    for _ in range(2):  # a failed start leaves no "unfinished run" that blocks the next try
        msg = cli_error("train", "-c", config_file(), "-o", f"data.dataset={missing}")
        assert f"data file {missing} does not exist" in msg
        msg = cli_error("train", "-c", config_file(), "-o", f"data.dataset={missing}", "--out", "r")
        assert f"data file {missing} does not exist" in msg
    assert not (in_tmp_dir / "runs").exists() and not (in_tmp_dir / "r").exists()
    assert "does not exist" in cli_error("data", "stats", missing)


def test_empty_data_file(cli_error, tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text("\n\n")
    assert "is empty" in cli_error("data", "stats", empty)


def test_error_text_is_not_read_as_markup(cli_error, tmp_path):
    ragged = tmp_path / "ragged.txt"
    ragged.write_text("1 2\n1 3\n2 4 5 6 7 8\n")
    msg = cli_error("data", "stats", ragged, "-o", "data.format=pairs")
    assert "'user item [timestamp]'" in msg


# ----------------------------------------------------------------- run folders


def test_finished_run_folder_is_refused_unless_overwrite(cli_error, config_file, run_copy):
    cfg = config_file(train={"epochs": 1})
    msg = cli_error("train", "-c", cfg, "--out", run_copy)
    assert "holds a finished run" in msg and "--overwrite" in msg
    assert json.loads((run_copy / "results.json").read_text())["epochs_run"] == 6  # untouched
    args = ["train", "-c", cfg, "--out", run_copy, "--overwrite", "--no-progress"]
    res = CliRunner().invoke(cli.app, [str(a) for a in args])
    assert res.exit_code == 0, res.output
    assert json.loads((run_copy / "results.json").read_text())["epochs_run"] == 1


def test_unfinished_run_folder_needs_resume(cli_error, config_file, unfinished):
    msg = cli_error("train", "-c", config_file(), "--out", unfinished)
    assert "unfinished run" in msg and "--resume" in msg and "--overwrite" in msg


def test_resume_of_a_crashed_finish_completes_the_run(trained_run, unfinished):
    expected = json.loads((trained_run / "results.json").read_text())
    res = train_run(None, unfinished, resume=True, progress=False)
    assert res["test"]["metrics"] == pytest.approx(expected["test"]["metrics"])
    assert (unfinished / "results.json").is_file()


def test_resume_without_checkpoint(cli_error, tmp_path):
    (tmp_path / "empty").mkdir()
    for folder in (tmp_path / "empty", tmp_path / "missing"):
        msg = cli_error("train", "--resume", folder)
        assert "nothing to resume" in msg and "no checkpoint.pt" in msg


def test_resume_of_a_finished_run_is_refused(cli_error, run_copy):
    before = (run_copy / "results.json").read_bytes()
    assert "already finished" in cli_error("train", "--resume", run_copy)
    assert (run_copy / "results.json").read_bytes() == before


def test_resume_refuses_a_new_config(cli_error, config_file, unfinished):
    # only the stopping rules may change (tests/trainer/test_extend.py trains with them)
    msg = cli_error("train", "--resume", unfinished, "-o", "model.hidden=32")
    assert "--resume keeps the run's config except its stopping rules" in msg
    msg = cli_error("train", "--resume", unfinished, "-c", config_file())
    assert "--resume continues a run with the config saved in its folder" in msg


def test_out_path_that_is_a_file(cli_error, config_file, tmp_path):
    file = tmp_path / "taken"
    file.write_text("x")
    assert "is a file" in cli_error("train", "-c", config_file(), "--out", file)


def test_truncated_checkpoint_is_reported_as_corrupted(cli_error, unfinished):
    ck = unfinished / "checkpoint.pt"
    data = ck.read_bytes()
    ck.write_bytes(data[: len(data) // 2])
    with pytest.raises(SeqrecError, match="corrupted"):
        load_checkpoint(ck)
    msg = cli_error("train", "--resume", unfinished)
    assert "corrupted" in msg and str(ck) in msg


def test_checkpoint_from_another_dataset_names_the_mismatch(cli_error, unfinished, tmp_path):
    other_log = write_csv_log(tmp_path / "other.csv", cycle_sequences(n_users=30, n_items=25))
    other = tmp_path / "other"
    train_run(load_config(None, _overrides(other_log, epochs=1)), other, progress=False)
    (unfinished / "checkpoint.pt").write_bytes((other / "checkpoint.pt").read_bytes())
    msg = cli_error("train", "--resume", unfinished)
    assert f"n_items=25, this run has {N_ITEMS}" in msg


def test_checkpoint_from_another_model_names_the_mismatch(cli_error, unfinished, tmp_path):
    cfg = yaml.safe_load((unfinished / "config.yaml").read_text())
    other = tmp_path / "other"
    overrides = [*_overrides(cfg["data"]["dataset"], epochs=1), "model.hidden=8"]
    train_run(load_config(None, overrides), other, progress=False)
    (unfinished / "checkpoint.pt").write_bytes((other / "checkpoint.pt").read_bytes())
    msg = cli_error("train", "--resume", unfinished)
    assert "fingerprint=" in msg and "same model and dataset" in msg


def _overrides(dataset, epochs: int) -> list[str]:
    raw = tiny_config(dataset, train={"epochs": epochs})
    return [f"{s}.{k}={json.dumps(v)}" for s, values in raw.items() for k, v in values.items()]


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_corrupted_best_weights(cli_error, run_copy, tmp_path, damage):
    weights = run_copy / "best.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2] if damage == "truncate" else b"not weights " * 9)
    msg = cli_error("evaluate", run_copy)
    assert "corrupted or truncated" in msg and str(weights) in msg
    msg = cli_error("recommend", run_copy, "--users", USER_OFFSET, "--out", tmp_path / "r.csv")
    assert "corrupted or truncated" in msg
    assert not (tmp_path / "r.csv").exists()


def test_sequences_too_short_to_train_on(cli_error, tmp_path):
    seqs = {str(u): [str(100 + (u + t) % 20) for t in range(3)] for u in range(30)}
    config = tmp_path / "short.yaml"
    config.write_text(yaml.safe_dump(tiny_config(write_csv_log(tmp_path / "short.csv", seqs))))
    msg = cli_error("train", "-c", config, "--out", tmp_path / "run")
    assert "nothing to learn from" in msg


# ----------------------------------------------------------------- evaluate


def test_data_changed_since_training(cli_error, run_copy, tmp_path):
    """Same users and as many items, but other item ids: scores would mean the wrong items."""
    shifted = {u: [str(int(i) + 1000) for i in s] for u, s in cycle_sequences().items()}
    config = yaml.safe_load((run_copy / "config.yaml").read_text())
    config["data"]["dataset"] = str(write_csv_log(tmp_path / "shifted.csv", shifted))
    (run_copy / "config.yaml").write_text(yaml.safe_dump(config))
    msg = cli_error("evaluate", run_copy)
    assert "differ from the 30 the run was trained on" in msg
    msg = cli_error("recommend", run_copy, "--users", USER_OFFSET, "--out", tmp_path / "r.csv")
    assert "items changed since the run" in msg


def test_evaluate_bad_arguments(cli_error, trained_run, tmp_path):
    assert "not a seqrec run folder" in cli_error("evaluate", tmp_path)
    assert "--split must be 'valid' or 'test'" in cli_error(
        "evaluate", trained_run, "--split", "train"
    )
    assert "--sampled must be" in cli_error("evaluate", trained_run, "--sampled", "random")
    taken = tmp_path / "eval.json"
    taken.write_text("{}")
    msg = cli_error("evaluate", trained_run, "--json", taken)
    assert "already exists" in msg and "--overwrite" in msg
    assert taken.read_text() == "{}"


# ----------------------------------------------------------------- recommend


def test_recommend_output_exists(cli_error, trained_run, tmp_path):
    out = tmp_path / "recs.csv"
    out.write_text("keep me\n")
    msg = cli_error("recommend", trained_run, "--users", USER_OFFSET, "--out", out)
    assert "already exists" in msg and "--overwrite" in msg
    assert out.read_text() == "keep me\n"


def test_recommend_unknown_users(cli_error, trained_run, tmp_path):
    out = tmp_path / "recs.csv"
    msg = cli_error("recommend", trained_run, "--users", f"{USER_OFFSET},9999", "--out", out)
    assert "unknown user ids: 9999" in msg
    # ids are echoed literally, never interpreted as terminal markup
    assert "[/x]" in cli_error("recommend", trained_run, "--users", "[/x]", "--out", out)
    assert not out.exists()


def test_recommend_unknown_history_items(cli_error, trained_run, tmp_path):
    hist = tmp_path / "hist.txt"
    hist.write_text("a 105 106\nb 999 abc 107\n")
    out = tmp_path / "recs.csv"
    msg = cli_error("recommend", trained_run, "--histories", hist, "--out", out)
    assert "2 history items are not in the model's catalogue" in msg
    assert "999" in msg and "abc" in msg and "--skip-unknown" in msg
    hist.write_text("a 105 106\nb 999\n")
    msg = cli_error("recommend", trained_run, "--histories", hist, "--out", out, "--skip-unknown")
    assert "empty after id mapping" in msg
    assert not out.exists()


def test_recommend_malformed_or_missing_histories(cli_error, trained_run, tmp_path):
    hist = tmp_path / "hist.txt"
    out = tmp_path / "recs.csv"
    hist.write_text("a 105 106\nlonely\n")
    msg = cli_error("recommend", trained_run, "--histories", hist, "--out", out)
    assert f"{hist}:2" in msg and "'lonely'" in msg
    hist.write_text("\n\n")
    assert "is empty" in cli_error("recommend", trained_run, "--histories", hist, "--out", out)
    msg = cli_error("recommend", trained_run, "--histories", tmp_path / "no.txt", "--out", out)
    assert "does not exist" in msg


def test_recommend_k_outside_the_catalogue(cli_error, trained_run, tmp_path):
    out = tmp_path / "recs.csv"
    for k in (N_ITEMS + 1, 0):
        msg = cli_error("recommend", trained_run, "--users", USER_OFFSET, "--out", out, "-k", k)
        assert f"k={k} must be between 1 and the catalogue size {N_ITEMS}" in msg
    assert not out.exists()


def test_recommend_needs_exactly_one_source_and_a_known_suffix(cli_error, trained_run, tmp_path):
    hist = tmp_path / "hist.txt"
    hist.write_text("a 105\n")
    out = tmp_path / "recs.csv"
    assert "exactly one of --users or --histories" in cli_error(
        "recommend", trained_run, "--out", out
    )
    msg = cli_error(
        "recommend", trained_run, "--users", USER_OFFSET, "--histories", hist, "--out", out
    )
    assert "exactly one" in msg
    msg = cli_error("recommend", trained_run, "--users", USER_OFFSET, "--out", tmp_path / "r.txt")
    assert "must end in .csv or .parquet" in msg
