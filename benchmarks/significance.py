"""Paired comparison of finished runs, recorded as a benchmark result.

    python benchmarks/significance.py runs/sasrec-beauty runs/cl4srec-beauty
    python benchmarks/significance.py RUN_A RUN_B RUN_C --baseline --name zoo_beauty
    python benchmarks/significance.py A_s42,A_s1,A_s2 B_s42,B_s1,B_s2   # seed means, paired

The statistics and the pairing checks are the package's (`seqrec.comparison`, `seqrec compare`);
this wrapper exists because the result files' recorded commands call it, and it adds what a
benchmark needs on top: a result file benchmarks/results/NAME.json written through
common.write_result, which make_results.py renders (the model zoo tables among them).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from common import write_result
from seqrec.comparison import DEFAULT_METRICS, compare
from seqrec.errors import SeqrecError


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "runs", nargs="+", help="finished run folders (same data); A_s42,A_s1,... averages seeds"
    )
    ap.add_argument("--name", help="result file name (default significance_<run names>)")
    ap.add_argument("--level", type=float, default=0.95, help="confidence level of the CIs")
    ap.add_argument(
        "--baseline", action="store_true", help="test only the first run against each other run"
    )
    ap.add_argument("--no-write", action="store_true", help="print only, write no result file")
    args = ap.parse_args()
    try:
        result = compare(args.runs, args.baseline, metrics=DEFAULT_METRICS, level=args.level)
    except SeqrecError as err:
        raise SystemExit(str(err)) from None
    print(result.to_text())
    if args.no_write:
        return
    report = result.to_dict()
    first = Path(next(iter(result.runs.values()))[0])
    res = json.loads((first / "results.json").read_text())
    metrics = {
        f"{run}/{k}": v["mean"] for run, table in report["runs"].items() for k, v in table.items()
    }
    users = result.rows[0]["n_users"]
    tested = "(first run, other run)" if args.baseline else "pair"
    write_result(
        args.name or "significance_" + "_vs_".join(Path(a.split(",")[0]).name for a in args.runs),
        metrics,
        dataset=res["config"]["data"]["dataset"],
        protocol=res["test"]["protocol"],
        notes=f"{args.level * 100:g}% normal CIs over {users} test users; paired t-test and "
        f"Wilcoxon signed-rank (zeros dropped) on per-user values; Holm over all {tested} x "
        "metric t-tests (seqrec.comparison)",
        extra={"runs": result.runs, "report": report},
    )


if __name__ == "__main__":
    main()
