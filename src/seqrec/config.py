"""Typed configuration: pydantic models, YAML presets and dotted overrides.

Every option a run can take lives here, so an unknown key is an error (with the nearest valid
name suggested) instead of a silently ignored setting. This module imports nothing from the rest
of seqrec, so every other module may import it.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from seqrec.errors import SeqrecError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataConfig(_Strict):
    """Where the interactions come from and how they become sequences."""

    dataset: str = "ml-1m"
    """A catalogue name (``seqrec data list``) or a path to a file/folder."""
    format: Literal["auto", "ml-dat", "csv", "parquet", "seq", "pairs"] = "auto"
    user_col: str = "user_id"
    item_col: str = "item_id"
    time_col: str | None = "timestamp"
    sep: str | None = None
    dedupe: Literal["keep", "first", "last"] = "keep"
    """Repeated (user, item) pairs: keep all, or keep the first / last occurrence."""
    min_user_count: int = Field(0, ge=0)
    min_item_count: int = Field(0, ge=0)
    kcore: Literal["iterative", "once"] = "iterative"
    split: Literal["loo", "temporal"] = "loo"
    temporal_valid_frac: float = Field(0.1, gt=0, lt=1)
    temporal_test_frac: float = Field(0.1, gt=0, lt=1)
    max_len: int = Field(200, ge=2)
    cache_dir: str | None = None


MODEL_NAMES = ("sasrec", "bert4rec", "gru4rec", "hstu", "llama", "gpt", "cl4srec", "laclrec")


class ModelConfig(_Strict):
    name: Literal[MODEL_NAMES] = "sasrec"  # type: ignore[valid-type]
    """Model family (``seqrec models`` lists them); options below that a family does not use
    are ignored by it."""
    hidden: int = Field(64, ge=1)
    layers: int = Field(2, ge=1)
    heads: int = Field(1, ge=1)
    ffn_mult: float = Field(1.0, gt=0)
    """FFN inner width = ffn_mult * hidden (the SASRec paper uses 1)."""
    dropout: float = Field(0.2, ge=0, lt=1)
    attn_dropout: float | None = None
    """Dropout on attention probabilities; None = same as ``dropout``."""
    norm: Literal["pre", "post"] = "pre"
    scale_embeddings: bool = True
    """Multiply item embeddings by sqrt(hidden) before adding positions (official SASRec code)."""
    positions: Literal["from_start", "from_end"] = "from_start"
    """Position index of a slot: counted from the oldest item of the window (a query knows only
    how many items precede it, the same at training and inference), or back from the most
    recent one (the official code's fixed left-padded window, where a training query's index
    also says how many window items follow it)."""

    @model_validator(mode="after")
    def _heads_divide_width(self) -> ModelConfig:
        if self.hidden % self.heads:
            raise ValueError(
                f"model.hidden={self.hidden} is not divisible by model.heads={self.heads}; "
                "pick heads that divide the width"
            )
        return self


class ObjectiveConfig(_Strict):
    name: Literal["ce", "bce"] = "ce"
    """ce: softmax cross-entropy over every item (chunked); bce: SASRec paper, 1 negative/position."""
    chunk_size: int = Field(2048, ge=1)
    """Rows of hidden states scored against the whole catalogue at once by the chunked CE."""


class TrainConfig(_Strict):
    epochs: int = Field(200, ge=1)
    batch_size: int = Field(128, ge=1)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    betas: tuple[float, float] = (0.9, 0.98)
    warmup_steps: int = Field(100, ge=0)
    schedule: Literal["constant", "cosine", "linear"] = "constant"
    grad_clip: float | None = 1.0
    patience: int = Field(10, ge=1)
    """Stop after this many evaluations without a better validation NDCG@10."""
    eval_every: int = Field(1, ge=1)
    """Validate every this many epochs."""
    max_steps: int | None = None
    window: Literal["last", "random"] = "last"
    """Which max_len + 1 items of a long training sequence an epoch uses: the most recent ones
    (SASRec) or a random window per user and epoch, so long histories are fully used over epochs."""
    seed: int = 42
    device: str = "auto"
    threads: int | None = None
    checkpoint_every: int = Field(500, ge=1)
    """Write a resumable checkpoint every this many steps (and at every epoch end)."""


class EvalConfig(_Strict):
    ks: list[int] = Field(default_factory=lambda: [1, 5, 10, 20, 50, 100])
    mask_seen: bool = True
    batch_users: int = Field(256, ge=1)
    sampled: Literal["uniform", "popularity"] | None = None
    """None = full ranking over every item (default). Otherwise rank among n_negatives sampled ones."""
    n_negatives: int = Field(100, ge=1)
    valid_max_users: int | None = None
    """Validate early stopping on at most this many random users (None = all)."""


class RunConfig(_Strict):
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    objective: ObjectiveConfig = Field(default_factory=ObjectiveConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)

    def fingerprint(self) -> str:
        """Short stable hash of everything that affects results."""
        blob = json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:12]


PRESET_DIRS = [Path.cwd() / "configs", Path(__file__).resolve().parents[2] / "configs"]


def list_presets() -> list[str]:
    names: set[str] = set()
    for d in PRESET_DIRS:
        if d.is_dir():
            names.update(p.stem for p in d.glob("*.yaml"))
    return sorted(names)


def _suggest(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.5)
    return f" Did you mean '{close[0]}'?" if close else ""


def _preset_path(name_or_path: str) -> Path:
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
    raise SeqrecError(
        f"unknown preset '{name_or_path}'.{_suggest(name_or_path, available)} "
        f"Available: {', '.join(available) or 'none found'}"
    )


def _parse_value(text: str) -> Any:
    """Dotted override values are YAML scalars/lists: 4, 1e-3, true, null, [5,10]."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def _known_keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    keys = []
    for name, field in model.model_fields.items():
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            keys.extend(_known_keys(ann, f"{prefix}{name}."))
        else:
            keys.append(f"{prefix}{name}")
    return keys


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    known = _known_keys(RunConfig)
    for item in overrides:
        if "=" not in item:
            raise SeqrecError(f"override '{item}' has no '='; write it as section.key=value")
        key, value = item.split("=", 1)
        key = key.strip()
        if key not in known:
            raise SeqrecError(f"unknown config key '{key}'.{_suggest(key, known)}")
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
        node[leaf] = _parse_value(value)
    return raw


def _format_validation(err: ValidationError) -> str:
    known = _known_keys(RunConfig)
    msgs = []
    for e in err.errors():
        loc = ".".join(str(x) for x in e["loc"])
        if e["type"] == "extra_forbidden":
            msgs.append(f"unknown config key '{loc}'.{_suggest(loc, known)}")
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
        path = _preset_path(preset)
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
