"""`seqrec compare`: finished runs side by side, with confidence intervals and paired tests."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from seqrec.cli.common import out


def compare(
    runs: Annotated[
        list[str],
        typer.Argument(
            help="Run folders to compare; join seeds of one arm with commas (runs/a_s1,runs/a_s2)."
        ),
    ],
    baseline: Annotated[
        bool, typer.Option("--baseline", help="Compare each run with the first only.")
    ] = False,
    level: Annotated[float, typer.Option(help="Confidence level of every interval.")] = 0.95,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Also write the comparison as JSON here.")
    ] = None,
) -> None:
    """Per-user test metrics of finished runs: each run's mean with its CI, and for every pair
    (or each run against the first, --baseline) the paired difference, its CI, the t-test and
    Wilcoxon p-values and Holm's correction. Runs must share their data and test protocol."""
    from seqrec.comparison import compare as compare_runs
    from seqrec.errors import SeqrecError
    from seqrec.trainer.checkpoint import atomic_write_text

    result = compare_runs(runs, baseline=baseline, level=level)
    out.print(result.to_text(), highlight=False, soft_wrap=True)
    if json_out is not None:
        try:
            atomic_write_text(json_out, result.to_json())
        except OSError as err:
            raise SeqrecError(
                f"cannot write {json_out} ({err.strerror}); pass a writable --json path"
            ) from None
        out.print(f"wrote {json_out}", highlight=False)
