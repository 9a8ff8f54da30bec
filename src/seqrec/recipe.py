"""A run's recipe: the typed `RunConfig` (data, model, objective, train, eval, task sections),
checked as a whole, and how it is loaded from a preset plus dotted overrides.

It sits above `models` because the model section is the union of every registered model's own
config class; everything that needs a whole run's config (tasks, the trainer, the run folder)
imports it from here.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import yaml
from pydantic import Field, ValidationError, model_validator

from seqrec.errors import SeqrecError
from seqrec.options import (
    L2_NORM_MODELS,
    RANKING_ENCODERS,
    DataConfig,
    EvalConfig,
    ModelConfig,
    ObjectiveConfig,
    TaskConfig,
    TrainConfig,
    _Strict,
    known_keys,
    parse_value,
    preset_path,
    suggest,
)


class RunConfig(_Strict):
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    objective: ObjectiveConfig = Field(default_factory=ObjectiveConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    task: TaskConfig = Field(default_factory=TaskConfig)

    @model_validator(mode="after")
    def _cloze_needs_bidirectional(self) -> RunConfig:
        """A bidirectional encoder sees the item a next-item target names, and only it has a mask
        token, so bert4rec trains with the cloze objective and nothing else does."""
        if (self.model.name == "bert4rec") != (self.objective.name == "cloze"):
            raise ValueError(
                f"model.name={self.model.name} cannot train with objective.name="
                f"{self.objective.name}; bert4rec needs objective.name=cloze and cloze needs "
                "model.name=bert4rec"
            )
        return self

    @model_validator(mode="after")
    def _normalisation_agrees(self) -> RunConfig:
        """The sampled softmax's cosine must be what evaluation scores, so the model owns it."""
        if self.model.l2_norm_output and self.model.name not in L2_NORM_MODELS:
            raise ValueError(
                f"model.l2_norm_output=true is not implemented by model.name={self.model.name}; "
                f"use one of {', '.join(L2_NORM_MODELS)}"
            )
        if self.objective.name == "ssm" and self.objective.normalize != self.model.l2_norm_output:
            raise ValueError(
                f"objective.normalize={self.objective.normalize} but model.l2_norm_output="
                f"{self.model.l2_norm_output}; set both to the same value so evaluation scores "
                "with the normalisation the loss trained"
            )
        return self

    @model_validator(mode="after")
    def _srt_has_features(self) -> RunConfig:
        """SRT's items are their features: without a metadata file there is nothing to encode."""
        if self.model.name == "srt" and not self.data.item_features:
            raise ValueError(
                "model.name=srt encodes items from their features; set data.item_features=auto "
                "(the dataset's metadata file) or a metadata file path"
            )
        return self

    @model_validator(mode="after")
    def _ranking_fits(self) -> RunConfig:
        """The ranking task has its own temporal example split and wraps a SASRec/HSTU encoder."""
        if self.task.name != "ranking":
            if self.task.baseline is not None:
                raise ValueError("task.baseline needs task.name=ranking")
            return self
        if self.data.split != "temporal":
            raise ValueError(
                "task.name=ranking splits events by a global time cut; set data.split=temporal"
            )
        if self.task.baseline is None and self.model.name not in RANKING_ENCODERS:
            raise ValueError(
                f"task.name=ranking has a ranking head for model.name in "
                f"{', '.join(RANKING_ENCODERS)}, not {self.model.name}; or set task.baseline"
            )
        if self.train.select != "best":
            raise ValueError(
                "train.select=last is implemented for next-item retrieval; the ranking task "
                "always tests its best validation weights (drop train.select)"
            )
        return self

    def fingerprint(self) -> str:
        """Short stable hash of everything that affects results.

        Only values that differ from the defaults are hashed, so a later seqrec that adds an
        option (with a default that keeps the old behaviour) still resumes older checkpoints.
        """
        blob = json.dumps(self.model_dump(mode="json", exclude_defaults=True), sort_keys=True)
        blob = blob.encode()
        return hashlib.sha256(blob).hexdigest()[:12]


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    known = known_keys(RunConfig)
    for item in overrides:
        if "=" not in item:
            raise SeqrecError(f"override '{item}' has no '='; write it as section.key=value")
        key, value = item.split("=", 1)
        key = key.strip()
        if key not in known:
            raise SeqrecError(f"unknown config key '{key}'.{suggest(key, known)}")
        node = raw
        *parents, leaf = key.split(".")
        for part in parents:
            if node.get(part) is None:  # absent, or an empty `section:` line in the YAML
                node[part] = {}
            elif not isinstance(node[part], dict):
                raise SeqrecError(
                    f"config section '{part}' must be a mapping of keys, got {node[part]!r}; "
                    "fix the config file"
                )
            node = node[part]
        node[leaf] = parse_value(value)
    return raw


def _format_validation(err: ValidationError) -> str:
    known = known_keys(RunConfig)
    msgs = []
    for e in err.errors():
        loc = ".".join(str(x) for x in e["loc"])
        if e["type"] == "extra_forbidden":
            msgs.append(f"unknown config key '{loc}'.{suggest(loc, known)}")
        else:
            msgs.append(f"{loc}: {e['msg']}")
    return "; ".join(msgs)


def build_config(raw: dict[str, Any]) -> RunConfig:
    try:
        return RunConfig.model_validate(raw)
    except ValidationError as err:
        raise SeqrecError(f"invalid config: {_format_validation(err)}") from None


def load_config(preset: str | None = None, overrides: list[str] | None = None) -> RunConfig:
    """Preset (name in configs/ or a YAML path) + dotted overrides -> validated RunConfig."""
    raw: dict[str, Any] = {}
    if preset:
        path = preset_path(preset)
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as err:
            # PyYAML's message spans several lines (with a source excerpt): keep it to one
            mark = getattr(err, "problem_mark", None)
            at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            what = getattr(err, "problem", None) or type(err).__name__
            raise SeqrecError(
                f"config file {path} is not valid YAML ({what}{at}); fix the syntax"
            ) from None
        if not isinstance(raw, dict):
            raise SeqrecError(f"config file {path} must hold a mapping of sections")
    raw = apply_overrides(raw, overrides or [])
    return build_config(raw)
