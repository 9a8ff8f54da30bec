"""Achieved FLOP/s and MFU: how much of the hardware a training run uses.

The achieved rate is the task's own count of training FLOPs per interaction (``accounting()``:
``flops_per_interaction["train"]``, the model's formula) times the interactions trained per
second. MFU is that rate over a matmul peak: the best GFLOP/s of square ``torch.mm`` products
(``SIZES``) on this device, this dtype and the threads the run uses, timed for about
``PEAK_SECONDS``. The peak is measured once per machine and cached as JSON under the cache root
(``data.cache_dir``, ``$SEQREC_CACHE_DIR`` or ``~/.cache/seqrec``), keyed by the processor, the
CPU model, the torch version, the device, the thread count and the dtype; within one process it
is also kept in memory. A measurement that fails, or a cache that cannot be read or written,
never fails a run: it is logged once, and the run goes on (without MFU when there is no peak).

The measurement draws no random numbers (the operands are constant), so it leaves every RNG
stream, hence every loss and metric, exactly as it was.
"""

from __future__ import annotations

import json
import logging
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from seqrec.data.catalog import cache_root
from seqrec.trainer.checkpoint import atomic_write_json
from seqrec.trainer.distributed import DistContext

log = logging.getLogger(__name__)

PEAK_SECONDS = 1.5  # the whole measurement, shared between the sizes
SIZES = (1024, 2048, 4096)
CACHE_FILE = "matmul_peak.json"
_MEMO: dict[str, float] = {}  # key -> GFLOP/s, this process's measurements and cache reads
_WARNED: set[str] = set()


@dataclass(frozen=True)
class Peak:
    gflops: float
    source: str  # "measured" (now) | "cached" (the cache file, or earlier in this process)


def _warn_once(what: str, message: str) -> None:
    if what not in _WARNED:
        _WARNED.add(what)
        log.warning(message)


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo where there is one, else ''."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def peak_key(device: torch.device, threads: int, dtype: torch.dtype) -> str:
    """What a cached peak is valid for, as one string."""
    hw = f"{platform.machine()}|{platform.processor()}|{cpu_model()}"
    if device.type == "cuda":
        hw += f"|{torch.cuda.get_device_name(device)}"
    dt = str(dtype).removeprefix("torch.")
    return f"{hw}|torch {torch.__version__}|{device.type}|threads {threads}|{dt}"


def measure_matmul_peak(
    device: torch.device, dtype: torch.dtype = torch.float32, seconds: float | None = None
) -> float:
    """Best GFLOP/s of ``torch.mm`` over ``SIZES``, each timed for its share of ``seconds``
    (one warm-up product first; a size whose warm-up alone used its share ends the sweep)."""
    seconds = PEAK_SECONDS if seconds is None else seconds
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    share, best, last = seconds / len(SIZES), 0.0, (1, 0.0)  # last: (size, seconds per product)
    for n in SIZES:
        if last[1] * (n / last[0]) ** 3 > share:
            break  # this size's one warm-up product alone would overrun its share
        a = torch.full((n, n), 1.0 / n, dtype=dtype, device=device)
        b = torch.full((n, n), 0.5, dtype=dtype, device=device)
        t0 = time.perf_counter()
        torch.mm(a, b)
        sync()
        if time.perf_counter() - t0 > share:
            best = max(best, 2 * n**3 / (time.perf_counter() - t0) / 1e9)
            break
        start = time.perf_counter()
        while time.perf_counter() - start < share:
            t0 = time.perf_counter()
            torch.mm(a, b)
            sync()
            last = (n, max(time.perf_counter() - t0, 1e-9))
            best = max(best, 2 * n**3 / last[1] / 1e9)
    if not best > 0:
        raise RuntimeError(f"matmul peak measured as {best} GFLOP/s")
    return best


def matmul_peak(
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    cache_dir: str | Path | None = None,
    threads: int | None = None,
) -> Peak | None:
    """This machine's matmul peak: from memory, the cache file, or measured now and cached.

    None when it cannot be measured (logged once); a corrupt cache is measured again and
    rewritten, an unwritable one is logged once and the measured peak still returned."""
    device = torch.device(device)
    key = peak_key(device, threads or torch.get_num_threads(), dtype)
    if key in _MEMO:
        return Peak(_MEMO[key], "cached")
    path = cache_root(cache_dir) / CACHE_FILE
    entries: dict[str, Any] = {}
    try:
        if path.is_file():
            entries = json.loads(path.read_text())
            if not isinstance(entries, dict):
                raise ValueError("not a JSON object")
            gflops = entries.get(key, {}).get("gflops")
            if isinstance(gflops, (int, float)) and gflops > 0:
                _MEMO[key] = float(gflops)
                return Peak(float(gflops), "cached")
    except (OSError, ValueError, AttributeError) as e:
        _warn_once(f"read {path}", f"matmul peak cache {path} unreadable ({e}); measuring again")
        entries = {}
    try:
        gflops = measure_matmul_peak(device, dtype)
    except Exception as e:  # never fail a run over its MFU
        _warn_once(f"measure {key}", f"could not measure the matmul peak ({e}); no MFU logged")
        return None
    _MEMO[key] = gflops
    entries[key] = {"gflops": gflops, "measured_at": round(time.time(), 3)}
    try:
        atomic_write_json(path, entries)
    except OSError as e:
        _warn_once(f"write {path}", f"cannot cache the matmul peak in {path} ({e})")
    return Peak(gflops, "measured")


class FlopRate:
    """Adds achieved GFLOP/s and MFU to a record holding ``interactions_per_s``.

    ``flops`` is training FLOPs per interaction (None: the task has no FLOP count, as ranking
    runs, and nothing is added); ``peak`` is one process's peak, so under DDP MFU is the total
    rate over ``peak x processes``."""

    def __init__(self, flops: float | None, peak: Peak | None, processes: int = 1) -> None:
        self.flops, self.peak, self.processes = flops, peak, processes

    @classmethod
    def for_run(
        cls, acct: dict, cache_dir: str | None, device: torch.device, dist: DistContext
    ) -> FlopRate:
        """The run's counter: the peak is measured on rank 0 only (the ranks share a machine
        on CPU, and only rank 0 logs), and only when the task counts FLOPs."""
        flops = (acct.get("flops_per_interaction") or {}).get("train")
        peak = matmul_peak(device, cache_dir=cache_dir) if flops and dist.is_main else None
        return cls(flops, peak, dist.world_size)

    def fields(self, interactions_per_s: float, full: bool = True) -> dict[str, Any]:
        """Achieved GFLOP/s and MFU; ``full`` adds the peak and where it came from."""
        if not self.flops:
            return {}
        achieved = self.flops * interactions_per_s / 1e9
        out: dict[str, Any] = {"achieved_gflops": achieved}
        if self.peak is not None:
            total = self.peak.gflops * self.processes
            out["mfu"] = achieved / total
            if full:
                out.update(peak_gflops=total, peak_source=self.peak.source)
        return out

    def add(self, record: dict) -> dict:
        """A periodic log line with achieved GFLOP/s and MFU for its ``interactions_per_s``,
        under ``throughput`` (a rate, like the clock readings that comparisons of runs leave
        out); unchanged without a rate or a FLOP count."""
        fields = self.fields(record.get("interactions_per_s") or 0.0, full=False)
        return (
            {**record, "throughput": fields}
            if fields and "interactions_per_s" in record
            else record
        )

    def results(self, throughput: dict) -> dict:
        """results.json's ``throughput``: the process count, the rates, and every FLOP field."""
        return {
            "processes": self.processes,
            **throughput,
            **self.fields(throughput["interactions_per_s"]),
        }
