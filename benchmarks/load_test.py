"""HTTP load test of `seqrec serve`: requests/s, p50/p99 latency and errors, single and batch.

    python benchmarks/load_test.py                      # package from runs/sasrec-ml-1m, 60 s/mode
    python benchmarks/load_test.py --package PKG --duration 30 --connections 16
    python benchmarks/load_test.py --tiny --duration 5   # smoke run on a generated tiny model

Starts `seqrec serve` on 127.0.0.1 (a free port) in a subprocess, waits for /health, then drives
POST /recommend (one history per request) and POST /recommend/batch (--batch-size histories per
request) with wrk and a Lua script that cycles through pre-generated JSON bodies (histories of
5-50 items drawn by training popularity). Without wrk on PATH (or with --tool httpx) a bounded
asyncio + httpx closed-loop generator is used instead, and the result says so. The server is
always stopped (SIGTERM, then SIGKILL). Result: benchmarks/results/load_test.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

from common import write_result
from serving import add_package_args, get_json, resolve_package, running_server, sample_bodies

LUA = r"""
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local bodies = {}
for line in io.lines("%(bodies)s") do bodies[#bodies + 1] = line end
local i = 0
request = function()
  i = i %% #bodies + 1
  return wrk.format(nil, "%(path)s", nil, bodies[i])
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests": %%d, "duration_us": %%d, "errors": {"connect": %%d, "read": %%d, ' ..
    '"write": %%d, "status": %%d, "timeout": %%d}, "latency_us": {"p50": %%f, "p90": %%f, ' ..
    '"p99": %%f, "max": %%f, "mean": %%f}}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    latency.mean))
end
"""


def run_wrk(url: str, path: str, bodies: list[str], args, workdir: Path) -> dict:
    body_file = workdir / f"bodies{path.replace('/', '_')}.jsonl"
    body_file.write_text("\n".join(bodies) + "\n")
    script = workdir / f"post{path.replace('/', '_')}.lua"
    script.write_text(LUA % {"bodies": body_file, "path": path})
    cmd = [
        "wrk",
        f"-t{args.wrk_threads}",
        f"-c{args.connections}",
        f"-d{args.duration}s",
        "--timeout",
        "10s",
        "-s",
        str(script),
        url,
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=args.duration + 60)
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("WRK_JSON ")), None)
    if out.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
    raw = json.loads(line.removeprefix("WRK_JSON "))
    seconds = raw["duration_us"] / 1e6
    errors = sum(raw["errors"].values())
    return {
        "requests": raw["requests"],
        "seconds": seconds,
        "requests_per_s": raw["requests"] / seconds,
        "p50_ms": raw["latency_us"]["p50"] / 1e3,
        "p90_ms": raw["latency_us"]["p90"] / 1e3,
        "p99_ms": raw["latency_us"]["p99"] / 1e3,
        "max_ms": raw["latency_us"]["max"] / 1e3,
        "errors": errors,
        "error_kinds": raw["errors"],
    }


def run_httpx(url: str, path: str, bodies: list[str], args) -> dict:
    """Closed loop: --connections clients, each sending its next request when the last
    returns, until --duration seconds or --max-requests requests have gone."""
    import httpx

    async def go():
        latencies: list[float] = []
        errors = {"status": 0, "transport": 0}
        stop_at = time.perf_counter() + args.duration
        budget = [args.max_requests]

        async def client_loop(cid: int, client: httpx.AsyncClient):
            i = cid
            while time.perf_counter() < stop_at and budget[0] > 0:
                budget[0] -= 1
                body = bodies[i % len(bodies)]
                i += args.connections
                t0 = time.perf_counter()
                try:
                    res = await client.post(
                        path, content=body, headers={"content-type": "application/json"}
                    )
                    if res.status_code >= 400:
                        errors["status"] += 1
                except httpx.HTTPError:
                    errors["transport"] += 1
                latencies.append(time.perf_counter() - t0)

        limits = httpx.Limits(max_connections=args.connections)
        async with httpx.AsyncClient(base_url=url, limits=limits, timeout=10.0) as client:
            t0 = time.perf_counter()
            await asyncio.gather(*(client_loop(c, client) for c in range(args.connections)))
            return latencies, errors, time.perf_counter() - t0

    latencies, errors, seconds = asyncio.run(go())
    lat = np.asarray(latencies) * 1e3
    return {
        "requests": len(lat),
        "seconds": seconds,
        "requests_per_s": len(lat) / seconds,
        "p50_ms": float(np.percentile(lat, 50)),
        "p90_ms": float(np.percentile(lat, 90)),
        "p99_ms": float(np.percentile(lat, 99)),
        "max_ms": float(lat.max()),
        "errors": sum(errors.values()),
        "error_kinds": errors,
    }


def warm_up(url: str, bodies: dict) -> None:
    for path, key in (("/recommend", "single"), ("/recommend/batch", "batch")):
        for body in bodies[key][:5]:
            req = urllib.request.Request(
                url + path, data=body.encode(), headers={"content-type": "application/json"}
            )
            with urllib.request.urlopen(req, timeout=30) as res:
                assert res.status == 200, res.status


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    add_package_args(p)
    p.add_argument("--duration", type=int, default=60, help="seconds per mode (default 60)")
    p.add_argument("--connections", type=int, default=8, help="concurrent connections")
    p.add_argument("--wrk-threads", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=16, help="histories per batch request")
    p.add_argument("-k", type=int, default=10)
    p.add_argument("--modes", default="single,batch")
    p.add_argument("--tool", choices=["auto", "wrk", "httpx"], default="auto")
    p.add_argument(
        "--max-requests", type=int, default=1_000_000, help="cap per mode (httpx tool only)"
    )
    p.add_argument("--name", default="load_test", help="result file benchmarks/results/NAME.json")
    args = p.parse_args()

    tool = args.tool
    if tool == "auto":
        tool = "wrk" if shutil.which("wrk") else "httpx"
    if tool == "wrk" and not shutil.which("wrk"):
        raise SystemExit("wrk is not on PATH (apt-get install wrk) or use --tool httpx")
    package = resolve_package(args)
    manifest = json.loads((package / "manifest.json").read_text())
    bodies = sample_bodies(package, 400, args.k, args.batch_size)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    paths = {"single": "/recommend", "batch": "/recommend/batch"}
    results = {}
    with running_server(package, args) as url, tempfile.TemporaryDirectory() as tmp:
        warm_up(url, bodies)
        for mode in modes:
            print(f"{mode}: {tool}, {args.connections} connections, {args.duration} s", flush=True)
            if tool == "wrk":
                results[mode] = run_wrk(url, paths[mode], bodies[mode], args, Path(tmp))
            else:
                results[mode] = run_httpx(url, paths[mode], bodies[mode], args)
        server_stats = get_json(f"{url}/metadata")["micro_batching"]

    metrics = {}
    for mode, r in results.items():
        metrics[f"{mode} requests/s"] = r["requests_per_s"]
        if mode == "batch":
            metrics["batch recommendations/s"] = r["requests_per_s"] * args.batch_size
        metrics[f"{mode} p50 ms"] = r["p50_ms"]
        metrics[f"{mode} p99 ms"] = r["p99_ms"]
        metrics[f"{mode} errors"] = r["errors"]
        metrics[f"{mode} requests"] = r["requests"]
    metrics["server mean micro-batch"] = server_stats["mean_batch"]
    write_result(
        args.name,
        metrics,
        dataset=str(manifest.get("dataset", {}).get("name")),
        protocol={
            "tool": tool,
            "duration_s_per_mode": args.duration,
            "connections": args.connections,
            "batch_size": args.batch_size,
            "k": args.k,
            "histories": "5-50 items drawn by training popularity, 400 distinct bodies",
            "server": {
                "host": "127.0.0.1",
                "torch_threads": args.server_threads,
                "max_batch": args.max_batch,
                "max_wait_ms": args.max_wait_ms,
                "index": args.index,
            },
            "model": manifest.get("model"),
            "n_items": manifest.get("n_items"),
            "package": str(package),
        },
        notes="client and server share the machine's cores",
        extra={"details": results, "server_micro_batching": server_stats},
    )


if __name__ == "__main__":
    main()
