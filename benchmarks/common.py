"""Shared by every benchmark: where data lives, and how a result file is written.

Each benchmark writes benchmarks/results/<name>.json (metric -> value plus the command, dataset,
protocol, machine and date); `make_results.py` renders RESULTS.md from those files, so no
number in RESULTS.md is typed by hand.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def data_dir() -> Path:
    """The offline data folder: $SEQREC_DATA_DIR or ../shared/data next to the repo."""
    env = os.environ.get("SEQREC_DATA_DIR")
    path = Path(env) if env else ROOT.parent / "shared" / "data"
    if not path.is_dir():
        sys.exit(
            f"data folder {path} not found; set SEQREC_DATA_DIR to the folder holding the datasets"
        )
    os.environ["SEQREC_DATA_DIR"] = str(path)
    return path


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def git_commit() -> str | None:
    try:
        return subprocess.check_output(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True
        ).strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def write_result(
    name: str,
    metrics: dict,
    *,
    dataset: str,
    protocol: dict | str,
    notes: str = "",
    command: str | None = None,
    extra: dict | None = None,
) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    record = {
        "name": name,
        "metrics": metrics,
        "dataset": dataset,
        "protocol": protocol,
        "command": command or "python " + " ".join(shlex.quote(a) for a in sys.argv),
        "machine": machine(),
        "commit": git_commit(),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "notes": notes,
        **(extra or {}),
    }
    path = RESULTS / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=2, default=float) + "\n")
    tmp.replace(path)
    print(json.dumps(record["metrics"], indent=2, default=float))
    return path
