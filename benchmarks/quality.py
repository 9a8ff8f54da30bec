"""Quality benchmark: train a preset (or read a finished run) and record its test metrics.

    python benchmarks/quality.py --preset sasrec-ml-1m --name sasrec_ml1m_ce
    python benchmarks/quality.py --preset sasrec-ml-1m-bce --name sasrec_ml1m_bce --sampled uniform

Full ranking over every item, leave-one-out, seen items masked, unless --sampled is given (then
both the full and the sampled numbers are recorded, the latter labelled as such) or
--window-masked (also the numbers with only the model's window of seen items masked, as
generative-recommenders evaluates). 95% confidence intervals come from the per-user test ranks.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from common import ROOT, data_dir, write_result
from seqrec.eval.metrics import confidence_interval, per_user_metrics
from seqrec.recipe import load_config
from seqrec.run import Run
from seqrec.trainer.run import train_run

KEYS = ["HR@5", "HR@10", "HR@20", "NDCG@5", "NDCG@10", "NDCG@20", "MRR"]


def main() -> None:  # noqa: PLR0915
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--preset", required=True)
    ap.add_argument("--name", required=True, help="result file name (benchmarks/results/NAME.json)")
    ap.add_argument(
        "--run-dir", type=Path, help="default runs/<preset>; reused if it holds a finished run"
    )
    ap.add_argument("--set", "-o", action="append", default=[], help="config override")
    ap.add_argument(
        "--sampled", choices=["uniform", "popularity"], help="also record sampled metrics"
    )
    ap.add_argument(
        "--sampled-draws",
        type=int,
        default=1,
        help="also evaluate the sampled metrics with this many negative draws (seeds 0..N-1) "
        "and record their mean, SD and range; the headline sampled value stays draw 0",
    )
    ap.add_argument(
        "--retrain", action="store_true", help="train again even if the run is finished"
    )
    ap.add_argument(
        "--unfinished-ok",
        action="store_true",
        help="a run stopped early (Ctrl-C, time budget): evaluate its best-on-validation weights",
    )
    ap.add_argument(
        "--window-masked",
        action="store_true",
        help="also record the test metrics with only the seen items inside the model's window "
        "masked (generative-recommenders' evaluation) under window-test/",
    )
    ap.add_argument("--note", default="", help="appended to the result's notes (e.g. the data)")
    args = ap.parse_args()
    data_dir()
    run_dir = args.run_dir or ROOT / "runs" / args.preset
    train_cmd = (
        f"seqrec train -c {args.preset} "
        + " ".join(f"-o {o}" for o in [*args.set, *trained_overrides(run_dir, args)])
        + f" --out {run_dir}"
    )
    notes: list[str] = []
    unfinished = args.unfinished_ok and not (run_dir / "results.json").is_file()
    if unfinished:
        res, ranks = unfinished_results(run_dir)
        notes.append(
            f"training was stopped (Ctrl-C, session time budget) after epoch "
            f"{res['epochs_run'] - 1}, not by early stopping; metrics are from the "
            f"best-on-validation weights (epoch {res['best_epoch']}), test evaluated once"
        )
    else:
        if args.retrain or not (run_dir / "results.json").is_file():
            cfg = load_config(args.preset, args.set)
            train_run(cfg, run_dir, overwrite=args.retrain)
        res = json.loads((run_dir / "results.json").read_text())
        ranks = np.load(run_dir / "test_ranks.npy")
        if res.get("recovered"):
            notes.append(
                "trained on the lent H100 next to the other GPU jobs "
                "(benchmarks/gpu/run_jobs.py); the run folder was rebuilt from the returned "
                "best weights by benchmarks/gpu/recover.py and every metric re-evaluated on "
                "CPU (test NDCG@10 equal to the GPU's within 1e-3). Training stopped by "
                f"{res.get('stopped_by')} after {res.get('epochs_run')} epochs, best epoch "
                f"{res.get('best_epoch')}; train_seconds is the process's wall time on the "
                "shared GPU"
            )
        elif res.get("stopped_by") == "time_budget":
            notes.append(
                f"stopped by train.time_budget_s after {res['epochs_run']} epochs, before early "
                f"stopping would have; best-on-validation weights (epoch {res['best_epoch']}), "
                "test evaluated once"
            )
    per_user = per_user_metrics(ranks, [5, 10, 20])
    metrics = {f"test/{k}": res["test"]["metrics"][k] for k in KEYS}
    metrics.update(
        {f"test/{k} 95% CI": list(confidence_interval(per_user[k])) for k in ("HR@10", "NDCG@10")}
    )
    metrics.update({f"valid/{k}": res["valid"]["metrics"][k] for k in ("HR@10", "NDCG@10")})
    metrics.update(
        {
            "best_epoch": res["best_epoch"],
            "epochs_run": res["epochs_run"],
            "train_seconds": res["train_seconds"],
            "params": res["params"]["total"],
        }
    )
    peek = test_peeks(run_dir)
    if peek:
        metrics.update(peek)
        notes.append(PEEK_NOTE)
    protocol = res["test"]["protocol"]
    if res.get("selected") == "last epoch":  # train.select=last: no model selection
        metrics["tested_epoch"] = res["tested_epoch"]
        protocol = {**protocol, "selected": "last epoch"}
    other_protocols = {}
    if args.sampled:
        s = Run(run_dir).evaluate("test", sampled=args.sampled, negatives=100)
        metrics.update({f"sampled-test/{k}": s.metrics[k] for k in ("HR@10", "NDCG@10")})
        other_protocols["sampled"] = s.protocol
        if args.sampled_draws > 1:
            draws = [s] + [
                Run(run_dir).evaluate("test", sampled=args.sampled, negatives=100, seed=i)
                for i in range(1, args.sampled_draws)
            ]
            for k in ("HR@10", "NDCG@10"):
                v = np.array([d.metrics[k] for d in draws])
                metrics[f"sampled-test/{k} over {len(v)} draws (mean, SD, min, max)"] = [
                    float(v.mean()),
                    float(v.std(ddof=1)),
                    float(v.min()),
                    float(v.max()),
                ]
    if args.window_masked:
        w = Run(run_dir).evaluate("test", mask_seen="window")
        metrics.update({f"window-test/{k}": w.metrics[k] for k in ("HR@10", "NDCG@10")})
        other_protocols["window-test"] = w.protocol
        notes.append(WINDOW_NOTE)
    if other_protocols:
        protocol = {"full": protocol, **other_protocols}
    if args.note:
        notes.append(args.note)
    write_result(
        args.name,
        metrics,
        notes="; ".join(notes),
        dataset=f"{res['dataset']['name']} "
        f"({res['dataset']['users']:,} users, {res['dataset']['items']:,} items, "
        f"{res['dataset']['interactions']:,} interactions)",
        protocol=protocol,
        command=f"{train_cmd}  &&  python benchmarks/quality.py --preset {args.preset} --name {args.name}"
        + (f" --run-dir {args.run_dir}" if args.run_dir else "")
        + (f" --sampled {args.sampled}" if args.sampled else "")
        + (f" --sampled-draws {args.sampled_draws}" if args.sampled_draws > 1 else "")
        + (" --window-masked" if args.window_masked else "")
        + (" --unfinished-ok" if unfinished else ""),
        extra={"config": res["config"], "train_machine": res.get("machine")},
    )


WINDOW_NOTE = (
    "window-test/* mask only the seen items inside the model's window (the last data.max_len), "
    "as generative-recommenders' evaluation filters its padded input ids; items seen before "
    "the window compete with the target, so these are at most the test/* values"
)
PEEK_NOTE = (
    "test-peek/* were read off the test split at every validation (train.log_test): the best of "
    "them is selected on test, a diagnostic of numbers read off test curves, not a result"
)


def test_peeks(run_dir: Path) -> dict:
    """The best test NDCG@10 over a train.log_test run's evaluations, with its epoch and HR@10."""
    log = run_dir / "metrics.jsonl"
    if not log.is_file():
        return {}
    rows = [json.loads(line) for line in log.read_text().splitlines() if '"test_peek"' in line]
    rows = [r for r in rows if r.get("event") == "test_peek"]
    if not rows:
        return {}
    top = max(rows, key=lambda r: r["test/NDCG@10"])
    return {
        "test-peek/evaluations": len(rows),
        "test-peek/max NDCG@10": top["test/NDCG@10"],
        "test-peek/HR@10 at that epoch": top["test/HR@10"],
        "test-peek/epoch of the max": top["epoch"],
        "test-peek/last NDCG@10": rows[-1]["test/NDCG@10"],
    }


def trained_overrides(run_dir: Path, args) -> list[str]:
    """The overrides a reused run was trained with beyond the preset and ``--set`` (e.g. a
    time budget), read from its config.yaml, so the recorded command is the one that ran."""
    import yaml

    from seqrec.comparison import config_differences
    from seqrec.recipe import saved_config

    if args.retrain or not (run_dir / "config.yaml").is_file():
        return []
    ran = saved_config(yaml.safe_load((run_dir / "config.yaml").read_text())).model_dump()
    asked = load_config(args.preset, args.set).model_dump()
    diff = config_differences(ran, asked, ignore=frozenset({"data.cache_dir"}))
    return [f"{k}={mine}" for k, (mine, _) in diff.items()]


def unfinished_results(run_dir: Path) -> tuple[dict, np.ndarray]:
    """A results.json-shaped summary of a run that never reached its end-of-training test."""
    import yaml

    from seqrec.data import prepare
    from seqrec.trainer.run import load_run_config

    cfg = load_run_config(run_dir)
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    log = [json.loads(line) for line in lines if line.strip()]
    valid_events = [r for r in log if r.get("event") == "valid"]
    best = max(valid_events, key=lambda r: r["valid/NDCG@10"])
    start = next(r for r in log if r.get("event") == "start")
    valid = Run(run_dir).evaluate("valid")
    test = Run(run_dir).evaluate("test")
    store, _ = prepare(cfg.data)
    summary = {
        "best_epoch": best["epoch"],
        "epochs_run": valid_events[-1]["epoch"] + 1,
        "train_seconds": sum(r.get("epoch_seconds", 0.0) for r in valid_events),
        "params": start["params"],
        "valid": valid.to_json(),
        "test": test.to_json(),
        "dataset": {"name": cfg.data.dataset, **store.stats()},
        "config": yaml.safe_load((run_dir / "config.yaml").read_text()),
    }
    return summary, test.ranks


if __name__ == "__main__":
    main()
