"""`seqrec.run.Run`: the one run artifact and the one model loader.

What is pinned here: a new run folder is marked with a manifest; ``overwrite`` replaces only a
seqrec run and never touches anything else (checksums before and after); folders written before
manifests still load; `Run.load_model` scores exactly as the loader it replaced; and every way
a model is loaded for evaluation, recommendation, export and serving goes through `Run`.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import seqrec
from conftest import N_ITEMS
from seqrec.errors import SeqrecError
from seqrec.eval.ranking import score_chunks
from seqrec.fsutil import RUN_MANIFEST
from seqrec.models import build_model
from seqrec.models.inputs import attach_for_catalogue
from seqrec.recipe import build_config
from seqrec.run import Run, train
from seqrec.trainer.checkpoint import load_weights
from seqrec.trainer.run import load_run_config, train_run

HISTS = [np.array([3, 4, 5]), np.array([10]), np.arange(1, 20)]


def checksums(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root`` (relative path -> digest)."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def user_folder(path: Path) -> Path:
    """An ordinary folder of someone's own files (one in a sub-folder)."""
    (path / "drafts").mkdir(parents=True)
    (path / "notes.txt").write_text("my notes\n")
    (path / "drafts" / "paper.tex").write_text("\\section{results}\n")
    return path


@pytest.fixture
def tiny_cfg(trained_run):
    """The trained run's config with one epoch: a quick run on the same data."""
    raw = load_run_config(trained_run).model_dump(mode="json")
    raw["train"]["epochs"] = 1
    return build_config(raw)


# ----------------------------------------------------------------------------- manifest


def test_a_new_run_folder_carries_a_manifest(trained_run):
    manifest = json.loads((trained_run / RUN_MANIFEST).read_text())
    cfg = load_run_config(trained_run)
    assert manifest["format"] == "seqrec-run" and manifest["format_version"] == 1
    assert manifest["seqrec_version"] == seqrec.__version__
    assert manifest["model"] == "sasrec" and manifest["task"] == "retrieval"
    assert manifest["fingerprint"] == cfg.fingerprint()
    assert manifest["created"].endswith("+00:00")
    run = Run(trained_run)
    assert run.kind == "run" and run.manifest == manifest and run.is_finished


def test_the_manifest_is_written_first_and_a_failed_start_blocks_nothing(
    tiny_cfg, tmp_path, monkeypatch
):
    """The manifest is in place before training writes anything; a start that failed then
    (only the manifest there) is no "unfinished run" the corrected command must --overwrite."""
    from seqrec.trainer import run as train_run_module

    class Boom(Exception):
        pass

    def fail(*args, **kwargs):
        raise Boom

    out = tmp_path / "run"
    with monkeypatch.context() as mp:
        mp.setattr(train_run_module, "Trainer", fail)
        with pytest.raises(Boom):
            train_run(tiny_cfg, out, progress=False)
    assert sorted(p.name for p in out.iterdir()) == [RUN_MANIFEST]
    run = train(tiny_cfg, out, progress=False)
    assert isinstance(run, Run) and run.is_finished and run.results["epochs_run"] == 1


# ------------------------------------------------------------- never delete a user's files


@pytest.mark.parametrize("overwrite", [False, True])
def test_overwrite_never_touches_a_folder_seqrec_did_not_write(tiny_cfg, tmp_path, overwrite):
    folder = user_folder(tmp_path / "mine")
    before = checksums(folder)
    with pytest.raises(SeqrecError) as info:
        train_run(tiny_cfg, folder, overwrite=overwrite, progress=False)
    msg = str(info.value)
    assert "not part of a seqrec run (drafts, notes.txt)" in msg
    assert "choose an empty or new folder for --out" in msg
    assert "--overwrite" not in msg and "\n" not in msg
    assert checksums(folder) == before


def test_overwrite_keeps_a_file_the_user_put_in_a_run_folder(run_copy, tiny_cfg):
    (run_copy / "notes.txt").write_text("why this run matters\n")
    before = checksums(run_copy)
    with pytest.raises(SeqrecError, match=r"not part of a seqrec run \(notes\.txt\)") as info:
        train_run(tiny_cfg, run_copy, overwrite=True, progress=False)
    assert "--overwrite" not in str(info.value)
    assert checksums(run_copy) == before


def test_overwrite_replaces_a_seqrec_run(run_copy, tiny_cfg):
    old = json.loads((run_copy / RUN_MANIFEST).read_text())
    assert json.loads((run_copy / "results.json").read_text())["epochs_run"] == 6
    with pytest.raises(SeqrecError, match="holds a finished run; pass --overwrite"):
        train_run(tiny_cfg, run_copy, progress=False)
    train_run(tiny_cfg, run_copy, overwrite=True, progress=False)
    assert json.loads((run_copy / "results.json").read_text())["epochs_run"] == 1
    new = json.loads((run_copy / RUN_MANIFEST).read_text())
    assert new["fingerprint"] == tiny_cfg.fingerprint() != old["fingerprint"]


def test_an_output_path_that_cannot_be_created_is_refused_before_any_work(
    tiny_cfg, tmp_path, trained_run
):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(SeqrecError, match=r"cannot create .*: .*file is a file; choose another"):
        train_run(tiny_cfg, blocker / "run", progress=False)
    with pytest.raises(SeqrecError, match="is a file; choose another package folder"):
        Run(trained_run).export(blocker / "pkg")
    assert blocker.read_text() == "x"


# ------------------------------------------------------------------------ legacy folders


@pytest.fixture
def legacy_run(run_copy) -> Path:
    """A run folder as seqrec wrote it before manifests existed."""
    (run_copy / RUN_MANIFEST).unlink()
    return run_copy


def test_a_folder_written_before_manifests_still_loads(legacy_run, trained_run):
    run = Run(legacy_run)
    assert run.kind == "run" and run.manifest is None and run.is_finished
    a = run.recommender().top_k(HISTS, 10)
    b = Run(trained_run).recommender().top_k(HISTS, 10)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


def test_a_legacy_run_is_recognised_by_its_files_for_overwrite(legacy_run, tiny_cfg):
    (legacy_run / "notes.txt").write_text("mine")
    with pytest.raises(SeqrecError, match=r"notes\.txt"):
        train_run(tiny_cfg, legacy_run, overwrite=True, progress=False)
    assert (legacy_run / "notes.txt").read_text() == "mine"
    (legacy_run / "notes.txt").unlink()
    train_run(tiny_cfg, legacy_run, overwrite=True, progress=False)
    assert (legacy_run / RUN_MANIFEST).is_file()


def test_seqrec_file_names_alone_do_not_make_a_run(tmp_path, tiny_cfg):
    """A folder of files that merely share seqrec's names, but is no run, is not replaced."""
    folder = tmp_path / "odd"
    folder.mkdir()
    (folder / "metrics.jsonl").write_text("{}\n")
    with pytest.raises(SeqrecError, match="but is not a seqrec run"):
        train_run(tiny_cfg, folder, overwrite=True, progress=False)
    assert (folder / "metrics.jsonl").read_text() == "{}\n"


# ------------------------------------------------------------------------ the one loader


def test_load_model_scores_as_the_loader_it_replaced(trained_run):
    """Bit-identical scores to the former `Recommender.from_run` body (kept here verbatim)."""
    cfg = load_run_config(trained_run)
    item_ids = np.load(trained_run / "item_ids.npy", allow_pickle=False)
    old = build_model(cfg.model, len(item_ids) - 1, cfg.data.max_len)
    attach_for_catalogue(old, cfg, item_ids)
    load_weights(trained_run / "best.safetensors", old)
    old.eval()
    new = Run(trained_run).load_model()
    assert not new.training
    flat = np.concatenate(HISTS)
    ends = np.cumsum([len(h) for h in HISTS])
    args = (flat, ends - [len(h) for h in HISTS], ends, cfg.data.max_len, 8, torch.device("cpu"))
    with torch.no_grad():
        for (_, a, _), (_, b, _) in zip(
            score_chunks(old, *args, mask_seen=False),
            score_chunks(new, *args, mask_seen=False),
            strict=True,
        ):
            assert torch.equal(a, b)


def test_every_loader_path_goes_through_run(trained_run, tmp_path, monkeypatch):
    from seqrec.run import load_package
    from seqrec.serve.batch import open_recommender, recommend_to_file

    calls: list[str] = []
    real = Run.load_model

    def counted(self, device="cpu"):
        calls.append(self.kind)
        return real(self, device)

    monkeypatch.setattr(Run, "load_model", counted)
    manifest = Run(trained_run).export(tmp_path / "pkg").manifest
    assert manifest["n_items"] == N_ITEMS and calls == ["run"]
    paths = {
        "seqrec.load(run)": lambda: seqrec.load(trained_run),
        "seqrec.load(package)": lambda: seqrec.load(tmp_path / "pkg"),
        "load_package": lambda: load_package(tmp_path / "pkg"),
        "open_recommender": lambda: open_recommender(tmp_path / "pkg"),
        "Run.evaluate": lambda: Run(trained_run).evaluate(),
        "recommend_to_file": lambda: recommend_to_file(
            trained_run, tmp_path / "r.csv", None, None, 3, False, True, all_users=True
        ),
    }
    for name, load in paths.items():
        calls.clear()
        load()
        assert len(calls) == 1, name


def test_no_other_module_builds_a_model_from_saved_weights():
    """Serving and packaging hold no loader of their own (a static guard for the above)."""
    src = Path(seqrec.__file__).parent
    for rel in (
        "run/package.py",
        "run/recommender.py",
        "serve/batch.py",
        "serve/app.py",
    ):
        text = (src / rel).read_text()
        for loader in ("build_model(", "load_weights(", "torch.load("):
            assert loader not in text, f"{rel} calls {loader}"


# --------------------------------------------------------------------------- the API


def test_run_reads_its_parts_and_evaluates_like_training(trained_run):
    run = Run.open(trained_run)
    assert run.config == load_run_config(trained_run)
    assert run.n_items == N_ITEMS and run.item_ids[0] != run.item_ids[1]
    assert run.results == json.loads((trained_run / "results.json").read_text())
    res = run.evaluate()
    np.testing.assert_array_equal(res.ranks, np.load(trained_run / "test_ranks.npy"))
    assert res.metrics == pytest.approx(run.results["test"]["metrics"])
    kept = run.evaluate("valid", mask_seen=False)
    assert kept.protocol["evaluated"] == "valid" and kept.protocol["mask_seen"] is False
    with pytest.raises(SeqrecError, match="split must be 'valid' or 'test'"):
        run.evaluate("train")
    with pytest.raises(SeqrecError, match="mask_seen must be"):
        run.evaluate(mask_seen="all")


def test_an_unfinished_run_opens_but_does_not_export(run_copy, tmp_path):
    (run_copy / "results.json").unlink()
    run = Run(run_copy)
    assert not run.is_finished and run.results is None
    with pytest.raises(SeqrecError, match="has not finished"):
        run.export(tmp_path / "pkg")
    assert not (tmp_path / "pkg").exists()


def test_what_is_not_a_run_gets_one_line(tmp_path, run_copy):
    for path, expected in (
        (tmp_path / "missing", "does not exist"),
        (user_folder(tmp_path / "mine"), "is not a seqrec run folder or model package"),
    ):
        with pytest.raises(SeqrecError, match=expected) as info:
            Run(path)
        assert "\n" not in str(info.value)
    manifest = json.loads((run_copy / RUN_MANIFEST).read_text())
    (run_copy / RUN_MANIFEST).write_text(json.dumps({**manifest, "format_version": 99}))
    with pytest.raises(SeqrecError, match="format version 99; this seqrec reads version 1"):
        Run(run_copy)


def test_a_package_opens_as_a_run(trained_run, tmp_path):
    package = Run(trained_run).export(tmp_path / "pkg")
    assert package.kind == "package" and package.is_finished and package.results is None
    assert package.config.model == Run(trained_run).config.model
    np.testing.assert_array_equal(package.item_ids, Run(trained_run).item_ids)
    with pytest.raises(SeqrecError, match="already a model package"):
        package.export(tmp_path / "again")
    shutil.copytree(tmp_path / "pkg", tmp_path / "copy")
    assert Run(tmp_path / "copy").manifest == package.manifest


def _legacy_flat(cfg) -> dict:
    """A config dump as seqrec wrote it before per-model configs: one flat model section with
    every family's options at their defaults (the union of the families' defaults, which the
    flat class's defaults were)."""
    from seqrec.models import MODELS

    raw = cfg.model_dump(mode="json")
    for cls in MODELS.values():
        for key, field in cls.config_class.model_fields.items():
            if key != "name" and key not in raw["model"] and not field.is_required():
                raw["model"][key] = field.get_default(call_default_factory=True)
    return raw


def test_runs_saved_with_the_flat_model_section_still_load(trained_run, tmp_path):
    """Run folders written before per-model configs hold every family's options: they load,
    keep their fingerprint (so their checkpoints resume) and score exactly as before."""
    from seqrec.recipe import saved_config

    run = tmp_path / "legacy"
    shutil.copytree(trained_run, run)
    cfg = load_run_config(trained_run)
    legacy = _legacy_flat(cfg)
    assert "srt_fields" in legacy["model"] and "lacl_view" in legacy["model"]
    with pytest.raises(SeqrecError, match=r"not an option of model\.name=sasrec"):
        build_config(legacy)  # a user's config with them is refused...
    assert saved_config(legacy) == cfg  # ...a config seqrec wrote is read
    assert saved_config(legacy).fingerprint() == cfg.fingerprint()
    (run / "config.yaml").write_text(yaml.safe_dump(legacy, sort_keys=False))
    np.testing.assert_array_equal(
        Run(run).evaluate().ranks, np.load(trained_run / "test_ranks.npy")
    )
