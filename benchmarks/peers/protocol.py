"""What every peer side of benchmarks/time_to_quality.py shares: the data file it is handed,
seqrec's full-ranking rule, the training clock and the record it writes back.

This file runs under the peer venv's python (numpy + torch; seqrec is not importable there), so
it holds no seqrec import. It only *mirrors* seqrec's rule (src/seqrec/eval/ranking.py:
``evaluate``), and tests/benchmarks/test_time_to_quality.py checks that both give the same ranks.

The data file (``data.npz``, written by time_to_quality.py from ``seqrec.data.prepare``):
item ids are seqrec's, 1..n_items, 0 = PAD; each split is CSR (``<split>_offsets`` into
``<split>_items``): ``train`` the training sequences (one row per user seqrec trains on),
``valid`` / ``test`` each row's history with its held-out ``<split>_targets``.

The clock: ``epoch_seconds`` is the wall time of one training epoch's loop, from the
framework's epoch-start hook to its epoch-end hook (data loading and batch building included;
validation, which runs after the epoch-end hook, excluded); ``train_seconds`` sums them.
seqrec's metrics.jsonl logs the same span as ``epoch_seconds``.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

SPLITS = ("train", "valid", "test")


class Data:
    """The handed-over splits (see the module docstring)."""

    def __init__(self, path: str | Path) -> None:
        z = np.load(path)
        self.n_items = int(z["n_items"])
        self.max_len = int(z["max_len"])
        self.offsets = {s: z[f"{s}_offsets"].astype(np.int64) for s in SPLITS}
        self.items = {s: z[f"{s}_items"].astype(np.int64) for s in SPLITS}
        self.targets = {s: z[f"{s}_targets"].astype(np.int64) for s in ("valid", "test")}

    def rows(self, split: str) -> int:
        return len(self.offsets[split]) - 1

    def history(self, split: str, row: int) -> np.ndarray:
        o = self.offsets[split]
        return self.items[split][o[row] : o[row + 1]]


def seqrec_rule_ranks(scores: torch.Tensor, histories: list[np.ndarray], targets: np.ndarray):
    """1-based rank of each row's target under seqrec's full-ranking rule.

    ``scores`` is [b, n_items + 1] in seqrec's ids (column 0 = PAD, never a candidate). Every
    item of the row's whole history leaves the candidates, except the target itself, which is
    ranked by its own score; rank = 1 + the number of candidates scored strictly higher.
    """
    b = scores.shape[0]
    allowed = torch.ones_like(scores, dtype=torch.bool)
    allowed[:, 0] = False
    rows = np.repeat(np.arange(b), [len(h) for h in histories])
    flat = np.concatenate(histories) if histories else np.zeros(0, dtype=np.int64)
    allowed[torch.from_numpy(rows), torch.from_numpy(flat.astype(np.int64))] = False
    tgt = torch.as_tensor(np.asarray(targets), dtype=torch.int64)
    ar = torch.arange(b)
    target_score = scores[ar, tgt]
    allowed[ar, tgt] = False
    higher = (scores > target_score[:, None]) & allowed
    return (1 + higher.sum(1)).numpy()


def ndcg_at(ranks: np.ndarray, k: int = 10) -> float:
    r = np.asarray(ranks, dtype=np.float64)
    return float(np.where(r <= k, 1.0 / np.log2(r + 1.0), 0.0).mean()) if r.size else float("nan")


def add_common_args(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--data", required=True, help="data.npz written by time_to_quality.py")
    ap.add_argument("--out", required=True, help="folder for result.json and ranks.npz")
    ap.add_argument("--hidden", type=int, required=True)
    ap.add_argument("--blocks", type=int, required=True)
    ap.add_argument("--heads", type=int, required=True)
    ap.add_argument("--dropout", type=float, required=True)
    ap.add_argument("--batch-size", type=int, required=True)
    ap.add_argument("--lr", type=float, required=True)
    ap.add_argument("--epochs", type=int, required=True, help="cap on training epochs")
    ap.add_argument("--patience", type=int, required=True, help="validations without a gain")
    ap.add_argument("--time-budget", type=float, default=None,
                    help="stop after the first validation past this many seconds of training "
                         "plus validation wall time (seqrec's train.time_budget_s)")  # fmt: skip
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--eval-batch", type=int, default=256, help="users per scoring chunk")


class PeerRun:
    """The epoch bookkeeping of one peer run: the clock, validation after every epoch, the best
    weights, patience and the time budget, the progress lines, the record.

    A side calls ``epoch_start()`` / ``epoch_end(trainer_should_stop)`` from its framework's
    hooks and ``finish()`` at the end. ``score(histories) -> [b, n_items + 1]`` scores the last
    position of each history (seqrec ids) with the model in eval mode.
    """

    def __init__(
        self,
        side: str,
        args: argparse.Namespace,
        data: Data,
        model: torch.nn.Module,
        score: Callable[[list[np.ndarray]], torch.Tensor],
        versions: dict,
    ) -> None:
        self.side, self.args, self.data, self.model, self.score = side, args, data, model, score
        self.versions = versions
        self.epochs: list[dict] = []
        self.valid_ranks: list[np.ndarray] = []
        self.best, self.best_epoch, self.bad = -1.0, -1, 0
        self.best_state: dict | None = None
        self.stopped_by = "epochs"
        self.train_seconds = 0.0
        self.valid_seconds = 0.0
        self._t_epoch = 0.0
        self._t_first: float | None = None
        self._loss_sum, self._loss_n = 0.0, 0

    # ------------------------------------------------------------------ hooks
    def epoch_start(self) -> None:
        self._t_epoch = time.perf_counter()
        if self._t_first is None:
            self._t_first = self._t_epoch

    def add_loss(self, value: float) -> None:
        self._loss_sum += value
        self._loss_n += 1

    def epoch_end(self) -> bool:
        """Close the epoch's clock, validate, keep the best weights; True = stop training."""
        dt = time.perf_counter() - self._t_epoch
        self.train_seconds += dt
        epoch = len(self.epochs)
        t0 = time.perf_counter()
        ranks = self.rank_split("valid")
        ndcg = ndcg_at(ranks)
        improved = ndcg > self.best
        if improved:
            self.best, self.best_epoch, self.bad = ndcg, epoch, 0
            self.best_state = copy.deepcopy(
                {k: v.detach().cpu() for k, v in self.model.state_dict().items()}
            )
        else:
            self.bad += 1
        vsec = time.perf_counter() - t0
        self.valid_seconds += vsec
        self.valid_ranks.append(ranks.astype(np.int32))
        loss = self._loss_sum / max(self._loss_n, 1)
        self._loss_sum, self._loss_n = 0.0, 0
        wall = time.perf_counter() - (self._t_first or t0)
        self.epochs.append({
            "epoch": epoch, "epoch_seconds": dt, "train_seconds": self.train_seconds,
            "valid_seconds": vsec, "wall_seconds": wall, "train_loss": loss,
            "valid_ndcg10": ndcg,
        })  # fmt: skip
        a = self.args
        print(
            f"[{self.side} seed {a.seed}] epoch {epoch:3d}  {dt:7.1f} s train "
            f"(total {self.train_seconds:8.1f} s)  loss {loss:.4f}  valid NDCG@10 {ndcg:.4f}"
            f"{'  *' if improved else ''}  ({vsec:.1f} s)",
            file=sys.stderr,
            flush=True,
        )
        if self.bad >= a.patience:
            self.stopped_by = "patience"
            return True
        if a.time_budget is not None and wall >= a.time_budget:
            self.stopped_by = "time_budget"
            return True
        return False

    # ------------------------------------------------------------------ scoring
    @torch.inference_mode()
    def rank_split(self, split: str) -> np.ndarray:
        was_training = self.model.training
        self.model.eval()
        n = self.data.rows(split)
        order = np.argsort(np.diff(self.data.offsets[split]), kind="stable")
        ranks = np.empty(n, dtype=np.int64)
        for s in range(0, n, self.args.eval_batch):
            pos = order[s : s + self.args.eval_batch]
            hists = [self.data.history(split, int(i)) for i in pos]
            scores = self.score(hists).float()
            ranks[pos] = seqrec_rule_ranks(scores, hists, self.data.targets[split][pos])
        self.model.train(was_training)
        return ranks

    # ------------------------------------------------------------------ the end
    def finish(self, extra: dict | None = None) -> None:
        """Test the best validated weights once; write result.json and ranks.npz."""
        if self.best_state is not None:
            self.model.load_state_dict(self.best_state)
        t0 = time.perf_counter()
        test = self.rank_split("test")
        test_seconds = time.perf_counter() - t0
        out = Path(self.args.out)
        out.mkdir(parents=True, exist_ok=True)
        e = len(self.epochs)
        valid = np.stack(self.valid_ranks) if self.valid_ranks else np.zeros((0, 0), np.int32)
        np.savez_compressed(out / "ranks.npz", valid=valid, test=test.astype(np.int32))
        record = {
            "side": self.side,
            "seed": self.args.seed,
            "versions": self.versions,
            "threads": torch.get_num_threads(),
            "epochs": self.epochs,
            "epochs_run": e,
            "best_epoch": self.best_epoch,
            "best_valid_ndcg10": self.best,
            "stopped_by": self.stopped_by,
            "train_seconds": self.train_seconds,
            "valid_seconds": self.valid_seconds,
            "test_seconds": test_seconds,
            "test_ndcg10": ndcg_at(test),
            "params": sum(p.numel() for p in self.model.parameters()),
            "hyper": {k: v for k, v in vars(self.args).items() if k not in ("data", "out")},
            **(extra or {}),
        }
        (out / "result.json").write_text(json.dumps(record, indent=2, default=_jsonable) + "\n")
        print(
            f"[{self.side} seed {self.args.seed}] done: {e} epochs ({self.stopped_by}), best "
            f"epoch {self.best_epoch}, valid NDCG@10 {self.best:.4f}, test NDCG@10 "
            f"{record['test_ndcg10']:.4f}",
            file=sys.stderr,
            flush=True,
        )


def fit_with_clock(lightning, run: PeerRun, epochs: int, module, **fit_kwargs) -> None:
    """``lightning.Trainer.fit`` on the CPU with ``run``'s clock at the epoch hooks: both
    peers train through Lightning (``lightning`` is the package, ``lightning`` or
    ``pytorch_lightning``, whichever the peer's code uses)."""

    class Clock(lightning.Callback):
        def on_train_epoch_start(self, trainer, pl_module) -> None:
            run.epoch_start()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            loss = outputs["loss"] if isinstance(outputs, dict) else outputs
            run.add_loss(float(loss))

        def on_train_epoch_end(self, trainer, pl_module) -> None:
            if run.epoch_end():
                trainer.should_stop = True

    trainer = lightning.Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=epochs,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        callbacks=[Clock()],
    )
    trainer.fit(module, **fit_kwargs)


def _jsonable(v):
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating,)):
        return None if math.isnan(float(v)) else float(v)
    return str(v)


def left_padded(hists: list[np.ndarray], width: int, pad: int, shift: int = 0):
    """[b, width] ids (the last ``width`` items of each history + ``shift``, left-padded with
    ``pad``) and the [b, width] mask of real positions."""
    b = len(hists)
    ids = np.full((b, width), pad, dtype=np.int64)
    mask = np.zeros((b, width), dtype=bool)
    for i, h in enumerate(hists):
        h = h[-width:]
        if len(h):
            ids[i, width - len(h) :] = h + shift
            mask[i, width - len(h) :] = True
    return torch.from_numpy(ids), torch.from_numpy(mask)


def right_padded(hists: list[np.ndarray], width: int, pad: int = 0):
    """[b, w] ids, the last ``width`` items of each history right-padded with ``pad`` (w = the
    longest kept history), and each row's last real position."""
    kept = [h[-width:] for h in hists]
    w = max(1, max(len(h) for h in kept))
    ids = np.full((len(kept), w), pad, dtype=np.int64)
    for i, h in enumerate(kept):
        ids[i, : len(h)] = h
    last = np.array([max(len(h) - 1, 0) for h in kept], dtype=np.int64)
    return torch.from_numpy(ids), torch.from_numpy(last)
