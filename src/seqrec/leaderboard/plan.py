"""Which leaderboard cells exist: every (model, dataset, seed) whose preset is in configs/.

A cell trains ``configs/<model>-<dataset>.yaml`` with ``train.seed`` set to its seed into
``DIR/runs/<model>-<dataset>-s<seed>/``. The preset is the only thing that names a model's
settings for a dataset, so a model without one has no cell there: it is reported as "no
preset" rather than trained with another dataset's settings, which would be a silent guess.

With a tuning folder (``--tuned tune/``), ``tune/<model>-<dataset>/best.yaml`` (what
`seqrec tune` writes) replaces the preset where it exists; such cells are named
``<model>-<dataset>-tuned-s<seed>``, so tuned and untuned runs never share a folder or a row.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from seqrec.errors import SeqrecError
from seqrec.models.registry import model_names
from seqrec.presets import PRESET_DIRS, suggest

# dataset key -> the data its presets train on; the key is the preset's suffix
DATASETS = {
    "beauty": "Amazon Beauty, the S3-Rec 5-core file",
    "ml-1m": "MovieLens-1M",
    "video": "Amazon Video Games, SASRec's file",
    "lastfm": "LastFM, the S3-Rec file",
    "home": "Amazon Home & Kitchen, the TiCoSeRec file",
}
TUNED_PRESET = "best.yaml"  # what `seqrec tune` writes into tune/<preset>/


@dataclass(frozen=True)
class Cell:
    """One leaderboard cell; ``preset`` is None when the model has none for the dataset."""

    model: str
    dataset: str
    seed: int
    preset: Path | None
    tuned: bool = False

    @property
    def row(self) -> str:
        """The cell's name without its seed: the seeds of one row share it."""
        return f"{self.model}-{self.dataset}" + ("-tuned" if self.tuned else "")

    @property
    def name(self) -> str:
        """The run folder's name under DIR/runs/."""
        return f"{self.row}-s{self.seed}"


def split_list(text: str, what: str) -> list[str]:
    """``a,b, c`` -> ['a', 'b', 'c'], duplicates dropped in order; empty is refused."""
    items = list(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    if not items:
        raise SeqrecError(f"{what} is empty; give a comma-separated list, e.g. {what} a,b")
    return items


def parse_seeds(text: str) -> list[int]:
    """``42,1,2`` -> [42, 1, 2]; anything but integers is one clear line."""
    seeds = []
    for part in split_list(text, "--seeds"):
        if not re.fullmatch(r"[+-]?\d+", part):
            raise SeqrecError(f"--seeds: {part!r} is not an integer; write seeds as 42,1,2")
        seeds.append(int(part))
    return list(dict.fromkeys(seeds))


def parse_models(text: str) -> list[str]:
    """``all`` (every registered model) or a list of registered model names."""
    known = model_names()
    if text.strip() == "all":
        return known
    models = split_list(text, "--models")
    for name in models:
        if name not in known:
            raise SeqrecError(
                f"--models: {name!r} is not a model.{suggest(name, known)} "
                f"Choose from: all, {', '.join(known)}"
            )
    return models


def _preset_in(dirs: Iterable[Path], stem: str) -> Path | None:
    return next((d / f"{stem}.yaml" for d in dirs if (d / f"{stem}.yaml").is_file()), None)


def parse_datasets(text: str, preset_dirs: list[Path] | None = None) -> list[str]:
    """Dataset keys: a known one (`DATASETS`), or any key some model has a preset for."""
    dirs = PRESET_DIRS if preset_dirs is None else preset_dirs
    datasets = split_list(text, "--datasets")
    for key in datasets:
        if key in DATASETS or any(_preset_in(dirs, f"{m}-{key}") for m in model_names()):
            continue
        raise SeqrecError(
            f"--datasets: {key!r} is not a dataset key and no preset configs/<model>-{key}.yaml "
            f"exists.{suggest(key, list(DATASETS))} Known keys: {', '.join(DATASETS)}"
        )
    return datasets


def find_preset(
    model: str, dataset: str, preset_dirs: list[Path], tuned: Path | None
) -> tuple[Path | None, bool]:
    """The preset a cell trains and whether it came from `seqrec tune`."""
    if tuned is not None:
        best = tuned / f"{model}-{dataset}" / TUNED_PRESET
        if best.is_file():
            return best, True
    return _preset_in(preset_dirs, f"{model}-{dataset}"), False


def plan(
    models: list[str],
    datasets: list[str],
    seeds: list[int],
    preset_dirs: list[Path] | None = None,
    tuned: Path | None = None,
) -> list[Cell]:
    """Every cell, dataset by dataset, model by model, seed by seed (a stopped leaderboard
    has then finished whole datasets first)."""
    dirs = PRESET_DIRS if preset_dirs is None else [Path(d) for d in preset_dirs]
    if tuned is not None and not Path(tuned).is_dir():
        raise SeqrecError(f"--tuned {tuned} is not a folder; pass the folder `seqrec tune` wrote")
    cells = []
    for dataset in datasets:
        for model in models:
            preset, is_tuned = find_preset(model, dataset, dirs, tuned)
            cells += [Cell(model, dataset, seed, preset, is_tuned) for seed in seeds]
    return cells
