"""The training recipe, top to bottom: one plain PyTorch step loop for every task.

What is trained comes from the task (``seqrec.tasks``, picked by ``cfg.task.name``): its model,
what a batch is, its loss, what validation monitors, how the splits are scored. How it is
trained is here, the same for all: seeding, AdamW + schedule, gradient clipping, the step
loop, the JSONL log, checkpoints (Ctrl-C, SIGTERM, every ``train.checkpoint_every`` steps and
every epoch end) and exact resume, early stopping on the task's validation metric (or
``train.time_budget_s``, ``train.max_steps``, ``train.select=last``), and the test split scored
once, on the selected weights, at the very end.

One epoch is the task's ``epoch_order(epoch)``, a function of (seed, epoch), cut into global
batches of ``train.batch_size``, so a run resumed from a mid-epoch checkpoint replays exactly
the same batches. Under torchrun the same loop runs on every rank (see trainer/distributed.py):
each rank trains its contiguous slice of the global batch, the loss is rescaled so the
DDP-averaged gradient equals the single-process one, evaluation is sharded by the task, and
only rank 0 writes files.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from seqrec.data.store import SequenceStore
from seqrec.errors import SeqrecError
from seqrec.recipe import RunConfig
from seqrec.tasks import build_task
from seqrec.trainer.checkpoint import (
    load_checkpoint,
    load_weights,
    log_length,
    restore_training_state,
    rewind_log,
    rng_state,
    save_checkpoint,
    save_weights,
    training_state,
)
from seqrec.trainer.distributed import DistContext, rank_seed
from seqrec.trainer.extend import Extension, epochs_completed
from seqrec.trainer.flops import FlopRate
from seqrec.trainer.init_from import load_initial_weights
from seqrec.trainer.interrupt import StopSignals, TrainingInterrupted
from seqrec.trainer.log import NoLog, RunLog, TrainProgress
from seqrec.trainer.optim import build_optimizer, build_scheduler, clip_grad_norm
from seqrec.trainer.precision import FastPath


class Trainer:
    """Trains ``cfg``'s task on (``store``, ``data``: from ``seqrec.tasks.load_task_data``)."""

    def __init__(
        self,
        cfg: RunConfig,
        store: SequenceStore,
        data: Any,
        run_dir: Path,
        progress: bool = True,
        dist: DistContext | None = None,
    ) -> None:
        self.cfg, self.store, self.data, self.run_dir = cfg, store, data, Path(run_dir)
        self.dist = dist or DistContext()
        if cfg.train.threads:
            torch.set_num_threads(cfg.train.threads)
        torch.manual_seed(cfg.train.seed)  # before the task builds its model: its initial weights
        self.device = self.dist.device(cfg.train.device)
        self.task = build_task(cfg, store, data, self.device, self.dist)
        self.model = self.task.model.to(self.device)
        # net: what the loss calls (DDP: the synchronising wrapper); fast: train.precision/compile
        self.fast, self.net = FastPath.build(cfg.train, self.device, self.model, self.dist)
        if self.dist.enabled and self.dist.rank:  # own dropout / negative-sampling stream
            torch.manual_seed(rank_seed(cfg.train.seed, self.dist.rank, 0))
        self.opt = build_optimizer(self.model, cfg.train)
        self.steps_per_epoch = self.task.steps_per_epoch
        total = cfg.train.max_steps or self.steps_per_epoch * cfg.train.epochs
        self.sched = build_scheduler(self.opt, cfg.train, total, self.steps_per_epoch)
        self.log = RunLog(self.run_dir / "metrics.jsonl") if self.dist.is_main else NoLog()
        self.progress = progress and self.dist.is_main
        # this process's training units and seconds: since the last log line, and in all
        self._since_log, self._session = [0.0, 0.0], [0.0, 0.0]
        count = self.task.counting
        self.state = {
            "epoch": 0,
            "step_in_epoch": 0,
            "global_step": 0,
            "best": -1.0,
            "best_epoch": -1,
            "bad_evals": 0,
            "train_seconds": 0.0,
            count.total: 0,  # units trained on, all epochs (global under DDP)
            "epoch_loss_sum": 0.0,  # unit-weighted loss of the current epoch so far
            count.epoch: 0,
            "train_loss": None,  # mean loss of the last epoch
        }
        self.signals = StopSignals()
        # while a step or validation runs: the point before it, which an interruption saves
        self._point: dict | None = None
        # continuing a checkpoint (its log has the start event); the finished training saved
        self._resumed = self._final_saved = False

    # ----------------------------------------------------------------- checkpoints
    def _expect(self) -> dict:
        cfg, n_items = self.cfg, self.store.n_items
        return {"model": self.task.tag, "n_items": n_items, "fingerprint": cfg.fingerprint()}

    def _snapshot(self) -> dict:
        """A point training continues from exactly: the loop state, the RNG streams, and the
        length of metrics.jsonl (what was logged after it is cut off on resume)."""
        length = log_length(getattr(self.log, "path", None))
        return {"state": dict(self.state), "rng": rng_state(self.device), "log_bytes": length}

    def checkpoint(self, collective: bool = True) -> None:
        """Save the resumable state (rank 0 writes, the other ranks wait for it).

        While a step or validation runs, that is the point before it (``_point``): the model,
        optimiser and schedule do not change in validation, and within a step a signal is
        held until it ends, so only an error raised inside the objective lands there, before
        the weights move. ``collective=False`` (Ctrl-C under torchrun, when the ranks are no
        longer in step): rank 0 writes what it has without talking to the others.
        """
        point = self._point or self._snapshot()
        extra = self.dist.rng_checkpoint(collective, self.device)
        if task_state := self.task.state_dict():
            extra["task_state"] = task_state
        if self.dist.is_main:
            state = training_state(point["state"], self.model, self.opt, self.sched, point["rng"])
            ck = {**self._expect(), **state, "log_bytes": point["log_bytes"], **extra}
            save_checkpoint(self.run_dir / "checkpoint.pt", ck)
        if collective:
            self.dist.barrier()

    def resume(self, extension: Extension | None = None) -> None:
        """Continue from checkpoint.pt; with ``extension``, a run reopened under new stopping
        rules (trainer/extend.py; refused before anything is written when they stop it)."""
        path, expect = self.run_dir / "checkpoint.pt", self._expect()
        if extension is not None:  # the stopping rules changed the fingerprint
            expect.pop("fingerprint")
        ck = self.dist.on_main(lambda: load_checkpoint(path, expect=expect))
        if extension is not None:
            ck = extension.reopened(ck, self.cfg, self.steps_per_epoch, path)
        restore_training_state(ck, self.state, self.model, self.opt, self.sched)
        self.task.load_state_dict(ck.get("task_state", {}))
        self.dist.restore_rng(ck, self.cfg.train.seed, self.state["global_step"], self.device)
        rewind_log(self.log, ck.get("log_bytes"), self.state["global_step"])
        self._resumed = True

    def _save_weights(self) -> None:
        """The run's weights file: what the test scores and evaluate / recommend / export load."""
        save_weights(
            self.run_dir / "best.safetensors",
            self.model,
            {"model": self.task.tag, "n_items": str(self.store.n_items)},
        )

    # ----------------------------------------------------------------- one step
    def _step(self, rows: np.ndarray) -> tuple[float, int, int, float]:
        """One optimiser step on the global batch ``rows`` (of the task's epoch order).

        Returns (loss of the global batch, its units, the units this process trained,
        seconds this process spent). Under DDP this rank trains its slice of ``rows``: the
        task's losses are means over their units and DDP averages gradients over ranks, so
        rank r scales its mean by n_r * world / n_global, which makes the average of the
        scaled gradients the sum over all units / n_global: the single-process gradient.
        """
        cfg = self.cfg.train
        local = self.dist.shard(rows)
        placeholder = len(local) == 0  # fewer rows than ranks in a (last) batch
        batch = self.task.batch(rows[:1] if placeholder else local, self.state["epoch"])
        t0 = time.perf_counter()
        loss = self.fast.loss(self.task.loss, self.net, batch)
        n_local = 0 if placeholder else self.task.count(batch)
        scale = None
        if self.dist.enabled:  # DDP needs every rank to step, a placeholder with weight 0
            loss_sum, n_all = self.dist.all_sum([float(loss.detach()) * n_local, n_local])
            value, n_global = loss_sum / max(n_all, 1.0), int(n_all)
            scale = n_local * self.dist.world_size / max(n_all, 1.0)
        else:
            value, n_global = loss.item(), n_local
        if not math.isfinite(value):
            raise SeqrecError(
                f"loss became {value} at step {self.state['global_step']}; "
                "lower train.lr or enable train.grad_clip"
            )
        self.opt.zero_grad(set_to_none=True)
        (loss if scale is None else loss * scale).backward()  # DDP: all-reduces gradients
        if cfg.grad_clip:
            clip_grad_norm(self.model.parameters(), cfg.grad_clip)  # sparse grads too
        self.opt.step()
        self.sched.step()
        return value, n_global, n_local, time.perf_counter() - t0

    # ----------------------------------------------------------------- one epoch
    def _train_epoch(self, bar: TrainProgress) -> bool:
        """Run the rest of the current epoch; False when max_steps stopped it early."""
        cfg, st, count = self.cfg.train, self.state, self.task.counting
        order = self.task.epoch_order(st["epoch"])
        steps = max(1, math.ceil(len(order) / cfg.batch_size))
        self.model.train()
        while st["step_in_epoch"] < steps:
            self.signals.check()  # between steps: a held Ctrl-C / SIGTERM stops here
            if cfg.max_steps is not None and st["global_step"] >= cfg.max_steps:
                self._close_epoch_loss()
                return False
            i = st["step_in_epoch"]
            self._point = self._snapshot()
            loss, n, n_local, dt = self._step(order[i * cfg.batch_size : (i + 1) * cfg.batch_size])
            self._point = None
            st["train_seconds"] += dt
            st["step_in_epoch"] += 1
            st["global_step"] += 1
            for acc in (self._since_log, self._session):
                acc[0] += n_local
                acc[1] += dt
            st[count.total] += n
            st["epoch_loss_sum"] += loss * n
            st[count.epoch] += n
            bar.step(loss, n / max(dt, 1e-9))
            if st["global_step"] % cfg.log_every == 0:
                record = {
                    "step": st["global_step"],
                    "epoch": st["epoch"],
                    "loss": loss,
                    "lr": self.sched.get_last_lr()[0],
                    count.rate: n / dt,
                }
                if self.dist.enabled:  # averaged over the steps since the last line
                    record.update(self.dist.throughput(self._since_log))
                    record["processes"] = self.dist.world_size
                self._since_log = [0.0, 0.0]
                self.log.write(self.flop_rate.add(record))
            if st["global_step"] % cfg.checkpoint_every == 0:
                self.checkpoint()
        self._close_epoch_loss()
        return True

    def _close_epoch_loss(self) -> None:
        """Epoch end: the unit-weighted mean loss becomes ``train_loss``; the sums restart."""
        st, key = self.state, self.task.counting.epoch
        if st[key]:
            st["train_loss"] = st["epoch_loss_sum"] / st[key]
        st["epoch_loss_sum"], st[key] = 0.0, 0

    def _validate(self, epoch_seconds: float, bar: TrainProgress) -> bool:
        """Score validation, keep the best weights; True when patience ran out.

        A signal stops it at once (it can take long): the checkpoint then holds the point
        before it, so the resumed run validates again and makes the same decisions (best,
        bad_evals, the weights file, the log lines), as the uninterrupted run did."""
        st, self._point = self.state, self._snapshot()
        with self.signals.taken():
            val = self.task.validate(st)
            improved = bool(val.value > st["best"])
            if improved:
                st.update(best=val.value, best_epoch=st["epoch"], bad_evals=0)
                if self.dist.is_main:
                    self._save_weights()
            else:
                st["bad_evals"] += 1
            self.log.write({"event": "valid", "epoch": st["epoch"], "step": st["global_step"],
                            "epoch_seconds": epoch_seconds, **val.fields})  # fmt: skip
            for event in self.task.after_validation(st):
                self.log.write(event)
            if self.dist.is_main:
                self.task.report(bar, st, val, improved, epoch_seconds)
            # train.select=last runs every epoch: the end tests (and saves) the final weights
            stop = self.cfg.train.select == "best" and st["bad_evals"] >= self.cfg.train.patience
            if stop:
                st["stopped_by"] = "patience"
        self._point = None
        return stop

    # ----------------------------------------------------------------- the run
    def _out_of_time(self, wall_mark: list[float]) -> bool:
        """``train.time_budget_s``: stop like early stopping (test on the best weights) once
        training plus validation wall time, summed over resumed sessions, reaches the budget."""
        st, budget = self.state, self.cfg.train.time_budget_s
        now = time.perf_counter()
        st["wall_seconds"] = st.get("wall_seconds", 0.0) + now - wall_mark[0]
        wall_mark[0] = now
        if budget is None or st["wall_seconds"] < budget:
            return False
        st["stopped_by"] = "time_budget"
        self.log.write({"event": "time_budget", "wall_seconds": st["wall_seconds"]})
        return True

    def _run_epochs(self, bar: TrainProgress) -> None:
        """Train, validate when due (or when stopped inside an epoch), stop on patience / time
        budget / max_steps, checkpoint at each epoch end; then mark the training done (a run
        resumed after that, from an interruption in the final test, trains no more)."""
        cfg, st, wall_mark = self.cfg.train, self.state, [time.perf_counter()]
        with bar:
            while st["epoch"] < cfg.epochs:
                bar.new_epoch(st["epoch"], st["step_in_epoch"])
                t_epoch = time.perf_counter()
                finished = self._train_epoch(bar)
                due = (st["epoch"] + 1) % cfg.eval_every == 0
                if (due or not finished) and (
                    self._validate(time.perf_counter() - t_epoch, bar)
                    or self._out_of_time(wall_mark)
                ):
                    break
                if not finished:
                    st["stopped_by"] = "max_steps"
                    break
                st.update(epoch=st["epoch"] + 1, step_in_epoch=0)
                self.checkpoint()
        st["training_done"] = True

    def fit(self) -> dict:
        """Train to the end, then score the selected weights once: the run's results.

        Ctrl-C (and SIGTERM in a single process) saves a checkpoint, then raises
        `TrainingInterrupted` with the resume command. The signals are held back while a step
        runs and taken between steps, in validation and in the final test (interrupt.py), so
        the checkpoint is always a point the resumed run continues from exactly.
        """
        with self.signals.installed(enabled=not self.dist.enabled):
            try:
                with self.signals.held():
                    return self._fit()
            except KeyboardInterrupt:
                with self.signals.held(deliver=False):  # a second Ctrl-C waits for the save
                    if not self._final_saved:
                        # under torchrun the ranks are no longer in step: rank 0 saves alone
                        self.checkpoint(collective=not self.dist.enabled)
                where = " in the final test" if self._final_saved else ""
                raise TrainingInterrupted(
                    f"interrupted at step {self.state['global_step']}{where}; checkpoint saved "
                    f"in {self.run_dir}, continue with: seqrec train --resume {self.run_dir}"
                ) from None

    def _fit(self) -> dict:
        cfg, st = self.cfg.train, self.state
        acct, extra = self.task.accounting(), {}
        self.flop_rate = FlopRate.for_run(acct, self.cfg.data.cache_dir, self.device, self.dist)
        if cfg.init_from and not self._resumed:  # a resumed run's checkpoint holds them
            extra["init"] = load_initial_weights(
                self.task.init_module(), cfg.init_from, self.cfg.model.name, self.store.item_ids
            )
        if not self._resumed:  # the resumed log keeps the first session's start event
            self.log.write({"event": "start", **self.task.start_fields(acct, extra)})
        bar = TrainProgress(self.steps_per_epoch, enabled=self.progress)
        procs = f", {self.dist.world_size} processes" if self.dist.enabled else ""
        if self.dist.is_main:
            bar.console.print(self.task.start_line(acct, procs), highlight=False)
        if not st.get("training_done"):
            self._run_epochs(bar)
            self.checkpoint()
        self._final_saved = True
        throughput = self.flop_rate.results(self.dist.throughput(self._session))
        if self.dist.enabled and self.dist.is_main:
            rates = ", ".join(f"{r:,.0f}" for r in throughput["interactions_per_s_per_process"])
            bar.console.print(
                f"training throughput {throughput['interactions_per_s']:,.0f} interactions/s "
                f"({rates} per process)",
                highlight=False,
            )
        with self.signals.taken():  # redone in full by a resumed run
            self._load_selected()
            final = self.task.final()
        return {
            "best_epoch": st["best_epoch"],
            "epochs_run": epochs_completed(st, self.steps_per_epoch),
            "steps": st["global_step"],
            "train_seconds": st["train_seconds"],
            "wall_seconds": st.get("wall_seconds"),
            # patience | time_budget | max_steps | epochs: why the loop ended
            "stopped_by": st.get("stopped_by", "epochs"),
            # the results an extension (--resume -o train.time_budget_s=...) replaced
            **({"extended": st["extended"]} if st.get("extended") else {}),
            self.task.counting.total: st[self.task.counting.total],
            "train_loss": st["train_loss"],
            **final,
            **acct,
            **self.fast.fields(),
            **self.task.summary(st, throughput),
        }

    def _load_selected(self) -> None:
        """Put the weights the test scores into the model on every rank: the best validated
        ones, or with ``train.select=last`` the final ones (saved as the run's weights)."""
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
