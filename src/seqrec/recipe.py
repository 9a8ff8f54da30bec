"""A run's recipe: the typed `RunConfig` (data, model, objective, train, eval, task sections),
checked as a whole, and how it is loaded from a preset plus dotted overrides.

It sits above `models` because the model section is the union of every registered model's own
config class (models/registry.py); everything that needs a whole run's config (tasks, the
trainer, the run folder) imports it from here.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from seqrec.errors import SeqrecError
from seqrec.models.registry import (
    DEFAULT_MODEL,
    MODELS,
    ModelSection,
    config_class,
    default_model_config,
    model_names,
)
from seqrec.models.side_info import SideOptions
from seqrec.options import (
    DataConfig,
    EvalConfig,
    ObjectiveConfig,
    Strict,
    TaskConfig,
    TrainConfig,
)
from seqrec.presets import known_keys, parse_value, preset_path, suggest

_DEVICE = re.compile(r"auto|cpu|mps|(cuda|xpu)(:\d+)?")  # what train.device may name


class RunConfig(Strict):
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelSection = Field(default_factory=default_model_config)
    objective: ObjectiveConfig = Field(default_factory=ObjectiveConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    task: TaskConfig = Field(default_factory=TaskConfig)

    @field_validator("model", mode="before")
    @classmethod
    def _default_family(cls, value: Any) -> Any:
        """A model section that names no family is SASRec's, as it always was."""
        if isinstance(value, dict) and "name" not in value:
            return {"name": DEFAULT_MODEL, **value}
        return value

    @model_validator(mode="after")
    def _objective_fits_model(self) -> RunConfig:
        """A model declares the objectives it trains with (BERT4Rec: cloze, whose bidirectional
        encoder would see a next-item target; only it has the mask token cloze needs)."""
        name, objective = self.model.name, self.objective.name
        if objective not in self.model.objectives:
            takers = [n for n, m in MODELS.items() if objective in m.config_class.objectives]
            raise ValueError(
                f"model.name={name} cannot train with objective.name={objective}; {name} "
                f"needs objective.name={'|'.join(self.model.objectives)} and {objective} "
                f"needs model.name={'|'.join(takers)}"
            )
        return self

    @model_validator(mode="after")
    def _sparse_updates_fit_objective(self) -> RunConfig:
        """Sparse item-table updates pay off only when a step reads few rows; the shared
        negative set is a sampled-softmax option."""
        objective = self.objective.name
        if self.train.item_updates == "sparse" and objective not in ("ssm", "gbce", "bce"):
            raise ValueError(
                f"train.item_updates=sparse needs a sampled objective (ssm, gbce or bce), but "
                f"objective.name={objective} scores every item, so every row updates each "
                "step; change the objective or use train.item_updates=dense"
            )
        if self.objective.shared_negatives and objective != "ssm":
            raise ValueError(
                f"objective.shared_negatives applies to objective.name=ssm, not {objective}; "
                "drop it or use objective.name=ssm"
            )
        return self

    @model_validator(mode="after")
    def _samples_fit_model(self) -> RunConfig:
        """A model whose slot states read the whole window would see every target but the
        last in a ``sequences`` row; a random window means nothing to a prefix row."""
        samples = self.train.samples
        if samples not in self.model.training_samples:
            raise ValueError(
                f"model.name={self.model.name} trains on train.samples="
                f"{'|'.join(self.model.training_samples)}, not {samples}; set "
                f"train.samples={self.model.training_samples[0]}"
            )
        if samples == "prefixes" and self.task.name != "retrieval":
            raise ValueError(
                f"train.samples=prefixes is a retrieval option; task.name={self.task.name} "
                "trains on its own examples, so drop train.samples"
            )
        if samples == "prefixes" and self.train.window != "last":
            raise ValueError(
                "train.window=random picks one window per user, but train.samples=prefixes "
                "trains on every prefix already; drop train.window"
            )
        if samples == "prefixes" and self.objective.name == "cloze":
            raise ValueError(
                "objective.name=cloze masks items inside whole sequences; use "
                "train.samples=sequences with it"
            )
        return self

    @model_validator(mode="after")
    def _normalisation_agrees(self) -> RunConfig:
        """The sampled softmax's cosine must be what evaluation scores, so the model owns it."""
        cosine = self.model.cosine_output and self.model.l2_norm_output
        if self.objective.name == "ssm" and self.objective.normalize != cosine:
            if not self.model.cosine_output:
                raise ValueError(
                    f"objective.normalize=true needs cosine outputs, which model.name="
                    f"{self.model.name} does not implement; use one of "
                    f"{', '.join(n for n, m in MODELS.items() if m.config_class.cosine_output)}"
                )
            raise ValueError(
                f"objective.normalize={self.objective.normalize} but model.l2_norm_output="
                f"{cosine}; set both to the same value so evaluation scores "
                "with the normalisation the loss trained"
            )
        return self

    @model_validator(mode="after")
    def _device_and_cutoffs(self) -> RunConfig:
        """Checked here, before any folder is written, what used to fail later with a
        traceback: a device torch cannot parse; HR@k and NDCG@k need k >= 1, and retrieval
        validation reads NDCG@10 and HR@10 (early stopping, the best weights)."""
        if not _DEVICE.fullmatch(self.train.device):
            raise ValueError(
                f"train.device={self.train.device!r} is not a device; use auto, cpu, mps, "
                "cuda or cuda:N"
            )
        ks = self.eval.ks
        if not ks or min(ks) < 1:
            raise ValueError(f"eval.ks={ks} holds a cut-off below 1; set eval.ks=[5,10,20]")
        if self.task.name == "retrieval" and 10 not in ks:
            raise ValueError(
                f"eval.ks={ks} lacks 10, which validation monitors (NDCG@10, HR@10); "
                "add 10 to eval.ks"
            )
        return self

    @model_validator(mode="after")
    def _features_configured(self) -> RunConfig:
        """A model whose items are their features has nothing to encode without a metadata
        file (side-information options name their own missing input, at data time)."""
        if (
            self.model.needs().item_features
            and not isinstance(self.model, SideOptions)
            and not self.data.item_features
        ):
            raise ValueError(
                f"model.name={self.model.name} encodes items from their features; set "
                "data.item_features=auto (the dataset's metadata file) or a metadata file path"
            )
        return self

    @model_validator(mode="after")
    def _ranking_fits(self) -> RunConfig:
        """The ranking task has its own temporal example split and wraps a history encoder."""
        if self.task.name != "ranking":
            if self.task.baseline is not None:
                raise ValueError("task.baseline needs task.name=ranking")
            return self
        if self.data.split != "temporal":
            raise ValueError(
                "task.name=ranking splits events by a global time cut; set data.split=temporal"
            )
        if self.task.baseline is None and not self.model.ranking_encoder:
            encoders = [n for n, m in MODELS.items() if m.config_class.ranking_encoder]
            raise ValueError(
                f"task.name=ranking has a ranking head for model.name in "
                f"{', '.join(encoders)}, not {self.model.name}; or set task.baseline"
            )
        if self.train.select != "best":
            raise ValueError(
                "train.select=last is implemented for next-item retrieval; the ranking task "
                "always tests its best validation weights (drop train.select)"
            )
        return self

    def changed_values(self) -> dict[str, Any]:
        """Every value that differs from its default, as JSON: what identifies a run.

        A later seqrec that adds an option (with a default that keeps the old behaviour) keeps
        the same values, so older checkpoints resume and sweeps skip finished runs. The model
        family is part of it except for the default family (SASRec's name is its default), as
        with the single flat model config this replaced.
        """
        return self.model_dump(mode="json", exclude_defaults=True)

    def fingerprint(self) -> str:
        """Short stable hash of `changed_values`."""
        blob = json.dumps(self.changed_values(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:12]


def _section_keys() -> list[str]:
    """Dotted keys of every section but the model's, which depends on the family."""
    return [k for k in known_keys(RunConfig) if not k.startswith("model")]


def _model_keys(name: str) -> list[str]:
    return [f"model.{k}" for k in known_keys(config_class(name))]


def _foreign_key(key: str, name: str) -> str | None:
    """The message for an option another family has (None when no family has ``key``)."""
    owners = [n for n in model_names() if key in _model_keys(n)]
    if not owners:
        return None
    return (
        f"config key '{key}' is not an option of model.name={name}; it belongs to "
        f"{', '.join(owners)}. Drop it or pick one of those models"
    )


def _check_model_key(key: str, name: str) -> None:
    keys = _model_keys(name)
    if key in keys:
        return
    raise SeqrecError(_foreign_key(key, name) or f"unknown config key '{key}'.{suggest(key, keys)}")


def _family(raw: dict[str, Any]) -> str:
    section = raw.get("model")
    name = section.get("name") if isinstance(section, dict) else None
    return name if isinstance(name, str) else DEFAULT_MODEL


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Dotted ``section.key=value`` overrides (values parsed as YAML scalars or lists) into
    the raw config; see `apply_values`."""
    pairs = []
    for item in overrides:
        if "=" not in item:
            raise SeqrecError(f"override '{item}' has no '='; write it as section.key=value")
        key, value = item.split("=", 1)
        pairs.append((key.strip(), parse_value(value)))
    return apply_values(raw, pairs)


def apply_values(raw: dict[str, Any], pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """Set ``(dotted key, value)`` pairs in the raw config, checking every key.

    Model keys are checked against the family the config ends up with. Switching family
    (``model.name=hstu`` on a SASRec preset) keeps the preset's options the new family also
    has and drops the others, which belonged to the preset's family.
    """
    before = _family(raw)
    after = next((v for k, v in reversed(pairs) if k == "model.name"), before)
    if not isinstance(after, str) or after not in MODELS:
        raise SeqrecError(
            f"model.name={after} is not a model; choose one of {', '.join(model_names())}"
        )
    if after != before and isinstance(raw.get("model"), dict):
        kept = set(known_keys(config_class(after)))
        raw["model"] = {k: v for k, v in raw["model"].items() if k in kept}
    sections = _section_keys()
    for key, value in pairs:
        if key.startswith("model."):
            _check_model_key(key, after)
        elif key not in sections:
            raise SeqrecError(
                f"unknown config key '{key}'.{suggest(key, sections + _model_keys(after))}"
            )
        _set(raw, key, value)
    return raw


def read_preset(preset: str) -> dict[str, Any]:
    """A preset (name in configs/ or a YAML path) as a raw config dict."""
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
        raise SeqrecError(
            f"config file {path} must hold a mapping of sections; write it as `section:` "
            "lines with indented `key: value` options (see configs/quickstart.yaml)"
        )
    return raw


def _set(raw: dict[str, Any], key: str, value: Any) -> None:
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
    node[leaf] = value


def _format_validation(err: ValidationError, raw: dict[str, Any]) -> str:
    family = _family(raw)
    known = _section_keys() + (_model_keys(family) if family in MODELS else [])
    msgs = []
    for e in err.errors():
        loc = [str(x) for x in e["loc"]]
        if loc[:1] == ["model"] and len(loc) > 1 and loc[1] in MODELS:
            loc = ["model", *loc[2:]]  # drop the union's tag: model.hstu.rab -> model.rab
        where = ".".join(loc)
        if e["type"] == "extra_forbidden":
            foreign = _foreign_key(where, family) if where.startswith("model.") else None
            msgs.append(foreign or f"unknown config key '{where}'.{suggest(where, known)}")
        elif e["type"] == "union_tag_invalid":
            msgs.append(f"model.name: choose one of {', '.join(model_names())}")
        elif not where:  # a check of the whole config: its message names the keys
            msgs.append(e["msg"].removeprefix("Value error, "))
        else:
            msgs.append(f"{where}: {e['msg'].removeprefix('Value error, ')}")
    return "; ".join(msgs)


def build_config(raw: dict[str, Any]) -> RunConfig:
    try:
        return RunConfig.model_validate(raw)
    except ValidationError as err:
        raise SeqrecError(f"invalid config: {_format_validation(err, raw)}") from None


def load_config(preset: str | None = None, overrides: list[str] | None = None) -> RunConfig:
    """Preset (name in configs/ or a YAML path) + dotted overrides -> validated RunConfig."""
    raw = read_preset(preset) if preset else {}
    return build_config(apply_overrides(raw, overrides or []))


def make_config(
    preset: str | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    sections: dict[str, dict[str, Any]] | None = None,
) -> RunConfig:
    """The Python API's config: a preset, dotted overrides, then section dicts with Python
    values (``model={"hidden": 32}``), every key checked as the command line checks it."""
    raw = apply_overrides(read_preset(preset) if preset else {}, list(overrides))
    pairs = []
    for section, values in (sections or {}).items():
        if not isinstance(values, dict):
            raise SeqrecError(
                f"config section {section}= must be a dict of options, got {values!r}"
            )
        pairs.extend((f"{section}.{key}", value) for key, value in values.items())
    return build_config(apply_values(raw, pairs))


def saved_config(raw: Any) -> RunConfig:
    """A config seqrec itself wrote (a run's or a package's config.yaml) -> RunConfig.

    Runs written before each model had its own config class saved one flat model section
    holding every family's options. The family never read the others' options, so they are
    dropped here, and such runs load, evaluate, export and resume as before (a dropped option
    left at its default does not change the fingerprint). A config a user writes goes through
    `build_config`, which refuses them.
    """
    if isinstance(raw, dict) and isinstance(raw.get("model"), dict):
        name = _family(raw)
        if name in MODELS:
            own = set(known_keys(config_class(name))) | {"name"}
            raw = {**raw, "model": {k: v for k, v in raw["model"].items() if k in own}}
    return build_config(raw)
