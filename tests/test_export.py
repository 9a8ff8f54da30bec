"""Exported user encoders (ONNX, torch.export): the exported file run by its own runtime equals
PyTorch's `last_hidden` on the evaluator's padded batches, the export folder holds what a server
without Python needs, and every refusal is one line naming the model or the fix."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file
from typer.testing import CliRunner

from conftest import build_config, cycle_sequences, tiny_config, write_csv_log
from seqrec.cli import app as cli_app
from seqrec.data.batches import history_batch
from seqrec.errors import SeqrecError
from seqrec.models import build_model
from seqrec.recipe import RunConfig
from seqrec.run import Run
from seqrec.run.export import UserEncoder, _export, _quiet, export_encoder, random_histories

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")
pytest.importorskip("onnxscript")
runner = CliRunner()


@pytest.fixture(scope="module")
def gru_run(tmp_path_factory) -> Path:
    from seqrec.trainer.run import train_run

    root = tmp_path_factory.mktemp("gru")
    data = write_csv_log(root / "log.csv", cycle_sequences())
    cfg = tiny_config(data, model={"name": "gru4rec"}, train={"epochs": 1})
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SEQREC_CACHE_DIR", str(root / "cache"))
        train_run(build_config(cfg), root / "run", progress=False)
    return root / "run"


def evaluator_vectors(model, histories: list[np.ndarray], max_len: int) -> np.ndarray:
    """`last_hidden` on the batch the evaluator builds (the reference, not the wrapper)."""
    lens = np.array([len(h) for h in histories])
    ends = np.cumsum(lens)
    rows = np.arange(len(histories))
    batch = history_batch(np.concatenate(histories), None, rows, ends - lens, ends, rows, max_len)
    with torch.no_grad():
        return model.last_hidden(batch).numpy()


def padded(histories: list[np.ndarray], max_len: int) -> np.ndarray:
    """What a non-Python caller sends: the last max_len items, right-padded with 0."""
    cut = [h[-max_len:] for h in histories]
    out = np.zeros((len(cut), max(len(h) for h in cut)), dtype=np.int64)
    for i, h in enumerate(cut):
        out[i, : len(h)] = h
    return out


def histories(n_items: int, n: int, longest: int, seed: int = 5) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(1, n_items + 1, rng.integers(1, longest + 1)) for _ in range(n)]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["sasrec", "gru4rec", "hstu"])
def test_onnx_encoder_equals_last_hidden(name, tmp_path):
    torch.manual_seed(0)
    raw = {"data": {"dataset": "synthetic", "max_len": 10}, "model": {"name": name, "hidden": 16}}
    model = build_model(RunConfig.model_validate(raw).model, 40, 10).eval()
    with _quiet():
        _export(UserEncoder(model).eval(), "onnx", tmp_path / "e.onnx", 10, 40)
    session = ort.InferenceSession(str(tmp_path / "e.onnx"))
    for seed, longest in enumerate([1, 6, 10, 30]):  # 30: longer than the window, cut to 10
        hists = histories(40, 7, longest, seed)
        got = session.run(None, {"items": padded(hists, 10)})[0]
        np.testing.assert_allclose(got, evaluator_vectors(model, hists, 10), atol=1e-5, rtol=0)


@pytest.mark.slow
def test_a_fixed_window_model_exports_at_max_len(tmp_path):
    """BERT4Rec's export fixes the width (its appended mask); its `last_hidden` does not
    depend on the width, so it is exported at max_len and the contract says so."""
    from types import SimpleNamespace

    from seqrec.run.export import _encoder_file

    torch.manual_seed(0)
    raw = {
        "data": {"dataset": "synthetic", "max_len": 10},
        "model": {"name": "bert4rec", "hidden": 16},
        "objective": {"name": "cloze"},
    }
    cfg = RunConfig.model_validate(raw)
    model = build_model(cfg.model, 40, 10).eval()
    info, parity = _encoder_file(
        UserEncoder(model).eval(), "onnx", tmp_path, SimpleNamespace(config=cfg, n_items=40)
    )
    assert info["length"] == "exactly 10" and parity["max_abs_diff"] <= 1e-5
    hists = histories(40, 6, 14)
    x = np.zeros((6, 10), dtype=np.int64)
    x[:, : padded(hists, 10).shape[1]] = padded(hists, 10)
    got = ort.InferenceSession(str(tmp_path / "encoder.onnx")).run(None, {"items": x})[0]
    np.testing.assert_allclose(got, evaluator_vectors(model, hists, 10), atol=1e-5, rtol=0)


@pytest.mark.parametrize("fmt", ["onnx", "pt2"])
def test_exported_run_holds_what_a_server_needs(trained_run, tmp_path, fmt):
    spec = export_encoder(trained_run, tmp_path / "enc", fmt)
    out = tmp_path / "enc"
    run = Run(trained_run)
    model = run.load_model()
    on_disk = json.loads((out / "encoder.json").read_text())
    assert on_disk == spec and spec["format"] == "seqrec-encoder" and spec["model"] == "sasrec"
    assert spec["max_len"] == 12 and spec["padding"]["side"] == "right"
    assert spec["parity"]["max_abs_diff"] <= 1e-5
    assert set(spec["files"]) == {p.name for p in out.iterdir()} - {"encoder.json"}
    table = load_file(out / "item_vectors.safetensors")["item_vectors"]
    np.testing.assert_array_equal(table, model.item_weights.detach().numpy())
    ids = json.loads((out / "item_ids.json").read_text())
    assert ids[0] is None and ids[1:] == run.item_ids[1:].tolist()
    hists = histories(run.n_items, 9, 20)
    if fmt == "onnx":
        session = ort.InferenceSession(str(out / "encoder.onnx"))
        got = session.run(None, {"items": padded(hists, 12)})[0]
    else:
        program = torch.export.load(out / "encoder.pt2").module()
        got = program(torch.from_numpy(padded(hists, 12))).detach().numpy()
    np.testing.assert_allclose(got, evaluator_vectors(model, hists, 12), atol=1e-5, rtol=0)
    # the served ranking from exported parts equals the library's
    rec = run.recommender()
    items, _ = rec.top_k(hists[:3], 5, exclude_seen=False)
    scores = got[:3] @ table.T
    scores[:, 0] = -np.inf
    np.testing.assert_array_equal(np.argsort(-scores, axis=1, kind="stable")[:, :5], items)


def test_a_second_model_through_the_cli(gru_run, tmp_path):
    res = runner.invoke(cli_app, ["export", str(gru_run), str(tmp_path / "g"), "--format", "onnx"])
    assert res.exit_code == 0, res.output
    assert "exported gru4rec's user encoder (onnx" in res.output and "parity" in res.output
    model = Run(gru_run).load_model()
    hists = histories(30, 6, 12)
    session = ort.InferenceSession(str(tmp_path / "g" / "encoder.onnx"))
    got = session.run(None, {"items": padded(hists, 12)})[0]
    np.testing.assert_allclose(got, evaluator_vectors(model, hists, 12), atol=1e-5, rtol=0)


def test_folders_are_refused_or_replaced_as_packages_are(trained_run, tmp_path):
    out = tmp_path / "enc"
    export_encoder(trained_run, out, "pt2")
    with pytest.raises(SeqrecError, match="already exists; pass --overwrite"):
        export_encoder(trained_run, out, "onnx")
    export_encoder(trained_run, out, "onnx", overwrite=True)
    assert not (out / "encoder.pt2").exists() and (out / "encoder.onnx").is_file()
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    with pytest.raises(SeqrecError, match="not a seqrec encoder export"):
        export_encoder(trained_run, mine, "onnx", overwrite=True)
    assert (mine / "notes.txt").read_text() == "keep" and len(list(mine.iterdir())) == 1
    with pytest.raises(SeqrecError, match="--format must be one of package, onnx, pt2"):
        export_encoder(trained_run, tmp_path / "x", "tflite")
    assert not (tmp_path / "x").exists()
    res = runner.invoke(
        cli_app,
        ["export", str(trained_run), str(tmp_path / "y"), "--format", "onnx",
         "--item-metadata", str(mine / "notes.txt")],
    )  # fmt: skip
    assert res.exit_code != 0 and "--item-metadata goes into model packages" in str(res.exception)


def test_models_that_cannot_be_exported_are_refused_in_one_line(trained_run, tmp_path, monkeypatch):
    import seqrec.run.export as export

    def fail(*args, **kwargs):
        print("a whole graph dump that must not reach the terminal")
        raise RuntimeError("data-dependent control flow\nmore detail")

    monkeypatch.setattr(export, "_export", fail)
    with pytest.raises(SeqrecError) as err:
        export_encoder(trained_run, tmp_path / "a", "onnx")
    assert str(err.value).startswith("model sasrec cannot be exported to onnx (RuntimeError: ")
    assert "\n" not in str(err.value) and not (tmp_path / "a").exists()
    assert [p.name for p in tmp_path.iterdir()] == []  # no temporary left behind
    monkeypatch.undo()
    # an exported file that disagrees with PyTorch is refused, not written
    monkeypatch.setattr(export, "PARITY_ATOL", -1.0)
    with pytest.raises(SeqrecError, match=r"model sasrec cannot be exported to pt2: .* differs"):
        export_encoder(trained_run, tmp_path / "b", "pt2")


def test_models_reading_more_than_ids_are_refused(trained_run, tmp_path, monkeypatch):
    from seqrec.models.base import Needs, SeqModel

    monkeypatch.setattr(SeqModel, "needs", property(lambda self: Needs(timestamps=True)))
    with pytest.raises(SeqrecError, match="model sasrec reads event timestamps besides item ids"):
        export_encoder(trained_run, tmp_path / "t", "onnx")


def test_random_histories_are_right_padded():
    x = random_histories(9, 50, 7, seed=0)
    assert x.shape == (50, 7) and x.min() >= 0 and x.max() <= 9 and (x[:, 0] > 0).all()
    assert (x[0] > 0).all()  # the first row is full width
    real = x > 0
    assert (real[:, :-1] >= real[:, 1:]).all()  # no item after a PAD


def test_a_package_exports_like_its_run(exported_package, trained_run, tmp_path):
    spec = export_encoder(exported_package, tmp_path / "p", "pt2")
    assert spec["source"]["kind"] == "package" and spec["n_items"] == Run(trained_run).n_items
    hists = histories(spec["n_items"], 4, 12)
    program = torch.export.load(tmp_path / "p" / "encoder.pt2").module()
    got = program(torch.from_numpy(padded(hists, 12))).detach().numpy()
    want = evaluator_vectors(Run(trained_run).load_model(), hists, 12)
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
