"""The request-body limit under a chunked over-limit body: status, bytes, server memory.

    python benchmarks/body_limit.py --tiny                # 100 MB chunked at a tiny model
    python benchmarks/body_limit.py --package PKG --body-mb 100

Starts `seqrec serve` on 127.0.0.1 (a free port) and sends POST /recommend bodies generated on
the fly in 64 KiB chunks (`Transfer-Encoding: chunked`, so no Content-Length tells the size in
advance): once as a client that sends the whole body before reading (the case that used to be
accepted, growing the server by ~400 MB), once as a client that stops when the answer arrives,
and once with an over-limit Content-Length declared. A thread samples the server's resident
memory (/proc/PID/status VmRSS) every 2 ms throughout; growth is the sampled peak minus the
resident size just before, for the server's very first request (cold: it includes one-time
first-request set-up) and for the later ones (warm: the body's own cost). The server must
answer 413 in the error shape to every client, grow by less than its limit (a chunked body is
counted in a spooled file that keeps 1 MiB in memory: `seqrec.serve.limits`) and still answer
/health afterwards. Loopback only, bounded by --body-mb per request; the server is always
stopped. Result: benchmarks/results/body_limit.json.
"""

from __future__ import annotations

import argparse
import json
import select
import socket
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

from common import write_result
from serving import add_package_args, get_json, resolve_package, running_server

LIMIT = 8 << 20  # the server's default max_body_bytes


def server_pid(port: int) -> int:
    """The `seqrec serve --port PORT` process started by running_server (found by its argv)."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if (
            b"serve" in argv
            and b"--port" in argv
            and argv[argv.index(b"--port") + 1] == b"%d" % port
        ):
            return int(proc.name)
    sys.exit(f"no seqrec serve process on port {port}")


def memory_kib(pid: int) -> dict[str, int]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0])
    return fields


class Sampler(threading.Thread):
    """Largest VmRSS seen, every ``every`` seconds, until stopped."""

    def __init__(self, pid: int, every: float = 0.002):
        super().__init__(daemon=True)
        self.pid, self.every, self.peak, self.samples = pid, every, 0, 0
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.is_set():
            self.peak = max(self.peak, memory_kib(self.pid)["VmRSS"])
            self.samples += 1
            time.sleep(self.every)

    def stop(self) -> None:
        self._done.set()
        self.join(5)


def post_chunked(port: int, total: int, stop_on_reply: bool, declare: int | None = None) -> dict:
    """POST ``total`` body bytes in 64 KiB chunks (or with Content-Length ``declare``)."""
    piece = b'{"history": [' + b'"not-an-item",' * 4_680  # ~64 KiB of unknown ids
    head = b"POST /recommend HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    head += (
        b"Transfer-Encoding: chunked\r\n\r\n"
        if declare is None
        else b"Content-Length: %d\r\n\r\n" % declare
    )
    t0, sent, send_error, reply = time.perf_counter(), 0, None, b""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(head)
        try:
            while sent < total:
                if stop_on_reply and select.select([s], [], [], 0)[0]:
                    break
                s.sendall(piece if declare is not None else b"%x\r\n%s\r\n" % (len(piece), piece))
                sent += len(piece)
            else:
                if declare is None:
                    s.sendall(b"0\r\n\r\n")
        except OSError as err:  # the server may close once it has answered
            send_error = type(err).__name__
        try:
            while not reply.endswith(b"}"):
                part = s.recv(1 << 16)
                if not part:
                    break
                reply += part
        except OSError as err:
            send_error = (send_error or "") + f" (recv: {type(err).__name__})"
    seconds = time.perf_counter() - t0
    status_line, _, rest = reply.partition(b"\r\n")
    body = rest.partition(b"\r\n\r\n")[2]
    try:
        shape = sorted(json.loads(body))
    except ValueError:
        shape = None
    return {
        "status": int(status_line.split()[1]) if status_line else None,
        "body_bytes_sent": sent,
        "response_bytes": len(reply),
        "error_keys": shape,
        "send_error": send_error,
        "seconds": seconds,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    add_package_args(p)
    p.add_argument("--body-mb", type=float, default=100, help="body size per request (MB)")
    p.add_argument("--name", default="body_limit", help="result file benchmarks/results/NAME.json")
    args = p.parse_args()
    package = resolve_package(args)
    total = int(args.body_mb * 1_000_000)
    cases = {}
    with running_server(package, args) as url:
        port = urlsplit(url).port
        pid = server_pid(port)
        time.sleep(1.0)  # let start-up allocations settle
        sampler = Sampler(pid)
        sampler.start()
        try:
            # cold: the first request the server ever gets (includes first-request set-up)
            cold = memory_kib(pid)["VmRSS"]
            cases["cold: chunked, client sends it all"] = post_chunked(port, total, False)
            cold_peak, sampler.peak = sampler.peak, 0
            time.sleep(0.5)
            # warm: the same body again, then the other two clients
            warm = memory_kib(pid)["VmRSS"]
            cases["chunked, client sends it all"] = post_chunked(port, total, False)
            cases["chunked, client stops at the reply"] = post_chunked(port, total, True)
            cases["Content-Length over the limit"] = post_chunked(port, total, True, declare=total)
            healthy = get_json(f"{url}/health").get("status") == "ok"
            time.sleep(0.2)
        finally:
            sampler.stop()
    growth = {"cold": (cold_peak - cold) / 1024, "warm": (sampler.peak - warm) / 1024}
    metrics = {
        "body MB per request": args.body_mb,
        "limit MiB": LIMIT / 2**20,
        **{f"{name}: status": c["status"] for name, c in cases.items()},
        **{f"{name}: MB sent": c["body_bytes_sent"] / 1e6 for name, c in cases.items()},
        "largest response bytes": max(c["response_bytes"] for c in cases.values()),
        "server RSS before MiB": cold / 1024,
        "server peak RSS growth MiB, first request (cold)": growth["cold"],
        "server peak RSS growth MiB, later requests (warm)": growth["warm"],
        "server RSS growth below the limit": max(growth.values()) * 2**20 < LIMIT,
        "healthy afterwards": healthy,
    }
    write_result(
        args.name,
        metrics,
        dataset="generated request bodies (unknown item ids)",
        protocol={
            "server": "seqrec serve on 127.0.0.1, default --max-body-bytes (8 MiB)",
            "body": "POST /recommend, 64 KiB chunks of unknown ids, Transfer-Encoding: chunked",
            "memory": "VmRSS sampled every 2 ms from /proc; growth = peak - VmRSS before: "
            "cold = the server's first request, warm = the three later ones",
            "package": str(package),
            "rss_samples": sampler.samples,
        },
        extra={"cases": cases},
    )
    bad = [
        n
        for n, c in cases.items()
        if c["status"] != 413 or c["error_keys"] != ["detail", "error", "message"]
    ]
    if bad or not healthy or max(growth.values()) * 2**20 >= LIMIT:
        why = bad or ("/health failed afterwards" if not healthy else "memory grew past it")
        sys.exit(f"body limit did not hold: {why}")
    print(
        f"413 for every case; server grew {growth['cold']:.1f} MiB on its first request and "
        f"{growth['warm']:.1f} MiB later (body {args.body_mb:g} MB, limit {LIMIT / 2**20:g} MiB)"
    )


if __name__ == "__main__":
    main()
