"""seqrec: sequential recommendation on real data with one honest evaluation protocol.

    import seqrec

    cfg = seqrec.config("quickstart", train={"epochs": 5})      # a preset, checked options
    run = seqrec.train(cfg, "runs/quickstart")                  # -> seqrec.Run
    print(run.results["test"]["metrics"]["NDCG@10"])
    rec = seqrec.load("runs/quickstart")                        # a run or an exported package
    answers = rec.recommend([["50", "172", "133"], ["1", "2"]], k=10)
    print(answers[0].items)                                     # original item ids
    print(seqrec.compare(["runs/a", "runs/b"]).to_text())       # CIs and paired tests

Everything is imported on first use, so ``import seqrec`` stays light (no torch).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from seqrec.version import __version__

if TYPE_CHECKING:  # names for type checkers and editors; nothing is imported at run time
    from seqrec.comparison import CompareResult
    from seqrec.data.catalog import DatasetSpec
    from seqrec.models.base import ModelConfig
    from seqrec.recipe import RunConfig
    from seqrec.run import Recommender, Run

__all__ = [
    "Run",
    "__version__",
    "compare",
    "config",
    "datasets",
    "load",
    "models",
    "presets",
    "train",
    "update",
]


def config(preset: str | None = None, *overrides: str, **sections: dict[str, Any]) -> RunConfig:
    """A validated run config: ``preset`` (a name from `presets()` or a YAML path), dotted
    ``overrides`` ("train.epochs=5") and section dicts (``model={"hidden": 32}``), in that
    order. An unknown or misplaced option is refused with the nearest valid name."""
    from seqrec.recipe import make_config

    return make_config(preset, overrides, sections)


def train(
    cfg: RunConfig,
    out: str,
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
) -> Run:
    """Train ``cfg`` into the run folder ``out`` and return the finished `Run`: early stopping
    on validation NDCG@10, the test split evaluated once on the best weights. ``resume``
    continues an interrupted run in ``out`` (pass ``cfg=None``); ``overwrite`` replaces a
    previous seqrec run there, and never a folder holding anything else."""
    from seqrec.run import train as _train

    return _train(cfg, out, resume=resume, overwrite=overwrite, progress=progress)


def update(source: str, out: str, events: list[str], *overrides: str, **options: Any) -> Run:
    """Continue the finished run ``source`` on new ``events`` files into the new run folder
    ``out`` and return it: new items grow the table, old ids keep their rows, training goes on
    from the source's optimiser state (docs/INCREMENTAL.md). ``overrides``: dotted ``train.*``
    / ``eval.*`` settings; ``options``: see `seqrec.run.artifact.continue_run`."""
    from seqrec.run.artifact import continue_run

    return continue_run(source, out, events, overrides, **options)


def load(path: str, device: str = "cpu") -> Recommender:
    """A run folder (`seqrec train`) or a model package (`seqrec export`) -> a `Recommender`
    (``recommend(histories, k)`` in original item ids). A package's files are checked
    against their sha256 first, and weights are only ever read from safetensors."""
    from seqrec.run import load as _load

    return _load(path, device)


def compare(runs: list, baseline: bool = False, **options: Any) -> CompareResult:
    """Finished runs side by side: per-user test metrics with CIs and paired tests between
    every pair (or each run against the first, ``baseline``); a list or comma-joined string
    of run folders is one arm's seeds. See `seqrec.comparison.compare` for the options."""
    from seqrec.comparison import compare as _compare

    return _compare(runs, baseline, **options)


def models() -> dict[str, type[ModelConfig]]:
    """Every registered model family -> its config class (its options, their defaults and
    docs: ``seqrec.models()["caser"].model_fields``)."""
    from seqrec.models.registry import families

    return families()


def datasets() -> list[DatasetSpec]:
    """The dataset catalogue: names, sources, checksums and literature preprocessing."""
    from seqrec.data.catalog import list_datasets

    return list_datasets()


def presets() -> list[str]:
    """The preset names under configs/ (`config(name)` loads one)."""
    from seqrec.presets import list_presets

    return list_presets()


def __getattr__(name: str) -> Any:
    """``seqrec.Run`` without importing torch until it is used."""
    if name == "Run":
        from seqrec.run import Run

        return Run
    raise AttributeError(f"module 'seqrec' has no attribute {name!r}")
