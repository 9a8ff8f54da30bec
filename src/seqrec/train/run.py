"""A run folder: what `seqrec train` creates and `evaluate` / `recommend` read back.

runs/<name>/
  config.yaml          the full resolved config (re-loadable with `seqrec train -c`)
  metrics.jsonl        training log
  checkpoint.pt        latest resumable state (weights_only-loadable)
  best.safetensors     best-on-validation weights
  item_ids.npy         internal item id -> original id (index 0 = PAD), for recommendations
  results.json         final valid + test metrics, protocol, parameter and FLOP counts
  test_ranks.npy       per-user test ranks (for confidence intervals and paired tests)

A finished run (results.json present) is never overwritten silently.

Under torchrun (WORLD_SIZE > 1) every rank runs `train_run`; only rank 0 checks, reads and
writes the folder, and the others receive the config and checkpoint from it
(see train/distributed.py and docs/DISTRIBUTED.md).
"""

from __future__ import annotations

import io
import platform
import shutil
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
import yaml

from seqrec.data import prepare
from seqrec.errors import SeqrecError
from seqrec.recipe import RunConfig, build_config
from seqrec.train.checkpoint import atomic_write_bytes, atomic_write_json, atomic_write_text
from seqrec.train.distributed import DistContext
from seqrec.train.loop import Trainer


def _npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()


def prepare_run_dir(run_dir: Path, resume: bool, overwrite: bool, create: bool = True) -> None:
    """Refuse folders that must not be reused; with ``create``, (re)make the folder."""
    if run_dir.exists() and not run_dir.is_dir():
        raise SeqrecError(f"run folder {run_dir} is a file; choose a folder path for --out")
    if resume:
        if not (run_dir / "checkpoint.pt").is_file():
            raise SeqrecError(
                f"nothing to resume in {run_dir} (no checkpoint.pt); start it without --resume"
            )
        if (run_dir / "results.json").exists():
            raise SeqrecError(
                f"the run in {run_dir} already finished (results.json exists); evaluate it with "
                "`seqrec evaluate`, or start a new run"
            )
        return
    if run_dir.exists() and any(run_dir.iterdir()):
        if (run_dir / "results.json").exists() and not overwrite:
            raise SeqrecError(
                f"run folder {run_dir} holds a finished run; pass --overwrite to replace it "
                "or choose another --out"
            )
        if not overwrite:
            raise SeqrecError(
                f"run folder {run_dir} already holds an unfinished run; continue it with "
                f"--resume or pass --overwrite to start over"
            )
        if create:
            shutil.rmtree(run_dir)
    if create:
        run_dir.mkdir(parents=True, exist_ok=True)


def load_run_config(run_dir: Path) -> RunConfig:
    path = run_dir / "config.yaml"
    if not path.is_file():
        raise SeqrecError(
            f"{run_dir} is not a seqrec run folder (no config.yaml); pass the folder `seqrec train` wrote"
        )
    return build_config(yaml.safe_load(path.read_text()))


def train_run(
    cfg: RunConfig,
    run_dir: Path,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
) -> dict:
    """Train (or resume) a run in ``run_dir``; multi-process when launched by torchrun.

    Every rank returns the same results dict (the test ranks are gathered on all ranks).
    """
    dist = DistContext.from_env()
    try:
        return _train_run(dist, cfg, Path(run_dir), resume, overwrite, progress)
    finally:
        dist.close()


def _train_run(
    dist: DistContext,
    cfg: RunConfig,
    run_dir: Path,
    resume: bool,
    overwrite: bool,
    progress: bool,
) -> dict:
    main = dist.is_main
    if resume:

        def saved_config() -> RunConfig:
            prepare_run_dir(run_dir, True, False)
            return load_run_config(run_dir)

        cfg = dist.on_main(saved_config)
    else:
        # refuse before any work
        dist.on_main(lambda: prepare_run_dir(run_dir, False, overwrite, create=False))
    store, split = dist.local_first(lambda: prepare(cfg.data))
    if not resume:
        # the folder is made only once the data loaded, so a bad path or setting leaves no
        # half-made "unfinished run" behind that would block the corrected command
        dist.on_main(lambda: prepare_run_dir(run_dir, False, overwrite))
    trainer = Trainer(cfg, store, split, run_dir, progress=progress, dist=dist)
    if resume:
        trainer.resume()
    elif main:
        atomic_write_text(
            run_dir / "config.yaml", yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
        )
    if main:
        atomic_write_bytes(
            run_dir / "item_ids.npy", _npy_bytes(np.asarray(store.item_ids).astype(str))
        )
    results = trainer.fit()
    ranks = results.pop("_test_ranks")
    results.update(
        {
            "dataset": {"name": cfg.data.dataset, **store.stats()},
            "config": cfg.model_dump(mode="json"),
            "machine": machine_info(),
            "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
    )
    if main:
        atomic_write_bytes(run_dir / "test_ranks.npy", _npy_bytes(ranks))
        atomic_write_json(run_dir / "results.json", results)
    dist.barrier()  # no rank reports success before the run folder is complete
    return results


def machine_info() -> dict:
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
