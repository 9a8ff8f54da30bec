"""A trained model and its optimiser state grown to a larger catalogue, row for row.

Every tensor sized by the catalogue follows one layout (models/base.py): row 0 is PAD, rows
1..n_items the items, then any rows that follow the catalogue (BERT4Rec's and CL4SRec's mask
token at n_items + 1). Growing from n_old to n_new items keeps rows 0..n_old where they are
(old id i keeps row i), moves the trailing rows to after n_new, and fills rows n_old+1..n_new.
Catalogue tensors are found by comparing the saved weights with the larger model built for
the new data: exactly one dimension may differ, by n_new - n_old; anything else means another
model and is refused.

New rows start as (``how``):

- ``features`` (the default when the run has item features, ``data.item_features``): the mean
  of the rows of the `NEIGHBOURS` old items most like it by features (cosine over one-hot
  values, multi-hot lists, standardised numbers and normalised text vectors, each field
  weighted alike): what the model learned about look-alike items, by one rule for every
  catalogue tensor (table, output bias). An item with no look-alike keeps the model's init.
- ``model`` (the default otherwise): the new model's own freshly initialised rows, what a
  retrain would start them at: each model's own init scheme, and distinct vectors, so new
  items are told apart from the first step (the mean would give them all one vector).
- ``mean``: the mean of the old items' rows.
- ``context``: the model's init here; after loading, the scoring table's new rows become the
  mean hidden state before each new item in the training data (trainer/context_rows.py).

The optimiser state grows alike: a state tensor of a grown parameter with its shape (AdamW's
moments) or its row count (a row-wise optimiser's per-row step counts) gets zero rows for the
new items, so they start with fresh moments while old rows keep theirs; scalars (AdamW's step
count) are kept.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from seqrec.data.features import Features
from seqrec.errors import SeqrecError

NewItems = Literal["model", "mean", "features", "context"]
NEIGHBOURS = 10
"""Look-alike old items averaged into a new item's rows (``features``)."""


# ---------------------------------------------------------------------------- the weights


def grown_dims(old: dict, new: dict, n_old: int, n_new: int, source: str) -> dict[str, int]:
    """Which tensors hold the catalogue, and along which dimension; refuses any other change."""
    missing, extra = sorted(set(new) - set(old)), sorted(set(old) - set(new))
    if missing or extra:
        what = f"missing {missing[:3]}" if missing else f"unexpected {extra[:3]}"
        raise SeqrecError(
            f"the weights in {source} do not fit this model ({what}); keep the run's model "
            "settings in an update, or retrain"
        )
    dims = {}
    for key, mine in new.items():
        a, b = tuple(old[key].shape), tuple(mine.shape)
        if a == b:
            continue
        diff = [d for d in range(len(b)) if len(a) == len(b) and a[d] != b[d]]
        if len(diff) != 1 or b[diff[0]] - a[diff[0]] != n_new - n_old or a[diff[0]] <= n_old:
            raise SeqrecError(
                f"tensor {key} is {list(a)} in {source} but {list(b)} in this model, which "
                f"no growth from {n_old} to {n_new} items explains; keep the run's model "
                "settings in an update, or retrain"
            )
        dims[key] = diff[0]
    return dims


def insert_rows(old: torch.Tensor, dim: int, n_old: int, fill: torch.Tensor) -> torch.Tensor:
    """``old`` with ``fill`` (rows along its dimension 0) inserted after row ``n_old`` of
    dimension ``dim``: rows 0..n_old stay, the trailing rows move after the new ones."""
    x = old.movedim(dim, 0)
    fill = fill.to(dtype=x.dtype, device=x.device)
    return torch.cat([x[: n_old + 1], fill, x[n_old + 1 :]]).movedim(0, dim)


def new_rows(how: NewItems, old, fresh, dim: int, n_old: int, n_new: int, neighbours=None):
    """The rows items n_old+1..n_new start with, along dimension 0."""
    start = fresh.movedim(dim, 0)[n_old + 1 : n_new + 1]
    items = old.movedim(dim, 0)[1 : n_old + 1].to(start.dtype)
    if how == "mean":
        return items.mean(0, keepdim=True).expand_as(start).clone()
    if how in ("model", "context") or neighbours is None:  # context: filled after loading
        return start.clone()
    idx, valid = (torch.as_tensor(a) for a in neighbours)
    w = valid.to(start.dtype).view(*valid.shape, *[1] * (start.dim() - 1))
    total = (items[idx] * w).sum(1)
    count = w.sum(1)
    return torch.where(count > 0, total / count.clamp(min=1), start)


def grow_model_state(
    old: dict,
    model: nn.Module,
    n_old: int,
    n_new: int,
    how: NewItems = "model",
    neighbours=None,
    keep: tuple[str, ...] = (),
    source: str = "the run",
) -> tuple[dict, dict[str, int]]:
    """The state dict that loads into ``model`` (built for n_new items): ``old`` with every
    catalogue tensor grown; ``keep`` (a model's catalogue-bound data, SRT's item tokens)
    stays the model's own. Returns it and the grown tensors' dimensions."""
    fresh = {k: v.detach().clone() for k, v in model.state_dict().items()}
    old = {k: v for k, v in old.items() if k not in keep}
    dims = grown_dims(old, {k: v for k, v in fresh.items() if k not in keep}, n_old, n_new, source)
    out = dict(fresh)
    for key, value in old.items():
        if key in dims:
            d = dims[key]
            fill = new_rows(how, value, fresh[key], d, n_old, n_new, neighbours)
            out[key] = insert_rows(value, d, n_old, fill)
        else:
            out[key] = value
    return out, dims


# ---------------------------------------------------------------------------- the optimiser


def _grow_entry(value, param: torch.Tensor, dim: int, n_old: int, name: str):
    """One state value of a grown parameter, with zero rows for the new items."""
    if not isinstance(value, torch.Tensor) or value.dim() == 0:
        return value  # a step count, shared by every row
    if value.dim() == param.dim():  # moments: the parameter's own shape
        along = dim
    elif value.dim() == 1 and dim == 0:  # per-row state: one value per row
        along = 0
    else:
        raise SeqrecError(
            f"optimiser state of {name} has shape {list(value.shape)}, which does not follow "
            f"the parameter's {list(param.shape)}; it cannot be grown: retrain instead"
        )
    shape = list(value.movedim(along, 0).shape)
    shape[0] = param.shape[dim] - value.shape[along]
    fill = torch.zeros(shape, dtype=value.dtype, device=value.device)
    return insert_rows(value, along, n_old, fill)


def grow_optimizer_state(
    old: dict, opt: torch.optim.Optimizer, model: nn.Module, dims: dict[str, int], n_old: int
) -> dict:
    """``old`` (an ``opt.state_dict()`` saved before the catalogue grew) ready to load into
    ``opt``, built over ``model``'s grown parameters: see the module docstring."""
    groups = old.get("param_groups", [])
    if [len(g["params"]) for g in groups] != [len(g["params"]) for g in opt.param_groups]:
        raise SeqrecError(
            "the run's optimiser state does not fit this run's optimiser (other parameter "
            "groups); keep the run's train.item_updates"
        )
    names = {id(p): n for n, p in model.named_parameters()}
    state = {}
    for saved, live in zip(groups, opt.param_groups, strict=True):
        for idx, param in zip(saved["params"], live["params"], strict=True):
            if idx not in old["state"]:
                continue
            name = names.get(id(param), str(idx))
            entry = old["state"][idx]
            if name in dims:
                entry = {
                    k: _grow_entry(v, param, dims[name], n_old, name) for k, v in entry.items()
                }
            for key, value in entry.items():
                fits = not isinstance(value, torch.Tensor) or value.dim() == 0
                if not fits and tuple(value.shape) not in (tuple(param.shape), param.shape[:1]):
                    raise SeqrecError(
                        f"the run's optimiser state {key} of {name} is {list(value.shape)}, "
                        f"the parameter {list(param.shape)}; keep the run's model settings"
                    )
            state[idx] = entry
    return {"state": state, "param_groups": groups}


def load_optimizer_state(opt: torch.optim.Optimizer, state: dict) -> None:
    """Load moments and step counts, keeping this run's hyper-parameters (lr, betas, weight
    decay of its own ``train`` section and schedule) instead of the saved run's."""
    hyper = [{k: v for k, v in g.items() if k != "params"} for g in opt.param_groups]
    opt.load_state_dict(state)
    for group, own in zip(opt.param_groups, hyper, strict=True):
        group.update(own)


# ---------------------------------------------------------------------------- look-alikes


def feature_matrix(features: Features) -> sp.csr_matrix:
    """[rows, columns] item vectors: one block per field, each row's block of unit length
    (so every field weighs alike), the whole row of unit length (cosine = dot product)."""
    n = features.n_rows
    blocks = []
    for field in features.fields.values():
        vals = np.asarray(field.values)
        if field.kind in ("categorical", "multi"):
            ids = vals.reshape(n, -1)
            r, c = np.nonzero(ids)
            block = sp.csr_matrix((np.ones(len(r)), (r, ids[r, c])), shape=(n, field.vocab))
        else:
            block = sp.csr_matrix(vals.reshape(n, -1).astype(np.float64))
        norm = np.sqrt(np.asarray(block.multiply(block).sum(1)).ravel())
        blocks.append(sp.diags(1.0 / np.where(norm > 0, norm, 1.0)) @ block)
    if not blocks:
        return sp.csr_matrix((n, 0))
    x = sp.hstack(blocks).tocsr()
    norm = np.sqrt(np.asarray(x.multiply(x).sum(1)).ravel())
    return (sp.diags(1.0 / np.where(norm > 0, norm, 1.0)) @ x).tocsr()


def _top_k(sims: np.ndarray, k: int) -> np.ndarray:
    """Per row, the k largest columns, ties to the lower index, in column order."""
    k = min(k, sims.shape[1])
    kth = -np.partition(-sims, k - 1, axis=1)[:, k - 1 : k]
    above = sims > kth
    need = k - above.sum(1, keepdims=True)
    tie = (sims == kth) & (np.cumsum(sims == kth, axis=1) <= need)
    return np.nonzero(above | tie)[1].reshape(len(sims), k)


def neighbours(
    features: Features, n_old: int, k: int = NEIGHBOURS, chunk: int = 1024
) -> tuple[np.ndarray, np.ndarray]:
    """For items n_old+1.., the indices (0 = item 1) of their ``k`` most similar old items and
    which of them count (a positive cosine): [m, k] each, ``chunk`` new items at a time."""
    x = feature_matrix(features)
    old, new = x[1 : n_old + 1], x[n_old + 1 :]
    idx, ok = [], []
    for lo in range(0, new.shape[0], chunk):
        sims = (new[lo : lo + chunk] @ old.T).toarray()
        top = _top_k(sims, k)
        idx.append(top)
        ok.append(np.take_along_axis(sims, top, 1) > 0)
    if not idx:
        return np.zeros((0, min(k, n_old)), np.int64), np.zeros((0, min(k, n_old)), bool)
    return np.concatenate(idx), np.concatenate(ok)


def reference_neighbours(features: Features, n_old: int, k: int = NEIGHBOURS):
    """`neighbours` item by item, sorting every similarity (the tests' check)."""
    x = feature_matrix(features).toarray()
    idx, ok = [], []
    for i in range(n_old + 1, features.n_rows):
        sims = [(float(x[i] @ x[j]), j - 1) for j in range(1, n_old + 1)]
        best = sorted(sorted(sims, key=lambda s: (-s[0], s[1]))[:k], key=lambda s: s[1])
        idx.append([j for _, j in best])
        ok.append([s > 0 for s, _ in best])
    return np.array(idx, dtype=np.int64), np.array(ok, dtype=bool)
