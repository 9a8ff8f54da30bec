"""The training step's optional fast paths: bf16 autocast (``train.precision``) and
``torch.compile`` (``train.compile``). Both default off, and then nothing here touches the step.

**bf16** runs the training loss, the model's forward *and* the objective (the chunked
cross-entropy included, which accumulates in fp32 under autocast: see ops/cross_entropy.py),
under ``torch.autocast(device_type, dtype=torch.bfloat16)``; the backward pass and the optimiser
run outside it, on the fp32 parameters (autocast keeps fp32 master weights, no loss scaling is
needed for bf16). **Evaluation is not autocast**: validation, the final test and every later
``Run`` evaluation score in fp32, so ranks (and the selection of the best weights) are exact
and the same as a reloaded model gives. The weights file is fp32 either way. bf16 is refused in
one line where autocast cannot run it (a device without bf16 autocast, a CUDA GPU without
bf16). On a CPU without AVX512_BF16 / AMX it runs, but slower than fp32.

**compile** wraps what the loss calls (the model, or under torchrun the DDP wrapper) in
``torch.compile`` for training steps only; evaluation and the saved weights use the plain
module, so state-dict keys never carry ``_orig_mod.`` and checkpoints load either way. Before
the first step a tiny function is compiled as a probe: when the machine has no working
compiler the run fails with one line naming ``train.compile=false`` (no silent fallback).
Inductor draws its own dropout masks, so with dropout on, compiled losses follow another
random stream than eager ones (set ``torch._inductor.config.fallback_random`` for eager's).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from seqrec.errors import SeqrecError
from seqrec.options import TrainConfig
from seqrec.trainer.distributed import DistContext, ObjectiveView


def check_bf16(device: torch.device) -> None:
    """Refuse bf16 (one line) where autocast cannot run it on ``device``."""
    kind = device.type
    if not torch.amp.is_autocast_available(kind):
        raise SeqrecError(f"train.precision=bf16: no autocast on device {kind}; use fp32")
    if kind == "cuda" and not torch.cuda.is_bf16_supported():
        raise SeqrecError(f"train.precision=bf16: {device} has no bf16 support; use fp32")


def check_compile() -> None:
    """Compile and run a tiny function; one line naming the option when that fails."""
    try:
        torch.compile(lambda x: x * 2 + 1)(torch.ones(2))
    except Exception as e:  # any backend failure means the same to the user
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise SeqrecError(
            f"train.compile: torch.compile does not work here ({type(e).__name__}: {first}); "
            "set train.compile=false"
        ) from None


class FastPath:
    """The training step's precision and compilation, as ``cfg`` asks, on ``device``."""

    def __init__(self, cfg: TrainConfig, device: torch.device) -> None:
        self.precision, self.compiled, self.device = cfg.precision, cfg.compile, device
        if self.precision == "bf16":
            check_bf16(device)
        if self.compiled:
            check_compile()

    @classmethod
    def build(
        cls, cfg: TrainConfig, device: torch.device, model: nn.Module, dist: DistContext
    ) -> tuple[FastPath, Any]:
        """(the fast path, what the training loss calls): ``model``, under DDP its
        synchronising wrapper, compiled with train.compile (the module stays the one trained,
        saved and evaluated; only the training calls go through the compiled wrapper)."""
        fast = cls(cfg, device)
        net = fast.compile(dist.wrap(model)) if dist.enabled else fast.compile(model)
        return fast, ObjectiveView(net) if dist.enabled else net

    def compile(self, module: nn.Module) -> nn.Module:
        return torch.compile(module) if self.compiled else module

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.precision == "bf16":
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def loss(self, fn: Callable[..., torch.Tensor], *args: Any) -> torch.Tensor:
        """``fn(*args)`` (the task's loss) under the training precision, as an fp32 scalar."""
        if self.precision == "fp32":
            return fn(*args)
        with self.autocast():
            loss = fn(*args)
        return loss.float()

    def fields(self) -> dict:
        """For results.json: how the steps ran."""
        return {"precision": self.precision, "compile": self.compiled}
