"""Shared by the serving benchmarks (load_test.py, api_fuzz.py): find or build a model package,
start `seqrec serve` on 127.0.0.1 in a subprocess, wait for /health, and always stop it.

Only loopback addresses are ever contacted.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from common import ROOT

HOST = "127.0.0.1"
PACKAGES = ROOT / ".cache" / "packages"
DEFAULT_RUN = ROOT / "runs" / "sasrec-ml-1m"


def add_package_args(parser) -> None:
    parser.add_argument(
        "--package",
        type=Path,
        help="model package (or finished run folder, exported first) to serve; default: "
        "export runs/sasrec-ml-1m when it has finished",
    )
    parser.add_argument(
        "--tiny",
        action="store_true",
        help="serve a tiny model trained in seconds on generated data (smoke runs)",
    )
    parser.add_argument("--server-threads", type=int, default=1, help="torch threads of the server")
    parser.add_argument("--max-batch", type=int, default=64, help="server micro-batch size")
    parser.add_argument("--max-wait-ms", type=float, default=2.0, help="server micro-batch wait")
    parser.add_argument("--index", default="exact", help="exact | faiss")


def _export(run: Path, out: Path) -> Path:
    from seqrec.run import Run
    from seqrec.run.package import is_package

    stamp = (run / "results.json").stat().st_mtime
    if is_package(out) and out.stat().st_mtime >= stamp:
        return out
    print(f"exporting {run} -> {out}", flush=True)
    Run(run).export(out, overwrite=True)
    return out


def tiny_package(n_users: int = 400, n_items: int = 500, seed: int = 0) -> Path:
    """A small SASRec (width 16, 1 block) trained for 2 epochs on generated cycle data."""
    import numpy as np

    from seqrec.recipe import build_config
    from seqrec.run.package import is_package
    from seqrec.trainer.run import train_run

    root = ROOT / ".cache" / "tiny-serving"
    pkg = PACKAGES / "tiny"
    if is_package(pkg):
        return pkg
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = ["user_id,item_id,timestamp"]
    for u in range(n_users):
        start, length = int(rng.integers(n_items)), int(rng.integers(5, 40))
        rows += [f"{u},{(start + t) % n_items},{1000 * u + t}" for t in range(length)]
    log = root / "log.csv"
    log.write_text("\n".join(rows) + "\n")
    cfg = build_config(
        {
            "data": {"dataset": str(log), "max_len": 50},
            "model": {"hidden": 16, "layers": 1, "heads": 1},
            "train": {
                "epochs": 2,
                "batch_size": 64,
                "lr": 0.01,
                "warmup_steps": 0,
                "device": "cpu",
                "threads": 1,
            },
            "eval": {"ks": [10]},
        }
    )
    os.environ.setdefault("SEQREC_CACHE_DIR", str(root / "cache"))
    train_run(cfg, root / "run", overwrite=True, progress=False)
    return _export(root / "run", pkg)


def resolve_package(args) -> Path:
    if args.tiny:
        return tiny_package()
    if args.package is not None:
        from seqrec.errors import SeqrecError
        from seqrec.run.package import read_manifest

        if (args.package / "results.json").is_file():  # a finished run: export it first
            return _export(args.package, PACKAGES / args.package.resolve().name)
        try:
            read_manifest(args.package)
        except SeqrecError as err:
            sys.exit(f"error: {err}")
        return args.package
    if (DEFAULT_RUN / "results.json").is_file():
        return _export(DEFAULT_RUN, PACKAGES / DEFAULT_RUN.name)
    sys.exit(
        f"no package: {DEFAULT_RUN} has not finished training; pass --package DIR "
        "(from `seqrec export`) or --tiny for a smoke run"
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def get_json(url: str, timeout: float = 5.0) -> dict:
    with urllib.request.urlopen(url, timeout=timeout) as res:  # loopback only
        return json.loads(res.read())


@contextlib.contextmanager
def running_server(package: Path, args, startup_timeout: float = 180.0) -> Iterator[str]:
    """Start `seqrec serve` on 127.0.0.1:<free port>; yield its base URL; always stop it."""
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "seqrec.cli",
        "serve",
        str(package),
        "--host",
        HOST,
        "--port",
        str(port),
        "--log-level",
        "warning",
        "--threads",
        str(args.server_threads),
        "--max-batch",
        str(args.max_batch),
        "--max-wait-ms",
        str(args.max_wait_ms),
        "--index",
        args.index,
    ]
    url = f"http://{HOST}:{port}"
    with (
        tempfile.TemporaryDirectory(prefix="seqrec-serve-") as tmp,
        open(Path(tmp) / "server.log", "w+") as log,
    ):
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.monotonic() + startup_timeout
            while True:
                if proc.poll() is not None:
                    log.seek(0)
                    raise RuntimeError(
                        f"server exited with {proc.returncode}:\n{log.read()[-3000:]}"
                    )
                try:
                    if get_json(f"{url}/health", timeout=2.0).get("status") == "ok":
                        break
                except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"server not healthy after {startup_timeout:.0f} s")
                time.sleep(0.2)
            print(f"server up at {url} (pid {proc.pid})", flush=True)
            yield url
        finally:
            stop(proc)


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM the server's process group, then SIGKILL if it has not gone in 10 s."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def sample_bodies(package: Path, n: int, k: int, batch_size: int, seed: int = 0) -> dict:
    """JSON bodies for /recommend and /recommend/batch: histories of 5-50 items drawn by
    training popularity (a realistic mix of head and tail items)."""
    import numpy as np
    import polars as pl

    items = pl.read_parquet(package / "items.parquet")
    ids = items["item_id"].to_list()
    pop = items["popularity"].to_numpy().astype(float) + 1.0
    rng = np.random.default_rng(seed)

    def one() -> dict:
        length = int(rng.integers(5, 51))
        hist = rng.choice(len(ids), size=length, p=pop / pop.sum())
        return {"history": [ids[i] for i in hist], "k": k}

    single = [json.dumps(one()) for _ in range(n)]
    batch = [json.dumps([one() for _ in range(batch_size)]) for _ in range(max(1, n // 4))]
    return {"single": single, "batch": batch}
