"""The registry: one line per model, and everything derived from it.

Adding a model is one line in ``MODELS`` (plus its file, preset and test): its config class
joins the run config's model union, ``seqrec models`` lists it, and the conformance tests
(tests/models/test_conformance.py) exercise it. Nothing else in seqrec names a model.
"""

from __future__ import annotations

from typing import Annotated, Any, Union

from pydantic import Field

from seqrec.errors import SeqrecError
from seqrec.models.abxi import ABXI
from seqrec.models.base import ModelConfig, SeqModel
from seqrec.models.bert4rec import BERT4Rec
from seqrec.models.bsarec import BSARec
from seqrec.models.caser import Caser
from seqrec.models.cl4srec import CL4SRec
from seqrec.models.duorec import DuoRec
from seqrec.models.gpt import GPT
from seqrec.models.gru4rec import GRU4Rec
from seqrec.models.hstu import HSTU
from seqrec.models.icsrec import ICSRec
from seqrec.models.laclrec import LACLRec
from seqrec.models.llama import Llama
from seqrec.models.rearec import ReaRec
from seqrec.models.sasrec import SASRec, SASRecConfig
from seqrec.models.sigma import SIGMA
from seqrec.models.srt import SRT

MODELS: dict[str, type[SeqModel]] = {
    "sasrec": SASRec,
    "abxi": ABXI,
    "bert4rec": BERT4Rec,
    "cl4srec": CL4SRec,
    "duorec": DuoRec,
    "gru4rec": GRU4Rec,
    "hstu": HSTU,
    "icsrec": ICSRec,
    "llama": Llama,
    "gpt": GPT,
    "laclrec": LACLRec,
    "srt": SRT,
    "caser": Caser,
    "bsarec": BSARec,
    "rearec": ReaRec,
    "sigma": SIGMA,
}

DEFAULT_MODEL = "sasrec"
"""The family of a config that names none (every preset before per-model configs did so)."""

ModelSection = Annotated[
    Union[tuple(cls.config_class for cls in MODELS.values())],  # noqa: UP007 (built at runtime)
    Field(discriminator="name"),
]
"""The run config's ``model`` section: exactly one registered model's config, picked by name."""


def model_names() -> list[str]:
    return sorted(MODELS)


def families() -> dict[str, type[ModelConfig]]:
    """Every registered model family -> its config class (``seqrec.models()``)."""
    return {name: MODELS[name].config_class for name in model_names()}


def config_class(name: str) -> type[ModelConfig]:
    if name not in MODELS:
        raise SeqrecError(f"unknown model '{name}'; choose one of {', '.join(model_names())}")
    return MODELS[name].config_class


def model_config(name: str = DEFAULT_MODEL, **options: Any) -> ModelConfig:
    """A validated config of model ``name`` with ``options`` (the rest at their defaults)."""
    return config_class(name).model_validate({"name": name, **options})


def default_model_config() -> ModelConfig:
    return SASRecConfig()


def build_model(cfg: ModelConfig, n_items: int, max_len: int) -> SeqModel:
    return MODELS[cfg.name](cfg, n_items=n_items, max_len=max_len)


def flops_per_interaction(cfg: ModelConfig, n_items: int, seq_len: float) -> dict[str, float]:
    """Forward / training FLOPs per scored position, by the model's own count."""
    return MODELS[cfg.name].flops_per_interaction(cfg, n_items, seq_len)
