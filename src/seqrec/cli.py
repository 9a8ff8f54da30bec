"""The `seqrec` command line. Only this module knows about argv, exit codes and terminals.

Every `SeqrecError` is printed as one line (`error: ...`) with exit code 2; anything else is a
bug and keeps its traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from seqrec.errors import SeqrecError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Sequential recommendation: train, evaluate and serve next-item models.",
)
data_app = typer.Typer(no_args_is_help=True, help="Inspect and prepare datasets.")
app.add_typer(data_app, name="data")
out = Console()

Preset = Annotated[
    str | None, typer.Option("--config", "-c", help="Preset name in configs/ or a YAML file.")
]
Overrides = Annotated[
    list[str] | None,
    typer.Option("--set", "-o", help="Dotted override, e.g. -o model.layers=4 (repeatable)."),
]


def _seen_label(mask_seen: bool | str) -> str:
    """How a result's protocol treated already-seen items, for table titles."""
    if mask_seen == "window":
        return "seen items in the model's window masked"
    return "seen items masked" if mask_seen else "seen items kept"


def _metrics_table(
    title: str, sections: dict[str, dict[str, float]], ks=(1, 5, 10, 20, 50, 100)
) -> Table:
    table = Table(title=title)
    table.add_column("split")
    names = [f"{m}@{k}" for m in ("HR", "NDCG") for k in ks] + ["MRR"]
    first = next(iter(sections.values()))
    names = [n for n in names if n in first]
    for n in names:
        table.add_column(n, justify="right")
    for split, metrics in sections.items():
        table.add_row(split, *[f"{metrics[n]:.4f}" for n in names])
    return table


def _print_table(table: Table) -> None:
    """Print a table; piped output (files, CI logs) gets the table's natural width instead of
    80 columns, so metric values are never cut to '0.42…'."""
    (out if out.is_terminal else Console(width=1000)).print(table)


@data_app.command("list")
def data_list() -> None:
    """List the datasets the catalogue knows (name, source, preprocessing)."""
    from seqrec.data import list_datasets

    table = Table(title="dataset catalogue (local copies: $SEQREC_DATA_DIR)")
    for col in ("name", "format", "defaults", "source"):
        table.add_column(col)
    for spec in list_datasets():
        defaults = ", ".join(f"{k}={v}" for k, v in spec.defaults.items()) or "-"
        table.add_row(spec.name, spec.format, defaults, spec.url)
    out.print(table)


def _data_config(dataset: str, preset: str | None, overrides: list[str] | None):
    from seqrec.recipe import load_config

    return load_config(preset, [f"data.dataset={dataset}", *(overrides or [])]).data


@data_app.command("prepare")
def data_prepare(
    dataset: Annotated[str, typer.Argument(help="Catalogue name or path.")],
    config: Preset = None,
    set_: Overrides = None,
) -> None:
    """Parse, filter and cache a dataset (later runs load the memory-mapped cache)."""
    data_stats(dataset, config, set_)


@data_app.command("stats")
def data_stats(
    dataset: Annotated[str, typer.Argument(help="Catalogue name or path.")],
    config: Preset = None,
    set_: Overrides = None,
) -> None:
    """Print users, items, interactions and sequence-length statistics."""
    from seqrec.data import prepare

    store, split = prepare(_data_config(dataset, config, set_))
    table = Table(title=f"dataset {dataset}")
    table.add_column("statistic")
    table.add_column("value", justify="right")
    for key, value in {
        **store.stats(),
        "train users": len(split.train),
        "valid users": len(split.valid),
        "test users": len(split.test),
    }.items():
        table.add_row(key, f"{value:,.4g}" if isinstance(value, float) else str(value))
    _print_table(table)


@app.command()
def train(
    config: Preset = None,
    set_: Overrides = None,
    model: Annotated[
        str | None,
        typer.Option(help="Model family, short for -o model.name=NAME (`seqrec models`)."),
    ] = None,
    task: Annotated[
        str | None,
        typer.Option(
            help="retrieval | ranking: short for -o task.name=NAME (ranking also sets "
            "data.split=temporal; metrics AUC, GAUC, log loss, calibration)."
        ),
    ] = None,
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="Run folder (default runs/<preset>).")
    ] = None,
    resume: Annotated[Path | None, typer.Option(help="Continue the run in this folder.")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing run folder.")] = False,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
) -> None:
    """Train a model, early-stop on validation NDCG@10, then evaluate the test split once.

    Multi-process: `torchrun --nproc_per_node N -m seqrec train ...` (docs/DISTRIBUTED.md).
    """
    from seqrec.recipe import load_config
    from seqrec.train.run import train_run

    if resume is not None:
        if config or set_ or model or out_dir or overwrite or task:
            raise SeqrecError(
                "--resume continues a run with the config saved in its folder; "
                "drop -c/--set/--model/--out/--overwrite (or start a new run without --resume)"
            )
        run_dir = resume
        cfg = None
    else:
        by_task = [f"task.name={task}"] if task else []
        if task == "ranking":
            by_task.insert(0, "data.split=temporal")
        cfg = load_config(
            config, [*by_task, *(set_ or []), *([f"model.name={model}"] if model else [])]
        )
        # --model names the run after the model it trains, not after the preset it borrows
        by_model = f"{cfg.model.name}-{Path(cfg.data.dataset).stem}"
        if cfg.task.name == "ranking":
            by_model = (
                f"ranking-{cfg.task.baseline or cfg.model.name}-{Path(cfg.data.dataset).stem}"
            )
        name = Path(config).stem if config and not model else by_model
        run_dir = out_dir or Path("runs") / name
    if _is_ranking(cfg, resume):
        _train_ranking(cfg, run_dir, resume is not None, overwrite, progress)
        return
    from seqrec.train.distributed import is_main_process

    try:
        results = train_run(
            cfg, run_dir, resume=resume is not None, overwrite=overwrite, progress=progress
        )
    except SeqrecError:
        if not is_main_process():  # under torchrun rank 0 reports it; the others stay quiet
            raise typer.Exit(2) from None
        raise
    if not is_main_process():
        return
    params = results["params"]
    protocol = results["test"]["protocol"]
    label = protocol["ranking"] + (" ranking" if protocol["ranking"] == "full" else "")
    label += ", " + _seen_label(protocol["mask_seen"])
    tested = f"best epoch {results['best_epoch']}"
    if results.get("selected") == "last epoch":
        tested = f"last epoch {results['tested_epoch']}, best validation {results['best_epoch']}"
    _print_table(
        _metrics_table(
            f"{results['config']['model']['name']} on {results['dataset']['name']} — {label} "
            f"({tested}, {params['total']:,} parameters)",
            {"valid": results["valid"]["metrics"], "test": results["test"]["metrics"]},
        )
    )
    out.print(f"run saved in {run_dir}")


def _is_ranking(cfg, run: Path | None, marker: str = "checkpoint.pt") -> bool:
    """Whether ``cfg`` (or the run folder ``run``, read when it holds ``marker``) is a
    ranking-task run. A baseline ranking run (popularity, item-kNN) has a config but no
    checkpoint, so `evaluate` asks for config.yaml."""
    if cfg is not None:
        return cfg.task.name == "ranking"
    if not (run / marker).is_file():
        return False  # the retrieval path reports what is missing, with the fix
    from seqrec.train.run import load_run_config

    return load_run_config(run).task.name == "ranking"


def _train_ranking(cfg, run_dir: Path, resume: bool, overwrite: bool, progress: bool) -> None:
    """`seqrec train` for task.name=ranking (task/ranking.py): AUC, GAUC, log loss, ECE."""
    from seqrec.task.ranking import train_ranking_run

    res = train_ranking_run(cfg, run_dir, resume=resume, overwrite=overwrite, progress=progress)
    _print_ctr_table(
        f"ranking {res['ranker']} on {res['dataset']['name']} — temporal split, real "
        f"events (best epoch {res['best_epoch']}, {res['params']['total']:,} parameters)",
        {part: res[part]["metrics"] for part in ("valid", "test")},
    )
    out.print(f"run saved in {run_dir}")


def _print_ctr_table(title: str, sections: dict[str, dict]) -> None:
    table = Table(title=title)
    names = ("AUC", "GAUC", "LogLoss", "ECE", "mean_pred", "pos_rate", "examples")
    table.add_column("split")
    for n in names:
        table.add_column(n, justify="right")
    for part, m in sections.items():
        cells = [f"{m[n]:.4f}" if isinstance(m[n], float) else str(m[n]) for n in names]
        table.add_row(part, *cells)
    _print_table(table)


@app.command()
def evaluate(
    run: Annotated[Path, typer.Argument(help="Run folder written by `seqrec train`.")],
    split: Annotated[str, typer.Option(help="valid or test")] = "test",
    sampled: Annotated[
        str | None, typer.Option(help="uniform | popularity: sampled metrics (labelled so).")
    ] = None,
    negatives: Annotated[int, typer.Option(help="Negatives for sampled metrics.")] = 100,
    keep_seen: Annotated[bool, typer.Option(help="Do not mask already-seen items.")] = False,
    mask_window: Annotated[
        bool,
        typer.Option(
            help="Mask only the seen items inside the model's window (the last data.max_len), "
            "as generative-recommenders evaluates."
        ),
    ] = False,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Also write the result here.")
    ] = None,
    overwrite: bool = False,
) -> None:
    """Evaluate a trained run's best weights (full ranking unless --sampled; a ranking-task
    run reports AUC, GAUC, log loss and calibration)."""
    from seqrec.train.evaluate_run import evaluate_run

    if _is_ranking(None, run, marker="config.yaml"):
        from seqrec.task.ranking import evaluate_ranking_run

        metrics = evaluate_ranking_run(run, split, json_out, overwrite)
        _print_ctr_table(f"{run} — ranking task, real events", {split: metrics})
        return
    res = evaluate_run(
        run, split, sampled, negatives, keep_seen, json_out, overwrite, mask_window=mask_window
    )
    label = res.protocol["ranking"] + ", " + _seen_label(res.protocol["mask_seen"])
    _print_table(_metrics_table(f"{run} — {label}", {split: res.metrics}))


@app.command()
def recommend(
    run: Annotated[
        Path, typer.Argument(help="Model package (`seqrec export`) or run folder (`seqrec train`).")
    ],
    output: Annotated[Path, typer.Option("--out", help="Output .csv or .parquet file.")],
    users: Annotated[str | None, typer.Option(help="Comma-separated original user ids.")] = None,
    histories: Annotated[
        Path | None, typer.Option(help="File: one history per line, `id item item ...`.")
    ] = None,
    all_users: Annotated[
        bool, typer.Option("--all-users", help="Every user of the run's dataset.")
    ] = False,
    k: Annotated[int, typer.Option("-k", help="Recommendations per user.")] = 10,
    skip_unknown: Annotated[
        bool, typer.Option(help="Drop history items the model does not know.")
    ] = False,
    keep_seen: Annotated[bool, typer.Option(help="Allow already-seen items.")] = False,
    chunk: Annotated[
        int, typer.Option(help="Users scored and written at once (bounds memory).")
    ] = 1024,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    overwrite: bool = False,
) -> None:
    """Top-K items for dataset users or for histories read from a file (original item ids).

    Streams users in chunks into a temporary file that is renamed into place at the end."""
    from seqrec.serve.batch import recommend_to_file

    n = recommend_to_file(
        run,
        output,
        users,
        histories,
        k,
        skip_unknown,
        overwrite,
        all_users=all_users,
        chunk=chunk,
        exclude_seen=not keep_seen,
        progress=progress,
    )
    out.print(f"wrote {n} recommendation rows to {output}")


@app.command()
def export(
    run: Annotated[Path, typer.Argument(help="Finished run folder written by `seqrec train`.")],
    out_dir: Annotated[Path, typer.Argument(help="Package folder to create.")],
    item_metadata: Annotated[
        Path | None,
        typer.Option(
            help="Item metadata: MovieLens movies.dat (id::title::genres), CSV/TSV or parquet."
        ),
    ] = None,
    metadata_id_col: Annotated[
        str | None, typer.Option(help="Item id column of the metadata file (default: guessed).")
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing package.")] = False,
) -> None:
    """Write a model package: safetensors weights, config, id maps, popularity, metadata."""
    from seqrec.package import export_package

    manifest = export_package(run, out_dir, item_metadata, metadata_id_col, overwrite)
    out.print(
        f"exported {manifest['model']} ({manifest['n_items']} items, "
        f"{len(manifest['files'])} files + manifest) to {out_dir}"
    )


@app.command()
def serve(
    package: Annotated[Path, typer.Argument(help="Model package written by `seqrec export`.")],
    host: Annotated[str, typer.Option(help="Address to bind (loopback by default).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    index: Annotated[str, typer.Option(help="exact | faiss (needs faiss-cpu).")] = "exact",
    max_batch: Annotated[int, typer.Option(help="Most requests scored together.")] = 64,
    max_wait_ms: Annotated[
        float, typer.Option(help="How long a request waits for others to batch with.")
    ] = 2.0,
    threads: Annotated[int | None, typer.Option(help="Torch / faiss CPU threads.")] = None,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
) -> None:
    """Serve a model package over HTTP (FastAPI + uvicorn; docs at /docs)."""
    try:
        import uvicorn

        from seqrec.serve.app import create_app
    except ImportError as err:
        raise SeqrecError(
            f"serving needs fastapi and uvicorn ({err.name} is missing); "
            "`pip install 'seqrec[serve]'`"
        ) from None
    import torch

    from seqrec.package import load
    from seqrec.serve.batch import refuse_timestamp_models
    from seqrec.serve.index import build_index

    if threads:
        torch.set_num_threads(threads)
    rec = refuse_timestamp_models(load(package), package)
    rec.index = build_index(index, rec, threads)
    app = create_app(rec, max_batch=max_batch, max_wait_ms=max_wait_ms, index_name=index)
    out.print(f"serving {package} on http://{host}:{port} (docs: /docs)")
    uvicorn.run(app, host=host, port=port, log_level=log_level)


@app.command()
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
    import json

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
    _print_table(table)
    if json_out is not None:
        try:
            json_out.write_text(json.dumps(summary, indent=2) + "\n")
        except OSError as err:
            raise SeqrecError(f"cannot write {json_out}: {err.strerror}") from None
        out.print(f"summary written to {json_out}")


@app.command()
def models(
    config: Preset = None,
    set_: Overrides = None,
    n_items: Annotated[
        int, typer.Option(help="Catalogue size (ML-1M after filtering: 3416).")
    ] = 3416,
    max_len: Annotated[
        int | None, typer.Option(help="Window length (default: the config's data.max_len).")
    ] = None,
) -> None:
    """List every registered model with its parameter and FLOP counts for one config.

    Each model is built from the preset + overrides with only model.name changed, on torch's
    meta device (no memory is allocated, so large shapes are instant). FLOPs are forward +
    backward per scored position at an attended length of half the window."""
    import torch

    from seqrec.models import build_model, model_names
    from seqrec.models.common import count_parameters
    from seqrec.models.registry import flops_per_interaction
    from seqrec.options import ModelConfig
    from seqrec.recipe import load_config

    cfg = load_config(config, set_ or [])
    width = max_len or cfg.data.max_len
    table = Table(
        title=f"models at hidden={cfg.model.hidden}, layers={cfg.model.layers}, "
        f"heads={cfg.model.heads}, {n_items:,} items, max_len {width}"
    )
    for col in ("model", "total", "embedding", "non-embedding", "train MFLOPs/interaction"):
        table.add_column(col, justify="left" if col == "model" else "right")
    for name in model_names():
        try:
            mcfg = ModelConfig.model_validate({**cfg.model.model_dump(), "name": name})
            try:
                with torch.device("meta"):
                    params = count_parameters(build_model(mcfg, n_items, width))
            except (RuntimeError, NotImplementedError):  # an op without a meta kernel
                params = count_parameters(build_model(mcfg, n_items, width))
            flops = flops_per_interaction(mcfg, n_items, width / 2)["train"] / 1e6
        except (ValueError, SeqrecError) as err:  # this config does not fit that model
            table.add_row(name, f"[red]{escape(str(err).splitlines()[0])}[/]", "", "", "")
            continue
        table.add_row(
            name,
            f"{params['total']:,}",
            f"{params['embedding']:,}",
            f"{params['non_embedding']:,}",
            f"{flops:,.2f}",
        )
    _print_table(table)


@app.command()
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


@app.command()
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
    import json

    from seqrec.scaling.fit import fit_table, load_rows, plot_fit

    report = fit_table(
        load_rows(table, model), x, y, form=form, holdout=holdout, budget=budget, n_boot=boot,
        seed=seed, perf_law=perf_law, law=law, data_form=data_form, perf_law_cv=cv,
        perf_law_boot=min(boot, 200),
    )  # fmt: skip
    res = Table(title=f"{y} vs {x}: {report['n_runs']} runs, hold-out {holdout}")
    for col in ("law", "parameters (95% bootstrap CI)", "R² fit", "R² held-out", "runs fit/held"):
        res.add_column(col)

    def fmt(v) -> str:
        return "n/a" if v is None else f"{v:.4g}"

    for name in ("curve", "joint", "perf_law"):
        part = report.get(name)
        if not part:
            continue
        if "error" in part:
            res.add_row(name, escape(part["error"]), "", "", "")
            continue
        ci = part.get("ci") or {}
        params = "; ".join(
            f"{k}={fmt(v)}" + (f" [{fmt(ci[k][0])}, {fmt(ci[k][1])}]" if k in ci else "")
            for k, v in part["params"].items()
        )
        label = (
            f"Performance Law ({part['law']}, D' {part['form']})" if name == "perf_law" else name
        )
        held = part.get("n_heldout", 0)
        res.add_row(label, params, fmt(part["r2"]), fmt(part["r2_heldout"]),
                    f"{part.get('n_fit', part.get('n_points'))}/{held}")  # fmt: skip
    _print_table(res)
    pl_held = (report.get("perf_law") or {}).get("heldout")
    if pl_held:
        t = Table(title=f"Performance Law on held-out runs: {y}")
        for col in ("config", "predicted", "measured"):
            t.add_column(col, justify="left" if col == "config" else "right")
        for h in pl_held:
            t.add_row(h["config_hash"], f"{h['predicted']:.4f}", f"{h['measured']:.4f}")
        _print_table(t)

    def say(label: str, part: dict | None, text) -> None:
        """One line for an optional report part: its error, or ``text(part)``."""
        if part:
            msg = f"{label}: {escape(part['error'])}" if "error" in part else text(part)
            out.print(msg, highlight=False)

    say("Performance Law leave-one-out", (report.get("perf_law") or {}).get("cv"),
        lambda cv: f"Performance Law leave-one-out over {len(cv['predicted'])} runs (each "
                   f"predicted by the fit to the others): R² {cv['r2_cv']:.4f}, mean |error| "
                   f"{cv['mae_cv']:.4f}")  # fmt: skip
    say("compute-optimal", report.get("compute_optimal"),
        lambda best: f"compute-optimal at {best['budget_flops']:.3g} FLOPs: "
                     f"{best['params']:,.0f} parameters, {best['data']:,.0f} training "
                     f"interactions, predicted {y} {best['predicted']:.4f}")  # fmt: skip
    if plot is not None:
        plot_fit(report, plot)
        out.print(f"plot written to {plot}")
    if json_out is not None:
        body = {k: v for k, v in report.items() if not k.startswith("_")}
        try:
            json_out.write_text(json.dumps(body, indent=2, default=float) + "\n")
        except OSError as err:
            raise SeqrecError(f"cannot write {json_out}: {err.strerror}") from None
        out.print(f"report written to {json_out}")


@app.command()
def presets() -> None:
    """List the YAML presets in configs/."""
    from seqrec.options import list_presets

    for name in list_presets():
        out.print(name)


def main() -> None:
    try:
        app()
    except SeqrecError as err:
        # the message is plain text: escape it so ids or paths like '[x]' are not read as markup
        Console(stderr=True).print(
            f"[bold red]error:[/] {escape(str(err))}", highlight=False, soft_wrap=True
        )
        sys.exit(2)


if __name__ == "__main__":
    main()
