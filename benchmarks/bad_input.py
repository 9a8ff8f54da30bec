"""The bad-input suite (tests/badinput) counted by class: how many ways of using seqrec wrongly
are checked, and how many of them get one line with a fix and leave every file intact.

    python benchmarks/bad_input.py               # run the suite, write the counts
    python benchmarks/bad_input.py --messages    # also print every message a user would see

Runs ``pytest tests/badinput`` against this checkout's ``src/`` in a subprocess, with
``SEQREC_BADINPUT_REPORT`` pointing the suite's conftest at a temporary file: each case's class
(files, configs, checkpoints, packages, paths, signals, short-answers, sampled-eval, requests),
its outcome and the messages it checked, with no pytest plugin. Each case asserts the exit
status (CLI 2, API SeqrecError, HTTP the documented status), a one-line message naming the
problem with a fix, no traceback, and that no file present before the command changed
(tests/badinput/harness.py). Result: benchmarks/results/bad_input.json (counts per class and
outcome, the expected failures with their reasons, the suite's wall time); exits with pytest's
status, so a failing case fails the run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter

from common import ROOT, write_result

SUITE = "tests/badinput"
OUTCOMES = ("passed", "failed", "error", "xfailed", "xpassed", "skipped", "not run")


def run_suite(pytest_args: list[str]) -> tuple[dict, int, float, list[str]]:
    """(the suite's report, pytest's exit status, wall seconds, the command) for one run."""
    with tempfile.TemporaryDirectory() as tmp:
        report = os.path.join(tmp, "report.json")
        env = {
            **os.environ,
            "SEQREC_BADINPUT_REPORT": report,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "src"),
                                                        os.environ.get("PYTHONPATH")])),
        }  # fmt: skip
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", SUITE,
               *pytest_args]  # fmt: skip
        start = time.monotonic()
        proc = subprocess.run(cmd, cwd=ROOT, env=env, check=False)
        seconds = time.monotonic() - start
        if not os.path.exists(report):
            sys.exit(f"pytest wrote no report (exit {proc.returncode}); see its output above")
        with open(report) as fh:
            return json.load(fh), proc.returncode, seconds, cmd


def counts(cases: list[dict]) -> dict:
    """Cases per class and outcome, the suite's totals first."""
    total = Counter(c["outcome"] for c in cases)
    metrics = {
        "cases": len(cases),
        "classes": len({c["class"] for c in cases}),
        **{o: total[o] for o in OUTCOMES if total[o] or o in ("passed", "failed")},
    }
    for cls, n in sorted(Counter(c["class"] for c in cases).items()):
        passed = sum(1 for c in cases if c["class"] == cls and c["outcome"] == "passed")
        metrics[f"{cls}: cases"] = n
        metrics[f"{cls}: passed"] = passed
    return metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", action="store_true", help="print every checked message")
    parser.add_argument("pytest_args", nargs="*", help="extra pytest arguments (e.g. -x)")
    args = parser.parse_args()
    report, status, seconds, cmd = run_suite(args.pytest_args)
    cases = report["cases"]
    if args.messages:
        for c in cases:
            for msg in c["messages"]:
                print(f"[{c['class']}] {c['id'].split('::', 1)[1]}\n    {msg}")
    metrics = counts(cases)
    metrics["seconds (suite)"] = round(report["seconds"], 1)
    metrics["seconds (with start-up)"] = round(seconds, 1)
    by_class = {
        cls: dict(Counter(c["outcome"] for c in cases if c["class"] == cls))
        for cls in sorted({c["class"] for c in cases})
    }
    write_result(
        "bad_input",
        metrics,
        dataset="generated tiny logs, one tiny trained run and its package (tests/conftest.py)",
        protocol={
            "suite": SUITE,
            "doors": "CLI in process (seqrec.cli.main under typer's CliRunner), Python API, "
            "HTTP (httpx ASGI transport), and real `python -m seqrec` processes for signals "
            "and exit codes",
            "each case asserts": "exit status (CLI 2 / SeqrecError / the documented HTTP "
            "status), a one-line message naming the problem with a fix (harness.FIX), no "
            "traceback, no pre-existing file changed (sha256 before and after)",
            "pytest": " ".join(cmd[1:]),
        },
        command="python benchmarks/bad_input.py" + "".join(f" {a}" for a in args.pytest_args),
        extra={
            "by_class": by_class,
            "xfailed": {
                c["id"]: c.get("xfail_reason", "") for c in cases if c["outcome"] == "xfailed"
            },
            "failed": [c["id"] for c in cases if c["outcome"] in ("failed", "error", "xpassed")],
        },
    )
    sys.exit(status)


if __name__ == "__main__":
    main()
