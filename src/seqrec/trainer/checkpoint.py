"""Atomic files, resumable checkpoints and safe weights.

Everything is written to a temporary file in the same folder and renamed into place, so an
interrupted write never leaves a half file where a good one was. Checkpoints hold only tensors
and plain Python values and are read back with ``torch.load(weights_only=True)``; exported
weights are safetensors. Neither path ever unpickles arbitrary objects.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from seqrec.errors import SeqrecError

CHECKPOINT_VERSION = 1
_FILE_MODE = 0o644


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _FILE_MODE)  # mkstemp makes 0600; run files are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=float) + "\n")


def atomic_write_with(path: Path, writer) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        writer(tmp)
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    state = {**state, "version": CHECKPOINT_VERSION}
    atomic_write_with(path, lambda tmp: torch.save(state, tmp))


def rng_state(device: torch.device) -> dict[str, torch.Tensor]:
    """The global RNG streams training draws from (dropout, negatives, masks, augmentations):
    the CPU generator, and on a CUDA device that device's generator as well."""
    out = {"torch_rng": torch.get_rng_state()}
    if device.type == "cuda":
        out["cuda_rng"] = torch.cuda.get_rng_state(device)
    return out


def training_state(state: dict, model, optimizer, scheduler, rng: dict) -> dict[str, Any]:
    """What a checkpoint holds to resume exactly, whatever the task: the loop counters,
    model, optimizer and schedule state, and the RNG (`rng_state`; rank 0's under DDP)."""
    return {
        "state": dict(state),
        "model_state": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        **rng,
    }


def restore_training_state(ck: dict[str, Any], state: dict, model, optimizer, scheduler) -> None:
    """Put back what `training_state` saved, except the RNG (a DDP rank may continue another
    stream: the caller restores it)."""
    model.load_state_dict(ck["model_state"])
    optimizer.load_state_dict(ck["optimizer"])
    scheduler.load_state_dict(ck["scheduler"])
    state.update(ck["state"])


def log_length(path: Path | None) -> int | None:
    """Bytes in the run's log now (None without one): a checkpoint keeps it to rewind to."""
    return path.stat().st_size if path is not None and path.is_file() else None


def rewind_log(log, length: int | None, step: int) -> None:
    """Put metrics.jsonl (``log``: a RunLog, or a DDP rank's NoLog) back as it was when the
    checkpoint was taken: cut to its length then, to the byte, or for a checkpoint from before
    lengths were kept, to the lines of steps up to the checkpoint's."""
    path = getattr(log, "path", None)
    if length is None or path is None or not truncate_file(path, length):
        log.truncate_after(step)


def truncate_file(path: Path, size: int) -> bool:
    """Cut ``path`` back to its first ``size`` bytes; False, changing nothing, when it is
    missing or shorter."""
    try:
        with path.open("r+b") as f:
            if f.seek(0, os.SEEK_END) < size:
                return False
            f.truncate(size)
            f.flush()
            os.fsync(f.fileno())
    except FileNotFoundError:
        return False
    return True


def load_checkpoint(path: Path, expect: dict[str, Any] | None = None) -> dict[str, Any]:
    """Load a checkpoint safely; ``expect`` (e.g. model name, n_items) must match what it holds."""
    if not path.is_file():
        raise SeqrecError(
            f"checkpoint {path} does not exist; check the run folder or start a new run"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated zip, wrong format, foreign pickle
        raise SeqrecError(
            f"checkpoint {path} is corrupted or not a seqrec checkpoint ({type(err).__name__}); "
            "delete it and resume from an earlier one or start a new run"
        ) from None
    if not isinstance(state, dict) or state.get("version") != CHECKPOINT_VERSION:
        raise SeqrecError(f"checkpoint {path} is not a seqrec v{CHECKPOINT_VERSION} checkpoint")
    for key, want in (expect or {}).items():
        if state.get(key) != want:
            raise SeqrecError(
                f"checkpoint {path} was made with {key}={state.get(key)!r}, this run has {want!r}; "
                "use a checkpoint from the same model and dataset"
            )
    return state


def save_weights(path: Path, model: torch.nn.Module, metadata: dict[str, str]) -> None:
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    atomic_write_with(path, lambda tmp: save_file(tensors, tmp, metadata=metadata))


def load_weights(path: Path, model: torch.nn.Module) -> None:
    if not path.is_file():
        raise SeqrecError(f"weights file {path} does not exist; train a model first")
    try:
        tensors = load_file(path)
    except (SafetensorError, OSError, ValueError) as err:
        raise SeqrecError(
            f"weights file {path} is corrupted or truncated ({err}); retrain or restore it"
        ) from None
    try:
        model.load_state_dict(tensors)
    except RuntimeError as err:
        first = str(err).splitlines()[0] if str(err) else "shape mismatch"
        raise SeqrecError(
            f"weights in {path} do not fit this model ({first}); use the config the run was trained with"
        ) from None
