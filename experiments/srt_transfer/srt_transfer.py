"""SRT transfer: pre-train on ML-1M, fine-tune on ML-100K, against ML-100K from scratch.

    # 1. pre-training (GPU): seqrec train -c srt-ml-1m --out runs/srt-ml-1m
    # 2. this script: fine-tune + scratch on CPU (each < 5 min on one thread), then the report
    python experiments/srt_transfer/srt_transfer.py --pretrain runs/srt-ml-1m --threads 1

Runs are read back when their folder already holds a finished run (results.json), so the
script can also only report on runs trained elsewhere. Reported, on the ML-100K test users
(leave-one-out, full ranking over the 1,682 items, seen items masked):

* scratch, fine-tune and zero-shot (the pre-trained weights scoring ML-100K without any
  ML-100K training, possible only because items are features): HR/NDCG@5/10/20 means with
  95% normal CIs over users (seqrec.eval.stats);
* paired differences fine-tune − scratch and zero-shot − scratch per user: mean, CI, paired
  t-test and Wilcoxon p-values, Holm-adjusted over the table;
* parameter counts of the same SRT config for the ML-1M and ML-100K catalogues (equal: no
  per-id table) next to SASRec's at the same width (its item table grows with the catalogue);
* the wall time of each ML-100K run;
* with ``--seeds N``: fine-tune and scratch again with ``train.seed`` 1..N-1 (folders
  ``<run>-seed<s>``), each seed's fine-tune − scratch difference, and the paired test over
  users of the seed-averaged per-user metrics (training noise averaged out; the seed-0 test
  above stays as it was).

The result goes to benchmarks/results/srt_transfer.json through common.write_result.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from seqrec.comparison import compare
from seqrec.data import prepare
from seqrec.eval.ranking import evaluate
from seqrec.eval.stats import holm, metric_ks, paired_test, per_user_metrics, summarise
from seqrec.models import build_model
from seqrec.models.common import count_parameters
from seqrec.models.inputs import prepare_inputs
from seqrec.recipe import load_config
from seqrec.trainer.init_from import load_initial_weights
from seqrec.trainer.run import train_run

# benchmarks/common.py writes the result file, as every benchmark's does
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from common import ROOT, data_dir, write_result

KEYS = ["HR@5", "HR@10", "HR@20", "NDCG@5", "NDCG@10", "NDCG@20"]
PRETRAIN, FINETUNE, SCRATCH = "srt-ml-1m", "srt-ml-100k-finetune", "srt-ml-100k-scratch"


def finished(run_dir: Path) -> bool:
    return (run_dir / "results.json").is_file()


def ensure_run(preset: str, run_dir: Path, overrides: list[str]) -> float | None:
    """Train ``preset`` into ``run_dir`` unless it already holds a finished run; seconds taken."""
    if finished(run_dir):
        print(f"{run_dir}: finished run, read back")
        return None
    t0 = time.perf_counter()
    train_run(load_config(preset, overrides), run_dir, progress=True)
    return time.perf_counter() - t0


def zero_shot(pretrain: Path, overrides: list[str]) -> np.ndarray:
    """Test ranks of the pre-trained weights on the target data, with no target training."""
    cfg = load_config(SCRATCH, overrides)
    store, split = prepare(cfg.data)
    model = build_model(cfg.model, store.n_items, cfg.data.max_len)
    prepare_inputs(model, cfg, store)  # the target catalogue's feature tokens
    load_initial_weights(model, pretrain, cfg.model.name)
    view = split.test
    res = evaluate(
        model,
        store.items,
        view.starts,
        view.ends,
        view.targets,
        cfg.data.max_len,
        cfg.eval,
        "cpu",
        split_protocol={**split.protocol, "evaluated": "test"},
    )
    return res.ranks


def parameter_counts() -> dict:
    """The same model section over both catalogues, and SASRec's at the same width."""
    out = {}
    for preset in (PRETRAIN, SCRATCH):
        cfg = load_config(preset)
        store, _ = prepare(cfg.data)
        srt = count_parameters(build_model(cfg.model, store.n_items, cfg.data.max_len))
        sas_cfg = cfg.model.model_copy(update={"name": "sasrec"})
        sas = count_parameters(build_model(sas_cfg, store.n_items, cfg.data.max_len))
        out[cfg.data.dataset] = {"n_items": store.n_items, "srt": srt, "sasrec": sas}
    return out


def seed_report(args, local: list[str], ks: list[int]) -> dict:
    """Fine-tune and scratch at train.seed 0..N-1 (seed 0 = the main runs): the difference per
    seed, and the paired test over users of the seed-averaged per-user metrics."""
    arms = {"finetune": (FINETUNE, args.finetune), "scratch": (SCRATCH, args.scratch)}
    per_user: dict[str, list[dict]] = {a: [] for a in arms}
    for seed in range(args.seeds):
        for arm, (preset, base) in arms.items():
            run = base if seed == 0 else base.with_name(f"{base.name}-seed{seed}")
            extra = [f"train.seed={seed}"] if seed else []
            if arm == "finetune":
                extra.append(f"train.init_from={args.pretrain.resolve()}")
            ensure_run(preset, run, [*local, *extra])
            per_user[arm].append(per_user_metrics(np.load(run / "test_ranks.npy"), ks))
    out: dict = {"seeds": args.seeds, "per_seed": {}, "averaged": {}}
    for k in KEYS:
        ft = [m[k] for m in per_user["finetune"]]
        sc = [m[k] for m in per_user["scratch"]]
        out["per_seed"][k] = [float(a.mean() - b.mean()) for a, b in zip(ft, sc, strict=True)]
        out["averaged"][k] = paired_test(np.mean(sc, axis=0), np.mean(ft, axis=0))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--pretrain", type=Path, default=ROOT / "runs" / PRETRAIN)
    ap.add_argument("--finetune", type=Path, default=ROOT / "runs" / FINETUNE)
    ap.add_argument("--scratch", type=Path, default=ROOT / "runs" / SCRATCH)
    ap.add_argument("--threads", type=int, default=1, help="CPU threads of the ML-100K runs")
    ap.add_argument("--device", default="cpu", help="device of the ML-100K runs")
    ap.add_argument("--name", default="srt_transfer")
    ap.add_argument("--seeds", type=int, default=1, help="train.seed values 0..N-1 per arm")
    args = ap.parse_args()
    data_dir()
    if not finished(args.pretrain):
        raise SystemExit(
            f"{args.pretrain} is not a finished run; pre-train first: "
            f"seqrec train -c {PRETRAIN} --out {args.pretrain}"
        )
    local = [f"train.threads={args.threads}", f"train.device={args.device}"]
    seconds = {
        "finetune": ensure_run(
            FINETUNE, args.finetune, [*local, f"train.init_from={args.pretrain.resolve()}"]
        ),
        "scratch": ensure_run(SCRATCH, args.scratch, local),
    }
    compare([args.scratch, args.finetune], metrics=KEYS)  # refuses runs on different data
    results = {arm: json.loads((run / "results.json").read_text())
               for arm, run in (("scratch", args.scratch), ("finetune", args.finetune))}  # fmt: skip
    init = results["finetune"]["config"]["train"].get("init_from")
    if not init or Path(init).resolve() != args.pretrain.resolve():
        raise SystemExit(f"{args.finetune} was initialised from {init}, not {args.pretrain}")
    ks = metric_ks(KEYS)
    base = per_user_metrics(np.load(args.scratch / "test_ranks.npy"), ks)
    tuned = per_user_metrics(np.load(args.finetune / "test_ranks.npy"), ks)
    # zero-shot: pre-trained weights on ML-100K, paired with scratch on the same test users
    shot = per_user_metrics(zero_shot(args.pretrain, local), ks)
    report = {
        "runs": {arm: summarise(v, KEYS) for arm, v in
                 (("scratch", base), ("finetune", tuned), ("zero_shot", shot))},
        "pairs": {f"{arm} - scratch": {k: paired_test(base[k], v[k]) for k in KEYS}
                  for arm, v in (("finetune", tuned), ("zero_shot", shot))},
    }  # fmt: skip
    flat = [(p, k) for p in report["pairs"] for k in KEYS]
    adjusted = holm([report["pairs"][p][k]["p_ttest"] for p, k in flat])
    for (p, k), adj in zip(flat, adjusted, strict=True):
        report["pairs"][p][k]["p_ttest_holm"] = adj
    if args.seeds > 1:
        seeded = seed_report(args, local, ks)
        report["seeds"] = seeded
    params = parameter_counts()
    pre = json.loads((args.pretrain / "results.json").read_text())
    metrics = {
        f"{name}/{k}": v["mean"] for name, table in report["runs"].items() for k, v in table.items()
    }
    for pair, tests in report["pairs"].items():
        for k in ("NDCG@10", "HR@10"):
            metrics[f"{pair}/{k}/diff"] = tests[k]["diff"]
            metrics[f"{pair}/{k}/p_ttest_holm"] = tests[k]["p_ttest_holm"]
    if args.seeds > 1:
        tag = f"finetune - scratch (per-user mean of {args.seeds} seeds)"
        for k in ("NDCG@10", "HR@10"):
            metrics[f"{tag}/{k}/diff"] = report["seeds"]["averaged"][k]["diff"]
            avg = report["seeds"]["averaged"][k]
            metrics[f"{tag}/{k}/ci95"] = [avg["diff_ci_low"], avg["diff_ci_high"]]
            metrics[f"{tag}/{k}/p_ttest"] = report["seeds"]["averaged"][k]["p_ttest"]
            metrics[f"finetune - scratch per seed/{k}/diff"] = report["seeds"]["per_seed"][k]
    metrics["pretrain_ml1m/test/NDCG@10"] = pre["test"]["metrics"]["NDCG@10"]
    for ds, counts in params.items():
        metrics[f"params/srt/{ds}"] = counts["srt"]["total"]
        metrics[f"params/sasrec/{ds}"] = counts["sasrec"]["total"]
    for arm, res in results.items():
        metrics[f"{arm}/wall_seconds"] = res.get("wall_seconds")
    print(json.dumps(report["pairs"], indent=2, default=float))
    write_result(
        args.name,
        metrics,
        dataset="ml-100k (pre-trained on ml-1m)",
        protocol=results["scratch"]["test"]["protocol"],
        notes=(
            "SRT pre-trained on ML-1M (configs/srt-ml-1m), fine-tuned on ML-100K "
            "(srt-ml-100k-finetune, train.init_from) vs the same config from a random init "
            "(srt-ml-100k-scratch), same budget; zero-shot = pre-trained weights scoring "
            "ML-100K items from their features, no ML-100K training. 95% normal CIs over test "
            "users; paired t-test + Wilcoxon, Holm over all pair x metric t-tests."
        ),
        extra={
            "runs": {
                "pretrain": str(args.pretrain),
                "finetune": str(args.finetune),
                "scratch": str(args.scratch),
            },
            "report": report,
            "params": params,
            "train_seconds_this_invocation": seconds,
            "pretrain": {
                "test": pre["test"]["metrics"],
                "best_epoch": pre.get("best_epoch"),
                "machine": pre.get("machine"),
            },
        },
    )


if __name__ == "__main__":
    main()
