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
from seqrec.serve import batch
from seqrec.serve.batch import iter_history_file, recommend_to_file

SEQS = cycle_sequences()
runner = CliRunner()


@pytest.fixture(scope="module")
def package(exported_package) -> Path:
    return exported_package


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
    """(recommendation rows written, the TableWriter)."""
    writers: list = []
    args = {"users": None, "histories": None, "k": 5, "skip_unknown": True, "overwrite": False}
    args.update(kw)
    written = recommend_to_file(package, out, writer_out=writers, **args)
    return written.rows, writers


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
    with pytest.raises(SeqrecError, match=f"{hist}:4"):  # found before any scoring
        run_to(package, out, histories=hist, chunk=1)
    assert not out.parent.exists()
    hist.write_text("a 105\nb 106\nc nope\n")  # the third chunk fails after two were written
    with pytest.raises(SeqrecError, match="not in the model's catalogue"):
        run_to(package, out, histories=hist, chunk=1, skip_unknown=False)
    assert not out.exists() and list(out.parent.iterdir()) == []
    out.parent.joinpath("r.parquet").write_text("keep")
    with pytest.raises(SeqrecError, match="already exists"):
        run_to(package, out, histories=hist, chunk=1)
    shutil.rmtree(out.parent)


def _cli_recommend(package, hist: Path, out: Path, k: int):
    args = ["recommend", str(package), "--histories", str(hist), "--out", str(out)]
    return runner.invoke(app, [*args, "-k", str(k), "--no-progress"])


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_short_answers_are_counted_in_the_file_and_the_summary(package, tmp_path, suffix):
    """k = n_items leaves n_items - |history| items; a history covering the catalogue gets none
    and still has its row; the CLI line says how many users got fewer than k."""
    every = " ".join(str(ITEM_OFFSET + j) for j in range(N_ITEMS))
    hist = tmp_path / "h.txt"
    hist.write_text(f"a 105 106\nall {every}\nb 107\n")
    out = tmp_path / f"r{suffix}"
    res = _cli_recommend(package, hist, out, N_ITEMS)
    assert res.exit_code == 0, res.output
    line = " ".join(res.output.split())
    assert f"wrote {2 * N_ITEMS - 3} recommendation rows for 3 users" in line
    assert f"3 users got fewer than {N_ITEMS}" in line and "1 of them none" in line
    df = pl.read_parquet(out) if suffix == ".parquet" else pl.read_csv(out, infer_schema=False)
    assert df.columns == ["user", "rank", "item", "score", "returned"]
    returned = {u: int(g["returned"][0]) for (u,), g in df.group_by("user")}
    assert returned == {"a": N_ITEMS - 2, "all": 0, "b": N_ITEMS - 1}
    empty = df.filter(pl.col("user") == "all")
    assert empty.height == 1 and empty["item"].is_null().all() and empty["rank"].is_null().all()
    assert df.filter(pl.col("user") == "a").height == N_ITEMS - 2
    three = " ".join(_cli_recommend(package, hist, tmp_path / f"f{suffix}", 3).output.split())
    assert "wrote 6 recommendation rows for 3 users" in three
    assert "1 user got fewer than 3" in three and "1 of them none" in three
    hist.write_text("a 105 106\n")
    one = " ".join(_cli_recommend(package, hist, tmp_path / f"g{suffix}", 3).output.split())
    assert "wrote 3 recommendation rows for 1 user to" in one and "fewer" not in one


def test_short_answers_in_the_python_result(package):
    rec = seqrec.load(package)
    every = [str(ITEM_OFFSET + j) for j in range(N_ITEMS)]
    a, b, c = rec.recommend([["105", "106"], every, ["105"]], k=N_ITEMS - 1)
    assert (a.returned, a.short) == (N_ITEMS - 2, True)
    assert (b.returned, b.short, b.items) == (0, True, [])
    assert (c.returned, c.short) == (N_ITEMS - 1, False)
    assert not rec.recommend([every], k=3, exclude_seen=False)[0].short
    assert [len(h) for h in rec.encode([[], ["105"]])] == [0, 1]  # no polars error on []


def test_a_repeated_history_id_is_refused_before_any_scoring(package, tmp_path, monkeypatch):
    hist = tmp_path / "h.txt"
    hist.write_text("a 105 106\nb 107\n\na 108\n")
    scored = []
    monkeypatch.setattr(batch, "open_recommender", lambda *a, **k: scored.append(1))
    with pytest.raises(SeqrecError, match=f"{hist}: id 'a' is on lines 1 and 4; give each id one"):
        run_to(package, tmp_path / "r.csv", histories=hist, chunk=1)
    assert not scored and not (tmp_path / "r.csv").exists()
    res = _cli_recommend(package, hist, tmp_path / "r.csv", 3)
    assert res.exit_code != 0 and "is on lines 1 and 4" in str(res.exception)
    with pytest.raises(SeqrecError, match="--users lists 500 more than once"):
        run_to(package, tmp_path / "u.csv", users="500,501,500")
