"""``train.init_from``: start a run from another run's weights (pre-train -> fine-tune).

The source is a run folder (its ``best.safetensors``, the weights `seqrec train` tested) or a
``.safetensors`` file. Loading is strict: every tensor of the model must be in the file with
the same shape and the file may hold nothing else, so a different architecture (width, depth,
max_len, heads' layout, fields) fails with the first differing tensor named instead of a
silently partial init. State a model declares as catalogue-bound (``model.catalogue_keys``,
e.g. SRT's item tokens) is the target data's and is neither read nor required; an id-based item
table (SASRec's ``item_emb``) is not declared so, hence transfer between catalogues of
different sizes fails there, as it should: ids do not mean the same items in another dataset.
A same-sized catalogue in another order would pass that shape check, so for a model whose items
are ids (not ``transferable_items``) the source run's item_ids.npy is compared with the
target data's too.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError, safe_open

from seqrec.errors import SeqrecError
from seqrec.models.base import SeqModel


def weights_path(source: str | Path) -> Path:
    """The weights file behind ``train.init_from``: a run folder's best.safetensors or a file."""
    path = Path(source).expanduser()
    if path.is_dir():
        path = path / "best.safetensors"
        if not path.is_file():
            raise SeqrecError(
                f"train.init_from={source}: the folder has no best.safetensors; point it at a "
                "run that validated at least once (a finished `seqrec train` run)"
            )
        return path
    if not path.is_file():
        raise SeqrecError(
            f"train.init_from={source} does not exist; give a run folder or a .safetensors file"
        )
    return path


def check_same_items(source: str | Path, item_ids: np.ndarray) -> None:
    """An id-based item table only transfers when ids name the same items: compare the
    source run's item_ids.npy (when it is a run folder that has one) with ``item_ids``."""
    ids = Path(source).expanduser() / "item_ids.npy"
    if not ids.is_file():
        return
    theirs = np.load(ids, allow_pickle=False)
    if not np.array_equal(theirs, np.asarray(item_ids).astype(str)):
        raise SeqrecError(
            f"train.init_from={source} was trained on another item catalogue ({len(theirs):,} "
            f"ids, this data has {len(item_ids):,} or another order); pre-train on the same "
            "data settings"
        )


def load_initial_weights(
    model: SeqModel,
    source: str | Path,
    model_name: str,
    item_ids: np.ndarray | None = None,
) -> dict:
    """Copy the source weights into ``model`` in place; returns what was loaded (for the log).

    Refuses a source made by another model family, missing or extra tensors, any shape
    difference (naming the tensor), and, given the target's ``item_ids`` and a model whose
    item table is id-based (not ``transferable_items``), a source run over other item ids.
    """
    path = weights_path(source)
    if item_ids is not None and not model.transferable_items:
        check_same_items(source, item_ids)
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
            names = list(fh.keys())  # safe_open handles are not iterable
            tensors = {k: fh.get_tensor(k) for k in names}
    except (SafetensorError, OSError, ValueError) as err:
        raise SeqrecError(
            f"train.init_from: {path} is not a readable safetensors file ({err})"
        ) from None
    if meta.get("model") not in (None, model_name):
        raise SeqrecError(
            f"train.init_from: {path} holds {meta['model']} weights; this run is "
            f"model.name={model_name}: the architectures differ"
        )
    skip = set(model.catalogue_keys)
    own = {k: v for k, v in model.state_dict().items() if k not in skip}
    theirs = {k: v for k, v in tensors.items() if k not in skip}
    missing, extra = sorted(set(own) - set(theirs)), sorted(set(theirs) - set(own))
    if missing or extra:
        what = f"missing {missing[:3]}" if missing else f"unexpected {extra[:3]}"
        raise SeqrecError(
            f"train.init_from: {path} does not fit this model ({what}); the architecture differs "
            "(layers, layout or options): use the source run's model settings"
        )
    for key, mine in own.items():
        if tuple(theirs[key].shape) != tuple(mine.shape):
            raise SeqrecError(
                f"train.init_from: tensor {key} is {list(theirs[key].shape)} in {path} but "
                f"{list(mine.shape)} in this model; the architecture differs (width, max_len, "
                "srt_fields / srt_buckets, or an id-based item table over another catalogue)"
            )
    with torch.no_grad():
        for key, mine in own.items():
            mine.copy_(theirs[key].to(mine.dtype))
    return {"init_from": str(path), "tensors": len(own), "kept_from_target": sorted(skip)}
