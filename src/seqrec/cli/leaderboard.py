"""`seqrec leaderboard run|table`: train every model with a preset on some datasets over
several seeds, then one table per dataset with CIs and paired tests (docs/LEADERBOARD.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from seqrec.cli.common import Overrides, out, print_table

app = typer.Typer(
    no_args_is_help=True,
    help="Train every model with a preset on datasets over seeds, and tabulate the results.",
)

DirOption = Annotated[
    Path, typer.Option("--dir", help="Leaderboard folder (runs/, logs/, cells.json).")
]


def _say(line: str) -> None:
    out.print(escape(line), highlight=False, soft_wrap=True)


@app.command("run")
def leaderboard_run(
    datasets: Annotated[
        str,
        typer.Option(help="Dataset keys: beauty, ml-1m, video, lastfm, home (comma-separated)."),
    ],
    seeds: Annotated[str, typer.Option(help="Seeds, comma-separated, e.g. 42,1,2.")] = "42",
    models: Annotated[
        str, typer.Option(help="all (every model with a preset), or model names, comma-separated.")
    ] = "all",
    folder: DirOption = Path("leaderboard"),
    set_: Overrides = None,
    tuned: Annotated[
        Path | None,
        typer.Option(
            help="Folder of `seqrec tune` studies: <model>-<dataset>/best.yaml replaces "
            "the preset where it exists."
        ),
    ] = None,
    presets: Annotated[
        Path | None, typer.Option(help="Read <model>-<dataset>.yaml presets from this folder.")
    ] = None,
    jobs: Annotated[int, typer.Option(help="Cells trained at once (subprocesses).")] = 1,
    in_process: Annotated[
        bool, typer.Option(help="Train in this process, one cell at a time.")
    ] = False,
    dry_run: Annotated[bool, typer.Option(help="Show the cells; train nothing.")] = False,
) -> None:
    """Train each (model, dataset, seed) cell into DIR/runs/<model>-<dataset>-s<seed>/.

    Finished cells are skipped and unfinished ones resume from their checkpoints, so the same
    command continues a stopped leaderboard. One line per cell (done / skip / fail / no
    preset, time); a failed cell is recorded in DIR/cells.json and the others go on."""
    from seqrec.leaderboard import parse_datasets, parse_models, parse_seeds, plan, run_cells

    dirs = None if presets is None else [presets]
    cells = plan(
        parse_models(models), parse_datasets(datasets, dirs), parse_seeds(seeds), dirs, tuned
    )
    outcomes = run_cells(cells, folder, set_ or [], jobs=jobs, in_process=in_process,
                         dry_run=dry_run, on_line=_say)  # fmt: skip
    counts = {s: sum(o.status == s for o in outcomes) for s in
              ("done", "skip", "fail", "no preset", "todo")}  # fmt: skip
    if dry_run:
        _say(f"{len(cells)} cells: {counts['todo']} to train, {counts['skip']} finished, "
             f"{counts['no preset']} without a preset, {counts['fail']} with a bad config")  # fmt: skip
        return
    _say(f"{len(cells)} cells: {counts['done']} trained, {counts['skip']} already finished, "
         f"{counts['fail']} failed, {counts['no preset']} without a preset; the table: "
         f"seqrec leaderboard table --dir {folder}")  # fmt: skip
    if counts["fail"]:
        raise typer.Exit(1)


@app.command("table")
def leaderboard_table(
    folder: DirOption = Path("leaderboard"),
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="Folder for the table files (default: --dir).")
    ] = None,
    results: Annotated[
        Path | None,
        typer.Option(help="Also read benchmarks/quality.py result files from this folder."),
    ] = None,
    figures: Annotated[bool, typer.Option(help="Write a PNG per dataset (matplotlib).")] = True,
) -> None:
    """Tabulate the finished runs: per dataset, one row per configuration (seeds pooled),
    test NDCG@10 / HR@10 with 95% CIs, paired tests against the best row, repeat-target
    share, training time, hardware and tuning budget. Writes leaderboard.md,
    leaderboard.json and leaderboard-<dataset>.png."""
    from seqrec.leaderboard import write_table

    files = write_table(folder, out_dir, results, figures=figures, on_line=_say)
    import json

    body = json.loads((files.folder / "leaderboard.json").read_text())
    for board in body["boards"]:
        print_table(_board_table(board))
    _say(f"{files.boards} boards, {files.rows} rows; wrote "
         f"{', '.join(str(files.folder / n) for n in files.written)}")  # fmt: skip


def _board_table(board: dict) -> Table:
    table = Table(
        title=f"{board['dataset']} ({board['users']:,} users, {board['items']:,} items): "
        f"{board['training_text']}"
    )
    for col in ("#", "row", "NDCG@10", "HR@10", "seeds", "Δ NDCG@10", "p (Holm)"):
        table.add_column(col, justify="left" if col == "row" else "right")
    for i, row in enumerate(board["rows"], 1):
        vs = (row["vs_best"] or {}).get("NDCG@10")
        cells = [f"{row[k]['mean']:.4f} ± {row[k]['half_width']:.4f}"
                 + ("†" if row[k]["ci"] == "users" else "") for k in ("NDCG@10", "HR@10")]  # fmt: skip
        table.add_row(
            str(i), escape(row["label"]), *cells, str(len(row["seeds"])),
            f"{vs['diff']:+.4f}" if vs else "—", f"{vs['p_holm']:.1e}" if vs else "—",
        )  # fmt: skip
    return table
