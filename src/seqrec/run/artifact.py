"""One run artifact: a trained model's folder, and the only code that loads its model.

A `Run` opens either a run folder (what `seqrec train` writes, see `seqrec.trainer.run`) or a
model package (what `Run.export` writes, see `seqrec.run.package`): a package is an exported run,
read by the same loader. Evaluation, recommendation, serving and export all get their model
from `Run.load_model`, so a model that loads for one loads for all, and no other module builds
a model from saved weights.

    run = seqrec.run.train(cfg, "runs/a")          # or Run("runs/a") for a finished one
    run.evaluate(split="test", sampled="uniform")  # another protocol, same weights
    rec = run.recommender()                        # top-K in original item ids
    package = run.export("pkg/a")                  # a verified, self-contained folder
    rec = seqrec.run.load("pkg/a")                 # a run folder or a package

Run folders written before manifests existed (no ``seqrec-run.json``) are recognised by their
files and load as before.
"""

from __future__ import annotations

import json
import os
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl
import torch
from torch import nn

from seqrec.data import prepare
from seqrec.data.update import Lineage, prepare_continued
from seqrec.errors import SeqrecError
from seqrec.eval.domains import domain_labels
from seqrec.eval.ranking import EvalResult, evaluate
from seqrec.fsutil import (
    CONFIG,
    ITEM_IDS,
    RESULTS,
    RUN_FORMAT_VERSION,
    RUN_MANIFEST,
    WEIGHTS,
    read_run_manifest,
)
from seqrec.models import build_model
from seqrec.models.inputs import attach_for_catalogue
from seqrec.recipe import RunConfig
from seqrec.run.package import (
    MANIFEST,
    check_package_target,
    is_package,
    read_item_metadata,
    read_manifest,
    read_package,
    train_popularity,
    write_package,
)
from seqrec.run.ranking_eval import RankingEval, evaluate_ranking
from seqrec.run.recommender import Recommender
from seqrec.trainer.checkpoint import load_weights
from seqrec.trainer.continued import lineage_of, plan_continuation
from seqrec.trainer.run import load_run_config, train_run

PathLike = str | os.PathLike


class Run:
    """A seqrec run folder or model package, opened for reading.

    Opening checks only what the folder is (and, for a package, every file's sha256); the
    config, results and id map are read when first asked for, and the model on each
    `load_model` call.
    """

    def __init__(self, path: PathLike) -> None:
        self.path = Path(path)
        if not self.path.is_dir():
            raise SeqrecError(
                f"{self.path} does not exist or is not a folder; pass a run folder "
                "(`seqrec train`) or a model package (`seqrec export`)"
            )
        manifest = read_run_manifest(self.path)
        self._package = None
        self.kind: Literal["run", "package"]
        if manifest is not None:
            version = manifest.get("format_version")
            if not isinstance(version, int) or version > RUN_FORMAT_VERSION:
                raise SeqrecError(
                    f"run folder {self.path} has format version {version!r}; this seqrec reads "
                    f"version {RUN_FORMAT_VERSION} and older: upgrade seqrec to read it"
                )
            self.kind, self.manifest = "run", manifest
        elif is_package(self.path):
            self._package = read_package(self.path)
            self.kind, self.manifest = "package", self._package.manifest
        elif (self.path / CONFIG).is_file():
            self.kind, self.manifest = "run", None  # a run from before manifests
        else:
            raise SeqrecError(
                f"{self.path} is not a seqrec run folder or model package (no {RUN_MANIFEST}, "
                f"{CONFIG} or {MANIFEST}); pass a folder `seqrec train` or `seqrec export` wrote"
            )

    @classmethod
    def open(cls, path: PathLike) -> Run:
        """Same as ``Run(path)``."""
        return cls(path)

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r}, kind={self.kind!r}, finished={self.is_finished})"

    # ------------------------------------------------------------------------ what it holds

    @cached_property
    def config(self) -> RunConfig:
        """The run's full resolved config (a package's has catalogue defaults filled in)."""
        if self._package is not None:
            return self._package.config
        return load_run_config(self.path)

    @cached_property
    def item_ids(self) -> np.ndarray:
        """Internal item id -> original id (str); index 0 is PAD."""
        if self._package is not None:
            return self._package.item_ids
        path = self.path / ITEM_IDS
        if not path.is_file():
            raise SeqrecError(
                f"{self.path} has no {ITEM_IDS}; it is not a finished seqrec run "
                "(train it, or continue it with --resume)"
            )
        return np.load(path, allow_pickle=False)

    @property
    def n_items(self) -> int:
        return len(self.item_ids) - 1

    @property
    def results(self) -> dict[str, Any] | None:
        """results.json (metrics, protocol, counts) once the run finished; None before, and
        for a package (its manifest carries the metrics). Read afresh on each access."""
        path = self.path / RESULTS
        if self._package is not None or not path.is_file():
            return None
        return json.loads(path.read_text())

    @property
    def is_finished(self) -> bool:
        """Whether training ended and the test split was evaluated (a package always did)."""
        return self._package is not None or (self.path / RESULTS).is_file()

    @property
    def weights_path(self) -> Path:
        return self._package.weights if self._package is not None else self.path / WEIGHTS

    @property
    def popularity(self) -> np.ndarray | None:
        """Training interaction counts per internal id (packages; a run folder has none)."""
        return None if self._package is None else self._package.popularity

    @property
    def metadata(self) -> pl.DataFrame | None:
        """Item metadata exported with a package (item_id + columns), else None."""
        return None if self._package is None else self._package.metadata

    # ---------------------------------------------------------------------- the one loader

    def load_model(self, device: str | torch.device = "cpu") -> nn.Module:
        """Build the model from the config, re-attach its catalogue's item features, load the
        safetensors weights (strictly: every tensor, right shapes), in eval mode on ``device``."""
        cfg = self.config
        if cfg.task.name == "ranking":
            raise SeqrecError(
                f"{self.path} is a ranking-task run: its model scores (history, candidate) "
                "pairs, not the catalogue; evaluate it with `seqrec evaluate`"
            )
        item_ids = self.item_ids
        model = build_model(cfg.model, len(item_ids) - 1, cfg.data.max_len)
        attach_for_catalogue(model, cfg, item_ids)
        load_weights(self.weights_path, model)
        return model.to(device).eval()

    def recommender(self, device: str | torch.device = "cpu") -> Recommender:
        """The loaded model with its id maps (and a package's popularity and metadata)."""
        return Recommender(
            self.load_model(device),
            self.item_ids,
            self.config.data.max_len,
            torch.device(device),
            popularity=self.popularity,
            metadata=self.metadata,
            info=dict(self.manifest or {}),
            config=self.config,
        )

    @property
    def lineage(self) -> Lineage | None:
        """An update's lineage (the run it continued, its events files); None otherwise."""
        return lineage_of(self.manifest)

    def _data(self):
        """The run's store and split, rebuilt: its ``data.*``, plus an update's events files."""
        if self.lineage is None:
            return prepare(self.config.data)
        store, split, _, _ = prepare_continued(self.config.data, self.lineage.events)
        return store, split

    # ----------------------------------------------------------------- evaluate and export

    def evaluate(
        self,
        split: str = "test",
        sampled: str | None = None,
        negatives: int = 100,
        mask_seen: bool | str = True,
        seed: int = 0,
        device: str | torch.device = "cpu",
        repeat_targets: str | None = None,
    ) -> EvalResult | RankingEval:
        """Rank ``split``'s held-out items with the run's best weights on the run's data (a
        ranking-task run: AUC, GAUC, log loss and calibration on the split's real events).

        ``sampled`` ('uniform' | 'popularity') ranks against ``negatives`` drawn negatives
        (``seed`` draws them, so several seeds show the protocol's own noise) instead of the
        full catalogue; ``mask_seen`` True masks every history item, False none, 'window'
        only those inside the model's window (generative-recommenders' protocol);
        ``repeat_targets`` ('rank' | 'miss' | 'drop', None = the run's ``eval.repeat_targets``)
        says what a target among the masked history items counts as (options.EvalConfig).
        """
        if split not in {"valid", "test"}:
            raise SeqrecError(f"split must be 'valid' or 'test', not {split!r}")
        if sampled not in {None, "uniform", "popularity"}:
            raise SeqrecError(f"sampled must be None, 'uniform' or 'popularity', not {sampled!r}")
        if mask_seen not in (True, False, "window"):
            raise SeqrecError(f"mask_seen must be True, False or 'window', not {mask_seen!r}")
        cfg = self.config
        repeat = cfg.eval.repeat_targets if repeat_targets is None else repeat_targets
        if repeat not in {"rank", "miss", "drop"}:
            raise SeqrecError(f"repeat_targets must be 'rank', 'miss' or 'drop', not {repeat!r}")
        if repeat != "rank" and not mask_seen:
            raise SeqrecError(
                f"repeat_targets={repeat} treats targets among the masked history items, but "
                "seen items are kept (mask_seen=False / --keep-seen); mask them or use 'rank'"
            )
        if cfg.task.name == "ranking":
            if sampled is not None or mask_seen is not True:
                raise SeqrecError(
                    "sampled and mask_seen choose a next-item ranking protocol; a ranking-task "
                    "run is scored on real (history, candidate) events: leave them unset"
                )
            return evaluate_ranking(cfg, self.weights_path, split)
        model = self.load_model(device)
        store, sp = self._data()
        # same count is not enough: other ids (or another order) would score the wrong items
        if not np.array_equal(np.asarray(store.item_ids).astype(str), self.item_ids):
            raise SeqrecError(
                f"the dataset now has {store.n_items} items that differ from the "
                f"{self.n_items} the run was trained on; evaluate with the data the run used"
            )
        ecfg = cfg.eval.model_copy(
            update={
                "sampled": sampled,
                "n_negatives": negatives,
                "mask_seen": mask_seen,
                "repeat_targets": repeat,
            }
        )
        view = getattr(sp, split)
        needs = cfg.model.needs()
        return evaluate(
            model,
            store.items,
            view.starts,
            view.ends,
            view.targets,
            cfg.data.max_len,
            ecfg,
            torch.device(device),
            popularity=np.bincount(store.items, minlength=store.n_items + 1),
            split_protocol={**sp.protocol, "evaluated": split},
            timestamps=store.timestamps if needs.timestamps else None,
            behaviors=store.behaviors if needs.behaviors else None,
            seed=seed,
            domains=domain_labels(store, events=needs.domains),
        )

    def export(
        self,
        dest: PathLike,
        item_metadata: PathLike | None = None,
        metadata_id_col: str | None = None,
        overwrite: bool = False,
    ) -> Run:
        """Write a model package of this finished run to ``dest``; returns it, opened.

        ``dest`` may be new, empty, or (with ``overwrite``) a seqrec package; anything else
        is refused before any work. Popularity is counted on the run's training split.
        """
        if self._package is not None:
            raise SeqrecError(f"{self.path} is already a model package; copy the folder to move it")
        dest = Path(dest)
        check_package_target(dest, overwrite)
        cfg = self.config
        results = self.results
        if results is None:
            raise SeqrecError(
                f"the run in {self.path} has not finished (no {RESULTS}); export it once "
                "`seqrec train` has evaluated the best weights"
            )
        model = self.load_model()  # checks the weights fit the config
        metadata = None
        if item_metadata is not None:
            metadata = read_item_metadata(Path(item_metadata), metadata_id_col)
        popularity, dataset_name = train_popularity(cfg, self.item_ids, self.path, self._data)
        write_package(
            dest,
            cfg,
            model,
            self.item_ids,
            results,
            popularity,
            dataset_name,
            metadata,
            Path(item_metadata).name if item_metadata is not None else None,
        )
        return Run(dest)


def load(path: PathLike, device: str = "cpu") -> Recommender:
    """A run folder or a model package -> its `Recommender` (`seqrec.load`)."""
    return Run(path).recommender(device)


def load_package(path: PathLike, device: str = "cpu") -> Recommender:
    """A model package only -> its `Recommender`, with popularity and metadata (what the
    server needs to answer empty histories); a run folder is told how to export itself."""
    if not is_package(Path(path)):
        read_manifest(Path(path))  # raises the reason: missing, a run folder, not a package
    return Run(path).recommender(device)


def train(
    cfg: RunConfig | None,
    out: PathLike,
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
) -> Run:
    """Train ``cfg`` into the run folder ``out`` (or, with ``resume``, continue the run there
    with its saved config: pass ``cfg=None``) and return the finished `Run`. Any task, and
    under torchrun every process calls it.

    ``overwrite`` replaces a previous seqrec run in ``out``; a folder holding anything else
    is refused whatever the flags.
    """
    train_run(cfg, Path(out), resume=resume, overwrite=overwrite, progress=progress)
    return Run(out)


def continue_run(
    source: PathLike,
    out: PathLike,
    events: list[PathLike] | tuple[PathLike, ...] = (),
    overrides: list[str] | tuple[str, ...] = (),
    *,
    train_rows: str = "all",
    new_items: str = "auto",
    repeat_changed: int = 1,
    overwrite: bool = False,
    progress: bool = True,
) -> Run:
    """Continue the finished run ``source`` on the ``events`` files into the new run folder
    ``out`` (`seqrec train --continue-from`; docs/INCREMENTAL.md) and return it.

    ``overrides`` are dotted ``train.*`` / ``eval.*`` settings (``"train.epochs=3"``);
    ``train_rows`` 'all' | 'changed' (only users with new events); ``new_items`` 'auto' |
    'model' | 'mean' | 'features' | 'context' (how new items' rows start; trainer/grow.py);
    ``repeat_changed``: with 'all', the rows of users with new events come this many times an
    epoch. No events: no step is taken, and the new run holds the source's weights unchanged.
    """
    update = plan_continuation(
        source, list(events), list(overrides), train_rows, new_items, repeat_changed
    )
    train_run(None, Path(out), overwrite=overwrite, progress=progress, continuation=update)
    return Run(out)
