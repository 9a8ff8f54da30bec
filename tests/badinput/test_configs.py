"""Bad configuration: presets, YAML files, dotted overrides and flags that contradict.

Every config is checked whole before any data is read or folder written, so each case is
refused in one line naming the key (with the nearest valid one, or the model families that
have it) and leaves nothing behind. The same checks answer the Python API, naming API
arguments.
"""

from __future__ import annotations

import pytest

import seqrec
from conftest import cycle_sequences, tiny_config, write_csv_log

from .harness import case


@pytest.fixture
def tiny(user):
    """tiny(name="tiny.yaml", **sections) -> a valid tiny YAML config on a generated log."""
    log = write_csv_log(user.root / "log.csv", cycle_sequences())

    def write(name: str = "tiny.yaml", **sections):
        return user.yaml(name, tiny_config(log, **sections))

    return write


OVERRIDES = [
    # (`seqrec train` arguments after `-c tiny.yaml --out run`, words the message must hold)
    case("configs", "a-misspelt-key-gets-the-nearest", ["-o", "train.epoch=5"],
         ["unknown config key 'train.epoch'", "train.epochs"]),
    case("configs", "a-key-like-nothing-still-gets-a-fix", ["-o", "train.zqxj=1"],
         ["unknown config key 'train.zqxj'"]),
    case("configs", "a-misspelt-section", ["-o", "trian.epochs=5"], ["trian.epochs"]),
    case("configs", "text-for-an-integer", ["-o", "train.epochs=abc"], ["train.epochs"]),
    case("configs", "text-for-a-float", ["-o", "train.lr=fast"], ["train.lr"]),
    case("configs", "a-zero-batch-size", ["-o", "train.batch_size=0"], ["train.batch_size"]),
    case("configs", "a-list-for-a-number", ["-o", "model.hidden=[16,32]"], ["model.hidden"]),
    case("configs", "another-model-s-option", ["--model", "gru4rec", "-o", "model.heads=2"],
         ["model.heads", "not an option of model.name=gru4rec", "belongs to"]),
    case("configs", "an-unknown-model", ["--model", "sasrek"], ["sasrek", "sasrec"]),
    case("configs", "an-unknown-task", ["--task", "rank"], ["task.name"]),
    case("configs", "an-unknown-data-format", ["-o", "data.format=xml"], ["data.format"]),
    case("configs", "an-unknown-device", ["-o", "train.device=tpu"], ["train.device"]),
    case("configs", "an-override-without-equals", ["-o", "train.epochs"],
         ["override 'train.epochs' has no '='"]),
    case("configs", "bert4rec-with-an-objective-it-cannot-train", ["--model", "bert4rec",
         "-o", "objective.name=ce"], ["cloze"]),
    case("configs", "a-width-the-heads-do-not-divide", ["-o", "model.hidden=15"],
         ["model.hidden"]),
    case("configs", "a-cosine-loss-on-a-model-without-cosine-outputs", ["--model", "gru4rec",
         "-o", "objective.name=ssm", "-o", "objective.normalize=true"],
         ["objective.normalize=true needs cosine outputs"]),
    case("configs", "the-ranking-task-on-a-leave-one-out-split", ["-o", "task.name=ranking"],
         ["temporal"]),
    case("configs", "wide-and-json-at-once", ["--wide", "--format", "json"],
         ["--wide and --format json contradict"]),
    case("configs", "eval-ks-of-zero", ["-o", "eval.ks=[0]"], ["eval.ks=[0]"]),
    case("configs", "eval-ks-without-the-10-validation-reads", ["-o", "eval.ks=[5]"],
         ["eval.ks=[5] lacks 10"]),
    case("configs", "an-empty-eval-ks", ["-o", "eval.ks=[]"], ["eval.ks"]),
    case("configs", "an-unknown-mask-seen-mode", ["-o", "eval.mask_seen=maybe"],
         ["eval.mask_seen"]),
]  # fmt: skip


@pytest.mark.parametrize(("args", "says"), OVERRIDES)
def test_train_refuses_the_config(user, tiny, args, says):
    user.cli_fails("train", "-c", tiny(), "--out", user.root / "run", *args, says=says)


def _yaml_invalid(user, tiny):
    return user.write("bad.yaml", "train:\n  epochs: 5\n lr: [0.1\n")


def _yaml_list(user, tiny):
    return user.write("list.yaml", "- train\n- model\n")


def _yaml_scalar_section(user, tiny):
    return user.write("scalar.yaml", "train: 5\n")


def _yaml_unknown_key(user, tiny):
    return tiny("unknown.yaml", train={"epochz": 3})


def _yaml_other_family(user, tiny):
    return tiny("family.yaml", model={"name": "gru4rec", "heads": 4})


def _yaml_text(user, tiny):
    return user.write("text.yaml", "just some notes\n")


FILES = [
    case("configs", "a-yaml-file-with-broken-syntax", _yaml_invalid,
         ["bad.yaml is not valid YAML", "line"]),
    case("configs", "a-yaml-file-holding-a-list", _yaml_list, ["list.yaml"]),
    case("configs", "a-yaml-section-that-is-a-number", _yaml_scalar_section,
         ["train", "valid dictionary"]),
    case("configs", "an-unknown-key-in-a-yaml-file", _yaml_unknown_key,
         ["train.epochz", "train.epochs"]),
    case("configs", "another-family-s-option-in-a-yaml-file", _yaml_other_family,
         ["model.heads", "gru4rec"]),
    case("configs", "a-yaml-file-of-plain-text", _yaml_text, ["text.yaml must hold a mapping"]),
]  # fmt: skip


@pytest.mark.parametrize(("write", "says"), FILES)
def test_train_refuses_the_yaml_file(user, tiny, write, says):
    path = write(user, tiny)
    user.cli_fails("train", "-c", path, "--out", user.root / "run", says=says)


PRESETS = [
    case("configs", "a-preset-name-with-a-typo", ["train", "-c", "sasrec-ml1m"],
         ["unknown preset 'sasrec-ml1m'", "sasrec-ml-1m"]),
    case("configs", "a-yaml-path-that-does-not-exist", ["train", "-c", "nope.yaml"],
         ["config file nope.yaml does not exist"]),
    case("configs", "models-with-a-bad-preset", ["models", "-c", "quikstart"],
         ["unknown preset 'quikstart'", "quickstart"]),
    case("configs", "data-stats-with-a-negative-k-core", ["data", "stats", "log.csv",
         "-o", "data.min_user_count=-1"], ["data.min_user_count"]),
    case("configs", "resume-with-a-new-config", ["train", "--resume", "run", "-c", "quickstart"],
         ["--resume continues a run with the config saved in its folder"]),
]  # fmt: skip


@pytest.mark.parametrize(("args", "says"), PRESETS)
def test_commands_refuse_the_preset(user, tiny, args, says):
    tiny()
    user.cli_fails(*args, says=says)


API = [
    case("configs", "api-an-unknown-preset", lambda log: seqrec.config("quikstart"),
         ["quickstart"]),
    case("configs", "api-a-misspelt-key-in-a-section", lambda log: seqrec.config(
        None, data={"dataset": str(log)}, train={"epochz": 1}), ["train.epochz", "train.epochs"]),
    case("configs", "api-another-family-s-option", lambda log: seqrec.config(
        None, model={"name": "gru4rec", "heads": 2}), ["model.heads", "gru4rec"]),
    case("configs", "api-a-negative-epoch-count", lambda log: seqrec.config(
        None, "train.epochs=-1"), ["train.epochs"]),
    case("configs", "api-a-section-that-is-not-a-dict", lambda log: seqrec.config(
        None, train=5), ["train"]),
    case("configs", "api-an-override-without-equals", lambda log: seqrec.config(
        None, "train.epochs"), ["train.epochs"]),
]  # fmt: skip


@pytest.mark.parametrize(("call", "says"), API)
def test_api_config_refuses(user, call, says):
    log = write_csv_log(user.root / "log.csv", cycle_sequences())
    user.api_fails(lambda: call(log), says=says)
