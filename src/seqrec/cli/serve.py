"""Using a trained model: `seqrec recommend` (batch, to a file), `seqrec export` (a model
package) and `seqrec serve` (HTTP)."""

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
    from seqrec.run import Run

    package = Run(run).export(out_dir, item_metadata, metadata_id_col, overwrite)
    manifest = package.manifest
    out.print(
        f"exported {manifest['model']} ({manifest['n_items']} items, "
        f"{len(manifest['files'])} files + manifest) to {out_dir}",
        highlight=False,
        markup=False,
        soft_wrap=True,
    )


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

    from seqrec.run import load_package
    from seqrec.serve.batch import refuse_timestamp_models
    from seqrec.serve.index import build_index

    if threads:
        torch.set_num_threads(threads)
    rec = refuse_timestamp_models(load_package(package), package)
    rec.index = build_index(index, rec, threads)
    http = create_app(rec, max_batch=max_batch, max_wait_ms=max_wait_ms, index_name=index)
    out.print(f"serving {package} on http://{host}:{port} (docs: /docs)", soft_wrap=True)
    uvicorn.run(http, host=host, port=port, log_level=log_level)
