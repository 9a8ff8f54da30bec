"""Multi-process data-parallel training (PyTorch DDP), launched by ``torchrun``.

``torchrun --nproc_per_node N -m seqrec train ...`` starts N copies of the normal command with
RANK / WORLD_SIZE / LOCAL_RANK (and MASTER_ADDR / MASTER_PORT) in their environment;
`DistContext.from_env` turns those into a process group (gloo on CPU; on a CUDA machine
``cpu:gloo,cuda:nccl``, so gradients go over NCCL and small bookkeeping objects over gloo).
Without those variables, or with WORLD_SIZE=1, nothing is initialised and every method here is
a plain single-process no-op, so `seqrec train` is unchanged.

The design keeps the optimisation independent of the number of processes:

* ``train.batch_size`` is the *global* batch. Every rank derives the same epoch permutation from
  (seed, epoch), takes the same global batch of users from it and trains on its contiguous slice
  (`shard`), so each rank only reads its users' rows of the memory-mapped sequence store.
* The losses are means over valid target positions. Rank r scales its mean by
  ``n_r * world_size / n_global`` (``n_global`` from an all-reduce), and DDP averages gradients
  over ranks, so the update is the single-process gradient of the whole global batch.
* Evaluation users (or ranking examples) are sharded the same way and their ranks (or
  probabilities) gathered back in order (`gather_shards`), so every rank computes metrics over
  all of them and takes the same early-stopping decision.
* Only rank 0 reads and writes the run folder; what the others need (config, checkpoint, best
  weights) reaches them over the process group (`on_main`, `broadcast_module`), so the run folder
  does not have to be on a shared filesystem.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from seqrec.errors import SeqrecError

T = TypeVar("T")

#: Override the process-group backend (e.g. ``gloo`` to train CUDA models over gloo).
BACKEND_ENV = "SEQREC_DIST_BACKEND"
#: Seconds a collective may wait for a missing rank before failing (default 30 minutes).
TIMEOUT_ENV = "SEQREC_DIST_TIMEOUT"


def env_rank() -> int:
    """This process's global rank from the launcher's environment (0 when not launched)."""
    return int(os.environ.get("RANK", "0") or 0)


def is_main_process() -> bool:
    return env_rank() == 0


def rank_seed(seed: int, rank: int, step: int) -> int:
    """A torch seed for rank > 0, distinct per (seed, rank, step)."""
    return int(np.random.SeedSequence([seed, rank, step]).generate_state(1)[0])


@dataclass
class DistContext:
    """Who this process is in the job; a default instance is a single process."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None
    owns_group: bool = False

    # ------------------------------------------------------------------ setup
    @classmethod
    def from_env(cls) -> DistContext:
        """Join the job torchrun (or SLURM + torchrun, or a test harness) set up, if any."""
        world = int(os.environ.get("WORLD_SIZE", "1") or 1)
        if world <= 1:
            return cls()
        local = int(os.environ.get("LOCAL_RANK", "0") or 0)
        if dist.is_available() and dist.is_initialized():  # the caller made the group
            ctx = cls(dist.get_rank(), dist.get_world_size(), local, dist.get_backend())
        else:
            if not dist.is_available():
                raise SeqrecError(
                    "WORLD_SIZE > 1 but this torch build has no torch.distributed; "
                    "run a single process (plain `seqrec train`)"
                )
            for var in ("RANK", "MASTER_ADDR", "MASTER_PORT"):
                if var not in os.environ:
                    raise SeqrecError(
                        f"WORLD_SIZE={world} but {var} is not set; launch multi-process training "
                        "with `torchrun --nproc_per_node N -m seqrec train ...` (see "
                        "docs/DISTRIBUTED.md), or unset WORLD_SIZE for one process"
                    )
            cuda = torch.cuda.is_available()
            backend = os.environ.get(BACKEND_ENV) or ("cpu:gloo,cuda:nccl" if cuda else "gloo")
            if cuda:
                torch.cuda.set_device(local % torch.cuda.device_count())
            timeout = timedelta(seconds=float(os.environ.get(TIMEOUT_ENV, "1800")))
            dist.init_process_group(backend, timeout=timeout)
            ctx = cls(dist.get_rank(), dist.get_world_size(), local, backend, owns_group=True)
        if ctx.rank != 0:
            warnings.simplefilter("ignore")  # rank 0 reports data and config warnings once
        return ctx

    def close(self) -> None:
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()
            self.owns_group = False

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def comm_device(self) -> torch.device:
        """Where this module's own small collectives live (gloo: CPU, NCCL only: the GPU)."""
        if self.backend is None or "gloo" in self.backend:
            return torch.device("cpu")
        return torch.device("cuda", torch.cuda.current_device())

    # ------------------------------------------------------------------ device and RNG
    def device(self, name: str) -> torch.device:
        """The device this process trains on for ``train.device=name``: ``auto`` is CUDA when
        visible; under DDP on CUDA, this rank's GPU (LOCAL_RANK's, set in `from_env`)."""
        if name == "auto":
            name = "cuda" if torch.cuda.is_available() else "cpu"
        if name.startswith("cuda") and not torch.cuda.is_available():
            raise SeqrecError(
                f"train.device={name} but no CUDA device is visible; use train.device=cpu"
            )
        if self.enabled and name.startswith("cuda"):
            return torch.device("cuda", torch.cuda.current_device())
        return torch.device(name)

    def rng_checkpoint(
        self, collective: bool, device: torch.device | None = None
    ) -> dict[str, Any]:
        """What a checkpoint holds beyond rank 0's RNG under DDP: the world size and, when the
        ranks are in step (``collective``), every rank's RNG (CPU, and on CUDA its device's),
        so a resume with the same world size continues every stream."""
        if not self.enabled:
            return {}
        out: dict[str, Any] = {"world_size": self.world_size}
        if collective:
            out["torch_rng_ranks"] = self.all_gather_object(torch.get_rng_state())
            if device is not None and device.type == "cuda":
                out["cuda_rng_ranks"] = self.all_gather_object(torch.cuda.get_rng_state(device))
        return out

    def restore_rng(
        self, ck: dict[str, Any], seed: int, step: int, device: torch.device | None = None
    ) -> None:
        """Rank 0 continues the saved rank-0 stream (the only one a single process has); other
        ranks continue their own when the world size is unchanged, else start a fresh stream
        derived from (seed, rank, step): dropout masks then differ from an uninterrupted run."""
        cuda = device is not None and device.type == "cuda"
        per_rank = ck.get("torch_rng_ranks")
        same_world = per_rank is not None and ck.get("world_size") == self.world_size
        if self.rank == 0:
            torch.set_rng_state(ck["torch_rng"])
            if cuda and ck.get("cuda_rng") is not None:
                torch.cuda.set_rng_state(ck["cuda_rng"], device)
        elif same_world:
            torch.set_rng_state(per_rank[self.rank])
            if cuda and ck.get("cuda_rng_ranks") is not None:
                torch.cuda.set_rng_state(ck["cuda_rng_ranks"][self.rank], device)
        else:
            torch.manual_seed(rank_seed(seed, self.rank, step))

    # ------------------------------------------------------------------ sharding
    def shard_bounds(self, n: int) -> np.ndarray:
        """[world + 1] offsets of the contiguous, near-equal slices of n items."""
        return np.array([n * r // self.world_size for r in range(self.world_size + 1)])

    def shard(self, arr: np.ndarray) -> np.ndarray:
        """This rank's contiguous slice of ``arr`` (sizes differ by at most one)."""
        if not self.enabled:
            return arr
        b = self.shard_bounds(len(arr))
        return arr[b[self.rank] : b[self.rank + 1]]

    def gather_shards(self, local: np.ndarray, n_total: int) -> np.ndarray:
        """Every rank's `shard` of a length-``n_total`` array, concatenated back in order.

        Integers (retrieval's ranks) travel as int64, floats (ranking's probabilities) as
        float64, so neither loses a bit on the way."""
        if not self.enabled:
            return local
        b = self.shard_bounds(n_total)
        sizes = np.diff(b)
        if len(local) != sizes[self.rank]:
            raise ValueError(
                f"rank {self.rank} holds {len(local)} items, expected {sizes[self.rank]}"
            )
        width = max(int(sizes.max()), 1)
        floating = np.issubdtype(np.asarray(local).dtype, np.floating)
        wire, dtype = (np.float64, torch.float64) if floating else (np.int64, torch.int64)
        buf = torch.zeros(width, dtype=dtype, device=self.comm_device)
        buf[: len(local)] = torch.as_tensor(np.asarray(local, dtype=wire), device=buf.device)
        parts = [torch.empty_like(buf) for _ in range(self.world_size)]
        dist.all_gather(parts, buf)
        out = np.concatenate([p[:s].cpu().numpy() for p, s in zip(parts, sizes, strict=True)])
        return out.astype(local.dtype, copy=False)

    # ------------------------------------------------------------------ collectives
    def all_sum(self, values: list[float]) -> list[float]:
        if not self.enabled:
            return list(values)
        t = torch.tensor(values, dtype=torch.float64, device=self.comm_device)
        dist.all_reduce(t)
        return t.tolist()

    def all_gather_floats(self, values: list[float]) -> np.ndarray:
        """[world, len(values)]: every rank's values, by rank."""
        if not self.enabled:
            return np.asarray([values], dtype=np.float64)
        t = torch.tensor(values, dtype=torch.float64, device=self.comm_device)
        parts = [torch.empty_like(t) for _ in range(self.world_size)]
        dist.all_gather(parts, t)
        return torch.stack(parts).cpu().numpy()

    def throughput(self, counts: list[float]) -> dict:
        """Units/s of every process over ``counts`` = [units, seconds]; the total is all
        units over the slowest process's time (the steps run in lock-step)."""
        per = self.all_gather_floats(counts)
        rates = [float(n / t) if t > 0 else 0.0 for n, t in per]
        total = float(per[:, 0].sum() / per[:, 1].max()) if per[:, 1].max() > 0 else 0.0
        return {"interactions_per_s": total, "interactions_per_s_per_process": rates}

    def all_gather_object(self, obj: Any) -> list[Any]:
        if not self.enabled:
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def on_main(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on rank 0 only and hand its result to every rank.

        A failure on rank 0 is re-raised on every rank (a `SeqrecError` with its message), so a
        refused run folder or a corrupt checkpoint stops the whole job at once instead of
        leaving the other ranks waiting in the next collective.
        """
        if not self.enabled:
            return fn()
        payload: list[Any] = [None]
        err: BaseException | None = None
        if self.is_main:
            try:
                payload[0] = ("ok", fn())
            except BaseException as e:  # re-raised below on every rank
                err = e
                payload[0] = ("error", isinstance(e, SeqrecError), str(e) or type(e).__name__)
        dist.broadcast_object_list(payload, src=0)
        if err is not None:
            raise err
        if payload[0][0] == "error":
            _, is_seqrec, msg = payload[0]
            raise SeqrecError(msg) if is_seqrec else RuntimeError(f"rank 0 failed: {msg}")
        return payload[0][1]

    def local_first(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on each node's local rank 0 first, then on the other ranks.

        For data preparation: the first process parses the raw file and fills the cache, the
        others then load the memory-mapped store from it instead of racing to build it.
        """
        if not self.enabled:
            return fn()
        result, err = None, None
        if self.local_rank == 0:
            try:
                result = fn()
            except Exception as e:  # raised after the barrier
                err = e
        dist.barrier()
        if self.local_rank != 0:
            result = fn()
        if err is not None:
            raise err
        return result

    @torch.no_grad()
    def broadcast_module(self, module: nn.Module) -> None:
        """Copy rank 0's parameters and buffers into every rank's module, in place."""
        if not self.enabled:
            return
        for t in module.state_dict().values():
            if self.comm_device.type == t.device.type:
                dist.broadcast(t, src=0)
            else:  # e.g. CPU buffers of a model trained over NCCL only
                tmp = t.to(self.comm_device)
                dist.broadcast(tmp, src=0)
                t.copy_(tmp)

    def wrap(self, model: nn.Module) -> nn.Module:
        """The DDP wrapper used for training steps (rank 0's initial weights are broadcast)."""
        import inspect

        from torch.nn.parallel import DistributedDataParallel

        # device_ids=None: batches are already on the model's device, and DDP would otherwise
        # try to move our SeqBatch dataclass itself. No buffer sync before every forward: the
        # models have no buffers that change in training (newer torch renamed the option).
        params = inspect.signature(DistributedDataParallel).parameters
        no_sync = (
            "forward_sync_buffers" if "forward_sync_buffers" in params else "broadcast_buffers"
        )
        return DistributedDataParallel(model, device_ids=None, **{no_sync: False})


class ObjectiveView:
    """What an objective sees of a DDP-wrapped model: calls go through DDP (so gradients are
    synchronised), attributes such as ``item_weights`` come from the wrapped model."""

    def __init__(self, ddp: nn.Module) -> None:
        self._ddp = ddp

    def __call__(self, *args, **kwargs):
        return self._ddp(*args, **kwargs)

    def __getattr__(self, name: str):
        return getattr(self._ddp.module, name)
