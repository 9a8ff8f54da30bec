"""Config -> model. An explicit mapping, not reflection: every model is imported by name here."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from seqrec.errors import SeqrecError
from seqrec.models import bert4rec, gpt, gru4rec, hstu, llama, sasrec, srt
from seqrec.models.bert4rec import BERT4Rec
from seqrec.models.cl4srec import CL4SRec
from seqrec.models.gpt import GPT
from seqrec.models.gru4rec import GRU4Rec
from seqrec.models.hstu import HSTU
from seqrec.models.laclrec import LACLRec
from seqrec.models.llama import Llama
from seqrec.models.sasrec import SASRec
from seqrec.models.srt import SRT
from seqrec.options import ModelConfig

_MODELS: dict[str, type[nn.Module]] = {
    "sasrec": SASRec,
    "bert4rec": BERT4Rec,
    "cl4srec": CL4SRec,
    "gru4rec": GRU4Rec,
    "hstu": HSTU,
    "llama": Llama,
    "gpt": GPT,
    "laclrec": LACLRec,
    "srt": SRT,
}

FlopsCount = Callable[[ModelConfig, int, float], dict[str, float]]
_FLOPS: dict[str, FlopsCount] = {
    "sasrec": sasrec.flops_per_interaction,
    "bert4rec": bert4rec.flops_per_interaction,
    "gru4rec": gru4rec.flops_per_interaction,
    "hstu": hstu.flops_per_interaction,
    "llama": llama.flops_per_interaction,
    "gpt": gpt.flops_per_interaction,
    "srt": srt.flops_per_interaction,
}


def model_names() -> list[str]:
    return sorted(_MODELS)


def build_model(cfg: ModelConfig, n_items: int, max_len: int) -> nn.Module:
    if cfg.name not in _MODELS:
        raise SeqrecError(
            f"model '{cfg.name}' is not available in this build; choose one of "
            f"{', '.join(model_names())}"
        )
    return _MODELS[cfg.name](cfg, n_items=n_items, max_len=max_len)


def flops_per_interaction(cfg: ModelConfig, n_items: int, seq_len: float) -> dict[str, float]:
    """Forward / training FLOPs per scored position by the model's own count (``_FLOPS``); a
    model without one gets SASRec's transformer count, an estimate for its family."""
    count = _FLOPS.get(cfg.name, sasrec.flops_per_interaction)
    return count(cfg, n_items, seq_len)
