"""The training recipe, top to bottom: a plain PyTorch step loop.

One epoch = every training user once, in a permutation derived from (seed, epoch), so a run
resumed from a mid-epoch checkpoint replays exactly the same batches. Validation (NDCG@10 on
the validation targets) drives early stopping; the test split is evaluated once, on the best
weights, at the very end.

Under torchrun the same loop runs on every rank (see train/distributed.py): the global batch is
split across ranks, the loss is rescaled so the DDP-averaged gradient equals the single-process
one, evaluation users are sharded and their ranks gathered, and only rank 0 writes files.
"""

from __future__ import annotations

import contextlib
import math
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch

from seqrec.data.batches import training_batch
from seqrec.data.split import Split
from seqrec.data.store import SequenceStore
from seqrec.errors import SeqrecError
from seqrec.eval.ranking import EvalResult, evaluate, ranking_protocol, result_from_ranks
from seqrec.models import build_model
from seqrec.models.common import count_parameters
from seqrec.models.inputs import prepare_inputs
from seqrec.models.registry import flops_per_interaction
from seqrec.objectives import build_objective
from seqrec.recipe import RunConfig
from seqrec.train.checkpoint import (
    load_checkpoint,
    load_weights,
    restore_training_state,
    save_checkpoint,
    save_weights,
    training_state,
)
from seqrec.train.distributed import DistContext, ObjectiveView, rank_seed
from seqrec.train.init_from import load_initial_weights
from seqrec.train.log import RunLog, TrainProgress
from seqrec.train.optim import build_optimizer, build_scheduler


@contextlib.contextmanager
def sigterm_as_interrupt(enabled: bool = True) -> Iterator[None]:
    """Treat SIGTERM (``kill``, SLURM pre-emption) like Ctrl-C while training one process.

    Background jobs ignore SIGINT, so without this a stopped job would lose every step since the
    last epoch-end checkpoint. Not under DDP: torchrun sends SIGTERM to the survivors when a rank
    dies, and a checkpoint written then would not hold every rank's state. Only the main thread
    may install handlers; elsewhere it is a no-op.
    """
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield
        return

    def _raise(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, _raise)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class TrainingInterrupted(SeqrecError):
    """Ctrl-C during training; the checkpoint was saved first."""


class _NoLog:
    """The metrics log of ranks other than 0: they write nothing."""

    def write(self, record: dict) -> None:
        pass

    def truncate_after(self, step: int) -> None:
        pass


def keep_fraction(rows: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """The first ``round(fraction * n)`` (at least 1) of a (seed)-derived permutation of
    ``rows``, sorted: nested across fractions, so a smaller data budget is a subset of a larger."""
    if fraction >= 1 or not len(rows):
        return rows
    n = max(1, round(fraction * len(rows)))
    order = np.random.default_rng([seed, 0x5EED]).permutation(len(rows))
    return rows[np.sort(order[:n])]


def close_epoch_loss(state: dict, count_key: str) -> None:
    """Epoch end: the count-weighted mean loss becomes ``train_loss``; the sums restart."""
    if state[count_key]:
        state["train_loss"] = state["epoch_loss_sum"] / state[count_key]
    state["epoch_loss_sum"], state[count_key] = 0.0, 0


def epochs_completed(state: dict, steps_per_epoch: int) -> int:
    """Whole epochs trained: the ``epochs_run`` of results.json.

    Why not ``state["epoch"]``: the loop advances the counter only when it goes on, so after
    every epoch ran it is a count, but after a stop by patience or time budget (which come at
    an epoch's end) it is the last epoch's index, one short. A max_steps stop inside an epoch
    leaves that epoch incomplete, and it is not counted.
    """
    return state["epoch"] + int(state["step_in_epoch"] >= steps_per_epoch)


def run_epochs(trainer, bar, handle_sigterm: bool, on_interrupt: Callable[[], None]) -> None:
    """The epoch loop every trainer shares: train, validate when due (or when stopped inside
    an epoch), stop on patience / time budget / max_steps, checkpoint at each epoch end.

    ``trainer`` has ``cfg.train``, ``state``, ``run_dir``, ``log``, ``_train_epoch(bar) ->
    finished``, ``_validate(seconds, bar) -> patience ran out`` and ``checkpoint()``. Ctrl-C (and SIGTERM when
    ``handle_sigterm``) calls ``on_interrupt`` (save what is needed to resume), then raises
    `TrainingInterrupted` with the resume command.
    """
    cfg, st = trainer.cfg.train, trainer.state
    wall_mark = time.perf_counter()

    def out_of_time() -> bool:
        """``train.time_budget_s``: stop like early stopping (test on the best weights) once
        training plus validation wall time, summed over resumed sessions, reaches the budget."""
        nonlocal wall_mark
        now = time.perf_counter()
        st["wall_seconds"] = st.get("wall_seconds", 0.0) + now - wall_mark
        wall_mark = now
        if cfg.time_budget_s is None or st["wall_seconds"] < cfg.time_budget_s:
            return False
        st["stopped_by"] = "time_budget"
        trainer.log.write({"event": "time_budget", "wall_seconds": st["wall_seconds"]})
        return True

    try:
        with bar, sigterm_as_interrupt(enabled=handle_sigterm):
            while st["epoch"] < cfg.epochs:
                bar.new_epoch(st["epoch"], st["step_in_epoch"])
                t_epoch = time.perf_counter()
                finished = trainer._train_epoch(bar)
                due = (st["epoch"] + 1) % cfg.eval_every == 0
                if (due or not finished) and (
                    trainer._validate(time.perf_counter() - t_epoch, bar) or out_of_time()
                ):
                    break
                if not finished:
                    break
                st["epoch"] += 1
                st["step_in_epoch"] = 0
                trainer.checkpoint()
    except KeyboardInterrupt:
        on_interrupt()
        raise TrainingInterrupted(
            f"interrupted at step {st['global_step']}; checkpoint saved in {trainer.run_dir}, "
            f"continue with: seqrec train --resume {trainer.run_dir}"
        ) from None


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise SeqrecError(
            f"train.device={name} but no CUDA device is visible; use train.device=cpu"
        )
    return torch.device(name)


class Trainer:
    def __init__(
        self,
        cfg: RunConfig,
        store: SequenceStore,
        split: Split,
        run_dir: Path,
        progress: bool = True,
        dist: DistContext | None = None,
    ) -> None:
        self.cfg, self.store, self.split, self.run_dir = cfg, store, split, Path(run_dir)
        self.dist = dist or DistContext()
        if cfg.train.threads:
            torch.set_num_threads(cfg.train.threads)
        torch.manual_seed(cfg.train.seed)
        self.device = pick_device(cfg.train.device)
        if self.dist.enabled and self.device.type == "cuda":
            self.device = torch.device("cuda", torch.cuda.current_device())  # LOCAL_RANK's GPU
        self.model = build_model(cfg.model, store.n_items, cfg.data.max_len)
        # item features (attached before .to and the optimiser), and the per-event arrays
        # (timestamps, behaviours) this model's batches carry
        inputs = prepare_inputs(self.model, cfg, store)
        self.timestamps, self.behaviors = inputs.timestamps, inputs.behaviors
        self.item_features = inputs.item_features or None
        self.model = self.model.to(self.device)
        self.ddp = None
        if self.dist.enabled:
            self.ddp = self.dist.wrap(self.model)
            if self.dist.rank:  # own dropout / negative-sampling stream; rank 0 keeps the seed's
                torch.manual_seed(rank_seed(cfg.train.seed, self.dist.rank, 0))
        self.objective = build_objective(cfg.objective)
        self.opt = build_optimizer(self.model, cfg.train)
        tr = split.train
        keep = (tr.ends - tr.starts) >= 2  # a training row needs one (input, next item) pair
        self.train_rows = keep_fraction(
            np.flatnonzero(keep), cfg.data.train_fraction, cfg.train.seed
        )
        if not len(self.train_rows):
            how = split.protocol.get("split", "chosen")
            raise SeqrecError(
                f"no training sequence has 2 or more items after the {how} split, so there is "
                "nothing to learn from; use data with longer histories"
            )
        self.steps_per_epoch = max(1, math.ceil(len(self.train_rows) / cfg.train.batch_size))
        total = cfg.train.max_steps or self.steps_per_epoch * cfg.train.epochs
        self.sched = build_scheduler(self.opt, cfg.train, total)
        self._ends_epoch, self._ends = -1, None
        self.log = RunLog(self.run_dir / "metrics.jsonl") if self.dist.is_main else _NoLog()
        self.progress = progress and self.dist.is_main
        # this process's training interactions and seconds: since the last log line, and in all
        self._since_log = [0.0, 0.0]
        self._session = [0.0, 0.0]
        self.valid_rows = self._valid_subset()
        self.popularity = np.bincount(store.items, minlength=store.n_items + 1)
        self.state = {
            "epoch": 0,
            "step_in_epoch": 0,
            "global_step": 0,
            "best": -1.0,
            "best_epoch": -1,
            "bad_evals": 0,
            "train_seconds": 0.0,
            "train_interactions": 0,  # targets trained on, all epochs (global under DDP)
            "epoch_loss_sum": 0.0,  # target-weighted loss of the current epoch so far
            "epoch_targets": 0,
            "train_loss": None,  # mean loss of the last epoch
        }

    # ----------------------------------------------------------------- bookkeeping
    def _valid_subset(self) -> np.ndarray:
        n = len(self.split.valid)
        cap = self.cfg.eval.valid_max_users
        if cap is None or cap >= n:
            return np.arange(n)
        return np.sort(np.random.default_rng(self.cfg.train.seed).choice(n, cap, replace=False))

    def _expect(self) -> dict:
        return {
            "model": self.cfg.model.name,
            "n_items": self.store.n_items,
            "fingerprint": self.cfg.fingerprint(),
        }

    def checkpoint(self, collective: bool = True) -> None:
        """Save the resumable state (rank 0 writes, the other ranks wait for it).

        ``collective=False`` (Ctrl-C under torchrun, when the ranks are no longer in step):
        rank 0 writes what it has without talking to the others.
        """
        extra = {}
        if self.dist.enabled:
            extra["world_size"] = self.dist.world_size
            if collective:  # lets a resume with the same world size continue every rank's RNG
                extra["torch_rng_ranks"] = self.dist.all_gather_object(torch.get_rng_state())
        if self.dist.is_main:
            save_checkpoint(
                self.run_dir / "checkpoint.pt",
                {
                    **self._expect(),
                    **training_state(self.state, self.model, self.opt, self.sched),
                    **extra,
                },
            )
        if collective:
            self.dist.barrier()

    def resume(self) -> None:
        path = self.run_dir / "checkpoint.pt"
        ck = self.dist.on_main(lambda: load_checkpoint(path, expect=self._expect()))
        restore_training_state(ck, self.state, self.model, self.opt, self.sched)
        self._restore_rng(ck)
        self.log.truncate_after(self.state["global_step"])

    def _restore_rng(self, ck: dict) -> None:
        """Rank 0 continues the saved rank-0 stream (the only one a single process has); other
        ranks continue their own when the world size is unchanged, else start a fresh stream
        derived from (seed, rank, step): dropout masks then differ from an uninterrupted run."""
        rank, per_rank = self.dist.rank, ck.get("torch_rng_ranks")
        if rank == 0:
            torch.set_rng_state(ck["torch_rng"])
        elif per_rank is not None and ck.get("world_size") == self.dist.world_size:
            torch.set_rng_state(per_rank[rank])
        else:
            torch.manual_seed(rank_seed(self.cfg.train.seed, rank, self.state["global_step"]))

    def accounting(self) -> dict:
        lengths = np.minimum(self.split.train.lengths(), self.cfg.data.max_len)
        flops = flops_per_interaction(self.cfg.model, self.store.n_items, float(lengths.mean()) / 2)
        return {"params": count_parameters(self.model), "flops_per_interaction": flops}

    # ----------------------------------------------------------------- evaluation
    def evaluate_view(self, name: str, rows: np.ndarray | None = None) -> EvalResult:
        view = getattr(self.split, name)
        sel = np.arange(len(view)) if rows is None else rows
        if self.dist.enabled:
            return self._evaluate_sharded(name, view, sel)
        return evaluate(
            self.model,
            self.store.items,
            view.starts[sel],
            view.ends[sel],
            view.targets[sel],
            self.cfg.data.max_len,
            self.cfg.eval,
            self.device,
            popularity=self.popularity,
            split_protocol={**self.split.protocol, "evaluated": name},
            timestamps=self.timestamps,
            behaviors=self.behaviors,
        )

    def _evaluate_sharded(self, name: str, view, sel: np.ndarray) -> EvalResult:
        """Each rank ranks its slice of the users; every rank gets all ranks and the metrics."""
        t0 = time.perf_counter()
        local = self.dist.shard(sel)
        ranks = np.empty(0, dtype=np.int64)
        if len(local):
            ranks = evaluate(
                self.model,
                self.store.items,
                view.starts[local],
                view.ends[local],
                view.targets[local],
                self.cfg.data.max_len,
                self.cfg.eval,
                self.device,
                popularity=self.popularity,
                seed=self.dist.rank,  # sampled metrics: one negative stream per rank
                timestamps=self.timestamps,
                behaviors=self.behaviors,
            ).ranks
        ranks = self.dist.gather_shards(ranks, len(sel))
        protocol = ranking_protocol(
            self.cfg.eval,
            self.cfg.data.max_len,
            {**self.split.protocol, "evaluated": name, "processes": self.dist.world_size},
        )
        return result_from_ranks(ranks, self.cfg.eval, protocol, time.perf_counter() - t0)

    # ----------------------------------------------------------------- training
    def _window_ends(self, epoch: int) -> np.ndarray:
        """End of each training row's window this epoch (``train.window``).

        ``random`` draws, per user and epoch from (seed, epoch), where a max_len + 1 window ends
        inside a longer training sequence, so a resumed run sees the same windows.
        """
        tr = self.split.train
        if self.cfg.train.window == "last":
            return tr.ends
        if self._ends_epoch != epoch:
            slack = np.maximum((tr.ends - tr.starts) - (self.cfg.data.max_len + 1), 0)
            rng = np.random.default_rng([self.cfg.train.seed, epoch, 1])
            self._ends = tr.ends - np.floor(rng.random(len(slack)) * (slack + 1)).astype(np.int64)
            self._ends_epoch = epoch
        return self._ends

    def _batch(self, rows: np.ndarray):
        tr = self.split.train
        ends = self._window_ends(self.state["epoch"])
        return training_batch(
            self.store.items,
            self.timestamps,
            tr.users[rows],
            tr.starts[rows],
            ends[rows],
            self.cfg.data.max_len,
            self.behaviors,
        ).to(self.device)

    def _epoch_order(self, epoch: int) -> np.ndarray:
        rng = np.random.default_rng([self.cfg.train.seed, epoch])
        return self.train_rows[rng.permutation(len(self.train_rows))]

    def _step(self, rows: np.ndarray) -> tuple[float, int, int, float]:
        """One optimiser step on the global batch ``rows``.

        Returns (loss of the global batch, its valid targets, the targets this process
        trained, seconds this process spent).
        """
        if self.dist.enabled:
            return self._step_ddp(rows)
        cfg = self.cfg.train
        batch = self._batch(rows)
        t0 = time.perf_counter()
        loss = self.objective(self.model, batch)
        if not torch.isfinite(loss):
            raise SeqrecError(
                f"loss became {loss.item()} at step {self.state['global_step']}; "
                "lower train.lr or enable train.grad_clip"
            )
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
        self.opt.step()
        self.sched.step()
        dt = time.perf_counter() - t0
        n_targets = int((batch.targets != 0).sum())
        return loss.item(), n_targets, n_targets, dt

    def _step_ddp(self, rows: np.ndarray) -> tuple[float, int, int, float]:
        """This rank's slice of the global batch; the gradient equals the single-process one.

        The objectives return means over their valid targets, and DDP averages gradients over
        ranks, so rank r scales its mean by n_r * world / n_global: the average of the scaled
        gradients is then the sum over all targets / n_global.
        """
        cfg, world = self.cfg.train, self.dist.world_size
        local = self.dist.shard(rows)
        placeholder = len(local) == 0  # fewer users than ranks in a (last) batch
        batch = self._batch(rows[:1] if placeholder else local)  # DDP needs every rank to step
        t0 = time.perf_counter()
        loss = self.objective(ObjectiveView(self.ddp), batch)
        n_local = 0 if placeholder else int((batch.targets != 0).sum())
        loss_sum, n_global = self.dist.all_sum([float(loss.detach()) * n_local, n_local])
        global_loss = loss_sum / max(n_global, 1.0)
        if not math.isfinite(global_loss):
            raise SeqrecError(
                f"loss became {global_loss} at step {self.state['global_step']}; "
                "lower train.lr or enable train.grad_clip"
            )
        self.opt.zero_grad(set_to_none=True)
        (loss * (n_local * world / max(n_global, 1.0))).backward()  # all-reduces gradients
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
        self.opt.step()
        self.sched.step()
        return global_loss, int(n_global), n_local, time.perf_counter() - t0

    def _throughput(self, counts: list[float]) -> dict:
        """Interactions/s of every process over ``counts`` = [interactions, seconds]; the total
        is all interactions over the slowest process's time (the steps run in lock-step)."""
        per = self.dist.all_gather_floats(counts)
        rates = [float(n / t) if t > 0 else 0.0 for n, t in per]
        total = float(per[:, 0].sum() / per[:, 1].max()) if per[:, 1].max() > 0 else 0.0
        return {"interactions_per_s": total, "interactions_per_s_per_process": rates}

    def _train_epoch(self, bar: TrainProgress) -> bool:
        """Run the rest of the current epoch; False when max_steps stopped it early."""
        cfg, st = self.cfg.train, self.state
        order = self._epoch_order(st["epoch"])
        self.model.train()
        while st["step_in_epoch"] < self.steps_per_epoch:
            if cfg.max_steps is not None and st["global_step"] >= cfg.max_steps:
                self._close_epoch_loss()
                return False
            i = st["step_in_epoch"]
            loss, n_targets, n_local, dt = self._step(
                order[i * cfg.batch_size : (i + 1) * cfg.batch_size]
            )
            st["train_seconds"] += dt
            st["step_in_epoch"] += 1
            st["global_step"] += 1
            for acc in (self._since_log, self._session):
                acc[0] += n_local
                acc[1] += dt
            st["train_interactions"] += n_targets
            st["epoch_loss_sum"] += loss * n_targets
            st["epoch_targets"] += n_targets
            bar.step(loss, n_targets / max(dt, 1e-9))
            if st["global_step"] % cfg.log_every == 0:
                record = {
                    "step": st["global_step"],
                    "epoch": st["epoch"],
                    "loss": loss,
                    "lr": self.sched.get_last_lr()[0],
                    "interactions_per_s": n_targets / dt,
                }
                if self.dist.enabled:  # averaged over the steps since the last line
                    record.update(self._throughput(self._since_log))
                    record["processes"] = self.dist.world_size
                self._since_log = [0.0, 0.0]
                self.log.write(record)
            if st["global_step"] % cfg.checkpoint_every == 0:
                self.checkpoint()
        self._close_epoch_loss()
        return True

    def _close_epoch_loss(self) -> None:
        close_epoch_loss(self.state, "epoch_targets")

    def fit(self) -> dict:
        cfg, st = self.cfg.train, self.state
        acct = self.accounting()
        extra = {"item_features": self.item_features} if self.item_features else {}
        if cfg.init_from and st["global_step"] == 0:  # a fresh run, not a resumed one
            extra["init"] = load_initial_weights(
                self.model, cfg.init_from, self.cfg.model.name, self.store.item_ids
            )
        self.log.write(
            {
                "event": "start",
                **acct,
                **extra,
                "train_users": len(self.train_rows),
                "steps_per_epoch": self.steps_per_epoch,
            }
        )
        bar = TrainProgress(self.steps_per_epoch, enabled=self.progress)
        p, f = acct["params"], acct["flops_per_interaction"]
        procs = f", {self.dist.world_size} processes" if self.dist.enabled else ""
        if self.dist.is_main:
            bar.console.print(
                f"{self.cfg.model.name}: {p['total']:,} parameters ({p['embedding']:,} embedding, "
                f"{p['non_embedding']:,} other), {f['train'] / 1e6:.2f} MFLOPs per training "
                f"interaction, {len(self.train_rows):,} training users, "
                f"{self.steps_per_epoch} steps/epoch{procs}",
                highlight=False,
            )
        run_epochs(
            self,
            bar,
            handle_sigterm=not self.dist.enabled,
            on_interrupt=lambda: self.checkpoint(collective=not self.dist.enabled),
        )
        self.checkpoint()
        throughput = {"processes": self.dist.world_size, **self._throughput(self._session)}
        if self.dist.enabled and self.dist.is_main:
            rates = ", ".join(f"{r:,.0f}" for r in throughput["interactions_per_s_per_process"])
            bar.console.print(
                f"training throughput {throughput['interactions_per_s']:,.0f} interactions/s "
                f"({rates} per process)",
                highlight=False,
            )
        return {**self.finish(acct), "throughput": throughput}

    def _validate(self, epoch_seconds: float, bar: TrainProgress) -> bool:
        """Evaluate on validation, keep the best weights; True when patience ran out."""
        st = self.state
        res = self.evaluate_view("valid", self.valid_rows)
        ndcg = res.metrics["NDCG@10"]
        improved = ndcg > st["best"]
        if improved:
            st.update(best=ndcg, best_epoch=st["epoch"], bad_evals=0)
            if self.dist.is_main:
                self._save_weights()
        else:
            st["bad_evals"] += 1
        self.log.write(
            {
                "event": "valid",
                "epoch": st["epoch"],
                "step": st["global_step"],
                "epoch_seconds": epoch_seconds,
                "eval_seconds": res.seconds,
                **{
                    f"valid/{k}": v
                    for k, v in res.metrics.items()
                    if "@" in k and k.split("@")[1] in {"10", "20"}
                },
            }
        )
        if self.cfg.train.log_test:
            peek = self.evaluate_view("test")
            self.log.write(
                {
                    "event": "test_peek",
                    "epoch": st["epoch"],
                    "step": st["global_step"],
                    **{f"test/{k}": peek.metrics[k] for k in ("HR@10", "NDCG@10")},
                }
            )
        if self.dist.is_main:
            bar.report(st["epoch"], ndcg, res.metrics["HR@10"], st["best"], improved)
        # train.select=last runs every epoch: finish() tests (and saves) the final weights
        return self.cfg.train.select == "best" and st["bad_evals"] >= self.cfg.train.patience

    def _save_weights(self) -> None:
        """The run's weights file: what finish() tests and evaluate / recommend / export load."""
        save_weights(
            self.run_dir / "best.safetensors",
            self.model,
            {"model": self.cfg.model.name, "n_items": str(self.store.n_items)},
        )

    def finish(self, acct: dict) -> dict:
        """Reload the best weights and evaluate the test split exactly once."""
        best_path = self.run_dir / "best.safetensors"
        last = self.cfg.train.select == "last"

        def load_best() -> None:
            # no validation happened (e.g. max_steps early), or the last weights are the ones
            # tested and training may have ended between validations
            if not best_path.is_file() or last:
                self._save_weights()
            load_weights(best_path, self.model)

        self.dist.on_main(load_best)  # rank 0 reads the file ...
        self.dist.broadcast_module(self.model)  # ... and hands the weights to the others
        valid = self.evaluate_view("valid")
        test = self.evaluate_view("test")
        # the epoch counter ends one past the last epoch when every epoch ran
        final = self.state["epoch"] - (self.state["epoch"] >= self.cfg.train.epochs)
        return {
            "best_epoch": self.state["best_epoch"],
            "selected": "last epoch" if last else "best validation NDCG@10",
            "tested_epoch": final if last else self.state["best_epoch"],
            "epochs_run": epochs_completed(self.state, self.steps_per_epoch),
            "steps": self.state["global_step"],
            "train_seconds": self.state["train_seconds"],
            "wall_seconds": self.state.get("wall_seconds"),
            "stopped_by": self.state.get("stopped_by", "patience or epochs"),
            "train_interactions": self.state["train_interactions"],
            "train_loss": self.state["train_loss"],
            "train_data": {
                "users": len(self.train_rows),
                "interactions": int(self.split.train.lengths()[self.train_rows].sum()),
                "fraction": self.cfg.data.train_fraction,
            },
            "valid": valid.to_json(),
            "test": test.to_json(),
            **acct,
            "_test_ranks": test.ranks,
        }
