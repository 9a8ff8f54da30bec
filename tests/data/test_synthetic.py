"""The synthetic log generator: its distributions, its time partitions, bounded chunks, and the
folder rules (a new folder, or one it generated)."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from seqrec.cli import app
from seqrec.data.store import build_store
from seqrec.data.synthetic import DAY, MANIFEST, LogSpec, event_chunks, generate_log
from seqrec.errors import SeqrecError
from seqrec.options import DataConfig


def read_log(folder, fmt: str = "parquet") -> pl.DataFrame:
    files = sorted(folder.glob(f"part-*.{fmt}"))
    read = pl.read_parquet if fmt == "parquet" else pl.read_csv
    return pl.concat([read(f) for f in files])


def test_the_log_has_the_asked_shape(tmp_path):
    spec = LogSpec(events=60_000, items=2_000, parts=6, days=30, chunk_events=7_000, seed=3)
    made = generate_log(spec, tmp_path / "log")
    frame = read_log(tmp_path / "log")
    assert frame.height == 60_000 == made["events"]
    assert frame["user_id"].n_unique() == made["users"]
    assert frame["item_id"].min() >= 1 and frame["item_id"].max() <= 2_000
    ts = frame["timestamp"]
    assert ts.min() >= spec.start and ts.max() < spec.start + 30 * DAY
    # Zipf: the rank-frequency slope of the head is about -a
    counts = np.sort(frame.group_by("item_id").len()["len"].to_numpy())[::-1][:200]
    slope = np.polyfit(np.log(np.arange(1, 201)), np.log(counts), 1)[0]
    assert abs(slope + spec.zipf) < 0.15
    # log-normal lengths: the median is the asked one (only the last user is cut)
    lengths = frame.group_by("user_id").len()["len"].to_numpy()
    assert abs(np.median(lengths) - spec.median_length) <= 2
    assert lengths.max() > 5 * spec.median_length  # the heavy tail


def test_parts_hold_their_time_windows_and_users_span_them(tmp_path):
    spec = LogSpec(events=20_000, items=500, parts=4, days=8, seed=1)
    generate_log(spec, tmp_path / "log")
    window = 8 * DAY // 4
    users = []
    for p in range(4):
        part = pl.read_parquet(tmp_path / "log" / f"part-{p:05d}.parquet")
        lo, hi = spec.start + p * window, spec.start + (p + 1) * window
        assert part["timestamp"].min() >= lo and part["timestamp"].max() < hi
        users.append(set(part["user_id"].to_list()))
    assert users[0] & users[1]  # a user's events are spread over parts, as in a real export


def test_times_increase_per_user_with_some_exact_ties(tmp_path):
    spec = LogSpec(events=30_000, items=300, tie_rate=0.05, seed=2)
    generate_log(spec, tmp_path / "log")
    store = build_store(DataConfig(dataset=str(tmp_path / "log")))
    ts = np.asarray(store.timestamps)
    first = np.zeros(len(ts), bool)
    first[store.offsets[:-1]] = True
    gaps = np.diff(ts)[~first[1:]]
    assert (gaps >= 0).all()
    assert 0.03 < (gaps == 0).mean() < 0.08  # tie_rate, plus the rare sub-second gap
    assert np.median(gaps[gaps > 0]) < 3600  # mostly in-session minutes


def test_same_spec_same_files_and_csv_holds_the_same_events(tmp_path):
    spec = LogSpec(events=5_000, items=100, parts=3, seed=4)
    generate_log(spec, tmp_path / "a")
    generate_log(spec, tmp_path / "b")
    generate_log(spec.model_copy(update={"format": "csv"}), tmp_path / "c")
    a, b = read_log(tmp_path / "a"), read_log(tmp_path / "b")
    assert a.equals(b)
    assert a.equals(read_log(tmp_path / "c", "csv"))
    other = LogSpec(events=5_000, items=100, parts=3, seed=5)
    generate_log(other, tmp_path / "d")
    assert not a.equals(read_log(tmp_path / "d"))


def test_chunks_are_bounded_and_hold_whole_users():
    spec = LogSpec(events=50_000, items=100, chunk_events=3_000, max_length=400, seed=6)
    chunks = list(event_chunks(spec))
    assert sum(len(c.user) for c in chunks) == 50_000
    assert max(len(c.user) for c in chunks) <= 3_000 + 400
    seen = [set(np.unique(c.user).tolist()) for c in chunks]
    assert all(not (x & y) for i, x in enumerate(seen) for y in seen[i + 1 :])


def test_the_folder_is_new_or_one_it_generated(tmp_path):
    spec = LogSpec(events=2_000, items=50, parts=2)
    out = tmp_path / "log"
    generate_log(spec, out)
    with pytest.raises(SeqrecError, match="already exists"):
        generate_log(spec, out)
    generate_log(spec.model_copy(update={"parts": 1}), out, overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == ["part-00000.parquet", MANIFEST]
    assert json.loads((out / MANIFEST).read_text())["spec"]["parts"] == 1
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    with pytest.raises(SeqrecError, match="not a log seqrec generated"):
        generate_log(spec, mine, overwrite=True)
    assert (mine / "notes.txt").read_text() == "keep me"


def test_cli_generate_then_stats(tmp_path):
    runner = CliRunner()
    out = tmp_path / "log"
    res = runner.invoke(app, ["data", "generate", str(out), "--events", "3000", "--items", "80"])
    assert res.exit_code == 0, res.output
    assert "wrote 3,000 events" in res.output
    res = runner.invoke(app, ["data", "stats", str(out)])
    assert res.exit_code == 0, res.output
    assert "out-of-core" in res.output
    res = runner.invoke(app, ["data", "generate", str(tmp_path / "x"), "--parts", "0"])
    assert isinstance(res.exception, SeqrecError)  # seqrec.cli.main prints it as one line
    assert str(res.exception).startswith("--parts: Input should be greater than or equal to 1")
    assert not (tmp_path / "x").exists()
