"""Checkpoints and saved weights: nothing to resume, a finished run, a damaged or foreign
checkpoint, damaged best weights or run files.

``--resume`` must refuse before it trains a step, naming the file and what does not match; the
commands that read best.safetensors (evaluate, recommend, export, the API's load) refuse a
damaged one the same way. A refused resume leaves the run folder exactly as it was, so the
user can still repair or restart it.
"""

from __future__ import annotations

import io
import json
import pickle

import pytest

import seqrec

from .harness import case


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _garbage(path):
    path.write_bytes(b"not a checkpoint at all " * 40)


def _empty(path):
    path.write_bytes(b"")


def _config_broken(run):
    (run / "config.yaml").write_text("model: [unclosed\n")


class _Evil:
    def __reduce__(self):
        return (print, ("this checkpoint ran code",))


def _pickle_with_code(path):
    buf = io.BytesIO()
    pickle.dump({"model": _Evil()}, buf, protocol=2)  # torch.save's protocol
    path.write_bytes(buf.getvalue())


RESUME = [
    # (damages checkpoint.pt in an unfinished copy of the run, words the message must hold)
    case("checkpoints", "resume-a-truncated-checkpoint", _truncate, ["checkpoint.pt", "corrupt"]),
    case("checkpoints", "resume-a-checkpoint-of-garbage", _garbage, ["checkpoint.pt"]),
    case("checkpoints", "resume-an-empty-checkpoint", _empty, ["checkpoint.pt"]),
    case("checkpoints", "resume-a-pickle-that-would-run-code", _pickle_with_code,
         ["checkpoint.pt"]),
    case("checkpoints", "resume-without-a-checkpoint", lambda p: p.unlink(),
         ["nothing to resume", "no checkpoint.pt"]),
    case("checkpoints", "resume-without-its-config", lambda p: (p.parent / "config.yaml").unlink(),
         ["config.yaml"]),
    case("checkpoints", "resume-with-a-broken-config-yaml",
         lambda p: _config_broken(p.parent), ["config.yaml"]),
]  # fmt: skip


@pytest.mark.parametrize(("damage", "says"), RESUME)
def test_resume_refuses_the_checkpoint(user, unfinished, damage, says):
    damage(unfinished / "checkpoint.pt")
    user.cli_fails("train", "--resume", unfinished, "--no-progress", says=says)


@pytest.mark.parametrize(
    ("which", "says"),
    [
        case("checkpoints", "resume-another-model-s-checkpoint", "model",
             ["checkpoint.pt"]),
        case("checkpoints", "resume-a-checkpoint-of-another-dataset", "dataset",
             ["n_items=25, this run has 30"]),
    ],
)  # fmt: skip
def test_resume_refuses_a_foreign_checkpoint(user, unfinished, foreign_checkpoints, which, says):
    (unfinished / "checkpoint.pt").write_bytes(foreign_checkpoints[which].read_bytes())
    user.cli_fails("train", "--resume", unfinished, "--no-progress", says=says)


FOLDERS = [
    case("checkpoints", "resume-a-finished-run", "finished", ["already finished"]),
    case("checkpoints", "resume-a-folder-that-does-not-exist", "missing",
         ["nothing to resume"]),
    case("checkpoints", "resume-an-empty-folder", "empty", ["nothing to resume"]),
    case("checkpoints", "resume-a-user-s-own-folder", "photos", ["photos"]),
]  # fmt: skip


@pytest.mark.parametrize(("name", "says"), FOLDERS)
def test_resume_refuses_the_folder(user, run_copy, name, says):
    target = {"finished": run_copy}.get(name, user.root / name)
    if name == "empty":
        target.mkdir()
    elif name == "photos":
        user.folder(name)
    user.cli_fails("train", "--resume", target, "--no-progress", says=says)


@pytest.mark.badinput("checkpoints")
def test_api_resume_of_a_finished_run(user, run_copy):
    """checkpoints: seqrec.train(None, run, resume=True) on a finished run refuses."""
    user.api_fails(
        lambda: seqrec.train(None, run_copy, resume=True, progress=False),
        says=["already finished"],
    )


def _weights_truncated(run):
    _truncate(run / "best.safetensors")


def _weights_garbage(run):
    _garbage(run / "best.safetensors")


def _weights_missing(run):
    (run / "best.safetensors").unlink()


def _ids_missing(run):
    (run / "item_ids.npy").unlink()


def _manifest_from_the_future(run):
    manifest = json.loads((run / "seqrec-run.json").read_text())
    (run / "seqrec-run.json").write_text(json.dumps({**manifest, "format_version": 99}))


def _weights_of_another_model(run):
    """best.safetensors of a wider model: every tensor has another shape."""
    import torch
    from safetensors.torch import load_file, save_file

    tensors = load_file(run / "best.safetensors")
    save_file({k: torch.zeros(*(2 * s for s in v.shape)) for k, v in tensors.items()},
              run / "best.safetensors")  # fmt: skip


SAVED = [
    # (damages a copy of the finished run, the command, words the message must hold)
    case("checkpoints", "evaluate-truncated-best-weights", _weights_truncated, "evaluate",
         ["best.safetensors", "corrupted or truncated"]),
    case("checkpoints", "recommend-from-garbage-best-weights", _weights_garbage, "recommend",
         ["best.safetensors", "corrupted or truncated"]),
    case("checkpoints", "export-without-best-weights", _weights_missing, "export",
         ["best.safetensors"]),
    case("checkpoints", "evaluate-best-weights-of-another-shape", _weights_of_another_model,
         "evaluate", ["best.safetensors"]),
    case("checkpoints", "evaluate-with-a-broken-config-yaml", _config_broken, "evaluate",
         ["config.yaml"]),
    case("checkpoints", "recommend-without-the-item-id-map", _ids_missing, "recommend",
         ["item_ids.npy"]),
    case("checkpoints", "evaluate-a-run-from-a-newer-seqrec", _manifest_from_the_future,
         "evaluate", ["format version 99", "upgrade seqrec"]),
]  # fmt: skip

_ARGS = {
    "evaluate": lambda run, root: ["evaluate", run],
    "recommend": lambda run, root: ["recommend", run, "--users", "500", "--out", root / "r.csv"],
    "export": lambda run, root: ["export", run, root / "pkg"],
}


@pytest.mark.parametrize(("damage", "command", "says"), SAVED)
def test_commands_refuse_damaged_run_files(user, run_copy, damage, command, says):
    damage(run_copy)
    user.cli_fails(*_ARGS[command](run_copy, user.root), says=says)


@pytest.mark.badinput("checkpoints")
def test_api_load_of_truncated_weights(user, run_copy):
    """checkpoints: seqrec.load refuses a damaged best.safetensors in one line."""
    _truncate(run_copy / "best.safetensors")
    user.api_fails(lambda: seqrec.load(run_copy), says=["best.safetensors"])
