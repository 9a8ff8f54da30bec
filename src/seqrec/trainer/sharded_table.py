"""One item table split row-wise across the processes of a job, by TorchRec.

Data parallelism (trainer/distributed.py) copies the whole item table, its gradient and its two
AdamW moments into every process: at 10M items x 64 dims that is 10 GB per process before
anything else. `ShardedTable` hands the rows to TorchRec's ``DistributedModelParallel`` with a
row-wise plan: rank r keeps rows [lo_r, hi_r) (blocks of ceil(rows / world), the last one
shorter or empty, so any number of processes fits any table), and a lookup of any ids sends
each id to the rank that owns it and the rows back, with the gradient taking the reverse path.

Why an ``EmbeddingBagCollection`` with one id per bag instead of the sequence
``EmbeddingCollection``: on CPU, fbgemm-gpu-cpu 1.8.0's DENSE kernel returns one pooled row per
bag for the sequence module too (so its all-to-all reads past its buffer and the process aborts
with "double free or corruption"), and the FUSED kernels that do work on CPU offer SGD and
Adagrad but not Adam. A bag holding one id is a plain row lookup, and the DENSE kernel leaves a
dense gradient on this rank's rows that torch's own AdamW updates, exactly as one process
updates its whole table. Its cost: row-wise pooled outputs come back by a reduce-scatter of
[world x ids, D] partial sums, where the sequence module would move only the owned rows.

TorchRec is optional (docs/DISTRIBUTED.md names the install); it is imported inside this
module's functions only, so importing seqrec never needs it.
"""

from __future__ import annotations

import logging
import os
import warnings

import torch
import torch.distributed as dist
import torch.nn.functional as F

from seqrec.errors import SeqrecError

INSTALL = (
    "pip install --no-deps torchrec==1.8.0 fbgemm-gpu-cpu==1.8.0 && "
    "pip install pyre-extensions tensordict tqdm"
)
"""The CPU install that works with torch 2.13 (torchrec's own metadata asks for the CUDA
``fbgemm-gpu``, hence --no-deps; fbgemm-gpu-cpu 1.7 and 1.9 fail to load against this torch)."""

TABLE, FEATURE = "item_table", "item"  # "items" would shadow ModuleDict.items

NOISE = [
    # TorchRec 1.8 calls collectives that torch 2.13 renamed
    (FutureWarning, r"`torch\.distributed\.(reduce_scatter_tensor|all_gather_into_tensor)` is "),
    # fbgemm's dense lookup has no autograd kernel registered; torch still differentiates
    # through it, and test_sharded.py checks the gradients it gives against one process's
    (UserWarning, r"fbgemm::dense_embedding_codegen_lookup_function: an autograd kernel"),
]


LOG_NOISE = {
    "torchrec.distributed.utils": "caching params will be ignored",  # DENSE has no cache
    "torch.fx._symbolic_trace": "is_fx_tracing will return true",  # TorchRec asks, torch warns
}


def _quiet() -> None:
    """Silence the known messages above and two log lines that every process prints."""
    for category, message in NOISE:
        warnings.filterwarnings("ignore", message=message, category=category)
    for name, text in LOG_NOISE.items():
        logging.getLogger(name).addFilter(lambda record, t=text: t not in record.getMessage())


def require_torchrec() -> None:
    """Refuse in one line, naming the install, where TorchRec or its kernels do not load."""
    try:
        import fbgemm_gpu  # noqa: F401
        import torchrec  # noqa: F401
    except Exception as e:  # ImportError, or OSError: kernels built for another torch
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
        raise SeqrecError(
            f"train.item_sharding=rowwise needs TorchRec, which does not load here "
            f"({type(e).__name__}: {first}); install it with: {INSTALL}"
        ) from None


def row_blocks(rows: int, world: int) -> list[tuple[int, int]]:
    """[lo, hi) of each rank's rows under TorchRec's row-wise plan (ceil-sized blocks; the last
    ranks may get fewer rows or none). The plan itself is read back in `ShardedTable`; this is
    the rule written out, for the tests and for sizing a job."""
    block = -(-rows // world)
    return [(min(r * block, rows), min((r + 1) * block, rows)) for r in range(world)]


class ShardedTable:
    """A [rows, dim] table whose rows live on the ranks of the default process group.

    ``param`` is this rank's rows [hi - lo, dim] as the parameter TorchRec's kernel trains (its
    gradient lands there), ``local`` the same memory without autograd, ``bounds`` every
    rank's [lo, hi). All methods are collectives: every rank calls them in the same order.
    """

    def __init__(self, rows: int, dim: int) -> None:
        from torchrec.distributed import comm_ops
        from torchrec.distributed.embedding_types import EmbeddingComputeKernel
        from torchrec.distributed.embeddingbag import EmbeddingBagCollectionSharder
        from torchrec.distributed.model_parallel import DistributedModelParallel
        from torchrec.distributed.sharding_plan import construct_module_sharding_plan, row_wise
        from torchrec.distributed.types import ShardingEnv, ShardingPlan
        from torchrec.modules.embedding_configs import EmbeddingBagConfig, PoolingType
        from torchrec.modules.embedding_modules import EmbeddingBagCollection

        _quiet()
        self.dim = dim
        self.rank, world = dist.get_rank(), dist.get_world_size()
        config = EmbeddingBagConfig(
            name=TABLE,
            embedding_dim=self.dim,
            num_embeddings=rows,
            feature_names=[FEATURE],
            pooling=PoolingType.SUM,
        )
        module = EmbeddingBagCollection(tables=[config], device=torch.device("meta"))
        sharder = EmbeddingBagCollectionSharder()
        plan = construct_module_sharding_plan(
            module,
            {TABLE: row_wise(compute_kernel=EmbeddingComputeKernel.DENSE.value)},
            sharder=sharder,
            local_size=int(os.environ.get("LOCAL_WORLD_SIZE", world)),
            world_size=world,
            device_type="cpu",
        )
        shards = sorted(plan[TABLE].sharding_spec.shards, key=lambda s: s.placement.rank())
        self.bounds = [(s.shard_offsets[0], s.shard_offsets[0] + s.shard_sizes[0]) for s in shards]
        # DDP averages the layers' gradients over ranks; the table's must be averaged alike
        # (TorchRec's default, set here so that no other code can have turned it off)
        comm_ops.set_gradient_division(True)
        self.module = DistributedModelParallel(
            module,
            env=ShardingEnv.from_process_group(dist.group.WORLD),
            device=torch.device("cpu"),
            plan=ShardingPlan({"": plan}),
            sharders=[sharder],
            init_data_parallel=False,
        )
        # this rank's rows: a view of the kernel's weights that receives their gradient
        ((_, self.param),) = self.module.named_parameters()
        self.local = self.param.detach()
        lo, hi = self.bounds[self.rank]
        if self.local.shape[0] != hi - lo:
            raise RuntimeError(
                f"rank {self.rank}: TorchRec made {len(self.local)} rows, plan {lo}:{hi}"
            )

    @property
    def rows(self) -> tuple[int, int]:
        return self.bounds[self.rank]

    @torch.no_grad()
    def load(self, weight: torch.Tensor) -> None:
        """Put this rank's rows of the whole table ``weight`` into its shard."""
        lo, hi = self.rows
        self.local.copy_(weight[lo:hi])

    def lookup(self, ids: torch.Tensor) -> torch.Tensor:
        """Rows [len(ids), dim] of any ids (differentiable). Pooled row-wise outputs are
        reduce-scattered, which needs the same number of bags on every rank: shorter lists are
        padded with id 0, whose rows are cut off again."""
        from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

        n = torch.tensor([ids.numel()])
        dist.all_reduce(n, op=dist.ReduceOp.MAX)
        padded = F.pad(ids.cpu(), (0, int(n) - ids.numel()))
        kjt = KeyedJaggedTensor.from_lengths_sync(
            keys=[FEATURE], values=padded, lengths=torch.ones_like(padded)
        )
        return self.module(kjt)[FEATURE][: ids.numel()].to(ids.device)

    def gather(self, local: torch.Tensor, everywhere: bool = True) -> torch.Tensor | None:
        """The whole table from every rank's [hi - lo, dim] piece ``local`` (the shard, or an
        optimiser moment shaped like it): on every rank, or with ``everywhere=False`` on rank 0
        only (None elsewhere)."""
        width = max(max(hi - lo for lo, hi in self.bounds), 1)
        buf = local.detach().new_zeros(width, self.dim)
        buf[: local.shape[0]] = local.detach().reshape(-1, self.dim)
        world = len(self.bounds)
        parts = (
            [torch.empty_like(buf) for _ in range(world)] if everywhere or not self.rank else None
        )
        if everywhere:
            dist.all_gather(parts, buf)
        else:
            dist.gather(buf, parts, dst=0)
        if parts is None:
            return None
        return torch.cat([p[: hi - lo] for p, (lo, hi) in zip(parts, self.bounds, strict=True)])
