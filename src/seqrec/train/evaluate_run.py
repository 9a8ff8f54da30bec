"""Re-evaluate a finished run under another protocol (sampled metrics, seen items kept, valid)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from seqrec.data import prepare
from seqrec.errors import SeqrecError
from seqrec.eval.ranking import EvalResult, evaluate
from seqrec.models.side_info import wants_behaviors
from seqrec.serve.recommender import Recommender
from seqrec.train.checkpoint import atomic_write_json
from seqrec.train.run import load_run_config


def evaluate_run(
    run_dir: Path,
    split: str = "test",
    sampled: str | None = None,
    negatives: int = 100,
    keep_seen: bool = False,
    json_out: Path | None = None,
    overwrite: bool = False,
    seed: int = 0,
    mask_window: bool = False,
) -> EvalResult:
    """Evaluate a finished run's best weights on one split; ``seed`` draws the sampled
    negatives (sampled metrics only), so several draws show the protocol's own noise;
    ``mask_window`` masks only the history items inside the model's window."""
    if split not in {"valid", "test"}:
        raise SeqrecError(f"--split must be 'valid' or 'test', not '{split}'")
    if sampled not in {None, "uniform", "popularity"}:
        raise SeqrecError(f"--sampled must be 'uniform' or 'popularity', not '{sampled}'")
    if keep_seen and mask_window:
        raise SeqrecError("--keep-seen and --mask-window contradict each other; pass one")
    if json_out is not None and json_out.exists() and not overwrite:
        raise SeqrecError(f"{json_out} already exists; pass --overwrite or choose another path")
    cfg = load_run_config(Path(run_dir))
    rec = Recommender.from_run(Path(run_dir))
    store, sp = prepare(cfg.data)
    # same count is not enough: other ids (or another order) would score the wrong items
    if not np.array_equal(np.asarray(store.item_ids).astype(str), rec.item_ids):
        raise SeqrecError(
            f"the dataset now has {store.n_items} items that differ from the "
            f"{len(rec.item_ids) - 1} the run was trained on; evaluate with the data the run used"
        )
    ecfg = cfg.eval.model_copy(
        update={
            "sampled": sampled,
            "n_negatives": negatives,
            "mask_seen": "window" if mask_window else not keep_seen,
        }
    )
    view = getattr(sp, split)
    res = evaluate(
        rec.model,
        store.items,
        view.starts,
        view.ends,
        view.targets,
        cfg.data.max_len,
        ecfg,
        rec.device,
        popularity=np.bincount(store.items, minlength=store.n_items + 1),
        split_protocol={**sp.protocol, "evaluated": split},
        timestamps=store.timestamps if getattr(rec.model, "needs_timestamps", False) else None,
        behaviors=store.behaviors if wants_behaviors(cfg.model) else None,
        seed=seed,
    )
    if json_out is not None:
        atomic_write_json(json_out, res.to_json())
    return res
