"""A run folder as training writes it: its layout, its manifest, and who may replace it.

runs/<name>/
  seqrec-run.json      manifest, written first: format + version, seqrec version, model,
                       task, config fingerprint (marks the folder as seqrec's)
  config.yaml          the full resolved config (re-loadable with `seqrec train -c`)
  metrics.jsonl        training log
  checkpoint.pt        latest resumable state (weights_only-loadable)
  best.safetensors     best-on-validation weights
  item_ids.npy         internal item id -> original id (index 0 = PAD), for recommendations
  results.json         final valid + test metrics, protocol, parameter and FLOP counts
  test_ranks.npy       retrieval: per-user test ranks (confidence intervals, paired tests)
  test_predictions.npz ranking: user, item, label, probability per test example

One `train_run` serves every task (``cfg.task.name``): the task's data, the one trainer (or a
baseline that trains nothing) and the task's output file come from ``seqrec.tasks``.

`seqrec.run.Run` reads such a folder (and loads its model); this module is the writing side,
kept in the train layer so the trainer never imports what sits above it.

Why the manifest and the file list (`seqrec.fsutil.RUN_FILES`, with the layout's other names):
``--overwrite`` replaces a folder only when it is a seqrec run (a manifest, or for folders
written before manifests existed, config.yaml with item_ids.npy or checkpoint.pt) holding
nothing but these files; anything else is refused whatever the flags, and only seqrec's own
files are ever deleted. A finished run (results.json present) is
never overwritten without ``--overwrite``.

Under torchrun (WORLD_SIZE > 1) every rank runs `train_run`; only rank 0 checks, reads and
writes the folder, and the others receive the config and checkpoint from it
(see trainer/distributed.py and docs/DISTRIBUTED.md).
"""

from __future__ import annotations

import io
import platform
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from seqrec.data.update import Lineage
from seqrec.errors import SeqrecError
from seqrec.fsutil import (
    CHECKPOINT,
    CONFIG,
    ITEM_IDS,
    RESULTS,
    RUN_FILES,
    RUN_FORMAT,
    RUN_FORMAT_VERSION,
    RUN_MANIFEST,
    describe,
    foreign_entries,
    is_run_folder,
    owned_by_run,
    read_run_manifest,
    remove_entries,
    unwritable,
)
from seqrec.recipe import RunConfig, saved_config
from seqrec.tasks import load_task_data, output_files, trains, untrained_results
from seqrec.trainer.checkpoint import atomic_write_bytes, atomic_write_json, atomic_write_text
from seqrec.trainer.continued import Continuation, continued_data, lineage_of
from seqrec.trainer.distributed import DistContext
from seqrec.trainer.extend import Extension, extended_config, plan_extension
from seqrec.trainer.interrupt import TrainingInterrupted
from seqrec.trainer.loop import Trainer
from seqrec.trainer.sharded import ShardedTrainer
from seqrec.version import __version__


def run_manifest(cfg: RunConfig | None, continued: dict | None = None) -> dict[str, Any]:
    """What marks a folder as seqrec's and names what it holds (model, config fingerprint;
    an update's `Lineage`: the events its data adds to ``data.dataset``)."""
    return {
        "format": RUN_FORMAT,
        "format_version": RUN_FORMAT_VERSION,
        "seqrec_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model": None if cfg is None else cfg.model.name,
        "task": None if cfg is None else cfg.task.name,
        "fingerprint": None if cfg is None else cfg.fingerprint(),
        **({"continued": continued} if continued else {}),
    }


def _npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()


def prepare_run_dir(
    run_dir: Path,
    resume: bool,
    overwrite: bool,
    create: bool = True,
    cfg: RunConfig | None = None,
    continued: dict | None = None,
    finished_ok: bool = False,
) -> None:
    """Refuse folders that must not be (re)used; with ``create``, (re)make the folder and
    write its manifest first (with ``cfg``'s model and fingerprint when given).

    ``overwrite`` replaces only a seqrec run holding nothing but seqrec's files, and then
    deletes only those files: a folder with anything else in it is refused, flag or not.
    ``finished_ok``: a resume that extends a finished run (trainer/extend.py).
    """
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise SeqrecError(f"run folder {run_dir} is a file; choose a folder path for --out")
    if resume:
        if not (run_dir / CHECKPOINT).is_file():
            raise SeqrecError(
                f"nothing to resume in {run_dir} (no checkpoint.pt); start it without --resume"
            )
        if (run_dir / RESULTS).exists() and not finished_ok:
            raise SeqrecError(
                f"the run in {run_dir} already finished (results.json exists); evaluate it with "
                "`seqrec evaluate`, train it further with `seqrec train --resume "
                f"{run_dir} -o train.time_budget_s=...` (or train.epochs / train.patience), "
                "or start a new run"
            )
        _check_writable(run_dir, "--resume folder")
        return
    _check_writable(run_dir, "--out")
    if run_dir.exists() and any(run_dir.iterdir()):
        _refuse_foreign(run_dir)
        # a start that failed before training wrote anything (only the manifest) blocks nothing
        started = any(p.name in RUN_FILES - {RUN_MANIFEST} for p in run_dir.iterdir())
        if (run_dir / RESULTS).exists() and not overwrite:
            raise SeqrecError(
                f"run folder {run_dir} holds a finished run; pass --overwrite to replace it "
                "or choose another --out"
            )
        if started and not overwrite:
            raise SeqrecError(
                f"run folder {run_dir} already holds an unfinished run; continue it with "
                f"--resume or pass --overwrite to start over"
            )
        if create:
            remove_entries(run_dir, owned_by_run)
    if create:
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(run_dir / RUN_MANIFEST, run_manifest(cfg, continued))


def _check_writable(path: Path, flag: str) -> None:
    why = unwritable(path, flag)
    if why is not None:
        raise SeqrecError(why)


def _refuse_foreign(run_dir: Path) -> None:
    """A non-empty folder that is not purely a seqrec run is never reused (no flag helps)."""
    foreign = foreign_entries(run_dir, owned_by_run)
    if foreign:
        raise SeqrecError(
            f"{run_dir} holds files that are not part of a seqrec run ({describe(foreign)}); "
            "choose an empty or new folder for --out"
        )
    if not is_run_folder(run_dir):
        names = sorted(p.name for p in run_dir.iterdir())
        raise SeqrecError(
            f"{run_dir} holds {describe(names)} but is not a seqrec run (it has no "
            f"{RUN_MANIFEST}); choose an empty or new folder for --out"
        )


def write_run_config(run_dir: Path, cfg: RunConfig) -> None:
    """config.yaml: the resolved config, JSON-able, what `--resume` rebuilds the run from."""
    atomic_write_text(
        Path(run_dir) / CONFIG, yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
    )


def load_run_config(run_dir: Path) -> RunConfig:
    path = Path(run_dir) / CONFIG
    if not path.is_file():
        raise SeqrecError(
            f"{run_dir} is not a seqrec run folder (no config.yaml); pass the folder `seqrec train` wrote"
        )
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark else ""
        raise SeqrecError(
            f"{path} is not valid YAML{at}; restore the file `seqrec train` wrote (its "
            "results.json holds the same config under 'config')"
        ) from None
    if not isinstance(raw, dict):
        raise SeqrecError(
            f"{path} does not hold a config mapping; restore the file `seqrec train` wrote"
        )
    return saved_config(raw)


def train_run(
    cfg: RunConfig | None,
    run_dir: Path,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    continuation: Continuation | None = None,
    extend: list[str] | None = None,
) -> dict:
    """Train (or resume) a run in ``run_dir``; multi-process when launched by torchrun.

    ``continuation`` (trainer/continued.py, with ``cfg=None``) makes it an update of a
    finished run on new events. ``extend`` (with ``resume``): new stopping rules
    (``train.time_budget_s=...``) under which a finished or interrupted run goes on
    (trainer/extend.py). Every rank returns the same results dict (the test ranks are
    gathered on all ranks).
    """
    dist = DistContext.from_env()
    if extend and not resume:
        raise SeqrecError("new stopping rules extend a run: pass them with --resume RUN")
    try:
        return _train_run(
            dist, cfg, Path(run_dir), resume, overwrite, progress, continuation, extend or []
        )
    finally:
        dist.close()


def _load(dist: DistContext, cfg, run_dir: Path, resume: bool, overwrite: bool, update, extend):
    """The config, the data, (an update's, or a resumed update's) lineage and an extension's
    plan, every refusal made before the folder is touched."""
    lineage = extension = None
    if update is not None:
        if resume or run_dir.resolve() == update.source.path.resolve():
            raise SeqrecError(
                f"an update writes a new run folder; choose an --out other than {run_dir}"
            )
        cfg, lineage = update.cfg, update.lineage
    if resume:

        def saved() -> tuple[RunConfig, Lineage | None, Extension | None]:
            prepare_run_dir(run_dir, True, False, finished_ok=bool(extend))
            was, lineage = load_run_config(run_dir), lineage_of(read_run_manifest(run_dir))
            if not extend:
                return was, lineage, None
            now = extended_config(was, extend)
            return now, lineage, plan_extension(run_dir, was, now)

        cfg, lineage, extension = dist.on_main(saved)
    else:
        # refuse before any work
        dist.on_main(lambda: prepare_run_dir(run_dir, False, overwrite, create=False))
    if update is not None:
        store, data = dist.local_first(update.load_data)
        cfg, lineage = update.cfg, update.lineage  # an update adding nothing takes no step
    elif lineage is not None:
        store, data, _, _ = dist.local_first(lambda: continued_data(cfg, lineage))
    else:
        store, data = dist.local_first(lambda: load_task_data(cfg))
    return cfg, store, data, lineage, extension


def _train_run(
    dist: DistContext,
    cfg: RunConfig | None,
    run_dir: Path,
    resume: bool,
    overwrite: bool,
    progress: bool,
    update: Continuation | None = None,
    extend: list[str] | None = None,
) -> dict:
    main = dist.is_main
    cfg, store, data, lineage, extension = _load(
        dist, cfg, run_dir, resume, overwrite, update, extend
    )
    continued = lineage.model_dump() if lineage is not None else None
    if not resume:
        # the folder is made only once the data loaded, so a bad path or setting leaves no
        # half-made "unfinished run" behind that would block the corrected command
        dist.on_main(
            lambda: prepare_run_dir(run_dir, False, overwrite, cfg=cfg, continued=continued)
        )
    # the trainer is built (device, model, data checks) before config.yaml is written, so a
    # start that fails there leaves no "unfinished run" the corrected command must overwrite
    # train.item_sharding=rowwise: the item table's rows split across processes (TorchRec)
    trainer_cls = ShardedTrainer if cfg.train.item_sharding == "rowwise" else Trainer
    trainer = (
        trainer_cls(cfg, store, data, run_dir, progress=progress, dist=dist)
        if trains(cfg)
        else None
    )
    if resume and trainer is not None:
        trainer.resume(extension)
        if extension is not None:
            _commit_extension(trainer, cfg, run_dir, main)
    elif not resume:
        if update is not None:
            update.start(trainer)  # the source's weights and optimiser state, grown
        if main:
            write_run_config(run_dir, cfg)
    if main:
        atomic_write_bytes(run_dir / ITEM_IDS, _npy_bytes(np.asarray(store.item_ids).astype(str)))
    results = trainer.fit() if trainer is not None else untrained_results(cfg, store, data)
    if continued is not None:
        results["continued"] = update.results() if update is not None else continued
    try:
        _write_results(cfg, store, data, results, run_dir, main)
    except KeyboardInterrupt:
        if trainer is None or (run_dir / RESULTS).is_file():
            raise
        # the checkpoint marks the training done: a resume runs the final test again
        raise TrainingInterrupted(
            f"interrupted while writing the results; continue with: seqrec train --resume {run_dir}"
        ) from None
    dist.barrier()  # no rank reports success before the run folder is complete
    return results


def _commit_extension(trainer, cfg: RunConfig, run_dir: Path, main: bool) -> None:
    """Make the reopened run the folder's state, in the order a crash can resume from: the
    checkpoint (the point to go on from), then config.yaml (the new stopping rules), then
    results.json goes (its summary is in the checkpoint's state, bound for the new one)."""
    trainer.checkpoint()
    if main:
        write_run_config(run_dir, cfg)
        if (manifest := read_run_manifest(run_dir)) is not None:  # runs from before manifests
            manifest["fingerprint"] = cfg.fingerprint()
            atomic_write_json(run_dir / RUN_MANIFEST, manifest)
        (run_dir / RESULTS).unlink(missing_ok=True)


def _write_results(cfg, store, data, results: dict, run_dir: Path, main: bool) -> None:
    """The task's output files and results.json (rank 0), each written atomically."""
    files = output_files(cfg, data, results)
    results.update(
        {
            "dataset": {"name": cfg.data.dataset, **store.stats()},
            "config": cfg.model_dump(mode="json"),
            "machine": machine_info(),
            "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
    )
    if main:
        for name, blob in files.items():
            atomic_write_bytes(run_dir / name, blob)
        atomic_write_json(run_dir / RESULTS, results)


def machine_info() -> dict:
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
