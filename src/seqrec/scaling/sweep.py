"""Scaling sweeps: one YAML spec -> many training runs -> one table of results.

The spec format and the config hash are in `sweep_spec`, how one run is trained in
`sweep_runner`, the table's schema in `sweep_table`; this module runs the whole sweep.

Every run lives in ``DIR/runs/<config hash>/`` and is trained by the same ``train_run`` the
``seqrec train`` command calls: by default as a ``python -m seqrec train`` subprocess (so a
crash or CUDA out-of-memory stays in its run, and ``jobs`` runs can share a GPU), or in this
process (``in_process=True``, one at a time). A run whose ``results.json`` exists is skipped,
so a stopped sweep resumes where it was; an unfinished run with a checkpoint is resumed. After
each run the table ``DIR/results.parquet`` (one row per config hash, see ``COLUMNS``) is
rewritten atomically; a failed run gets a row with ``status = "failed"`` and its error, and the
sweep goes on. Rows of earlier specs written into the same folder are kept.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

from seqrec.data import prepare
from seqrec.errors import SeqrecError
from seqrec.recipe import RunConfig
from seqrec.scaling.apen import apen_store
from seqrec.scaling.sweep_runner import Runner
from seqrec.scaling.sweep_spec import (
    SweepRun,
    adopt_run_folders,
    expand,
    load_spec,
    order_runs,
)
from seqrec.scaling.sweep_table import (
    atomic_text,
    failed_row,
    read_table,
    row_from_run,
    write_table,
)


@dataclass
class SweepSummary:
    """What one `run_sweep` call did, for the command's closing line."""

    planned: int
    ran: int = 0
    skipped: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    table: Path | None = None


def _data_key(cfg: RunConfig) -> str:
    """Runs that share this key share one store (max_len and the kept fraction do not matter)."""
    dump = cfg.data.model_dump(mode="json")
    dump.pop("max_len")
    dump.pop("train_fraction")
    return json.dumps(dump, sort_keys=True)


def _prepare_data(runs: list[SweepRun], want_apen: bool) -> dict[str, tuple[float | None, str]]:
    """Build each distinct store once here (the runs then load the cache instead of racing to
    build it) and compute its ApEn; data key -> (ApEn or None, error or '')."""
    out: dict[str, tuple[float | None, str]] = {}
    for run in runs:
        key = _data_key(run.cfg)
        if key in out:
            continue
        try:
            store, _ = prepare(run.cfg.data)
        except SeqrecError as err:
            out[key] = (None, str(err))
            continue
        apen = None
        if want_apen:
            apen = float(apen_store(store, absolute=True).mean)
        out[key] = (apen, "")
    return out


class _Sweep:
    """One sweep while it runs: the table's rows (this spec's and other specs'), each dataset's
    ApEn, the summary and the runner. Every finished run rewrites the table at once, so a sweep
    killed at any point leaves a table of everything finished before it."""

    def __init__(self, root: Path, runs: list[SweepRun], runner: Runner, on_event) -> None:
        self.root, self.runner, self.on_event = root, runner, on_event
        self.table = root / "results.parquet"
        mine = {r.config_hash for r in runs}
        # rows of other specs written here stay; this spec's rows are rebuilt from the run folders
        self.rows: dict[str, dict] = {
            r["config_hash"]: r for r in read_table(self.table) if r["config_hash"] not in mine
        }
        self.order = {r.config_hash: i for i, r in enumerate(runs)}
        self.summary = SweepSummary(planned=len(runs), table=self.table)
        self.data: dict[str, tuple[float | None, str]] = {}

    def triage(self, start_order: list[SweepRun]) -> list[SweepRun]:
        """Rows for runs already finished or whose data failed to build; the rest, to train."""
        todo = []
        for run in start_order:
            apen, data_error = self.data[_data_key(run.cfg)]
            if (self.root / "runs" / run.config_hash / "results.json").is_file():
                self.rows[run.config_hash] = row_from_run(self.root, run, apen)
                self.summary.skipped += 1
            elif data_error:
                self.rows[run.config_hash] = failed_row(run, data_error)
                self.summary.failed.append((run.config_hash, data_error))
            else:
                todo.append(run)
        return todo

    def flush(self) -> None:
        rows = sorted(self.rows.values(), key=lambda r: self.order.get(r["config_hash"], -1))
        write_table(self.table, rows)

    def record(self, run: SweepRun, error: str | None) -> None:
        if self.runner.stopping.is_set():
            return  # an interrupted run is unfinished, not failed
        if error is None:
            apen = self.data[_data_key(run.cfg)][0]
            self.rows[run.config_hash] = row_from_run(self.root, run, apen)
            self.summary.ran += 1
        else:
            self.rows[run.config_hash] = failed_row(run, error)
            self.summary.failed.append((run.config_hash, error))
            if self.on_event:
                self.on_event(f"run {run.config_hash} failed: {error}")
        self.flush()

    def train(self, todo: list[SweepRun], jobs: int, in_process: bool, progress: bool) -> None:
        """Train ``todo`` (``jobs`` subprocesses at once, or one by one in this process)."""
        bar = _progress_bar(progress)
        with bar:
            task = bar.add_task("runs", total=len(todo), failed=0)

            def done(run: SweepRun, error: str | None) -> None:
                self.record(run, error)
                bar.update(task, advance=1, failed=len(self.summary.failed))

            if in_process:
                for run in todo:
                    done(run, self.runner(run))
                return
            with ThreadPoolExecutor(max_workers=jobs) as pool:
                live: dict[Future, SweepRun] = {pool.submit(self.runner, r): r for r in todo}
                try:
                    while live:
                        finished, _ = wait(live, timeout=1.0, return_when=FIRST_COMPLETED)
                        for fut in finished:
                            done(live.pop(fut), fut.result())
                except KeyboardInterrupt:
                    self.runner.interrupt()
                    raise


def _progress_bar(enabled: bool):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("[bold]sweep"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[failed]} failed"),
        TimeElapsedColumn(),
        disable=not enabled,
    )


def run_sweep(
    spec_path: Path,
    out_dir: Path,
    *,
    device: str | None = None,
    jobs: int = 1,
    in_process: bool = False,
    progress: bool = True,
    on_event: Callable[[str], None] | None = None,
) -> SweepSummary:
    """Run every unfinished point of the spec; see the module docstring."""
    if jobs < 1:
        raise SeqrecError("--jobs must be >= 1")
    if in_process and jobs > 1:
        raise SeqrecError("in-process runs go one at a time; drop --jobs or run as subprocesses")
    spec = load_spec(spec_path)
    runs = expand(spec, device)
    start_order = order_runs(runs, spec.get("order", "spec"))  # a bad order fails before work
    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    atomic_text(root / "sweep.yaml", Path(spec_path).read_text())
    sweep = _Sweep(root, runs, Runner(root, in_process), on_event)
    adopt_run_folders(root, runs)
    sweep.data = _prepare_data(runs, bool(spec.get("apen", True)))
    todo = sweep.triage(start_order)
    sweep.flush()
    try:
        sweep.train(todo, jobs, in_process, progress)
    except KeyboardInterrupt:
        sweep.runner.stopping.set()
        raise SeqrecError(
            f"sweep interrupted; finished runs are in {sweep.table}; run the same command again "
            "to resume (unfinished runs continue from their checkpoints)"
        ) from None
    return sweep.summary
