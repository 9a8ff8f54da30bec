"""The search space of `seqrec tune`: dotted config keys and the values a trial may give them.

A space file is YAML, one entry per config key::

    train.lr: {low: 1.0e-4, high: 3.0e-3, log: true}   # float, sampled on a log scale
    model.dropout: {low: 0.0, high: 0.5}                # float, uniform
    model.layers: {low: 1, high: 4}                     # both ends integers: an integer
    model.hidden: {choices: [32, 64, 128]}              # one of these values

Every key and every end of every range is checked against the preset before any trial (each
value alone, the rest of the preset unchanged), so a misspelt key or a value the config
refuses (heads that do not divide a hidden size) is one line at the start, not a study of
failed trials. Values that are fine alone but clash together still fail their own trial.

Without a file the model family's built-in space is used (`DEFAULT_SPACE`: learning rate,
weight decay, dropout, width and depth, the options SASRec and the other attention models are
usually tuned over): only the keys the family has, and only the hidden sizes its config
accepts.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from seqrec.errors import SeqrecError
from seqrec.presets import known_keys
from seqrec.recipe import apply_values, build_config

DEFAULT_SPACE: dict[str, dict[str, Any]] = {
    "train.lr": {"low": 1e-4, "high": 3e-3, "log": True},
    "train.weight_decay": {"choices": [0.0, 1e-4, 1e-3, 1e-2, 1e-1]},  # AdamW's decoupled decay
    "model.dropout": {"low": 0.0, "high": 0.5},
    "model.hidden": {"choices": [32, 64, 128, 256]},
    "model.layers": {"low": 1, "high": 4},
}
_FIELDS = {"low", "high", "log", "choices"}


@dataclass(frozen=True)
class Param:
    """One searched key: a range (``low``..``high``, ``log`` scale) or a list of ``choices``."""

    key: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: tuple | None = None

    @property
    def integer(self) -> bool:
        return isinstance(self.low, int) and isinstance(self.high, int)

    def suggest(self, trial: Any) -> Any:
        """The value an Optuna trial proposes for this key."""
        if self.choices is not None:
            return trial.suggest_categorical(self.key, list(self.choices))
        if self.integer:
            return trial.suggest_int(self.key, self.low, self.high, log=self.log)
        return trial.suggest_float(self.key, float(self.low), float(self.high), log=self.log)

    def values(self) -> list[Any]:
        """The values checked before any trial: every choice, or both ends of the range."""
        return list(self.choices) if self.choices is not None else [self.low, self.high]

    def describe(self) -> str:
        if self.choices is not None:
            return f"{self.key} in {{{', '.join(map(str, self.choices))}}}"
        kind = "int" if self.integer else "log" if self.log else "float"
        if self.integer and self.log:
            kind = "int log"
        return f"{self.key} {kind} [{self.low:g}, {self.high:g}]"

    def to_json(self) -> dict[str, Any]:
        if self.choices is not None:
            return {"key": self.key, "choices": list(self.choices)}
        return {"key": self.key, "low": self.low, "high": self.high, "log": self.log}


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def parse_param(key: Any, spec: Any, where: str) -> Param:
    """One space entry -> `Param`; whatever is wrong with it is one line naming the fix."""
    if not isinstance(key, str) or "." not in key:
        raise SeqrecError(f"{where}: {key!r} is not a dotted config key; write e.g. train.lr")
    if not isinstance(spec, dict):
        raise SeqrecError(
            f"{where}: {key} must map to {{low, high[, log]}} or {{choices: [...]}}, got {spec!r}"
        )
    unknown = sorted(set(spec) - _FIELDS)
    if unknown:
        raise SeqrecError(
            f"{where}: {key} has unknown field(s) {', '.join(map(str, unknown))}; "
            "use low, high, log or choices"
        )
    if "choices" in spec:
        choices = spec["choices"]
        if set(spec) != {"choices"} or not isinstance(choices, list) or not choices:
            raise SeqrecError(
                f"{where}: {key}: choices must be a non-empty list and stand alone "
                "(no low/high/log beside it)"
            )
        return Param(key, choices=tuple(choices))
    low, high, log = spec.get("low"), spec.get("high"), spec.get("log", False)
    if not (_number(low) and _number(high)) or low >= high:
        raise SeqrecError(
            f"{where}: {key} needs numbers low < high (got low={low!r}, high={high!r}), "
            "or a choices list"
        )
    if not isinstance(log, bool) or (log and low <= 0):
        raise SeqrecError(
            f"{where}: {key}: log must be true or false, and a log range needs low > 0 "
            f"(got log={log!r}, low={low!r})"
        )
    return Param(key, low, high, log)


def load_space(path: Path) -> list[Param]:
    """A space YAML file -> its params, in file order."""
    path = Path(path)
    if not path.is_file():
        raise SeqrecError(f"search space {path} does not exist; pass a YAML file to --space")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark else ""
        raise SeqrecError(f"search space {path} is not valid YAML{at}; fix the syntax") from None
    if not isinstance(raw, dict) or not raw:
        raise SeqrecError(
            f"search space {path} must be a mapping of config keys to "
            "{low, high[, log]} or {choices: [...]}, e.g. 'train.lr: {low: 1e-4, high: 1e-2, log: true}'"
        )
    return [parse_param(key, spec, f"search space {path}") for key, spec in raw.items()]


def _refusal(base: dict[str, Any], key: str, value: Any) -> str | None:
    """Why the config refuses ``key=value`` on top of ``base`` (None: it takes it)."""
    try:
        build_config(apply_values(copy.deepcopy(base), [(key, value)]))
    except SeqrecError as err:
        return str(err)
    return None


def check_space(space: list[Param], base: dict[str, Any], where: str) -> None:
    """Every key is an option of the preset's model and every value checked is accepted."""
    for param in space:
        for value in param.values():
            why = _refusal(base, param.key, value)
            if why is not None:
                raise SeqrecError(f"{where}: {param.key}={value!r} is refused: {why}")


def builtin_space(base: dict[str, Any]) -> list[Param]:
    """`DEFAULT_SPACE` narrowed to the preset's model: the model keys its family lacks are
    dropped, and so are the hidden sizes its config refuses (e.g. sizes its heads do not
    divide). The ranges left are checked with the rest by `check_space`."""
    own = {f"model.{k}" for k in known_keys(type(build_config(copy.deepcopy(base)).model))}
    space = []
    for key, spec in DEFAULT_SPACE.items():
        if key.startswith("model.") and key not in own:
            continue
        param = parse_param(key, spec, "built-in space")
        if param.choices is not None:
            kept = tuple(v for v in param.choices if _refusal(base, key, v) is None)
            if not kept:
                continue
            param = Param(key, choices=kept)
        space.append(param)
    return space
