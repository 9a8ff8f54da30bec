"""Config -> model. An explicit mapping, not reflection: every model is imported by name here."""

from __future__ import annotations

from torch import nn

from seqrec.config import ModelConfig
from seqrec.errors import SeqrecError
from seqrec.models.sasrec import SASRec

_MODELS: dict[str, type[nn.Module]] = {"sasrec": SASRec}


def model_names() -> list[str]:
    return sorted(_MODELS)


def build_model(cfg: ModelConfig, n_items: int, max_len: int) -> nn.Module:
    if cfg.name not in _MODELS:
        raise SeqrecError(
            f"model '{cfg.name}' is not available in this build; choose one of "
            f"{', '.join(model_names())}"
        )
    return _MODELS[cfg.name](cfg, n_items=n_items, max_len=max_len)
