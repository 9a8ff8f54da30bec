"""Model packages: export a finished run, load it back verified, score exactly like evaluation."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
from typer.testing import CliRunner

import seqrec
import seqrec.run
from conftest import ITEM_OFFSET, N_ITEMS, cycle_sequences, tiny_config, write_csv_log
from seqrec import cli
from seqrec.cli import app
from seqrec.data import prepare
from seqrec.errors import SeqrecError
from seqrec.recipe import build_config
from seqrec.run import Run
from seqrec.run.package import MANIFEST, read_item_metadata, sha256_file

SEQS = cycle_sequences()
runner = CliRunner()


def write_movies(path: Path) -> Path:
    """MovieLens movies.dat style, latin-1, for half the catalogue plus one unknown id."""
    lines = [
        f"{ITEM_OFFSET + j}::Film {j} (199{j % 10})::Drama|Comedy" for j in range(0, N_ITEMS, 2)
    ]
    lines[0] = f"{ITEM_OFFSET}::Amélie (2001)::Comedy|Romance"
    lines.append("999::Not in the catalogue::Horror")
    path.write_bytes(("\n".join(lines) + "\n").encode("latin-1"))
    return path


@pytest.fixture(scope="module")
def package(trained_run, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("package")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SEQREC_CACHE_DIR", str(root / "cache"))
        Run(trained_run).export(root / "pkg", item_metadata=write_movies(root / "movies.dat"))
    return root / "pkg"


@pytest.fixture
def pkg_copy(package, tmp_path) -> Path:
    dst = tmp_path / "pkg"
    shutil.copytree(package, dst)
    return dst


def test_package_holds_hashed_files_and_the_run_summary(package, trained_run):
    manifest = json.loads((package / MANIFEST).read_text())
    results = json.loads((trained_run / "results.json").read_text())
    assert manifest["format"] == "seqrec-package" and manifest["format_version"] == 1
    assert manifest["seqrec_version"] == seqrec.__version__
    assert manifest["model"] == "sasrec" and manifest["n_items"] == N_ITEMS
    assert manifest["metrics"]["test"] == results["test"]["metrics"]
    assert manifest["protocol"] == results["test"]["protocol"]
    assert set(manifest["files"]) == {
        "config.yaml",
        "weights.safetensors",
        "items.parquet",
        "item_metadata.parquet",
    }
    for name, digest in manifest["files"].items():
        assert sha256_file(package / name) == digest
    # no temporary folders left next to the package
    assert sorted(p.name for p in package.parent.iterdir() if p.name.startswith(".")) == []


def test_popularity_is_the_training_split_count(package):
    items = pl.read_parquet(package / "items.parquet")
    train = [x for s in SEQS.values() for x in s[:-2]]  # leave-one-out: last two held out
    expected = {i: train.count(i) for i in set(train)}
    got = dict(zip(items["item_id"], items["popularity"], strict=True))
    assert got == {i: expected.get(i, 0) for i in got}
    assert items["internal_id"].to_list() == list(range(1, N_ITEMS + 1))


def test_load_gives_identical_scores_to_the_run(package, trained_run):
    rec = seqrec.load(package)
    ref = Run(trained_run).recommender()
    hists = [np.array([3, 4, 5]), np.array([10]), np.arange(1, 20)]
    for exclude in (True, False):
        a_items, a_scores = rec.top_k(hists, N_ITEMS, exclude)
        b_items, b_scores = ref.top_k(hists, N_ITEMS, exclude)
        np.testing.assert_array_equal(a_items, b_items)
        np.testing.assert_array_equal(a_scores, b_scores)
    ans = rec.recommend_ids(["105", "106"], k=5)
    items, scores = ref.top_k(ref.encode([["105", "106"]]), 5)
    assert ans.items == ref.decode(items[0]).tolist()
    assert ans.scores == scores[0].tolist()


def test_package_rankings_equal_seqrec_evaluate(package, trained_run, monkeypatch, tmp_path):
    """The full ranking served for every test user puts the target exactly where the
    evaluator ranked it: one scoring path."""
    res = Run(trained_run).evaluate()
    store, split = prepare(Run(trained_run).config.data)
    view = split.test
    hists = [
        np.asarray(store.items[s:e], dtype=np.int64)
        for s, e in zip(view.starts, view.ends, strict=True)
    ]
    rec = seqrec.load(package)
    items, scores = rec.top_k(hists, N_ITEMS, exclude_seen=True, chunk=7)
    ranks = np.array(
        [int(np.flatnonzero(row == t)[0]) + 1 for row, t in zip(items, view.targets, strict=True)]
    )
    np.testing.assert_array_equal(ranks, res.ranks)
    assert (np.diff(scores[np.isfinite(scores).all(1)], axis=1) <= 0).all()


def test_item_metadata_from_movielens_and_csv(package, tmp_path):
    rec = seqrec.load(package)
    info = rec.item_info(str(ITEM_OFFSET))
    assert info["metadata"] == {"title": "Amélie (2001)", "genres": ["Comedy", "Romance"]}
    assert info["popularity"] == int(rec.popularity[rec.lookup([str(ITEM_OFFSET)])[0][0]])
    assert rec.item_info(str(ITEM_OFFSET + 1))["metadata"] is None  # no metadata row
    assert rec.item_info("999") is None  # metadata row, but not in the catalogue
    manifest = rec.info["item_metadata"]
    assert manifest["items_with_metadata"] == N_ITEMS // 2
    assert manifest["columns"] == ["title", "genres"]

    csv = tmp_path / "items.csv"
    csv.write_text("name,movieId,year\nA,100,1999\nB,0101,2001\n")
    frame = read_item_metadata(csv)
    assert frame.columns == ["item_id", "name", "year"]
    assert frame["item_id"].to_list() == ["100", "0101"]
    bad = tmp_path / "bad.csv"
    bad.write_text("name,year\nA,1\n")
    with pytest.raises(SeqrecError, match="no item id column"):
        read_item_metadata(bad)
    assert read_item_metadata(bad, id_col="name")["item_id"].to_list() == ["A"]


def test_import_seqrec_stays_light():
    code = "import sys, seqrec; assert callable(seqrec.load); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_export_refuses_to_overwrite_and_replaces_atomically(trained_run, tmp_path):
    out = tmp_path / "pkg"
    Run(trained_run).export(out)
    before = (out / MANIFEST).read_text()
    with pytest.raises(SeqrecError, match="already exists; pass --overwrite"):
        Run(trained_run).export(out)
    assert (out / MANIFEST).read_text() == before
    Run(trained_run).export(out, overwrite=True)
    assert "item_metadata.parquet" not in json.loads((out / MANIFEST).read_text())["files"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    other = tmp_path / "notes"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    for overwrite in (False, True):  # a user's folder: no flag makes it seqrec's to replace
        with pytest.raises(SeqrecError, match=r"not part of a seqrec model package \(keep.txt\)"):
            Run(trained_run).export(other, overwrite=overwrite)
    assert (other / "keep.txt").read_text() == "mine"
    # a package someone added a file to is not replaced either, and keeps both
    (out / "notes.txt").write_text("mine")
    with pytest.raises(SeqrecError, match=r"notes\.txt") as info:
        Run(trained_run).export(out, overwrite=True)
    assert "--overwrite" not in str(info.value)
    assert (out / "notes.txt").read_text() == "mine" and (out / MANIFEST).is_file()
    # nor is a run folder (the run itself included)
    with pytest.raises(SeqrecError, match="is a seqrec run folder, not a package"):
        Run(trained_run).export(trained_run, overwrite=True)
    assert (trained_run / "results.json").is_file()


def test_export_refuses_an_unfinished_run(run_copy, tmp_path):
    (run_copy / "results.json").unlink()
    with pytest.raises(SeqrecError, match="has not finished"):
        Run(run_copy).export(tmp_path / "pkg")
    assert not (tmp_path / "pkg").exists()


def _corrupt(pkg: Path, how: str) -> str:
    manifest = json.loads((pkg / MANIFEST).read_text())
    weights = pkg / "weights.safetensors"
    if how == "flipped byte":
        data = bytearray(weights.read_bytes())
        data[len(data) // 2] ^= 0xFF
        weights.write_bytes(bytes(data))
        return "does not match its sha256"
    if how == "missing file":
        (pkg / "items.parquet").unlink()
        return "items.parquet is missing"
    if how == "garbage manifest":
        (pkg / MANIFEST).write_text("{not json")
        return "unreadable manifest.json"
    if how == "pickle weights":  # a torch pickle under the safetensors name, hashes "fixed"
        torch.save({"item_emb.weight": torch.zeros(3, 3)}, weights)
        manifest["files"]["weights.safetensors"] = sha256_file(weights)
        (pkg / MANIFEST).write_text(json.dumps(manifest))
        return "is not a valid safetensors file"
    if how == "pt weights":
        shutil.move(weights, pkg / "model.pt")
        manifest["weights"] = "model.pt"
        manifest["files"]["model.pt"] = manifest["files"].pop("weights.safetensors")
        (pkg / MANIFEST).write_text(json.dumps(manifest))
        return "does not hold safetensors weights"
    if how == "newer format":
        manifest["format_version"] = 99
        (pkg / MANIFEST).write_text(json.dumps(manifest))
        return "format version 99"
    raise AssertionError(how)


@pytest.mark.parametrize(
    "how",
    [
        "flipped byte",
        "missing file",
        "garbage manifest",
        "pickle weights",
        "pt weights",
        "newer format",
    ],
)
def test_a_damaged_package_is_refused_with_one_line(pkg_copy, how):
    expected = _corrupt(pkg_copy, how)
    with pytest.raises(SeqrecError) as info:
        seqrec.load(pkg_copy)
    msg = str(info.value)
    assert expected in msg and "\n" not in msg and str(pkg_copy) in msg


def test_load_takes_a_run_or_a_package_and_explains_other_folders(trained_run, tmp_path):
    """`seqrec.load` reads both through `Run`; `seqrec.run.load_package` (the server's) only packages."""
    from seqrec.run import load_package

    assert seqrec.load(trained_run).n_items == N_ITEMS
    with pytest.raises(SeqrecError, match="is a training run, not a model package; make one"):
        load_package(trained_run)
    for load in (seqrec.load, load_package):
        with pytest.raises(SeqrecError, match="not a seqrec") as info:
            load(tmp_path)
        assert "\n" not in str(info.value)
        with pytest.raises(SeqrecError, match="does not exist"):
            load(tmp_path / "nope")


def test_cli_export_and_recommend_from_the_package(trained_run, tmp_path, monkeypatch, capsys):
    pkg = tmp_path / "pkg"
    res = runner.invoke(app, ["export", str(trained_run), str(pkg)])
    assert res.exit_code == 0, res.output
    assert f"exported sasrec ({N_ITEMS} items" in res.output
    hist = tmp_path / "hist.txt"
    hist.write_text("alice 105 106 107\nbob 120\n")
    outs = {}
    for name, src in (("pkg", pkg), ("run", trained_run)):
        outs[name] = tmp_path / f"{name}.csv"
        res = runner.invoke(
            app,
            ["recommend", str(src), "--histories", str(hist), "--out", str(outs[name]), "-k", "4"],
        )
        assert res.exit_code == 0, res.output
    assert outs["pkg"].read_text() == outs["run"].read_text()
    users = ",".join(list(SEQS)[:6:5])
    res = runner.invoke(
        app, ["recommend", str(pkg), "--users", users, "--out", str(tmp_path / "u.csv")]
    )
    assert res.exit_code == 0, res.output

    monkeypatch.setattr(sys, "argv", ["seqrec", "export", str(trained_run), str(pkg)])
    with pytest.raises(SystemExit) as info:
        cli.main()
    err = capsys.readouterr().err.strip()
    assert info.value.code == 2 and err.startswith("error: ") and "--overwrite" in err
    assert len(err.splitlines()) == 1


def test_an_srt_run_exports_and_loads_with_identical_recommendations(tmp_path):
    """SRT builds its item table from features (no per-id `item_emb.weight`); its package
    loads by the catalogue size in the manifest and serves what the run serves."""
    from safetensors import safe_open

    movies = tmp_path / "movies.csv"
    rows = [f"{ITEM_OFFSET + j},Film w{j}x ({1980 + j % 20}),{('Comedy', 'Drama')[j % 2]}"
            for j in range(N_ITEMS)]  # fmt: skip
    movies.write_text("movieId,title,genres\n" + "\n".join(rows) + "\n")
    raw = tiny_config(
        write_csv_log(tmp_path / "log.csv", SEQS),
        model={"name": "srt", "srt_fields": {"genres": 2, "title_tokens": 3, "year": 2},
               "srt_buckets": 4096, "dropout": 0.0, "hidden": 16, "heads": 2},
        train={"epochs": 2},
    )  # fmt: skip
    raw["data"]["item_features"] = str(movies)
    run = seqrec.run.train(build_config(raw), tmp_path / "run", progress=False)
    package = run.export(tmp_path / "pkg")
    assert package.kind == "package" and package.manifest["n_items"] == N_ITEMS
    with safe_open(str(package.weights_path), framework="pt") as fh:
        assert "item_emb.weight" not in set(fh.keys())
    rec, ref = seqrec.load(tmp_path / "pkg"), run.recommender()
    assert rec.popularity is not None and ref.popularity is None
    hists = [np.array([3, 4, 5]), np.array([10]), np.arange(1, 20)]
    a_items, a_scores = rec.top_k(hists, 10)
    b_items, b_scores = ref.top_k(hists, 10)
    np.testing.assert_array_equal(a_items, b_items)
    np.testing.assert_array_equal(a_scores, b_scores)
