"""Sequence models: one file each, on the contract of models/base.py, listed in registry.py.

``seqrec.models()`` (the top-level API: every family -> its config class) and this package
share a name. Python binds ``seqrec.models`` to the package once anything imports it, so the
package is made callable with the same meaning, and ``seqrec.models()`` works either way.
"""

import sys
import types

from seqrec.models.base import ModelConfig, Needs, SeqModel
from seqrec.models.registry import (
    MODELS,
    build_model,
    config_class,
    families,
    model_config,
    model_names,
)

__all__ = [
    "MODELS",
    "ModelConfig",
    "Needs",
    "SeqModel",
    "build_model",
    "config_class",
    "families",
    "model_config",
    "model_names",
]


class _CallablePackage(types.ModuleType):
    def __call__(self) -> dict[str, type[ModelConfig]]:
        """Every registered model family -> its config class."""
        return families()


sys.modules[__name__].__class__ = _CallablePackage
