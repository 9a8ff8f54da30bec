"""The ranking (CTR) task end to end: examples -> batches -> training -> AUC / GAUC / log loss.

``train_ranking_run`` is what ``seqrec train --task ranking`` calls. It reuses the retrieval
run's pieces (run folder rules, AdamW + schedule, atomic checkpoints, safetensors weights, the
JSONL log) and keeps the same loop shape: one epoch = this epoch's examples (real training
events + negatives sampled from (seed, epoch)) in a (seed, epoch) permutation, so a resumed run
replays the same batches; validation AUC drives early stopping; the test split is scored once,
on the best weights. The popularity and item-kNN baselines train no weights and are scored
directly.

Run folder: config.yaml, metrics.jsonl, checkpoint.pt, best.safetensors, item_ids.npy,
results.json (valid/test metrics + protocol) and test_predictions.npz (user, item, label,
probability per test example, for paired comparisons).
"""

from __future__ import annotations

import io
import math
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
import yaml
from torch import nn

from seqrec.data.batches import SeqBatch, history_batch
from seqrec.data.catalog import with_catalog_defaults
from seqrec.data.features import Features, load_item_features, load_user_features
from seqrec.data.store import SequenceStore, build_store
from seqrec.errors import SeqrecError
from seqrec.eval.ctr import ctr_metrics
from seqrec.models import build_model
from seqrec.models.common import count_parameters
from seqrec.models.ranker import LogisticRanker, Ranker
from seqrec.recipe import RunConfig
from seqrec.task.examples import (
    Examples,
    RankingData,
    epoch_examples,
    group_by_user,
    ranking_split,
    returning_events,
)
from seqrec.task.itemknn import ItemKNN, itemknn_probs
from seqrec.task.popularity import popularity_logit, popularity_scores
from seqrec.train.checkpoint import (
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    load_checkpoint,
    load_weights,
    restore_training_state,
    save_checkpoint,
    save_weights,
    training_state,
)
from seqrec.train.init_from import load_initial_weights
from seqrec.train.log import RunLog, TrainProgress
from seqrec.train.loop import close_epoch_loss, epochs_completed, pick_device, run_epochs
from seqrec.train.optim import build_optimizer, build_scheduler
from seqrec.train.run import load_run_config, machine_info, prepare_run_dir

# --------------------------------------------------------------------------- data


def feature_table(feats: Features | None) -> tuple[np.ndarray | None, np.ndarray | None, int]:
    """Features -> (categorical ids [R, K] in one id space, 0 = none; dense [R, Dd]; id count).

    Each categorical / multi-valued field's ids are shifted past the previous fields', so one
    embedding table (or one weight vector) holds every field's values."""
    if feats is None:
        return None, None, 0
    cols, dense, offset = [], [], 0
    for f in feats.fields.values():
        if f.kind in ("categorical", "multi"):
            ids = f.values.reshape(len(f.values), -1).astype(np.int64)
            cols.append(np.where(ids > 0, ids + offset, 0))
            offset += f.vocab - 1
        else:
            dense.append(f.values.reshape(len(f.values), -1).astype(np.float32))
    ids = np.concatenate(cols, 1) if cols else None
    return ids, (np.concatenate(dense, 1) if dense else None), offset + 1


class RankingInputs:
    """Everything a batch is gathered from: the store, its behaviours, feature tables."""

    def __init__(self, cfg: RunConfig, store: SequenceStore) -> None:
        self.store = store
        self.max_len = cfg.data.max_len
        use_feats = cfg.task.features
        self.item_ids, self.item_dense, self.n_item_ids = feature_table(
            load_item_features(cfg.data, store) if use_feats else None
        )
        self.user_ids, self.user_dense, self.n_user_ids = feature_table(
            load_user_features(cfg.data, store) if use_feats else None
        )
        if use_feats and self.shapes() == (None, None):
            raise SeqrecError(
                "task.features=true but no features are configured; set "
                "data.item_features / data.user_features (e.g. auto)"
            )
        self.behaviors = store.behaviors if cfg.task.history_behaviors else None
        self.timestamps = None
        self.knn: ItemKNN | None = None  # task.knn_feature, set by the trainer
        self.knn_history = cfg.task.knn_history

    def shapes(self) -> tuple[tuple[int, int] | None, tuple[int, int] | None]:
        def one(ids, dense, n):
            if ids is None and dense is None:
                return None
            return (n, 0 if dense is None else dense.shape[1])

        return (
            one(self.item_ids, self.item_dense, self.n_item_ids),
            one(self.user_ids, self.user_dense, self.n_user_ids),
        )

    def batch(
        self, ex: Examples, device: torch.device
    ) -> tuple[SeqBatch, torch.Tensor, dict, torch.Tensor]:
        """(histories as a SeqBatch with behaviours, candidates, features, labels) on device."""
        seq = history_batch(
            self.store.items, self.timestamps, ex.users, ex.starts, ex.ends, ex.items,
            self.max_len, behaviors=self.behaviors, request_times=ex.times,
        )  # fmt: skip
        feats = {}
        for name, table, rows in (
            ("item_ids", self.item_ids, ex.items),
            ("item_dense", self.item_dense, ex.items),
            ("user_ids", self.user_ids, ex.users),
            ("user_dense", self.user_dense, ex.users),
        ):
            if table is not None:
                feats[name] = torch.from_numpy(np.ascontiguousarray(table[rows])).to(device)
        if self.knn is not None:
            knn = self.knn.scores(ex, self.knn_history).astype(np.float32)
            feats["knn"] = torch.from_numpy(knn).to(device)
        labels = torch.from_numpy(ex.labels).to(device)
        seq = seq.to(device)
        return seq, seq.targets, feats, labels


def load_ranking_data(cfg: RunConfig) -> tuple[SequenceStore, RankingData]:
    store = build_store(with_catalog_defaults(cfg.data))
    if store.behaviors is None:
        raise SeqrecError(
            "task.name=ranking labels events by their behaviour value, but the data has none; "
            "set data.behavior_col (e.g. rating) to the column holding it"
        )
    data = ranking_split(
        store,
        np.asarray(store.behaviors),
        cfg.task.positive_threshold,
        cfg.data.temporal_valid_frac,
        cfg.data.temporal_test_frac,
    )
    if not data.train.labels.any() or data.train.labels.all():
        raise SeqrecError(
            f"every training label is {int(data.train.labels[0])} at task.positive_threshold="
            f"{cfg.task.positive_threshold:g}; pick a threshold inside the behaviour values"
        )
    return store, data


def build_ranker(cfg: RunConfig, store: SequenceStore, inputs: RankingInputs) -> nn.Module:
    item_shape, user_shape = inputs.shapes()
    if cfg.task.baseline == "logistic":
        return LogisticRanker(store.n_users, store.n_items, item_shape, user_shape)
    encoder = build_model(cfg.model, store.n_items, cfg.data.max_len)
    n_beh = store.n_behaviors if cfg.task.history_behaviors else 0
    return Ranker(encoder, cfg.model, cfg.task, store.n_items, n_beh, item_shape, user_shape)


# --------------------------------------------------------------------------- baselines

UNTRAINED = ("popularity", "itemknn")  # scored directly, no RankingTrainer


def pairwise_loss(logits: torch.Tensor, labels: torch.Tensor, users: torch.Tensor) -> torch.Tensor:
    """Mean of softplus(s_neg − s_pos) over every (positive, negative) pair of the same user in
    the batch (BPR on the within-user order, the order GAUC scores); 0 without such a pair."""
    pos, neg = labels > 0.5, labels <= 0.5
    pairs = (users[:, None] == users[None, :]) & pos[:, None] & neg[None, :]
    if not bool(pairs.any()):
        return logits.sum() * 0.0
    margin = logits[None, :] - logits[:, None]  # [i, j] = s_j - s_i, i positive, j negative
    return torch.nn.functional.softplus(margin[pairs]).mean()


# --------------------------------------------------------------------------- trainer


class RankingTrainer:
    """Plain step loop for BCE-with-logits on ranking examples (see the module docstring)."""

    def __init__(
        self,
        cfg: RunConfig,
        store: SequenceStore,
        data: RankingData,
        run_dir: Path,
        progress: bool = True,
    ) -> None:
        self.cfg, self.store, self.data, self.run_dir = cfg, store, data, Path(run_dir)
        # what the weights are fitted on (task.train_min_age_s); statistics use all of data
        self.fit_data = returning_events(data, store, cfg.task.train_min_age_s)
        if cfg.train.threads:
            torch.set_num_threads(cfg.train.threads)
        torch.manual_seed(cfg.train.seed)
        self.device = pick_device(cfg.train.device)
        self.inputs = RankingInputs(cfg, store)
        self.model = build_ranker(cfg, store, self.inputs).to(self.device)
        if getattr(self.model, "prior_logit", None) is not None:
            logit = popularity_logit(popularity_scores(data, cfg.task.popularity_prior))
            self.model.prior_logit.copy_(torch.from_numpy(logit).float())
        if cfg.task.knn_feature:
            if store.behaviors is None:
                raise SeqrecError("task.knn_feature reads behaviour values; set data.behavior_col")
            values = np.asarray(store.behaviors)
            self.inputs.knn = ItemKNN(store, values, data.protocol["t_valid"])
        if getattr(self.model, "needs_timestamps", False):
            if store.timestamps is None:
                raise SeqrecError("model.time_bias=true needs timestamps; the data has none")
            self.inputs.timestamps = store.timestamps
        self.opt = build_optimizer(self.model, cfg.train)
        k = cfg.task.sampled_negatives
        fit = self.fit_data.train
        per_epoch = len(fit) + k * int(fit.labels.sum())
        self.steps_per_epoch = max(1, math.ceil(per_epoch / cfg.train.batch_size))
        total = cfg.train.max_steps or self.steps_per_epoch * cfg.train.epochs
        self.sched = build_scheduler(self.opt, cfg.train, total)
        self.loss_fn = nn.BCEWithLogitsLoss()
        self.log = RunLog(self.run_dir / "metrics.jsonl")
        self.progress = progress
        self._epoch_cache: tuple[int, Examples] | None = None
        self.state = {
            "epoch": 0,
            "step_in_epoch": 0,
            "global_step": 0,
            "best": -1.0,
            "best_epoch": -1,
            "bad_evals": 0,
            "train_seconds": 0.0,
            "train_examples": 0,
            "epoch_loss_sum": 0.0,
            "epoch_examples": 0,
            "train_loss": None,
        }

    # ------------------------------------------------------------ checkpoints
    def _expect(self) -> dict:
        name = self.cfg.task.baseline or self.cfg.model.name
        return {"model": f"ranking-{name}", "n_items": self.store.n_items,
                "fingerprint": self.cfg.fingerprint()}  # fmt: skip

    def checkpoint(self) -> None:
        save_checkpoint(
            self.run_dir / "checkpoint.pt",
            {**self._expect(), **training_state(self.state, self.model, self.opt, self.sched)},
        )

    def resume(self) -> None:
        ck = load_checkpoint(self.run_dir / "checkpoint.pt", expect=self._expect())
        restore_training_state(ck, self.state, self.model, self.opt, self.sched)
        torch.set_rng_state(ck["torch_rng"])
        self.log.truncate_after(self.state["global_step"])

    # ------------------------------------------------------------ prediction
    @torch.inference_mode()
    def predict(self, ex: Examples, batch_size: int | None = None) -> np.ndarray:
        """Probabilities for ``ex`` (eval mode), in the examples' order."""
        was = self.model.training
        self.model.eval()
        bs = batch_size or max(self.cfg.train.batch_size, 1024)
        out = np.empty(len(ex), dtype=np.float64)
        for s in range(0, len(ex), bs):
            part = ex.take(np.arange(s, min(s + bs, len(ex))))
            seq, cand, feats, _ = self.inputs.batch(part, self.device)
            out[s : s + len(part)] = torch.sigmoid(self.model(seq, cand, feats)).double().cpu()
        self.model.train(was)
        return out

    def evaluate(self, ex: Examples) -> dict:
        t0 = time.perf_counter()
        probs = self.predict(ex)
        return {**ctr_metrics(probs, ex.labels, ex.users), "seconds": time.perf_counter() - t0}

    # ------------------------------------------------------------ training
    def _examples(self, epoch: int) -> Examples:
        if self._epoch_cache is None or self._epoch_cache[0] != epoch:
            k, seed = self.cfg.task.sampled_negatives, self.cfg.train.seed
            ex = epoch_examples(self.fit_data, k, seed, epoch)
            if self.cfg.task.pairwise_weight > 0:
                ex = group_by_user(ex, seed, epoch)
            self._epoch_cache = (epoch, ex)
        return self._epoch_cache[1]

    def _step(self, ex: Examples) -> tuple[float, float]:
        seq, cand, feats, labels = self.inputs.batch(ex, self.device)
        t0 = time.perf_counter()
        logits = self.model(seq, cand, feats)
        loss = self.loss_fn(logits, labels)
        if self.cfg.task.pairwise_weight > 0:
            users = torch.from_numpy(ex.users).to(self.device)
            loss = loss + self.cfg.task.pairwise_weight * pairwise_loss(logits, labels, users)
        if not torch.isfinite(loss):
            raise SeqrecError(
                f"loss became {loss.item()} at step {self.state['global_step']}; lower train.lr"
            )
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.cfg.train.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.train.grad_clip)
        self.opt.step()
        self.sched.step()
        return loss.item(), time.perf_counter() - t0

    def _train_epoch(self, bar: TrainProgress) -> bool:
        cfg, st = self.cfg.train, self.state
        ex = self._examples(st["epoch"])
        steps = max(1, math.ceil(len(ex) / cfg.batch_size))
        self.model.train()
        while st["step_in_epoch"] < steps:
            if cfg.max_steps is not None and st["global_step"] >= cfg.max_steps:
                self._close_epoch()
                return False
            i = st["step_in_epoch"]
            part = ex.take(np.arange(i * cfg.batch_size, min((i + 1) * cfg.batch_size, len(ex))))
            loss, dt = self._step(part)
            n = len(part)
            st["train_seconds"] += dt
            st["step_in_epoch"] += 1
            st["global_step"] += 1
            st["train_examples"] += n
            st["epoch_loss_sum"] += loss * n
            st["epoch_examples"] += n
            bar.step(loss, n / max(dt, 1e-9))
            if st["global_step"] % cfg.log_every == 0:
                self.log.write({"step": st["global_step"], "epoch": st["epoch"], "loss": loss,
                                "lr": self.sched.get_last_lr()[0], "examples_per_s": n / dt})  # fmt: skip
            if st["global_step"] % cfg.checkpoint_every == 0:
                self.checkpoint()
        self._close_epoch()
        return True

    def _close_epoch(self) -> None:
        close_epoch_loss(self.state, "epoch_examples")

    def _validate(self, epoch_seconds: float, bar: TrainProgress) -> bool:
        """Valid AUC (or GAUC, ``task.monitor``); keep the best weights; True when patience
        ran out."""
        st = self.state
        res = self.evaluate(self.data.valid)
        value = res[self.cfg.task.monitor]
        improved = bool(value > st["best"])
        if improved:
            st.update(best=value, best_epoch=st["epoch"], bad_evals=0)
            save_weights(self.run_dir / "best.safetensors", self.model, self._meta())
        else:
            st["bad_evals"] += 1
        self.log.write({"event": "valid", "epoch": st["epoch"], "step": st["global_step"],
                        "epoch_seconds": epoch_seconds, "train_loss": st["train_loss"],
                        **{f"valid/{k}": v for k, v in res.items()}})  # fmt: skip
        bar.console.print(
            f"epoch {st['epoch']:3d}  loss {st['train_loss'] or float('nan'):.4f}  valid AUC "
            f"{res['AUC']:.4f}  GAUC {res['GAUC']:.4f}  logloss {res['LogLoss']:.4f}  best "
            f"{st['best']:.4f}{' *' if improved else ''}  ({epoch_seconds:.0f}s train)",
            highlight=False,
        )
        return st["bad_evals"] >= self.cfg.train.patience

    def _meta(self) -> dict[str, str]:
        return {"model": self._expect()["model"], "n_items": str(self.store.n_items)}

    def fit(self) -> dict:
        st = self.state
        params = count_parameters(self.model)
        extra = {}
        init = self.cfg.train.init_from
        if init and st["global_step"] == 0:  # a fresh run, not a resumed one
            if not isinstance(self.model, Ranker):
                raise SeqrecError("train.init_from loads an encoder; the baselines have none")
            # a retrieval run of the same encoder over the same data: its item table and
            # blocks start the ranker (retrieval and ranking share item vectors)
            extra["init"] = load_initial_weights(
                self.model.encoder, init, self.cfg.model.name, self.store.item_ids
            )
        self.log.write({"event": "start", "params": params, "steps_per_epoch": self.steps_per_epoch,
                        "protocol": self.fit_data.protocol, **extra})  # fmt: skip
        bar = TrainProgress(self.steps_per_epoch, enabled=self.progress)
        bar.console.print(
            f"ranking {self._expect()['model']}: {params['total']:,} parameters, "
            f"{len(self.fit_data.train):,} training events (+{self.cfg.task.sampled_negatives} sampled negatives "
            f"per positive), {self.steps_per_epoch} steps/epoch",
            highlight=False,
        )
        run_epochs(self, bar, handle_sigterm=True, on_interrupt=self.checkpoint)
        self.checkpoint()
        best = self.run_dir / "best.safetensors"
        if not best.is_file():  # no validation happened (max_steps before the first)
            save_weights(best, self.model, self._meta())
        load_weights(best, self.model)
        test_probs = self.predict(self.data.test)
        return {
            "best_epoch": st["best_epoch"],
            "epochs_run": epochs_completed(st, self.steps_per_epoch),
            "steps": st["global_step"],
            "train_seconds": st["train_seconds"],
            "wall_seconds": st.get("wall_seconds"),
            "stopped_by": st.get("stopped_by", "patience or epochs"),
            "train_examples": st["train_examples"],
            "train_loss": st["train_loss"],
            "valid": {"metrics": self.evaluate(self.data.valid)},
            "test": {"metrics": ctr_metrics(test_probs, self.data.test.labels,
                                            self.data.test.users)},
            "params": params,
            "_test_probs": test_probs,
        }  # fmt: skip


def baseline_probs(cfg: RunConfig, store: SequenceStore, data: RankingData) -> dict:
    """Validation and test probabilities of the baselines that train no weights."""
    table = popularity_scores(data, cfg.task.popularity_prior)
    if cfg.task.baseline == "itemknn":
        return itemknn_probs(store, data, popularity_logit(table), cfg.task.knn_history)
    return {k: table[getattr(data, k).items] for k in ("valid", "test")}


def untrained_results(cfg: RunConfig, store: SequenceStore, data: RankingData) -> dict:
    probs = baseline_probs(cfg, store, data)
    return {
        "best_epoch": None,
        "steps": 0,
        "valid": {"metrics": ctr_metrics(probs["valid"], data.valid.labels, data.valid.users)},
        "test": {"metrics": ctr_metrics(probs["test"], data.test.labels, data.test.users)},
        "params": {"total": 0, "embedding": 0, "non_embedding": 0},
        "_test_probs": probs["test"],
    }


# --------------------------------------------------------------------------- run folder


def _npz_bytes(**arrays: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def train_ranking_run(
    cfg: RunConfig | None,
    run_dir: Path,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
) -> dict:
    """Train (or resume) a ranking run in ``run_dir``; single process."""
    run_dir = Path(run_dir)
    if resume:
        prepare_run_dir(run_dir, True, False)
        cfg = load_run_config(run_dir)
    else:
        prepare_run_dir(run_dir, False, overwrite, create=False)
    assert cfg is not None
    store, data = load_ranking_data(cfg)
    if not resume:
        prepare_run_dir(run_dir, False, overwrite)
        atomic_write_text(
            run_dir / "config.yaml", yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
        )
    buf = io.BytesIO()
    np.save(buf, np.asarray(store.item_ids).astype(str), allow_pickle=False)
    atomic_write_bytes(run_dir / "item_ids.npy", buf.getvalue())
    protocol = data.protocol
    if cfg.task.baseline in UNTRAINED:
        results = untrained_results(cfg, store, data)
    else:
        trainer = RankingTrainer(cfg, store, data, run_dir, progress=progress)
        if resume:
            trainer.resume()
        results = trainer.fit()
        protocol = trainer.fit_data.protocol
    probs = results.pop("_test_probs")
    name = cfg.task.baseline or cfg.model.name
    for part in ("valid", "test"):
        results[part]["protocol"] = {**protocol, "evaluated": part}
    results.update(
        {
            "task": "ranking",
            "ranker": name,
            "dataset": {"name": cfg.data.dataset, **store.stats()},
            "config": cfg.model_dump(mode="json"),
            "machine": machine_info(),
            "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
    )
    test = data.test
    atomic_write_bytes(
        run_dir / "test_predictions.npz",
        _npz_bytes(users=test.users, items=test.items, labels=test.labels, probs=probs),
    )
    atomic_write_json(run_dir / "results.json", results)
    return results


def evaluate_ranking_run(
    run_dir: Path, split: str = "test", json_out: Path | None = None, overwrite: bool = False
) -> dict:
    """Score a finished (or interrupted) ranking run's best weights on ``split`` again."""
    run_dir = Path(run_dir)
    if split not in ("valid", "test"):
        raise SeqrecError(f"--split must be valid or test, got {split!r}")
    if json_out is not None and json_out.exists() and not overwrite:
        raise SeqrecError(f"{json_out} exists; pass --overwrite to replace it")
    cfg = load_run_config(run_dir)
    store, data = load_ranking_data(cfg)
    ex = getattr(data, split)
    if cfg.task.baseline in UNTRAINED:
        probs = baseline_probs(cfg, store, data)[split]
        metrics = ctr_metrics(probs, ex.labels, ex.users)
    else:
        trainer = RankingTrainer(cfg, store, data, run_dir, progress=False)
        load_weights(run_dir / "best.safetensors", trainer.model)
        metrics = trainer.evaluate(ex)
    if json_out is not None:
        atomic_write_json(json_out, {"metrics": metrics, "protocol": {**data.protocol,
                                                                     "evaluated": split}})  # fmt: skip
    return metrics
