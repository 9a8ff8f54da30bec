"""Scaling sweeps: one YAML spec -> many training runs -> one table of results.

A spec names a base preset, fixed overrides, and the points to run::

    base: sasrec-ml-1m            # preset name or YAML path (relative to the spec's folder first)
    overrides:                    # dotted keys applied to every run
      train.epochs: 30
    grid:                         # cartesian product (first key slowest)
      model.layers: [1, 2, 4]
      model.hidden: [32, 64]
    runs:                         # explicit list of points, each crossed with the grid;
      - {model.dropout: 0.1}      # an entry's own `base` replaces the spec's (a family's preset)
      - {base: hstu-ml-1m, model.heads: 2}
    apen: true                    # record the dataset's ApEn (Performance Law data term)
    order: largest_first          # or `spec` (default): the order runs are started in

Keys are any dotted config key (``seqrec`` config names) plus ``data_fraction``, an alias of
``data.train_fraction`` (the kept fraction of training users; valid/test are unchanged).

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

import hashlib
import itertools
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from seqrec.errors import SeqrecError
from seqrec.recipe import RunConfig, apply_overrides, build_config, load_config

SPEC_KEYS = ("base", "overrides", "grid", "runs", "apen", "description", "order")
ORDERS = ("spec", "largest_first")
ALIASES = {"data_fraction": "data.train_fraction"}
# options that change where or how fast a run trains, not what it learns: not in the hash
_UNHASHED = {"train": ("device", "threads", "checkpoint_every"), "eval": ("batch_users",)}

# column -> arrow dtype name; the documented schema of results.parquet (docs/SCALING.md)
COLUMNS: dict[str, str] = {
    "config_hash": "str",
    "status": "str",  # ok | failed
    "error": "str",
    "model": "str",
    "dataset": "str",
    "layers": "int",
    "hidden": "int",
    "heads": "int",
    "max_len": "int",
    "data_fraction": "float",
    "seed": "int",
    "point": "str",  # JSON of the spec keys this run set (grid + runs entry)
    "params": "int",
    "embedding_params": "int",
    "non_embedding_params": "int",
    "flops_forward": "float",  # per scored interaction
    "flops_train": "float",  # per trained interaction (~3x forward)
    "train_interactions": "int",  # targets trained on, all epochs
    "train_flops": "float",  # flops_train * train_interactions
    "train_users": "int",  # training users kept (data_fraction)
    "train_tokens": "int",  # interactions in the kept training sequences
    "apen": "float",  # dataset ApEn, |.| per user (m=2, last 50), null when not computed
    "train_seconds": "float",
    "epochs_run": "int",
    "best_epoch": "int",
    "valid_ndcg10": "float",
    "valid_hr10": "float",
    "test_ndcg10": "float",
    "test_ndcg10_lo": "float",
    "test_ndcg10_hi": "float",
    "test_hr10": "float",
    "test_hr10_lo": "float",
    "test_hr10_hi": "float",
    "train_loss": "float",  # mean training loss of the last epoch
    "metrics_path": "str",  # relative to the sweep folder
}


@dataclass(frozen=True)
class SweepRun:
    """One point of a sweep: its resolved config, hash and the spec keys that made it."""

    config_hash: str
    cfg: RunConfig
    point: dict[str, Any]


@dataclass
class SweepSummary:
    planned: int
    ran: int = 0
    skipped: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    table: Path | None = None


# ------------------------------------------------------------------------------------ spec


def config_hash(cfg: RunConfig) -> str:
    """12 hex digits of sha256 over every option that can change a run's results (device,
    threads and checkpoint frequency excluded, so a sweep moved to a GPU finds its runs).

    Only values that differ from the defaults are hashed (as in ``RunConfig.fingerprint``): a
    later seqrec that adds an option, with a default that keeps the old behaviour, leaves every
    hash unchanged, so finished sweeps stay finished."""
    dump = cfg.model_dump(mode="json", exclude_defaults=True)
    for section, keys in _UNHASHED.items():
        for key in keys:
            dump.get(section, {}).pop(key, None)
    dump = {k: v for k, v in dump.items() if v != {}}
    blob = json.dumps(dump, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def adopt_run_folders(root: Path, runs: list[SweepRun]) -> int:
    """Rename finished run folders whose name is not today's hash of their own config.yaml
    (runs trained when the hash covered other fields) to that hash, when the spec plans it.

    Returns how many were renamed. A folder that is not finished, whose config no longer
    validates, or that the spec does not plan is left alone."""
    planned = {r.config_hash for r in runs}
    renamed = 0
    for cfg_path in sorted((Path(root) / "runs").glob("*/config.yaml")):
        run_dir = cfg_path.parent
        if run_dir.name in planned or not (run_dir / "results.json").is_file():
            continue
        try:
            now = config_hash(build_config(yaml.safe_load(cfg_path.read_text())))
        except (SeqrecError, yaml.YAMLError):
            continue
        target = run_dir.parent / now
        if now in planned and not target.exists():
            run_dir.rename(target)
            renamed += 1
    return renamed


def load_spec(path: Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise SeqrecError(f"sweep spec {path} does not exist; pass a YAML file")
    try:
        spec = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise SeqrecError(f"sweep spec {path} is not valid YAML: {err}") from None
    if not isinstance(spec, dict):
        raise SeqrecError(f"sweep spec {path} must be a mapping with {', '.join(SPEC_KEYS)}")
    unknown = sorted(set(spec) - set(SPEC_KEYS))
    if unknown:
        raise SeqrecError(
            f"sweep spec {path}: unknown key(s) {', '.join(unknown)}; "
            f"allowed: {', '.join(SPEC_KEYS)}"
        )
    spec["_dir"] = str(path.resolve().parent)
    return spec


def _as_mapping(value: Any, what: str) -> dict[str, Any]:
    """``{key: value}`` or a list of ``key=value`` strings -> dict with aliases resolved."""
    if value is None:
        return {}
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        pairs = []
        for item in value:
            if "=" not in item:
                raise SeqrecError(f"{what}: '{item}' has no '='; write key=value")
            key, text = item.split("=", 1)
            pairs.append((key.strip(), yaml.safe_load(text)))
        value = dict(pairs)
    if not isinstance(value, dict):
        raise SeqrecError(f"{what} must be a mapping of dotted keys to values")
    return {ALIASES.get(str(k), str(k)): v for k, v in value.items()}


def _base_path(spec: dict[str, Any], base: Any) -> str | None:
    """A preset name, or a YAML path resolved against the spec's folder first."""
    if base is None:
        return None
    local = Path(spec.get("_dir", ".")) / str(base)
    return str(local) if local.suffix in {".yaml", ".yml"} and local.is_file() else str(base)


def expand(spec: dict[str, Any], device: str | None = None) -> list[SweepRun]:
    """Every point of the spec (runs entries x grid, in that order) as a validated config.

    Spec errors (unknown keys, invalid values, e.g. heads that do not divide hidden) are raised
    here, before any training, naming the point. Points that resolve to the same config are
    kept once.
    """
    fixed = _as_mapping(spec.get("overrides"), "overrides")
    grid = _as_mapping(spec.get("grid"), "grid")
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise SeqrecError(f"grid: {key} must be a non-empty list of values")
    entries = spec.get("runs") or [{}]
    if not isinstance(entries, list):
        raise SeqrecError("runs must be a list of mappings (one per run)")
    entries = [_as_mapping(e, f"runs[{i}]") for i, e in enumerate(entries)]
    for i, entry in enumerate(entries):
        both = sorted(set(entry) & set(grid))
        if both:
            raise SeqrecError(f"runs[{i}] sets {', '.join(both)}, which the grid also varies")
    combos = [dict(zip(grid, values, strict=True)) for values in itertools.product(*grid.values())]
    bases: dict[str, dict] = {}  # preset -> resolved raw config, loaded once
    out: dict[str, SweepRun] = {}
    for entry in entries:
        base = _base_path(spec, entry.get("base", spec.get("base")))
        if base not in bases:
            bases[base] = load_config(base).model_dump(mode="json") if base else {}
        base_raw = bases[base]
        for combo in combos:
            point = {**entry, **combo}
            settings = {k: v for k, v in {**fixed, **point}.items() if k != "base"}
            if device is not None:
                settings["train.device"] = device
            raw = json.loads(json.dumps(base_raw))
            try:
                apply_overrides(raw, [f"{k}={json.dumps(v)}" for k, v in settings.items()])
                cfg = build_config(raw)
            except SeqrecError as err:
                raise SeqrecError(f"sweep point {json.dumps(point)}: {err}") from None
            h = config_hash(cfg)
            out.setdefault(h, SweepRun(h, cfg, point))
    return list(out.values())


def run_cost(run: SweepRun, n_items: int = 5000) -> float:
    """Rough training cost of a run: FLOPs per interaction x kept data x epochs (the catalogue
    size is a stand-in; only the ordering of runs on the same data matters)."""
    from seqrec.models.registry import flops_per_interaction

    cfg = run.cfg
    flops = flops_per_interaction(cfg.model, n_items, cfg.data.max_len)["train"]
    return flops * (cfg.data.train_fraction or 1.0) * cfg.train.epochs


def order_runs(runs: list[SweepRun], order: str) -> list[SweepRun]:
    """``spec``: as written; ``largest_first``: most expensive first (longest-processing-time
    scheduling: with several jobs the sweep ends sooner, and a deadline that cuts it short
    loses the cheap runs rather than the large ones a scaling fit needs most)."""
    if order not in ORDERS:
        raise SeqrecError(f"order must be one of {', '.join(ORDERS)}, got {order!r}")
    if order == "spec":
        return list(runs)
    return sorted(runs, key=run_cost, reverse=True)


# ----------------------------------------------------------------------------- one run


def _last_error(log: Path) -> str:
    """The CLI's one-line ``error: ...`` or the last line of a traceback."""
    try:
        lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return "no log written"
    for line in reversed(lines):
        if line.startswith("error:"):
            return line[len("error:") :].strip()
    return lines[-1] if lines else "the run exited without output"


class _Runner:
    """Trains runs as subprocesses (or in this process); can interrupt the live ones."""

    def __init__(self, root: Path, in_process: bool) -> None:
        self.root, self.in_process = root, in_process
        self.stopping = threading.Event()
        self._procs: dict[str, subprocess.Popen] = {}
        self._lock = threading.Lock()

    def __call__(self, run: SweepRun) -> str | None:
        """Train one run; None on success, else the error message."""
        run_dir = self.root / "runs" / run.config_hash
        resume = (run_dir / "checkpoint.pt").is_file() and (run_dir / "config.yaml").is_file()
        if self.in_process:
            return self._in_process(run, run_dir, resume)
        cfg_path = self.root / "configs" / f"{run.config_hash}.yaml"
        _atomic_text(cfg_path, yaml.safe_dump(run.cfg.model_dump(mode="json"), sort_keys=False))
        cmd = [sys.executable, "-m", "seqrec", "train", "--no-progress"]
        cmd += (
            ["--resume", str(run_dir)] if resume else ["-c", str(cfg_path), "--out", str(run_dir)]
        )
        if not resume and run_dir.exists():
            cmd.append("--overwrite")  # a run that died before its first checkpoint
        log = self.root / "logs" / f"{run.config_hash}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with self._lock:
            if self.stopping.is_set():
                return None
            with log.open("a") as fh:
                fh.write(f"$ {' '.join(cmd)}\n")
                fh.flush()
                proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT)
            self._procs[run.config_hash] = proc
        rc = proc.wait()
        with self._lock:
            self._procs.pop(run.config_hash, None)
        return None if rc == 0 else _last_error(log)

    def _in_process(self, run: SweepRun, run_dir: Path, resume: bool) -> str | None:
        from seqrec.train.loop import TrainingInterrupted
        from seqrec.train.run import train_run

        try:
            train_run(
                None if resume else run.cfg,
                run_dir,
                resume=resume,
                overwrite=run_dir.exists() and not resume,
                progress=False,
            )
        except TrainingInterrupted:
            raise KeyboardInterrupt from None  # Ctrl-C: the run is unfinished, not failed
        except SeqrecError as err:
            return str(err)
        except Exception as err:  # a bug or an OOM in one run must not end the sweep
            return f"{type(err).__name__}: {err}"
        return None

    def interrupt(self) -> None:
        """Ctrl-C: start nothing new; live runs get SIGINT, so they checkpoint and exit."""
        self.stopping.set()
        with self._lock:
            procs = list(self._procs.values())
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        for proc in procs:
            try:
                proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                proc.kill()


# ---------------------------------------------------------------------------- the table


def _ci(ranks: np.ndarray, name: str, k: int) -> tuple[float, float]:
    from seqrec.eval.metrics import confidence_interval, per_user_metrics

    return confidence_interval(per_user_metrics(ranks, [k])[f"{name}@{k}"])


def _config_fields(run: SweepRun) -> dict[str, Any]:
    cfg = run.cfg
    return {
        "config_hash": run.config_hash,
        "model": cfg.model.name,
        "dataset": cfg.data.dataset,
        "layers": cfg.model.layers,
        "hidden": cfg.model.hidden,
        "heads": cfg.model.heads,
        "max_len": cfg.data.max_len,
        "data_fraction": cfg.data.train_fraction,
        "seed": cfg.train.seed,
        "point": json.dumps(run.point, sort_keys=True),
    }


def row_from_run(root: Path, run: SweepRun, apen: float | None) -> dict[str, Any]:
    """The table row of a finished run, from its results.json and test_ranks.npy."""
    run_dir = root / "runs" / run.config_hash
    res = json.loads((run_dir / "results.json").read_text())
    ranks = np.load(run_dir / "test_ranks.npy")
    valid, test = res["valid"]["metrics"], res["test"]["metrics"]
    params, flops = res["params"], res["flops_per_interaction"]
    seen = res.get("train_interactions")
    data = res.get("train_data", {})
    ndcg_lo, ndcg_hi = _ci(ranks, "NDCG", 10)
    hr_lo, hr_hi = _ci(ranks, "HR", 10)
    return {
        **_config_fields(run),
        "status": "ok",
        "error": None,
        "params": params["total"],
        "embedding_params": params["embedding"],
        "non_embedding_params": params["non_embedding"],
        "flops_forward": flops["forward"],
        "flops_train": flops["train"],
        "train_interactions": seen,
        "train_flops": None if seen is None else flops["train"] * seen,
        "train_users": data.get("users"),
        "train_tokens": data.get("interactions"),
        "apen": apen,
        "train_seconds": res["train_seconds"],
        "epochs_run": res["epochs_run"],
        "best_epoch": res["best_epoch"],
        "valid_ndcg10": valid["NDCG@10"],
        "valid_hr10": valid["HR@10"],
        "test_ndcg10": test["NDCG@10"],
        "test_ndcg10_lo": ndcg_lo,
        "test_ndcg10_hi": ndcg_hi,
        "test_hr10": test["HR@10"],
        "test_hr10_lo": hr_lo,
        "test_hr10_hi": hr_hi,
        "train_loss": res.get("train_loss"),
        "metrics_path": f"runs/{run.config_hash}/metrics.jsonl",
    }


def failed_row(run: SweepRun, error: str) -> dict[str, Any]:
    return {**_config_fields(run), "status": "failed", "error": error}


def _atomic_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def _arrow_schema():
    import pyarrow as pa

    types = {"str": pa.string(), "int": pa.int64(), "float": pa.float64()}
    return pa.schema([(name, types[t]) for name, t in COLUMNS.items()])


def read_table(path: Path) -> list[dict[str, Any]]:
    import pyarrow.parquet as pq

    if not Path(path).is_file():
        return []
    return pq.read_table(path).to_pylist()


def write_table(path: Path, rows: list[dict[str, Any]]) -> None:
    """Rows -> parquet with the documented schema, via a temp file renamed into place.

    pyarrow rather than polars: the sweep must run wherever training runs, and pyarrow is the
    smaller, more commonly preinstalled dependency (GPU images ship it)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    full = [{name: row.get(name) for name in COLUMNS} for row in rows]
    table = pa.Table.from_pylist(full, schema=_arrow_schema())
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        pq.write_table(table, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# ---------------------------------------------------------------------------- the sweep


def _data_key(cfg: RunConfig) -> str:
    """Runs that share this key share one store (max_len and the kept fraction do not matter)."""
    dump = cfg.data.model_dump(mode="json")
    dump.pop("max_len")
    dump.pop("train_fraction")
    return json.dumps(dump, sort_keys=True)


def _prepare_data(runs: list[SweepRun], want_apen: bool) -> dict[str, tuple[float | None, str]]:
    """Build each distinct store once here (the runs then load the cache instead of racing to
    build it) and compute its ApEn; data key -> (ApEn or None, error or '')."""
    from seqrec.data import prepare

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
            from seqrec.scaling.apen import apen_store

            apen = float(apen_store(store, absolute=True).mean)
        out[key] = (apen, "")
    return out


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
    _atomic_text(root / "sweep.yaml", Path(spec_path).read_text())
    table = root / "results.parquet"
    mine = {r.config_hash for r in runs}
    # rows of other specs written here stay; this spec's rows are rebuilt from the run folders
    rows: dict[str, dict] = {
        r["config_hash"]: r for r in read_table(table) if r["config_hash"] not in mine
    }
    adopt_run_folders(root, runs)
    data = _prepare_data(runs, bool(spec.get("apen", True)))
    summary = SweepSummary(planned=len(runs), table=table)
    todo = []
    for run in start_order:
        apen, data_error = data[_data_key(run.cfg)]
        if (root / "runs" / run.config_hash / "results.json").is_file():
            rows[run.config_hash] = row_from_run(root, run, apen)
            summary.skipped += 1
        elif data_error:
            rows[run.config_hash] = failed_row(run, data_error)
            summary.failed.append((run.config_hash, data_error))
        else:
            todo.append(run)
    order = {r.config_hash: i for i, r in enumerate(runs)}

    def flush() -> None:
        write_table(table, sorted(rows.values(), key=lambda r: order.get(r["config_hash"], -1)))

    flush()
    runner = _Runner(root, in_process)

    def record(run: SweepRun, error: str | None) -> None:
        if runner.stopping.is_set():
            return  # an interrupted run is unfinished, not failed
        if error is None:
            rows[run.config_hash] = row_from_run(root, run, data[_data_key(run.cfg)][0])
            summary.ran += 1
        else:
            rows[run.config_hash] = failed_row(run, error)
            summary.failed.append((run.config_hash, error))
            if on_event:
                on_event(f"run {run.config_hash} failed: {error}")
        flush()

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(
        TextColumn("[bold]sweep"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[failed]} failed"),
        TimeElapsedColumn(),
        disable=not progress,
    )
    try:
        with bar:
            task = bar.add_task("runs", total=len(todo), failed=0)
            if in_process:
                for run in todo:
                    record(run, runner(run))
                    bar.update(task, advance=1, failed=len(summary.failed))
            else:
                with ThreadPoolExecutor(max_workers=jobs) as pool:
                    live: dict[Future, SweepRun] = {pool.submit(runner, r): r for r in todo}
                    try:
                        while live:
                            done, _ = wait(live, timeout=1.0, return_when=FIRST_COMPLETED)
                            for fut in done:
                                record(live.pop(fut), fut.result())
                                bar.update(task, advance=1, failed=len(summary.failed))
                    except KeyboardInterrupt:
                        runner.interrupt()
                        raise
    except KeyboardInterrupt:
        runner.stopping.set()
        raise SeqrecError(
            f"sweep interrupted; finished runs are in {table}; run the same command again to "
            "resume (unfinished runs continue from their checkpoints)"
        ) from None
    return summary
