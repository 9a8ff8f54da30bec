"""`seqrec evaluate`'s entry point: re-evaluate a finished run under another protocol.

The evaluation itself is `seqrec.run.Run.evaluate` (the run layer owns loading a model); this
wrapper keeps the CLI's signature, its flag-worded messages and the ``--json`` output, checked
before any work. It is the one import of `seqrec.run` from the train layer: delete it once the
CLI calls `Run.evaluate` directly.
"""

from __future__ import annotations

from pathlib import Path

from seqrec.errors import SeqrecError
from seqrec.eval.ranking import EvalResult
from seqrec.fsutil import unwritable
from seqrec.run import Run
from seqrec.train.checkpoint import atomic_write_json


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
    if json_out is not None:
        json_out = Path(json_out)
        if json_out.is_dir():
            raise SeqrecError(f"{json_out} is a folder; choose a file path for --json")
        if json_out.exists() and not overwrite:
            raise SeqrecError(f"{json_out} already exists; pass --overwrite or choose another path")
        if (why := unwritable(json_out, "--json path")) is not None:
            raise SeqrecError(why)
    mask_seen: bool | str = "window" if mask_window else not keep_seen
    res = Run(run_dir).evaluate(split, sampled, negatives, mask_seen, seed)
    if json_out is not None:
        atomic_write_json(json_out, res.to_json())
    return res
