"""`seqrec train` and `seqrec evaluate` of a ranking run, where the CLI imports them today.

Why this module is still here: the ranking task itself is ``seqrec.tasks.ranking`` (below the
trainer) and it is trained by the one trainer (``train/loop.py``); what remains here is run
folder code, above the trainer. ``train_ranking_run`` is the one-entry-point flow for every
task (``load_task_data`` -> ``run_task`` -> ``output_files``) that ``train.run.train_run``
is to run too; once it does and ``seqrec evaluate`` loads ranking runs through the run loader,
the CLI calls those and this package goes.

Run folder: config.yaml, metrics.jsonl, checkpoint.pt, best.safetensors, item_ids.npy,
results.json (valid/test metrics + protocol) and test_predictions.npz (user, item, label,
probability per test example, for paired comparisons).
"""

from __future__ import annotations

import io
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
import yaml

from seqrec.errors import SeqrecError
from seqrec.eval.ctr import ctr_metrics
from seqrec.recipe import RunConfig
from seqrec.tasks import RankingTask, load_task_data, output_files
from seqrec.tasks.ranking.baselines import baseline_probs, untrained
from seqrec.train.checkpoint import (
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    load_weights,
)
from seqrec.train.distributed import DistContext
from seqrec.train.loop import run_task
from seqrec.train.run import load_run_config, machine_info, prepare_run_dir


def train_ranking_run(
    cfg: RunConfig | None,
    run_dir: Path,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
) -> dict:
    """Train (or resume) a ranking run in ``run_dir``; single process."""
    run_dir = Path(run_dir)
    if resume:
        prepare_run_dir(run_dir, True, False)
        cfg = load_run_config(run_dir)
    else:
        prepare_run_dir(run_dir, False, overwrite, create=False)
    assert cfg is not None
    store, data = load_task_data(cfg)
    if not resume:
        prepare_run_dir(run_dir, False, overwrite, cfg=cfg)
        atomic_write_text(
            run_dir / "config.yaml", yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
        )
    buf = io.BytesIO()
    np.save(buf, np.asarray(store.item_ids).astype(str), allow_pickle=False)
    atomic_write_bytes(run_dir / "item_ids.npy", buf.getvalue())
    results = run_task(cfg, store, data, run_dir, resume=resume, progress=progress)
    files = output_files(cfg, data, results)
    results.update(
        {
            "dataset": {"name": cfg.data.dataset, **store.stats()},
            "config": cfg.model_dump(mode="json"),
            "machine": machine_info(),
            "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
    )
    for name, blob in files.items():
        atomic_write_bytes(run_dir / name, blob)
    atomic_write_json(run_dir / "results.json", results)
    return results


def evaluate_ranking_run(
    run_dir: Path, split: str = "test", json_out: Path | None = None, overwrite: bool = False
) -> dict:
    """Score a finished (or interrupted) ranking run's best weights on ``split`` again."""
    run_dir = Path(run_dir)
    if split not in ("valid", "test"):
        raise SeqrecError(f"--split must be valid or test, got {split!r}")
    if json_out is not None and json_out.exists() and not overwrite:
        raise SeqrecError(f"{json_out} exists; pass --overwrite to replace it")
    cfg = load_run_config(run_dir)
    store, data = load_task_data(cfg)
    ex = getattr(data, split)
    if untrained(cfg):
        probs = baseline_probs(cfg, store, data)[split]
        metrics = ctr_metrics(probs, ex.labels, ex.users)
    else:  # the trainer's set-up: same threads and seed, so the same floating-point sums
        if cfg.train.threads:
            torch.set_num_threads(cfg.train.threads)
        torch.manual_seed(cfg.train.seed)
        one = DistContext()
        device = one.device(cfg.train.device)
        task = RankingTask(cfg, store, data, device, one)
        task.model.to(device)
        load_weights(run_dir / "best.safetensors", task.model)
        metrics = task.evaluate(ex)
    if json_out is not None:
        atomic_write_json(json_out, {"metrics": metrics, "protocol": {**data.protocol,
                                                                     "evaluated": split}})  # fmt: skip
    return metrics
