"""Achieved FLOP/s and MFU: the cached matmul peak, the arithmetic, and a run's records."""

from __future__ import annotations

import json

import pytest
import torch

from seqrec.data.catalog import cache_root
from seqrec.trainer import flops
from seqrec.trainer.flops import FlopRate, Peak, matmul_peak
from seqrec.trainer.run import train_run

pytestmark = pytest.mark.usefixtures("in_tmp_dir")


@pytest.fixture(autouse=True)
def _short_peak(monkeypatch):
    """A few hundredths of a second on small products, and no peak remembered from before."""
    monkeypatch.setattr(flops, "PEAK_SECONDS", 0.03)
    monkeypatch.setattr(flops, "SIZES", (64, 128))
    monkeypatch.setattr(flops, "_MEMO", {})
    monkeypatch.setattr(flops, "_WARNED", set())


def no_measuring(monkeypatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("measured although the peak is cached")

    monkeypatch.setattr(flops, "measure_matmul_peak", refuse)


def test_peak_is_measured_once_then_read_from_the_cache(monkeypatch):
    first = matmul_peak("cpu")
    assert first is not None and first.gflops > 0 and first.source == "measured"
    entries = json.loads((cache_root() / flops.CACHE_FILE).read_text())
    (key,) = entries
    assert f"threads {torch.get_num_threads()}" in key and "float32" in key
    assert torch.__version__ in key
    assert entries[key]["gflops"] == first.gflops

    no_measuring(monkeypatch)
    monkeypatch.setattr(flops, "_MEMO", {})  # a new process: only the file remembers
    again = matmul_peak("cpu")
    assert again == Peak(first.gflops, "cached")


def test_the_cache_is_keyed_by_threads_and_dtype():
    matmul_peak("cpu", threads=1)
    matmul_peak("cpu", dtype=torch.float64, threads=1)
    assert len(json.loads((cache_root() / flops.CACHE_FILE).read_text())) == 2


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", '{"k": 3}'])
def test_a_corrupt_cache_is_measured_again(text):
    path = cache_root() / flops.CACHE_FILE
    path.parent.mkdir(parents=True)
    path.write_text(text)
    peak = matmul_peak("cpu")
    assert peak is not None and peak.source == "measured" and peak.gflops > 0
    key = flops.peak_key(torch.device("cpu"), torch.get_num_threads(), torch.float32)
    assert json.loads(path.read_text())[key]["gflops"] == peak.gflops


def test_a_failed_measurement_gives_no_peak(monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise RuntimeError("no BLAS today")

    monkeypatch.setattr(flops, "measure_matmul_peak", broken)
    assert matmul_peak("cpu") is None
    assert matmul_peak("cpu") is None
    assert sum("no BLAS today" in r.message for r in caplog.records) == 1  # logged once


def test_mfu_is_achieved_over_peak():
    rate = FlopRate(flops=2e6, peak=Peak(400.0, "cached"))
    out = rate.fields(interactions_per_s=50_000)  # 2e6 * 5e4 = 100 GFLOP/s
    assert out == {
        "achieved_gflops": pytest.approx(100.0),
        "mfu": pytest.approx(0.25),
        "peak_gflops": 400.0,
        "peak_source": "cached",
    }
    # under DDP the peak is per process: the total rate against every process's peak
    two = FlopRate(flops=2e6, peak=Peak(400.0, "measured"), processes=2)
    assert two.fields(50_000)["mfu"] == pytest.approx(0.125)
    # periodic lines get the rate and MFU only; records without a rate are left alone
    line = rate.add({"interactions_per_s": 1.0})
    assert set(line["throughput"]) == {"achieved_gflops", "mfu"}
    assert rate.add({"examples_per_s": 1.0}) == {"examples_per_s": 1.0}
    # no peak: the achieved rate alone; no FLOP count (ranking): nothing
    assert FlopRate(2e6, None).fields(50_000) == {"achieved_gflops": pytest.approx(100.0)}
    assert FlopRate(None, Peak(400.0, "cached")).fields(50_000) == {}


def run_records(run_dir) -> tuple[dict, list[dict]]:
    results = json.loads((run_dir / "results.json").read_text())
    lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return results["throughput"], [x for x in lines if "interactions_per_s" in x]


def test_a_run_logs_achieved_flops_and_mfu(cycle_log, config_for, tmp_path):
    cfg = config_for(cycle_log, train={"epochs": 1, "log_every": 1})
    train_run(cfg, tmp_path / "run", progress=False)
    tp, lines = run_records(tmp_path / "run")
    assert tp["peak_source"] == "measured" and tp["peak_gflops"] > 0
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    per = results["flops_per_interaction"]["train"]
    assert tp["achieved_gflops"] == pytest.approx(per * tp["interactions_per_s"] / 1e9)
    assert tp["mfu"] == pytest.approx(tp["achieved_gflops"] / tp["peak_gflops"])
    assert lines and all(x["throughput"]["achieved_gflops"] > 0 for x in lines)
    assert all(x["throughput"]["mfu"] > 0 for x in lines)

    train_run(cfg, tmp_path / "again", progress=False)  # the next run reads the cache
    assert run_records(tmp_path / "again")[0]["peak_source"] == "cached"


def test_an_unwritable_cache_does_not_fail_the_run(cycle_log, config_for, tmp_path, caplog):
    (cache_root() / flops.CACHE_FILE).mkdir(parents=True)  # a folder where the file goes
    cfg = config_for(cycle_log, train={"epochs": 1, "log_every": 1})
    train_run(cfg, tmp_path / "run", progress=False)
    tp, _ = run_records(tmp_path / "run")
    assert tp["peak_source"] == "measured" and tp["mfu"] > 0
    assert any("cannot cache the matmul peak" in r.message for r in caplog.records)


def test_a_run_without_a_peak_still_logs_its_flop_rate(
    cycle_log, config_for, tmp_path, monkeypatch
):
    def broken(*args, **kwargs):
        raise RuntimeError("no BLAS today")

    monkeypatch.setattr(flops, "measure_matmul_peak", broken)
    train_run(config_for(cycle_log, train={"epochs": 1}), tmp_path / "run", progress=False)
    tp, _ = run_records(tmp_path / "run")
    assert tp["achieved_gflops"] > 0 and "mfu" not in tp and "peak_gflops" not in tp
