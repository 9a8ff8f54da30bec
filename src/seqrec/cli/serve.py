"""Using a trained model: `seqrec recommend` (batch, to a file), `seqrec export` (a model
package, or with --format onnx | pt2 the user encoder alone) and `seqrec serve` (HTTP, with the
top-K index `--index` picks)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from seqrec.cli.common import out
from seqrec.errors import SeqrecError


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

    Streams users in chunks into a temporary file that is renamed into place at the end.
    Columns: user, rank, item, score, returned (the user's item count: below k when the
    history leaves fewer unseen items; a user with none keeps one row with empty item)."""
    from seqrec.serve.batch import recommend_to_file

    written = recommend_to_file(
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
    # one line even piped or in a log file (rich would break it at 80 columns, mid-path)
    out.print(written.summary(output), highlight=False, markup=False, soft_wrap=True)


def export(
    run: Annotated[
        Path,
        typer.Argument(
            help="Finished run folder written by `seqrec train` (onnx / pt2: or a package)."
        ),
    ],
    out_dir: Annotated[Path, typer.Argument(help="Package (or encoder) folder to create.")],
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
    fmt: Annotated[
        str,
        typer.Option(
            "--format",
            help="package | onnx | pt2: onnx and pt2 write only the user encoder (history ids "
            "-> user vectors), the item vectors and the id map, for serving without Python.",
        ),
    ] = "package",
) -> None:
    """Write a model package: safetensors weights, config, id maps, popularity, metadata
    (--format onnx | pt2: the user encoder for serving without Python)."""
    from seqrec.run import Run

    if fmt != "package":
        _export_encoder(run, out_dir, fmt, overwrite, item_metadata)
        return

    package = Run(run).export(out_dir, item_metadata, metadata_id_col, overwrite)
    manifest = package.manifest
    out.print(
        f"exported {manifest['model']} ({manifest['n_items']} items, "
        f"{len(manifest['files'])} files + manifest) to {out_dir}",
        highlight=False,
        markup=False,
        soft_wrap=True,
    )


def _export_encoder(run: Path, out_dir: Path, fmt: str, overwrite: bool, metadata) -> None:
    from seqrec.run.export import export_encoder

    if metadata is not None:
        raise SeqrecError(
            f"--item-metadata goes into model packages, not a --format {fmt} export; "
            "drop it or export a package"
        )
    spec = export_encoder(run, out_dir, fmt, overwrite)
    parity = spec["parity"]
    checked = (
        f"parity max |diff| {parity['max_abs_diff']:.1e} on {parity['histories']} histories "
        f"({parity['runtime']})"
        if "max_abs_diff" in parity
        else parity["runtime"]
    )
    out.print(
        f"exported {spec['model']}'s user encoder ({fmt}, {spec['n_items']} items; {checked}) "
        f"to {out_dir}",
        highlight=False,
        markup=False,
        soft_wrap=True,
    )


def serve(
    package: Annotated[Path, typer.Argument(help="Model package written by `seqrec export`.")],
    host: Annotated[str, typer.Option(help="Address to bind (loopback by default).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    index: Annotated[
        str,
        typer.Option(
            help="auto (exact below --exact-below items, else faiss-ivf) | exact | faiss-hnsw "
            "| faiss-ivf | faiss (= faiss-hnsw); faiss ones need faiss-cpu."
        ),
    ] = "auto",
    exact_below: Annotated[
        int | None,
        typer.Option(min=0, help="--index auto serves exactly below this many items (200,000)."),
    ] = None,
    target_recall: Annotated[
        float,
        typer.Option(
            min=0.0, max=1.0, help="faiss: raise search effort until recall@10 vs exact >= this."
        ),
    ] = 0.98,
    recall_histories: Annotated[
        Path | None,
        typer.Option(
            help="faiss: histories file (`id item item ...` lines) whose users measure recall; "
            "default: histories drawn from training popularity."
        ),
    ] = None,
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

    from seqrec.run import load_package
    from seqrec.serve.batch import refuse_timestamp_models
    from seqrec.serve.index import AUTO_EXACT_BELOW, IndexConfig, choose_index, describe

    if threads:
        torch.set_num_threads(threads)
    rec = refuse_timestamp_models(load_package(package), package)
    cfg = IndexConfig(
        kind=index,
        exact_below=AUTO_EXACT_BELOW if exact_below is None else exact_below,
        target_recall=target_recall,
    )
    rec.index, report = choose_index(rec, cfg, threads, _recall_histories(rec, recall_histories))
    out.print(describe(report), highlight=False, markup=False, soft_wrap=True)
    http = create_app(
        rec,
        max_batch=max_batch,
        max_wait_ms=max_wait_ms,
        index_name=report["kind"],
        index_report=report,
    )
    out.print(f"serving {package} on http://{host}:{port} (docs: /docs)", soft_wrap=True)
    uvicorn.run(http, host=host, port=port, log_level=log_level)


def _recall_histories(rec, path: Path | None):
    """The histories file's users as internal ids (unknown items dropped), or None."""
    if path is None:
        return None
    from seqrec.serve.histories import read_histories

    hists = [h for h in rec.encode(read_histories(path)[1], skip_unknown=True) if len(h)]
    if not hists:
        raise SeqrecError(
            f"--recall-histories {path} has no history with an item the model knows; "
            "pass histories of this model's items or leave the option out"
        )
    return hists
