"""Ranking (CTR) on the ML-1M ratings subset: SASRec and HSTU rankers vs two baselines.

    python benchmarks/ranking_ml1m.py                  # train what is missing, then record
    python benchmarks/ranking_ml1m.py --device cuda    # same, training on a GPU
    python benchmarks/ranking_ml1m.py -o train.epochs=2 --only ranking-sasrec-ml-1m

Five presets on the same temporal split (configs/ranking-*-ml-1m.yaml: users 1-2999 of
ML-1M, label = rating >= 4, last 10% of events by time = test): item popularity, logistic
regression on user/item ids + features, SASRec + target attention, HSTU + target attention, and
item-based collaborative filtering stacked on popularity (itemknn: no gradient training; a
stronger within-user reference than the issue's two baselines, compared against separately).
A run folder under runs/<preset> that holds results.json is read, not retrained.

Recorded per model: test AUC, GAUC (impression-weighted), GAUC_user_mean (every user once),
log loss, ECE, and for each ranker the gains on AUC and both GAUCs over the best baseline on
that metric (and over itemknn), each with a 95% interval from a paired bootstrap over
test users (the predictions of every model are for the same test examples, in the same order:
test_predictions.npz). ``--extra KEY=RUN_DIR`` adds more finished ranker runs (e.g. trained on a
GPU, or with other overrides) under their own key.
"""

from __future__ import annotations

import argparse
import functools
import json
from pathlib import Path

import numpy as np

from common import ROOT, data_dir, write_result
from seqrec.eval.ctr import auc, group_auc, per_group_auc
from seqrec.recipe import load_config
from seqrec.trainer.run import train_run

PRESETS = {
    "popularity": "ranking-popularity-ml-1m",
    "logistic": "ranking-logistic-ml-1m",
    "sasrec": "ranking-sasrec-ml-1m",
    "hstu": "ranking-hstu-ml-1m",
    "itemknn": "ranking-itemknn-ml-1m",
}
BASELINES = ("popularity", "logistic")  # the baselines: the best one is the reference
EXTRA_BASELINES = ("itemknn",)  # reported and compared against too, never a "ranker"
KEYS = ("AUC", "GAUC", "LogLoss", "ECE")


def paired_bootstrap(
    users: np.ndarray, labels: np.ndarray, a: np.ndarray, b: np.ndarray, n: int, seed: int = 0
) -> tuple[float, float]:
    """95% interval of AUC(a) - AUC(b) when test users are resampled with replacement."""
    uniq, inv = np.unique(users, return_inverse=True)
    rows = np.argsort(inv, kind="stable")
    counts = np.bincount(inv)
    first = np.cumsum(counts) - counts
    rng = np.random.default_rng(seed)
    diffs = np.empty(n)
    for r in range(n):  # one vectorised AUC pair per resample
        pick = rng.integers(0, len(uniq), len(uniq))
        lens = counts[pick]
        idx = np.repeat(first[pick] - np.cumsum(lens) + lens, lens) + np.arange(lens.sum())
        sel = rows[idx]
        diffs[r] = auc(a[sel], labels[sel]) - auc(b[sel], labels[sel])
    lo, hi = np.quantile(diffs, [0.025, 0.975])
    return float(lo), float(hi)


def gauc_bootstrap(
    users: np.ndarray,
    labels: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    n: int,
    seed: int = 0,
    weighted: bool = True,
) -> tuple[float, float]:
    """95% interval of GAUC(a) - GAUC(b) when test users are resampled with replacement (users
    with one class only carry no GAUC weight, as in the metric); ``weighted=False`` for the
    per-user mean (GAUC_user_mean)."""
    ua, pa, wa, _ = per_group_auc(a, labels, users)
    if not weighted:
        wa = np.ones_like(wa)
    ub, pb, _, _ = per_group_auc(b, labels, users)
    if not np.array_equal(ua, ub):
        raise SystemExit("the two models' GAUC users differ; were they scored on the same data?")
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, len(ua), (n, len(ua)))
    w = wa[pick]
    diffs = (w * (pa - pb)[pick]).sum(1) / w.sum(1)
    lo, hi = np.quantile(diffs, [0.025, 0.975])
    return float(lo), float(hi)


def _flat(tree: dict, prefix: str = "") -> dict[str, object]:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def train_command(run: Path) -> str:
    """The `seqrec train` command that remakes a finished run from its saved config.yaml: its
    ranking preset plus every setting that differs from it (run folders are not committed,
    so the record has to say how each was trained)."""
    import yaml

    saved = yaml.safe_load((run / "config.yaml").read_text())
    preset = f"ranking-{saved['task'].get('baseline') or saved['model']['name']}-ml-1m"
    base = _flat(load_config(preset).model_dump(mode="json"))
    root = str(data_dir()) + "/"
    saved["data"]["dataset"] = str(saved["data"]["dataset"]).removeprefix(root)
    sets = [
        f"-o {k}={v if isinstance(v, str) else json.dumps(v)}"
        for k, v in _flat(saved).items()
        if base.get(k) != v
    ]
    cmd = " ".join(["seqrec train -c", preset, *sets, f"--out {run}"])
    source = saved["train"].get("init_from")
    if source and (Path(source) / "config.yaml").is_file():  # the pre-training run first
        cmd = f"{train_command(Path(source))}; {cmd}"
    return cmd


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--device", default="auto", help="train.device for runs trained here")
    ap.add_argument("--set", "-o", action="append", default=[], help="override for every run")
    ap.add_argument("--only", action="append", help="train only these presets (others are read)")
    ap.add_argument("--runs", type=Path, default=ROOT / "runs", help="folder of the run folders")
    ap.add_argument("--boot", type=int, default=500, help="bootstrap resamples")
    ap.add_argument("--name", default="ranking_ml1m", help="benchmarks/results/NAME.json")
    ap.add_argument("--extra", action="append", default=[], metavar="KEY=RUN_DIR",
                    help="another finished ranker run, recorded under KEY")  # fmt: skip
    args = ap.parse_args()
    data_dir()
    metrics, runs, preds, commands = {}, {}, {}, []
    extra = dict(e.split("=", 1) for e in args.extra)
    todo = [(key, preset, args.runs / preset) for key, preset in PRESETS.items()]
    todo += [(key, None, Path(path)) for key, path in extra.items()]
    for key, preset, run in todo:
        overrides = [*args.set, f"train.device={args.device}"]
        if preset is not None:
            cmd = f"seqrec train -c {preset} " + " ".join(f"-o {o}" for o in overrides)
            commands.append(f"{cmd} --out {run}")
        if not (run / "results.json").is_file():
            if preset is None:
                raise SystemExit(f"--extra {key}: {run} holds no finished run (results.json)")
            if args.only and preset not in args.only:
                print(f"skipping {preset}: no finished run in {run}")
                continue
            cfg = load_config(preset, overrides)
            train_run(cfg, run, overwrite=True)
        res = json.loads((run / "results.json").read_text())
        if preset is None:  # an extra run: its saved config says how it was trained
            commands += [c for c in train_command(run).split("; ") if c not in commands]
        runs[key] = {
            "run": str(run),
            "best_epoch": res.get("best_epoch"),
            "train_seconds": res.get("train_seconds"),
            "params": res["params"]["total"],
            "valid": {k: res["valid"]["metrics"][k] for k in KEYS},
        }
        for k in KEYS:
            metrics[f"{key}/{k}"] = res["test"]["metrics"][k]
        preds[key] = np.load(run / "test_predictions.npz")
        p = preds[key]  # from the predictions: runs older than the metric lack it
        metrics[f"{key}/GAUC_user_mean"] = group_auc(p["probs"], p["labels"], p["users"], False)[0]
        protocol = res["test"]["protocol"]
    have = [b for b in BASELINES if b in preds]
    rankers = [k for k in preds if k not in BASELINES + EXTRA_BASELINES]
    user_mean = functools.partial(gauc_bootstrap, weighted=False)
    for metric, boot in (
        ("AUC", paired_bootstrap),
        ("GAUC", gauc_bootstrap),
        ("GAUC_user_mean", user_mean),
    ):
        refs = [max(have, key=lambda b: metrics[f"{b}/{metric}"])] if have else []
        refs += [b for b in EXTRA_BASELINES if b in preds]
        for ref in refs:
            suffix = "" if ref not in EXTRA_BASELINES else f"_vs_{ref}"
            for key in rankers:
                p, q = preds[key], preds[ref]
                if not np.array_equal(p["items"], q["items"]):
                    raise SystemExit(f"{key} and {ref} were not scored on the same test examples")
                diff = metrics[f"{key}/{metric}"] - metrics[f"{ref}/{metric}"]
                lo, hi = boot(p["users"], p["labels"], p["probs"], q["probs"], args.boot)
                metrics[f"{key}/{metric}_gain_vs_{ref}"] = diff
                metrics[f"{key}/{metric}_gain_ci95{suffix}"] = [lo, hi]
    write_result(
        args.name,
        metrics,
        dataset="ML-1M ratings, users 1-2999 (ratings.PARTIAL_first487650lines.dat.gz)",
        protocol=protocol,
        command="; ".join(commands)
        + f"; python benchmarks/ranking_ml1m.py --runs {args.runs} --boot {args.boot}"
        + "".join(f" --extra {e}" for e in args.extra),
        notes="test split = last 10% of events by time, real events only; label rating >= 4",
        extra={"runs": runs},
    )


if __name__ == "__main__":
    main()
