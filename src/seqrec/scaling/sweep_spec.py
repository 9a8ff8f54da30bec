"""A sweep spec (YAML) -> the validated configs it plans, each keyed by a config hash.

A spec names a base preset, fixed overrides, and the points to run::

    base: sasrec-ml-1m            # preset name or YAML path (relative to the spec's folder first)
    overrides:                    # dotted keys applied to every run
      train.epochs: 30
    grid:                         # cartesian product (first key slowest)
      model.layers: [1, 2, 4]
      model.hidden: [32, 64]
    runs:                         # explicit list of points, each crossed with the grid;
      - {model.dropout: 0.1}      # an entry's own `base` replaces the spec's (a family's preset)
      - {base: hstu-ml-1m, model.heads: 2}
    apen: true                    # record the dataset's ApEn (Performance Law data term)
    order: largest_first          # or `spec` (default): the order runs are started in

Keys are any dotted config key (``seqrec`` config names) plus ``data_fraction``, an alias of
``data.train_fraction`` (the kept fraction of training users; valid/test are unchanged).

The hash names a run's folder (``DIR/runs/<config hash>/``), so it covers exactly what can
change a run's results: a sweep moved to another device, or rerun by a later seqrec, finds
its finished runs.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from seqrec.errors import SeqrecError
from seqrec.models.registry import flops_per_interaction
from seqrec.recipe import RunConfig, apply_overrides, build_config, load_config, saved_config

SPEC_KEYS = ("base", "overrides", "grid", "runs", "apen", "description", "order")
ORDERS = ("spec", "largest_first")
ALIASES = {"data_fraction": "data.train_fraction"}
# options that change where or how fast a run trains, not what it learns: not in the hash
_UNHASHED = {"train": ("device", "threads", "checkpoint_every"), "eval": ("batch_users",)}


@dataclass(frozen=True)
class SweepRun:
    """One point of a sweep: its resolved config, hash and the spec keys that made it."""

    config_hash: str
    cfg: RunConfig
    point: dict[str, Any]


def config_hash(cfg: RunConfig) -> str:
    """12 hex digits of sha256 over every option that can change a run's results (device,
    threads and checkpoint frequency excluded, so a sweep moved to a GPU finds its runs).

    Only values that differ from the defaults are hashed (as in ``RunConfig.fingerprint``): a
    later seqrec that adds an option, with a default that keeps the old behaviour, leaves every
    hash unchanged, so finished sweeps stay finished."""
    dump = cfg.model_dump(mode="json", exclude_defaults=True)
    for section, keys in _UNHASHED.items():
        for key in keys:
            dump.get(section, {}).pop(key, None)
    dump = {k: v for k, v in dump.items() if v != {}}
    blob = json.dumps(dump, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def adopt_run_folders(root: Path, runs: list[SweepRun]) -> int:
    """Rename finished run folders whose name is not today's hash of their own config.yaml
    (runs trained when the hash covered other fields) to that hash, when the spec plans it.

    Returns how many were renamed. A folder that is not finished, whose config no longer
    validates, or that the spec does not plan is left alone."""
    planned = {r.config_hash for r in runs}
    renamed = 0
    for cfg_path in sorted((Path(root) / "runs").glob("*/config.yaml")):
        run_dir = cfg_path.parent
        if run_dir.name in planned or not (run_dir / "results.json").is_file():
            continue
        try:
            now = config_hash(saved_config(yaml.safe_load(cfg_path.read_text())))
        except (SeqrecError, yaml.YAMLError):
            continue
        target = run_dir.parent / now
        if now in planned and not target.exists():
            run_dir.rename(target)
            renamed += 1
    return renamed


def load_spec(path: Path) -> dict[str, Any]:
    """The spec as a dict, with its folder under ``_dir`` (base YAML paths resolve against
    it); a missing file, bad YAML or an unknown top-level key is refused before any work."""
    path = Path(path)
    if not path.is_file():
        raise SeqrecError(f"sweep spec {path} does not exist; pass a YAML file")
    try:
        spec = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise SeqrecError(f"sweep spec {path} is not valid YAML: {err}") from None
    if not isinstance(spec, dict):
        raise SeqrecError(f"sweep spec {path} must be a mapping with {', '.join(SPEC_KEYS)}")
    unknown = sorted(set(spec) - set(SPEC_KEYS))
    if unknown:
        raise SeqrecError(
            f"sweep spec {path}: unknown key(s) {', '.join(unknown)}; "
            f"allowed: {', '.join(SPEC_KEYS)}"
        )
    spec["_dir"] = str(path.resolve().parent)
    return spec


def _as_mapping(value: Any, what: str) -> dict[str, Any]:
    """``{key: value}`` or a list of ``key=value`` strings -> dict with aliases resolved."""
    if value is None:
        return {}
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        pairs = []
        for item in value:
            if "=" not in item:
                raise SeqrecError(f"{what}: '{item}' has no '='; write key=value")
            key, text = item.split("=", 1)
            pairs.append((key.strip(), yaml.safe_load(text)))
        value = dict(pairs)
    if not isinstance(value, dict):
        raise SeqrecError(f"{what} must be a mapping of dotted keys to values")
    return {ALIASES.get(str(k), str(k)): v for k, v in value.items()}


def _base_path(spec: dict[str, Any], base: Any) -> str | None:
    """A preset name, or a YAML path resolved against the spec's folder first."""
    if base is None:
        return None
    local = Path(spec.get("_dir", ".")) / str(base)
    return str(local) if local.suffix in {".yaml", ".yml"} and local.is_file() else str(base)


def expand(spec: dict[str, Any], device: str | None = None) -> list[SweepRun]:
    """Every point of the spec (runs entries x grid, in that order) as a validated config.

    Spec errors (unknown keys, invalid values, e.g. heads that do not divide hidden) are raised
    here, before any training, naming the point. Points that resolve to the same config are
    kept once.
    """
    fixed = _as_mapping(spec.get("overrides"), "overrides")
    grid = _as_mapping(spec.get("grid"), "grid")
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise SeqrecError(f"grid: {key} must be a non-empty list of values")
    entries = spec.get("runs") or [{}]
    if not isinstance(entries, list):
        raise SeqrecError("runs must be a list of mappings (one per run)")
    entries = [_as_mapping(e, f"runs[{i}]") for i, e in enumerate(entries)]
    for i, entry in enumerate(entries):
        both = sorted(set(entry) & set(grid))
        if both:
            raise SeqrecError(f"runs[{i}] sets {', '.join(both)}, which the grid also varies")
    combos = [dict(zip(grid, values, strict=True)) for values in itertools.product(*grid.values())]
    bases: dict[str, dict] = {}  # preset -> resolved raw config, loaded once
    out: dict[str, SweepRun] = {}
    for entry in entries:
        base = _base_path(spec, entry.get("base", spec.get("base")))
        if base not in bases:
            bases[base] = load_config(base).model_dump(mode="json") if base else {}
        base_raw = bases[base]
        for combo in combos:
            point = {**entry, **combo}
            settings = {k: v for k, v in {**fixed, **point}.items() if k != "base"}
            if device is not None:
                settings["train.device"] = device
            raw = json.loads(json.dumps(base_raw))
            try:
                apply_overrides(raw, [f"{k}={json.dumps(v)}" for k, v in settings.items()])
                cfg = build_config(raw)
            except SeqrecError as err:
                raise SeqrecError(f"sweep point {json.dumps(point)}: {err}") from None
            h = config_hash(cfg)
            out.setdefault(h, SweepRun(h, cfg, point))
    return list(out.values())


def run_cost(run: SweepRun, n_items: int = 5000) -> float:
    """Rough training cost of a run: FLOPs per interaction x kept data x epochs (the catalogue
    size is a stand-in; only the ordering of runs on the same data matters)."""
    cfg = run.cfg
    flops = flops_per_interaction(cfg.model, n_items, cfg.data.max_len)["train"]
    return flops * (cfg.data.train_fraction or 1.0) * cfg.train.epochs


def order_runs(runs: list[SweepRun], order: str) -> list[SweepRun]:
    """``spec``: as written; ``largest_first``: most expensive first (longest-processing-time
    scheduling: with several jobs the sweep ends sooner, and a deadline that cuts it short
    loses the cheap runs rather than the large ones a scaling fit needs most)."""
    if order not in ORDERS:
        raise SeqrecError(f"order must be one of {', '.join(ORDERS)}, got {order!r}")
    if order == "spec":
        return list(runs)
    return sorted(runs, key=run_cost, reverse=True)
