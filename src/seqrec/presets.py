"""The YAML presets (`configs/`), finding them by name, and parsing dotted overrides' values.

Beside `seqrec.options` at the bottom of the layers: it imports nothing from seqrec but
`errors`, so the recipe, the CLI and the leaderboard can all find presets the same way.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from seqrec.errors import SeqrecError

PRESET_DIRS = [Path.cwd() / "configs", Path(__file__).resolve().parents[2] / "configs"]


def list_presets() -> list[str]:
    names: set[str] = set()
    for d in PRESET_DIRS:
        if d.is_dir():
            names.update(p.stem for p in d.glob("*.yaml"))
    return sorted(names)


def suggest(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.5)
    return f" Did you mean '{close[0]}'?" if close else ""


def preset_path(name_or_path: str) -> Path:
    p = Path(name_or_path)
    if p.suffix in {".yaml", ".yml"}:
        if not p.is_file():
            raise SeqrecError(f"config file {p} does not exist; pass an existing YAML file")
        return p
    for d in PRESET_DIRS:
        cand = d / f"{name_or_path}.yaml"
        if cand.is_file():
            return cand
    available = list_presets()
    if not available:
        raise SeqrecError(f"unknown preset '{name_or_path}' and no presets were found; pass a "
                          "YAML file")  # fmt: skip
    # the nearest few, not all of them: the zoo has too many presets for one readable line
    near = difflib.get_close_matches(name_or_path, available, n=6, cutoff=0.0)
    raise SeqrecError(
        f"unknown preset '{name_or_path}'.{suggest(name_or_path, available)} Nearest of the "
        f"{len(available)} presets: {', '.join(near)} (seqrec.presets() lists them all)"
    )


def parse_value(text: str) -> Any:
    """Dotted override values are YAML scalars/lists: 4, 1e-3, true, null, [5,10]."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def known_keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    keys = []
    for name, field in model.model_fields.items():
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            keys.extend(known_keys(ann, f"{prefix}{name}."))
        else:
            keys.append(f"{prefix}{name}")
    return keys
