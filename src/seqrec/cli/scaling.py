"""Scaling studies: `seqrec apen` (a dataset's Approximate Entropy), `seqrec sweep` (a grid of
runs into one table) and `seqrec fit` (scaling laws fitted to that table)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from seqrec.cli.common import Overrides, out, print_table, write_json


def apen(
    dataset: Annotated[str, typer.Argument(help="Catalogue name or path.")],
    set_: Overrides = None,
    m: Annotated[int, typer.Option("--m", help="Template length m.")] = 2,
    r: Annotated[
        float, typer.Option("--r", help="Tolerance on item ids; any r < 1 is an exact match.")
    ] = 0.0,
    last_n: Annotated[
        int, typer.Option("--last-n", help="Last items per user (0 = whole sequence).")
    ] = 50,
    absolute: Annotated[
        bool, typer.Option("--absolute", help="|ApEn| per user, as the [PL] script does.")
    ] = False,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Also write the summary here (JSON).")
    ] = None,
) -> None:
    """Approximate Entropy of users' item sequences (Performance Law data term), averaged."""
    from seqrec.scaling.apen import dataset_apen

    res = dataset_apen(dataset, set_, m=m, r=r, last_n=last_n, absolute=absolute)
    summary = res.summary()
    table = Table(title=f"ApEn of {dataset} (m={m}, r={r:g}, last_n={last_n or 'all'})")
    for col in ("dataset", "users used", "skipped", "mean ApEn", "std", "params", "seconds"):
        table.add_column(col, justify="left" if col in ("dataset", "params") else "right")
    params = ", ".join(f"{k}={v}" for k, v in summary["params"].items())
    table.add_row(
        dataset,
        f"{res.n_users:,}",
        f"{res.n_skipped:,}",
        f"{res.mean:.6f}",
        f"{res.std:.6f}",
        params,
        f"{res.seconds:.2f}",
    )
    print_table(table)
    if json_out is not None:
        write_json(json_out, summary, "summary")


def sweep(
    spec: Annotated[Path, typer.Argument(help="Sweep spec YAML (benchmarks/sweeps/).")],
    out_dir: Annotated[Path, typer.Option("--out", help="Sweep folder (runs/, results.parquet).")],
    device: Annotated[
        str | None, typer.Option(help="train.device for every run (not part of the hash).")
    ] = None,
    jobs: Annotated[int, typer.Option(help="Runs trained at once (subprocesses).")] = 1,
    in_process: Annotated[
        bool, typer.Option(help="Train in this process, one run at a time.")
    ] = False,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Train every point of a sweep spec; finished runs are skipped (a sweep resumes).

    One row per run in OUT/results.parquet (docs/SCALING.md); a failed run is recorded there
    with its error and the sweep goes on."""
    from seqrec.scaling.sweep import run_sweep

    res = run_sweep(
        spec,
        out_dir,
        device=device,
        jobs=jobs,
        in_process=in_process,
        progress=progress,
        on_event=lambda msg: out.print(escape(msg), highlight=False),
    )
    out.print(
        f"{res.planned} runs: {res.ran} trained, {res.skipped} already finished, "
        f"{len(res.failed)} failed; table: {res.table}",
        highlight=False,
    )


def fit(
    table: Annotated[Path, typer.Argument(help="results.parquet written by `seqrec sweep`.")],
    x: Annotated[str, typer.Option(help="params | non_embedding | flops | data | seen")] = "params",
    y: Annotated[
        str, typer.Option(help="test_ndcg10 | test_hr10 | train_loss | valid_ndcg10")
    ] = "test_ndcg10",
    form: Annotated[
        str | None, typer.Option(help="power | saturating (default: saturating for a loss).")
    ] = None,
    holdout: Annotated[
        str, typer.Option(help="none | largest[:K] | random:K runs kept out of the fit.")
    ] = "largest",
    budget: Annotated[
        float | None, typer.Option(help="Training FLOPs: compute-optimal size (joint fit).")
    ] = None,
    model: Annotated[str | None, typer.Option(help="Only this model family's runs.")] = None,
    boot: Annotated[
        int,
        typer.Option(
            help="Bootstrap resamples for the intervals (the Performance Law's: at most 200, "
            "each is a nonlinear refit)."
        ),
    ] = 500,
    seed: Annotated[int, typer.Option(help="Seed of resampling and random hold-out.")] = 0,
    perf_law: Annotated[bool, typer.Option(help="Also fit the Performance Law.")] = True,
    law: Annotated[str, typer.Option(help="Performance Law form: seed | code.")] = "seed",
    data_form: Annotated[str, typer.Option(help="D' = tokens*ApEn (multiply) or divide.")] = (
        "multiply"
    ),
    cv: Annotated[
        bool,
        typer.Option(help="Also score the Performance Law by leave-one-out (one refit per run)."),
    ] = False,
    plot: Annotated[Path | None, typer.Option(help="Write a PNG of runs and fits.")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the report.")] = None,
) -> None:
    """Fit scaling laws (power, saturating, Chinchilla joint, Performance Law) to a sweep."""
    from seqrec.scaling.fit import fit_table, load_rows
    from seqrec.scaling.fit_plot import plot_fit

    report = fit_table(
        load_rows(table, model), x, y, form=form, holdout=holdout, budget=budget, n_boot=boot,
        seed=seed, perf_law=perf_law, law=law, data_form=data_form, perf_law_cv=cv,
        perf_law_boot=min(boot, 200),
    )  # fmt: skip
    print_table(_laws_table(report, f"{y} vs {x}: {report['n_runs']} runs, hold-out {holdout}"))
    pl_held = (report.get("perf_law") or {}).get("heldout")
    if pl_held:
        t = Table(title=f"Performance Law on held-out runs: {y}")
        for col in ("config", "predicted", "measured"):
            t.add_column(col, justify="left" if col == "config" else "right")
        for h in pl_held:
            t.add_row(h["config_hash"], f"{h['predicted']:.4f}", f"{h['measured']:.4f}")
        print_table(t)
    _say("Performance Law leave-one-out", (report.get("perf_law") or {}).get("cv"),
         lambda cv: f"Performance Law leave-one-out over {len(cv['predicted'])} runs (each "
                    f"predicted by the fit to the others): R² {cv['r2_cv']:.4f}, mean |error| "
                    f"{cv['mae_cv']:.4f}")  # fmt: skip
    _say("compute-optimal", report.get("compute_optimal"),
         lambda best: f"compute-optimal at {best['budget_flops']:.3g} FLOPs: "
                      f"{best['params']:,.0f} parameters, {best['data']:,.0f} training "
                      f"interactions, predicted {y} {best['predicted']:.4f}")  # fmt: skip
    if plot is not None:
        plot_fit(report, plot)
        out.print(f"plot written to {plot}")
    if json_out is not None:
        body = {k: v for k, v in report.items() if not k.startswith("_")}
        write_json(json_out, body, "report", default=float)


def _fmt(v) -> str:
    return "n/a" if v is None else f"{v:.4g}"


def _laws_table(report: dict[str, Any], title: str) -> Table:
    """One row per fitted law (curve, joint, Performance Law): parameters with their bootstrap
    intervals, R² on the fitted and on the held-out runs; a law that failed shows its error."""
    res = Table(title=title)
    for col in ("law", "parameters (95% bootstrap CI)", "R² fit", "R² held-out", "runs fit/held"):
        res.add_column(col)
    for name in ("curve", "joint", "perf_law"):
        part = report.get(name)
        if not part:
            continue
        if "error" in part:
            res.add_row(name, escape(part["error"]), "", "", "")
            continue
        ci = part.get("ci") or {}
        params = "; ".join(
            f"{k}={_fmt(v)}" + (f" [{_fmt(ci[k][0])}, {_fmt(ci[k][1])}]" if k in ci else "")
            for k, v in part["params"].items()
        )
        label = (
            f"Performance Law ({part['law']}, D' {part['form']})" if name == "perf_law" else name
        )
        held = part.get("n_heldout", 0)
        res.add_row(label, params, _fmt(part["r2"]), _fmt(part["r2_heldout"]),
                    f"{part.get('n_fit', part.get('n_points'))}/{held}")  # fmt: skip
    return res


def _say(label: str, part: dict | None, text) -> None:
    """One line for an optional report part: its error, or ``text(part)``."""
    if part:
        msg = f"{label}: {escape(part['error'])}" if "error" in part else text(part)
        out.print(msg, highlight=False)
