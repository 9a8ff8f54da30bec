"""Config -> model. An explicit mapping, not reflection: every model is imported by name here."""

from __future__ import annotations

from torch import nn

from seqrec.config import ModelConfig
from seqrec.models.sasrec import SASRec

_MODELS: dict[str, type[nn.Module]] = {"sasrec": SASRec}


def model_names() -> list[str]:
    return sorted(_MODELS)


def build_model(cfg: ModelConfig, n_items: int, max_len: int) -> nn.Module:
    return _MODELS[cfg.name](cfg, n_items=n_items, max_len=max_len)
