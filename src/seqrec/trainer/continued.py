"""A finished run continued on new events: ``seqrec train --continue-from RUN --events FILE``.

The update writes a new run folder, never the source's: the source stays the model it was
(serving may read it), and the new folder is an ordinary run (evaluate, recommend, export,
``--resume`` after an interruption, and another update all work on it). Its data is the
source's data plus the events (data/update.py: old ids keep their rows, new items and users
are appended), recorded as a `Lineage` in its manifest and results.json.

What training starts from: the source's selected weights (best.safetensors, the model its
results, recommendations and package come from) and the optimiser state of its last
checkpoint (the end of its training; AdamW's moments hold the gradient scales, so the update
needs no cold start), both grown to the new catalogue (trainer/grow.py: new rows from item
features, the model's init or the mean; fresh zero moments for them).

The schedule of the continued run is its own config: the source's, with any ``train.*`` /
``eval.*`` override (model, objective, data and task settings may not change: the weights
and optimiser state would not mean the same). The loop starts afresh (epoch 0, its own
early stopping on the merged data's validation NDCG@10 with ``train.patience``, at most
``train.epochs``), and the learning rate restarts from step 0 (``train.warmup_*``, then
``train.schedule``). An update with no new events takes no step (``train.max_steps=0``): it
validates and tests the source's weights, unchanged bit for bit.

``train_rows="changed"`` trains only the rows of users with new events (cost follows the new
data; the others' rows are not replayed); ``"all"`` (default) trains every user's rows, those
of users with new events ``repeat_changed`` times an epoch (default once).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from pydantic import ValidationError
from safetensors import SafetensorError
from safetensors.torch import load_file

from seqrec.data.features import load_item_features
from seqrec.data.split import Split
from seqrec.data.store import SequenceStore
from seqrec.data.update import (
    EventsFile,
    Lineage,
    named_events,
    prepare_continued,
    repeat_train,
    restrict_train,
)
from seqrec.errors import SeqrecError
from seqrec.fsutil import CHECKPOINT, CONFIG, ITEM_IDS, RESULTS, WEIGHTS, read_run_manifest
from seqrec.recipe import RunConfig, apply_overrides, build_config, saved_config
from seqrec.trainer.checkpoint import load_checkpoint
from seqrec.trainer.context_rows import fill_context_rows
from seqrec.trainer.grow import (
    NewItems,
    grow_model_state,
    grow_optimizer_state,
    load_optimizer_state,
    neighbours,
)

MAY_CHANGE = ("train.", "eval.", "data.cache_dir")
"""Overrides an update accepts: how it trains and evaluates, not what is trained."""


def lineage_of(manifest: dict | None) -> Lineage | None:
    """The `Lineage` a manifest (a run's or a package's) records; None for an ordinary run."""
    block = (manifest or {}).get("continued")
    if not isinstance(block, dict):
        return None
    try:
        return Lineage.model_validate({k: block[k] for k in Lineage.model_fields if k in block})
    except ValidationError:
        raise SeqrecError(
            "the 'continued' block of a run's manifest (seqrec-run.json) or package manifest is "
            "damaged; restore the file seqrec wrote"
        ) from None


def continued_data(
    cfg: RunConfig, lineage: Lineage
) -> tuple[SequenceStore, Split, int, list[EventsFile]]:
    """A continued run's store and split (training restricted as ``lineage.train_rows`` says),
    the number of events this update added, and the events files' records."""
    store, split, added, records = prepare_continued(cfg.data, lineage.events)
    mine = added[len(added) - lineage.update_files :] if lineage.update_files else []
    new_events = sum(a.events for a in mine)
    changed = np.unique(np.concatenate([a.changed_users for a in mine])) if mine else None
    if lineage.repeat_changed > 1 and new_events:
        split = repeat_train(split, changed, lineage.repeat_changed)
    if lineage.train_rows == "changed" and new_events:
        split = restrict_train(split, changed)
        if not (split.train.lengths() >= 2).any():
            raise SeqrecError(
                "train_rows=changed: no user with new events has 2 or more training items; "
                "train every user's rows (train_rows=all)"
            )
    return store, split, new_events, records


@dataclass
class Source:
    """The finished run an update continues: its folder, config, item ids, lineage, selected
    weights and last optimiser state (read, and checked, before the update writes anything)."""

    path: Path
    cfg: RunConfig
    item_ids: np.ndarray
    lineage: Lineage | None
    weights: dict = field(repr=False, default_factory=dict)
    optimizer: dict = field(repr=False, default_factory=dict)

    @property
    def n_items(self) -> int:
        return len(self.item_ids) - 1


def open_source(path: str | Path) -> Source:
    """Check that ``path`` is a finished retrieval run with weights and a checkpoint."""
    path = Path(path).expanduser()
    if not path.is_dir():
        raise SeqrecError(f"--continue-from {path} is not a folder; pass a finished run folder")
    if not (path / CHECKPOINT).is_file():
        hint = " (a model package holds weights only)" if (path / "manifest.json").is_file() else ""
        raise SeqrecError(
            f"--continue-from {path} has no {CHECKPOINT}, the optimiser state an update "
            f"continues{hint}; continue the run folder it came from, or retrain"
        )
    missing = ((RESULTS, "has not finished"), (WEIGHTS, "has no weights"), (ITEM_IDS, "has no ids"))
    for name, what in missing:
        if not (path / name).is_file():
            raise SeqrecError(
                f"--continue-from {path} {what} (no {name}); finish it with "
                f"`seqrec train --resume {path}` first"
            )
    cfg = _saved_config(path)
    if cfg.task.name != "retrieval":
        raise SeqrecError(
            f"--continue-from {path} is a {cfg.task.name}-task run; updates continue "
            "retrieval runs only: retrain it on the whole log"
        )
    item_ids = np.load(path / ITEM_IDS, allow_pickle=False).astype(str)
    expect = {
        "model": cfg.model.name,
        "n_items": len(item_ids) - 1,
        "fingerprint": cfg.fingerprint(),
    }
    ck = load_checkpoint(path / CHECKPOINT, expect=expect)
    try:
        weights = load_file(path / WEIGHTS)
    except (SafetensorError, OSError, ValueError) as err:
        raise SeqrecError(
            f"weights file {path / WEIGHTS} is corrupted or truncated ({err}); restore it, or "
            "retrain the run"
        ) from None
    lineage = lineage_of(read_run_manifest(path))
    return Source(path, cfg, item_ids, lineage, weights, ck["optimizer"])


def _saved_config(path: Path) -> RunConfig:
    """The source's config.yaml (trainer/run.py reads it the same way; it imports this module)."""
    try:
        raw = yaml.safe_load((path / CONFIG).read_text())
    except (OSError, yaml.YAMLError):
        raise SeqrecError(
            f"{path / CONFIG} is missing or not valid YAML; restore the file `seqrec train` wrote"
        ) from None
    return saved_config(raw)


def continued_config(source: RunConfig, overrides: list[str]) -> RunConfig:
    """The source's config with ``overrides`` (train.*, eval.* only); no ``train.init_from``:
    the update's start is the source run itself."""
    for item in overrides:
        key = item.split("=", 1)[0].strip()
        if not key.startswith(MAY_CHANGE) or key == "train.init_from":
            raise SeqrecError(
                f"--continue-from keeps the run's model, objective, data and task settings "
                f"(its weights mean nothing under others); drop -o {key} (only train.* and "
                "eval.* may change), or retrain"
            )
    raw = source.model_dump(mode="json")
    raw["train"]["init_from"] = None
    return build_config(apply_overrides(raw, overrides))


def check_same_model(source: RunConfig, cfg: RunConfig) -> None:
    """An update's config may differ from its source's in train.* and eval.* only."""
    for section in ("model", "objective", "data", "task"):
        mine, theirs = getattr(cfg, section).model_dump(), getattr(source, section).model_dump()
        mine.pop("cache_dir", None), theirs.pop("cache_dir", None)
        for key in sorted(set(mine) | set(theirs)):
            if mine.get(key) != theirs.get(key):
                raise SeqrecError(
                    f"an update keeps the run's {section} settings: {section}.{key}="
                    f"{mine.get(key)!r} differs from the run's {theirs.get(key)!r}; drop it, "
                    "or retrain"
                )


@dataclass
class Continuation:
    """One update: the source, the new events, its config, and what growing did."""

    source: Source
    cfg: RunConfig
    lineage: Lineage
    report: dict[str, Any] = field(default_factory=dict)

    def load_data(self) -> tuple[SequenceStore, Split]:
        """The merged data (refusing events that contradict it); an update that adds nothing
        becomes ``train.max_steps=0``."""
        store, split, new_events, records = continued_data(self.cfg, self.lineage)
        self.lineage = self.lineage.model_copy(update={"events": records})
        n_old = self.source.n_items
        if not np.array_equal(
            np.asarray(store.item_ids[: n_old + 1]).astype(str), self.source.item_ids
        ):
            raise SeqrecError(
                f"the data of {self.source.path} no longer gives the items it was trained on "
                "(its data file or settings changed); restore them, or retrain"
            )
        if not new_events:
            self.cfg = self.cfg.model_copy(
                update={"train": self.cfg.train.model_copy(update={"max_steps": 0})}
            )
        self.report = {"new_events": new_events, "items_before": n_old, "items": store.n_items}
        return store, split

    def start(self, trainer) -> None:
        """Put the source's grown weights and optimiser state into ``trainer``'s model and
        optimiser (built for the merged data) before its first step."""
        src, model, store = self.source, trainer.model, trainer.store
        how = self.lineage.new_items
        near = None
        if how == "features" and store.n_items > src.n_items:
            near = neighbours(load_item_features(self.cfg.data, store), src.n_items)
        state, dims = grow_model_state(
            src.weights, model, src.n_items, store.n_items, how, near,
            tuple(model.catalogue_keys), str(src.path / WEIGHTS),
        )  # fmt: skip
        model.load_state_dict(state)
        if how == "context" and store.n_items > src.n_items:
            self.report["context_items"] = fill_context_rows(
                trainer.task, model, src.n_items, store.n_items
            )
        grown = grow_optimizer_state(src.optimizer, trainer.opt, model, dims, src.n_items)
        load_optimizer_state(trainer.opt, grown)
        self.report["grown"] = sorted(dims)

    def results(self) -> dict[str, Any]:
        """results.json's ``continued`` block (a package's manifest copies it)."""
        return {**self.lineage.model_dump(), **self.report}


def resolve_new_items(how: str, cfg: RunConfig) -> NewItems:
    """``auto``: item features when the run has them (data.item_features), else the model's init."""
    if how == "auto":
        return "features" if cfg.data.item_features else "model"
    if how not in ("model", "mean", "features", "context"):
        raise SeqrecError(f"new_items must be auto, model, mean, features or context, not {how!r}")
    if how == "features" and not cfg.data.item_features:
        raise SeqrecError(
            "new_items=features starts new items from look-alike old ones, but the run has no "
            "item features (data.item_features); use new_items=model or mean"
        )
    return how  # type: ignore[return-value]


def plan_continuation(
    source: str | Path,
    events: list[str | Path],
    overrides: list[str] | None = None,
    train_rows: str = "all",
    new_items: str = "auto",
    repeat_changed: int = 1,
) -> Continuation:
    """Everything checked before any work: the source, the overrides, the options."""
    src = open_source(source)
    cfg = continued_config(src.cfg, list(overrides or []))
    check_same_model(src.cfg, cfg)
    if train_rows not in ("all", "changed"):
        raise SeqrecError(f"train_rows must be all or changed, not {train_rows!r}")
    if not (isinstance(repeat_changed, int) and repeat_changed >= 1):
        raise SeqrecError(f"repeat_changed must be a whole number >= 1, not {repeat_changed!r}")
    if repeat_changed > 1 and train_rows != "all":
        raise SeqrecError(
            "repeat_changed weighs the users with new events against the others, so it needs "
            "train_rows=all"
        )
    files = named_events(events)
    # a run trained from scratch on data.updates: those files are its data too
    earlier = src.lineage.events if src.lineage is not None else named_events(src.cfg.data.updates)
    lineage = Lineage(
        source=str(src.path.resolve()),
        events=[*earlier, *files],
        update_files=len(files),
        train_rows=train_rows,
        repeat_changed=repeat_changed,
        new_items=resolve_new_items(new_items, cfg),
    )
    # config.yaml names every events file, so training it from scratch retrains on them all
    data = cfg.data.model_copy(update={"updates": [f.path for f in lineage.events]})
    return Continuation(src, cfg.model_copy(update={"data": data}), lineage)
