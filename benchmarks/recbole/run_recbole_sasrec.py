"""Speed benchmark of RecBole 1.2.1's SASRec (CE over all items) on MovieLens-1M, CPU.

Run inside the venv made by ``setup_venv.sh`` on the atomic file made by ``make_atomic.py``:

    /tmp/recbole-venv/bin/python benchmarks/recbole/run_recbole_sasrec.py \
        --data /tmp/recbole-data --train-batches 30 --out /tmp/recbole-sasrec.json

Measures
  (a) data preparation: ``create_dataset`` (load .inter, remap ids) and ``data_preparation``
      (``build()``: prefix augmentation into (n, MAX_ITEM_LIST_LENGTH) tensors, leave-one-out
      split, dataloaders), wall seconds;
  (b) training throughput: ``--train-batches`` batches after ``--warmup-batches`` warm-up batches,
      each run through RecBole's own ``Trainer._train_epoch`` (dataloader collation + forward +
      CE loss + backward + Adam step), so the per-batch cost is exactly RecBole's; the
      collation-only cost per batch is measured separately (``loader_only_sec_per_batch``);
  (c) one full-ranking ``Trainer.evaluate`` of the test split (all users, all items) with the
      current (untrained unless --epochs > 0) weights;
  (d) optionally ``--epochs K`` real epochs (``Trainer.fit`` with validation every epoch, best
      checkpoint reloaded) and the test NDCG@10 / HR@10.

The JSON result goes to stdout (only the JSON; RecBole's logs go to stderr) and to ``--out``.
RecBole writes ``log/``, ``log_tensorboard/`` and checkpoints relative to the working directory,
so the script chdirs into ``--workdir`` (a temp dir by default) and never writes into the repo.

Runtime compatibility patches (nothing in site-packages is edited):
  * ``torch.load`` defaults to ``weights_only=True`` since torch 2.6; RecBole's checkpoints hold a
    pickled ``Config`` object, so ``torch.load`` is wrapped to default to ``weights_only=False``
    (only used by --epochs > 0, when the best checkpoint is reloaded).
  * RecBole's ``Config`` parses ``sys.argv`` for ``--key=value`` overrides; this script's own
    ``--out=...`` style flags would leak into it, so ``sys.argv`` is hidden while it is built.
  * FutureWarnings from ``torch.cuda.amp.GradScaler`` (used by RecBole even on CPU) are silenced.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
import warnings
from itertools import islice
from pathlib import Path

DATASET = "ml-1m-seq"

warnings.filterwarnings("ignore", category=FutureWarning)
warnings.filterwarnings("ignore", category=DeprecationWarning)
warnings.filterwarnings("ignore", category=UserWarning, module="torch")


def patch_torch_load() -> None:
    import torch

    if getattr(torch.load, "_recbole_bench_patched", False):
        return
    orig = torch.load

    @functools.wraps(orig)
    def load(*args, **kwargs):
        kwargs.setdefault("weights_only", False)
        return orig(*args, **kwargs)

    load._recbole_bench_patched = True  # type: ignore[attr-defined]
    torch.load = load


def recbole_default_inner_size() -> int | None:
    """SASRec's default inner_size, read from RecBole's own SASRec.yaml."""
    import yaml

    import recbole

    path = Path(recbole.__file__).parent / "properties" / "model" / "SASRec.yaml"
    try:
        with open(path) as fh:
            return int(yaml.safe_load(fh)["inner_size"])
    except Exception:
        return None


def build_config_dict(args: argparse.Namespace, checkpoint_dir: str) -> dict:
    return {
        # data
        "data_path": str(Path(args.data).resolve()),
        "dataset": DATASET,
        "USER_ID_FIELD": "user_id",
        "ITEM_ID_FIELD": "item_id",
        "TIME_FIELD": "timestamp",
        "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
        # already filtered by make_atomic.py (items >= 5): no k-core / filtering in RecBole
        "user_inter_num_interval": "[0,inf)",
        "item_inter_num_interval": "[0,inf)",
        "filter_inter_by_user_or_item": False,
        "rm_dup_inter": None,
        "val_interval": None,
        "MAX_ITEM_LIST_LENGTH": args.max_len,
        # model
        "hidden_size": 64,
        "n_layers": 2,
        "n_heads": 1,
        "inner_size": 64,
        "hidden_dropout_prob": 0.1,
        "attn_dropout_prob": 0.1,
        "hidden_act": "gelu",
        "layer_norm_eps": 1e-12,
        "initializer_range": 0.02,
        "loss_type": "CE",
        "train_neg_sample_args": None,
        # training
        "train_batch_size": args.train_batch_size,
        "learner": "adam",
        "learning_rate": args.lr,
        "weight_decay": 0.0,
        "epochs": max(args.epochs, 1),
        "stopping_step": 10,
        "clip_grad_norm": None,
        "enable_amp": False,
        "shuffle": True,
        # evaluation: leave-one-out, time order, full ranking over all items
        "eval_args": {
            "split": {"LS": "valid_and_test"},
            "order": "TO",
            "group_by": "user",
            "mode": "full",
        },
        "repeatable": True,  # required by RecBole for sequential models
        "metrics": ["NDCG", "Hit"],
        "topk": [10],
        "valid_metric": "NDCG@10",
        "eval_batch_size": args.eval_batch_size,
        "eval_step": 1,
        # environment
        "gpu_id": "",
        "use_gpu": False,
        "worker": 0,
        "seed": args.seed,
        "reproducibility": True,
        "checkpoint_dir": checkpoint_dir,
        "show_progress": False,
        "save_dataset": False,
        "save_dataloaders": False,
        "log_wandb": False,
        "state": "INFO",
    }


def count_batches(it, n: int, counter: list[int]):
    for inter in islice(it, n):
        counter[0] += len(inter)
        yield inter


def run(args: argparse.Namespace) -> dict:  # noqa: PLR0915
    import torch

    torch.set_num_threads(args.threads)
    patch_torch_load()

    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.model.sequential_recommender import SASRec
    from recbole.trainer import Trainer
    from recbole.utils import init_logger, init_seed

    import recbole

    t_all = time.perf_counter()
    ckpt_dir = str(Path(args.workdir) / "saved")

    saved_argv = sys.argv
    sys.argv = [saved_argv[0]]
    try:
        config = Config(
            model="SASRec", dataset=DATASET, config_dict=build_config_dict(args, ckpt_dir)
        )
    finally:
        sys.argv = saved_argv
    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)
    torch.set_num_threads(args.threads)  # after RecBole's init, in case anything reset it

    # (a) data preparation
    t0 = time.perf_counter()
    dataset = create_dataset(config)
    t1 = time.perf_counter()
    train_data, valid_data, test_data = data_preparation(config, dataset)
    t2 = time.perf_counter()
    data_create_sec = t1 - t0  # read .inter, remap ids
    data_build_sec = t2 - t1  # prefix augmentation (in build()), LOO split, dataloaders

    n_users = dataset.user_num - 1  # RecBole reserves id 0 for padding
    n_items = dataset.item_num - 1
    n_inter_aug = dataset.inter_num  # augmented prefixes (one target each)
    train_samples = len(train_data._dataset)
    valid_users = len(valid_data._dataset)
    test_users = len(test_data._dataset)

    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    model = SASRec(config, train_data._dataset).to(config["device"])
    params = sum(p.numel() for p in model.parameters())
    trainer = Trainer(config, model)

    # (b) training throughput, via RecBole's own _train_epoch on a slice of the loader
    it = iter(train_data)
    warm = [0]
    t_w = time.perf_counter()
    trainer._train_epoch(count_batches(it, args.warmup_batches, warm), epoch_idx=0)
    warmup_sec = time.perf_counter() - t_w

    per_batch: list[float] = []
    seen = [0]
    for _ in range(args.train_batches):
        before = seen[0]
        tb = time.perf_counter()
        trainer._train_epoch(count_batches(it, 1, seen), epoch_idx=0)
        dt = time.perf_counter() - tb
        if seen[0] == before:  # loader exhausted (tiny data); restart it
            it = iter(train_data)
            continue
        per_batch.append(dt)
    train_sec = sum(per_batch)
    sec_per_batch = train_sec / len(per_batch)
    samples_per_sec = seen[0] / train_sec
    batches_per_epoch = len(train_data)
    est_sec_per_epoch = train_samples / samples_per_sec

    # dataloader share of a batch: collate the same number of batches without training
    it_l = iter(train_data)
    tl = time.perf_counter()
    n_loaded = sum(1 for _ in islice(it_l, len(per_batch)))
    loader_sec_per_batch = (time.perf_counter() - tl) / max(n_loaded, 1)
    del it_l

    # (c) one full-ranking evaluation of the test split with the current weights
    te = time.perf_counter()
    untrained_test = trainer.evaluate(test_data, load_best_model=False, show_progress=False)
    eval_test_sec = time.perf_counter() - te

    result: dict = {
        "framework": "recbole",
        "version": recbole.__version__,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "device": str(config["device"]),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "dataset": {
            "name": "ml-1m",
            "users": n_users,
            "items": n_items,
            "augmented_interactions": n_inter_aug,
            "valid_users": valid_users,
            "test_users": test_users,
        },
        "data_create_sec": round(data_create_sec, 3),
        "data_augment_split_sec": round(data_build_sec, 3),
        "data_prep_sec": round(data_create_sec + data_build_sec, 3),
        "train_samples_per_epoch": train_samples,
        "batches_per_epoch": batches_per_epoch,
        "warmup_batches": args.warmup_batches,
        "warmup_sec": round(warmup_sec, 4),
        "timed_batches": len(per_batch),
        "timed_samples": seen[0],
        "sec_per_batch": round(sec_per_batch, 5),
        "sec_per_batch_median": round(statistics.median(per_batch), 5),
        "loader_only_sec_per_batch": round(loader_sec_per_batch, 5),
        "per_batch_sec": [round(x, 4) for x in per_batch],
        "train_samples_per_sec": round(samples_per_sec, 2),
        "est_sec_per_epoch": round(est_sec_per_epoch, 1),
        "eval_test_sec": round(eval_test_sec, 3),
        "eval_users_per_sec": round(test_users / eval_test_sec, 2),
        "eval_test_metrics_at_eval_time": {k: float(v) for k, v in untrained_test.items()},
        "params": params,
    }

    # (d) optional real training
    if args.epochs > 0:
        tf = time.perf_counter()
        best_valid, best_valid_result = trainer.fit(
            train_data, valid_data, saved=True, show_progress=False
        )
        fit_sec = time.perf_counter() - tf
        test_result = trainer.evaluate(test_data, load_best_model=True, show_progress=False)
        result["trained"] = {
            "epochs": args.epochs,
            "fit_sec": round(fit_sec, 1),
            "sec_per_epoch_incl_valid": round(fit_sec / args.epochs, 1),
            "best_valid_ndcg@10": float(best_valid),
            "best_valid": {k: float(v) for k, v in best_valid_result.items()},
            "test": {k: float(v) for k, v in test_result.items()},
            "test_ndcg@10": float(test_result["ndcg@10"]),
            "test_hr@10": float(test_result["hit@10"]),
        }

    result["total_wall_sec"] = round(time.perf_counter() - t_all, 1)
    result["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    result["config"] = {
        "model": "SASRec",
        "hidden_size": config["hidden_size"],
        "n_layers": config["n_layers"],
        "n_heads": config["n_heads"],
        "inner_size": config["inner_size"],
        "recbole_default_inner_size": recbole_default_inner_size(),
        "hidden_dropout_prob": config["hidden_dropout_prob"],
        "attn_dropout_prob": config["attn_dropout_prob"],
        "hidden_act": config["hidden_act"],
        "layer_norm_eps": config["layer_norm_eps"],
        "loss_type": config["loss_type"],
        "MAX_ITEM_LIST_LENGTH": config["MAX_ITEM_LIST_LENGTH"],
        "train_batch_size": config["train_batch_size"],
        "eval_batch_size": config["eval_batch_size"],
        "learner": config["learner"],
        "learning_rate": config["learning_rate"],
        "eval_args": config["eval_args"],
        "metrics": config["metrics"],
        "topk": config["topk"],
        "valid_metric": config["valid_metric"],
        "seed": config["seed"],
        "train_neg_sample_args": config["train_neg_sample_args"],
    }
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="RecBole 1.2.1 SASRec CPU speed benchmark (ML-1M)")
    ap.add_argument("--data", default="/tmp/recbole-data", help="dir holding ml-1m-seq/")
    ap.add_argument("--out", default="/tmp/recbole-sasrec.json", help="JSON result path")
    ap.add_argument("--workdir", default=None, help="RecBole cwd (logs, checkpoints); temp dir")
    ap.add_argument("--train-batches", type=int, default=30)
    ap.add_argument("--warmup-batches", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=0, help="real training epochs (0: skip)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-len", type=int, default=200)
    ap.add_argument("--train-batch-size", type=int, default=128)
    ap.add_argument("--eval-batch-size", type=int, default=1024, help="users per eval batch")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=2020)
    args = ap.parse_args(argv)

    inter = Path(args.data) / DATASET / f"{DATASET}.inter"
    if not inter.exists():
        ap.error(f"{inter} missing: run benchmarks/recbole/make_atomic.py --out {args.data}")
    out_path = Path(args.out).resolve()
    args.data = str(Path(args.data).resolve())
    if args.workdir is None:
        args.workdir = tempfile.mkdtemp(prefix="recbole-bench-")
    Path(args.workdir).mkdir(parents=True, exist_ok=True)
    os.chdir(args.workdir)

    # Everything RecBole prints goes to stderr; stdout carries only the JSON.
    with contextlib.redirect_stdout(sys.stderr):
        result = run(args)
    result["workdir"] = args.workdir
    text = json.dumps(result, indent=2, default=str)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
