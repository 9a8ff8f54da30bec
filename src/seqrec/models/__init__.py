"""Sequence models. Each model lives in its own file; `build_model` maps a config to one."""

from seqrec.models.registry import build_model, model_names

__all__ = ["build_model", "model_names"]
