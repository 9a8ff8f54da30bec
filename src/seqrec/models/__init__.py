"""Sequence models: one file each, on the contract of models/base.py, listed in registry.py."""

from seqrec.models.base import ModelConfig, Needs, SeqModel
from seqrec.models.registry import MODELS, build_model, config_class, model_config, model_names

__all__ = [
    "MODELS",
    "ModelConfig",
    "Needs",
    "SeqModel",
    "build_model",
    "config_class",
    "model_config",
    "model_names",
]
