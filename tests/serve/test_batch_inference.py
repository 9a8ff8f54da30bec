"""`seqrec recommend` streams users in chunks: bounded memory, same output as one big chunk."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

import seqrec
from conftest import ITEM_OFFSET, N_ITEMS, N_USERS, cycle_sequences
from seqrec.cli import app
from seqrec.errors import SeqrecError
from seqrec.run import Run
from seqrec.serve import batch
from seqrec.serve.batch import iter_history_file, recommend_to_file

SEQS = cycle_sequences()
runner = CliRunner()


@pytest.fixture(scope="module")
def package(trained_run, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("package")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SEQREC_CACHE_DIR", str(root / "cache"))
        Run(trained_run).export(root / "pkg")
    return root / "pkg"


@pytest.fixture
def histories(tmp_path) -> Path:
    """25 users with random cycle windows (some items unknown to the model)."""
    rng = np.random.default_rng(3)
    lines = []
    for u in range(25):
        start, n = int(rng.integers(N_ITEMS)), int(rng.integers(1, 9))
        items = [str(ITEM_OFFSET + (start + t) % N_ITEMS) for t in range(n)]
        if u % 7 == 0:
            items.insert(0, "unknown-item")
        lines.append(f"user{u} " + " ".join(items))
        if u % 10 == 4:
            lines.append("")  # blank lines are skipped
    path = tmp_path / "hist.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


def assert_same(a: pl.DataFrame, b: pl.DataFrame) -> None:
    """Identical users, ranks and items; scores equal up to float32 rounding (BLAS kernels
    differ in the last bit between batch shapes, which is why rows are compared this way)."""
    assert a.select("user", "rank", "item").equals(b.select("user", "rank", "item"))
    np.testing.assert_allclose(a["score"].to_numpy(), b["score"].to_numpy(), rtol=1e-5, atol=1e-5)


def run_to(package, out: Path, **kw) -> tuple[int, list]:
    writers: list = []
    args = {"users": None, "histories": None, "k": 5, "skip_unknown": True, "overwrite": False}
    args.update(kw)
    n = recommend_to_file(package, out, writer_out=writers, **args)
    return n, writers


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_chunked_output_equals_unchunked(package, histories, tmp_path, suffix):
    read = pl.read_parquet if suffix == ".parquet" else pl.read_csv
    n_one, _ = run_to(package, tmp_path / f"one{suffix}", histories=histories, chunk=10_000)
    n_chunked, writers = run_to(
        package, tmp_path / f"chunked{suffix}", histories=histories, chunk=4
    )
    assert n_one == n_chunked == 25 * 5
    one, chunked = read(tmp_path / f"one{suffix}"), read(tmp_path / f"chunked{suffix}")
    assert_same(one, chunked)
    assert one["user"].unique(maintain_order=True).to_list() == [f"user{u}" for u in range(25)]
    assert writers[0].max_rows <= 4 * 5  # never more than one chunk of rows held at once
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_memory_is_bounded_by_the_chunk(package, histories, tmp_path, monkeypatch):
    """At most `chunk` users are read, scored and written at a time."""
    chunk = 3
    sizes = {"read": [], "scored": [], "written": []}
    real_iter = batch.iter_history_file

    def spy_iter(path, n):
        for ids, hists, done in real_iter(path, n):
            sizes["read"].append(len(ids))
            yield ids, hists, done

    rec = seqrec.load(package)
    real_recommend = rec.top_k

    def spy_recommend(hists, k, *a, **kw):
        sizes["scored"].append(len(hists))
        return real_recommend(hists, k, *a, **kw)

    monkeypatch.setattr(batch, "iter_history_file", spy_iter)
    monkeypatch.setattr(rec, "top_k", spy_recommend)
    n, writers = run_to(
        package, tmp_path / "r.parquet", histories=histories, chunk=chunk, recommender=rec
    )
    assert max(sizes["read"]) == max(sizes["scored"]) == chunk
    assert sum(sizes["scored"]) == 25 and len(sizes["scored"]) == 9
    assert writers[0].max_rows <= chunk * 5 and n == 125
    # the reader itself holds one chunk: it yields lazily
    gen = iter_history_file(histories, 2)
    ids, _, _ = next(gen)
    assert ids == ["user0", "user1"]


def test_all_users_of_the_dataset(package, tmp_path):
    n, writers = run_to(package, tmp_path / "all.parquet", all_users=True, chunk=7)
    df = pl.read_parquet(tmp_path / "all.parquet")
    assert n == df.height == N_USERS * 5 and writers[0].max_rows <= 7 * 5
    assert df["user"].unique(maintain_order=True).to_list() == list(SEQS)
    for user, group in df.group_by("user"):
        assert not set(group["item"]) & set(SEQS[user[0]])
    some = list(SEQS)[:3]
    run_to(package, tmp_path / "some.parquet", users=",".join(some))
    assert_same(pl.read_parquet(tmp_path / "some.parquet"), df.filter(pl.col("user").is_in(some)))


def test_keep_seen_and_cli_options(package, tmp_path):
    hist = tmp_path / "h.txt"
    hist.write_text("a 105 106 107 108\n")
    out = tmp_path / "r.csv"
    res = runner.invoke(
        app,
        [
            "recommend",
            str(package),
            "--histories",
            str(hist),
            "--out",
            str(out),
            "-k",
            str(N_ITEMS),
            "--keep-seen",
            "--chunk",
            "1",
            "--no-progress",
        ],
    )
    assert res.exit_code == 0, res.output
    df = pl.read_csv(out, schema_overrides={"item": pl.Utf8})
    assert df.height == N_ITEMS and {"105", "106", "107", "108"} <= set(df["item"])


def test_progress_bar_on_a_terminal(package, histories, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FORCE_COLOR", "1")
    monkeypatch.setenv("TTY_COMPATIBLE", "1")
    monkeypatch.setenv("TTY_INTERACTIVE", "1")
    run_to(package, tmp_path / "r.csv", histories=histories, progress=True, chunk=5)
    assert "recommending (bytes)" in capsys.readouterr().err


def test_a_failure_mid_stream_leaves_no_output(package, tmp_path):
    hist = tmp_path / "h.txt"
    hist.write_text("a 105\nb 106\nc 107\nlonely\n")
    out = tmp_path / "out" / "r.parquet"
    with pytest.raises(SeqrecError, match=f"{hist}:4"):
        run_to(package, out, histories=hist, chunk=1)
    assert not out.exists() and list(out.parent.iterdir()) == []
    out.parent.joinpath("r.parquet").write_text("keep")
    with pytest.raises(SeqrecError, match="already exists"):
        run_to(package, out, histories=hist, chunk=1)
    shutil.rmtree(out.parent)
