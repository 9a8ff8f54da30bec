"""Scaling results from the sweeps: tables, power-law and Performance Law fits, figures.

    SEQREC_DATA_DIR=/work/shared/data python benchmarks/scaling_report.py [--root gpu-runs/sweeps]

Reads every sweep folder under --root (runs/<hash>/results.json as `seqrec sweep` or
benchmarks/gpu/recover.py wrote them; runs are matched to their spec by re-hashing each run's
own config.yaml, see `_runs_on_disk`), rebuilds each folder's results.parquet, and writes:
  - scaling_ml1m: per family (SASRec, HSTU, Llama) NDCG@10 = a N^b over non-embedding
    parameters with a bootstrap CI on b, R² on the 2 largest runs held out, paired
    differences at matched (layers, width), a conclusion string, the per-run table, and the
    iso-FLOP analysis (validation curves vs training FLOPs, frontier, slices);
  - scaling_sasrec_plus: SASRec with/without HSTU's relative attention bias and residual
    pattern, NDCG@10 by depth at width 64, slope per arm, matched-depth differences;
  - perf_law_ml1m / perf_law_beauty: the Performance Law (both data-term forms; random:3 and
    largest:3 hold-outs, and leave-one-out, where every run is predicted by the law fitted to
    the others), R² on held-out runs and predicted vs measured NDCG@10 for them;
PNGs in benchmarks/figures/ (scaling_ml1m_families, iso_flop_ml1m, scaling_sasrec_plus,
perf_law_ml1m, perf_law_beauty, apen_datasets) and a Markdown summary in ../notes/. Runs listed
in a folder's cut.json (stopped by the session's deadline) are left out. The analyses are in
scaling_analysis.py, the plots in scaling_figures.py.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import scaling_analysis as sa
import scaling_figures as figs
from common import RESULTS, ROOT, data_dir, write_result
from scaling_summary import write_summary
from seqrec.scaling.sweep import _data_key, _prepare_data
from seqrec.scaling.sweep_spec import SweepRun, adopt_run_folders, expand, load_spec
from seqrec.scaling.sweep_table import row_from_run, write_table

SPECS = {
    "ml1m": "benchmarks/sweeps/ml1m-sasrec-hstu.yaml",
    "sasrec_plus": "benchmarks/sweeps/ml1m-sasrec-plus.yaml",
    "beauty": "benchmarks/sweeps/beauty-perf-law.yaml",
}
FIG = ROOT / "benchmarks" / "figures"
NOTES = ROOT.parent / "notes"


def complete_accounting(run_dir: Path, cfg) -> None:
    """Recovered runs lack the trainer's accounting; compute it as the trainer does."""
    path = run_dir / "results.json"
    res = json.loads(path.read_text())
    if "flops_per_interaction" in res and "train_data" in res:
        return
    from seqrec.data import prepare
    from seqrec.trainer.loop import Trainer

    store, split = prepare(cfg.data)
    with tempfile.TemporaryDirectory() as tmp:
        cpu = cfg.model_copy(update={"train": cfg.train.model_copy(update={"device": "cpu"})})
        tr = Trainer(cpu, store, split, Path(tmp), progress=False)
        res.update(tr.task.accounting())
        res["train_data"] = {
            "users": len(tr.task.train_rows),
            "interactions": int(split.train.lengths()[tr.task.train_rows].sum()),
            "fraction": cfg.data.train_fraction,
        }
    res.setdefault("train_seconds", None)
    path.write_text(json.dumps(res, indent=1, default=float))


def _runs_on_disk(spec_runs, folder: Path) -> list[SweepRun]:
    """The spec's runs that finished in ``folder`` (not cut by a deadline). Folders named by an
    older hash are first renamed to today's hash of their own config.yaml
    (``adopt_run_folders``, as ``seqrec sweep`` does)."""
    adopt_run_folders(folder, spec_runs)
    cut = (
        set(json.loads((folder / "cut.json").read_text()))
        if (folder / "cut.json").is_file()
        else set()
    )
    return [
        r
        for r in spec_runs
        if (folder / "runs" / r.config_hash / "results.json").is_file() and r.config_hash not in cut
    ]


def table(root: Path, name: str, want_apen: bool = False) -> list[dict]:
    spec = load_spec(ROOT / SPECS[name])
    folder = root / name
    runs = _runs_on_disk(expand(spec, device="cpu"), folder)
    apen = _prepare_data(runs, want_apen or bool(spec.get("apen")))
    rows = []
    for r in runs:
        complete_accounting(folder / "runs" / r.config_hash, r.cfg)
        rows.append(row_from_run(folder, r, apen[_data_key(r.cfg)][0]))
    write_table(folder / "results.parquet", rows)
    for r in rows:  # after the table: its schema has no such columns
        r["_device"], r["_stopped_by"] = run_origin(folder / Path(r["metrics_path"]).parent)
    return rows


def run_origin(run: Path) -> tuple[str, str | None]:
    """('cuda' or 'cpu', what stopped it): where a finished run trained and whether its time
    budget cut it (from its results.json)."""
    res = run / "results.json"
    if not res.is_file():
        return "unknown", None
    rec = json.loads(res.read_text())
    return ("cuda" if rec["machine"].get("cuda") else "cpu"), rec.get("stopped_by")


def run_counts(rows: list[dict]) -> dict[str, int]:
    """How many runs a result rests on, how many trained on CPU, how many the time cap cut."""
    return {
        "runs (finished)": len(rows),
        "runs trained on CPU": sum(r.get("_device") == "cpu" for r in rows),
        "runs cut by the time budget": sum(r.get("_stopped_by") == "time_budget" for r in rows),
    }


def clean(obj):
    """Drop private (plot-only) keys, recursively."""
    if isinstance(obj, dict):
        return {k: clean(v) for k, v in obj.items() if not str(k).startswith("_")}
    if isinstance(obj, list):
        return [clean(v) for v in obj]
    return obj


def run_table(rows: list[dict]) -> list[dict]:
    return [
        {
            "family": r["model"],
            "layers": r["layers"],
            "width": r["hidden"],
            "data_fraction": r["data_fraction"],
            "device": r.get("_device"),
            "stopped_by": r.get("_stopped_by"),
            "non_embedding_params": r["non_embedding_params"],
            "params": r["params"],
            "test_ndcg10": r["test_ndcg10"],
            "test_ndcg10_ci95": [r["test_ndcg10_lo"], r["test_ndcg10_hi"]],
            "valid_ndcg10": r["valid_ndcg10"],
            "epochs_run": r["epochs_run"],
            "best_epoch": r["best_epoch"],
            "train_flops": r["train_flops"],
            "run": r["config_hash"],
        }
        for r in sorted(
            rows, key=lambda r: (r["model"], r["data_fraction"], r["non_embedding_params"])
        )
    ]


def ml1m(root: Path, rows: list[dict], cmd: str) -> dict:
    fits = {f: sa.power([r for r in rows if r["model"] == f]) for f in sa.FAMILIES
            if sum(r["model"] == f for r in rows) >= 3}  # fmt: skip
    pairs = sa.paired(root / "ml1m", rows)
    conclusion = sa.family_conclusion(fits, pairs)
    figs.families(rows, fits, FIG / "scaling_ml1m_families.png")
    metrics = {"runs (finished)": len(rows), "widths finished": sorted({r["hidden"] for r in rows})}
    for f, fit in fits.items():
        metrics[f"{f} b (NDCG@10 ~ N_non-emb^b)"] = sa.r4(fit["b"])
        metrics[f"{f} b 95% CI"] = [sa.r4(v) for v in fit["b_ci95"]]
        metrics[f"{f} R2 fit"] = sa.r4(fit["r2_fit"])
        metrics[f"{f} R2 held-out (2 largest)"] = sa.r4(fit["heldout"]["r2_heldout"])
    for name, p in pairs.items():
        metrics[f"{name} mean paired NDCG@10 diff"] = sa.r4(p["mean_diff"])
    comp = sa.compute_curves(root / "ml1m", rows)
    figs.iso_flop(comp, FIG / "iso_flop_ml1m.png")
    extra = {"conclusion": conclusion, "holdout_rule": sa.HOLDOUT_RULE, "fits": fits,
             "paired": pairs, "runs": run_table(rows), "iso_flop": clean(comp)}  # fmt: skip
    write_result("scaling_ml1m", metrics, dataset=ML1M, protocol=PROTOCOL, command=cmd,
                 notes=conclusion, extra=extra)  # fmt: skip
    return {**extra, "metrics": metrics}


def plus(root: Path, rows: list[dict], cmd: str) -> dict:
    rep = sa.sasrec_plus(root / "sasrec_plus", rows)
    figs.sasrec_plus(rep, FIG / "scaling_sasrec_plus.png")
    metrics = run_counts(rows)
    for arm, pts in rep["by_arm"].items():
        for name, p in pts.items():
            metrics[f"{arm} {name}"] = sa.r4(p["ndcg10"])
    for arm, f in rep["fits"].items():
        metrics[f"{arm} b"] = sa.r4(f["b"])
        metrics[f"{arm} b 95% CI"] = [sa.r4(v) for v in f["b_ci95"]]
    for name, p in rep["vs_plain"].items():
        metrics[f"{name} mean matched-depth diff"] = sa.r4(p["mean_diff"])
    write_result("scaling_sasrec_plus", metrics, dataset=ML1M, protocol=PROTOCOL, command=cmd,
                 notes=rep["conclusion"], extra=rep)  # fmt: skip
    return rep


def perf_law(rows: list[dict], name: str, dataset: str, note: str, cmd: str) -> dict:
    rep = sa.perf_law(rows)
    figs.perf_law(rep, f"Performance Law, {dataset}", FIG / f"{name}.png")
    metrics = run_counts(rows)
    for k, pl in rep.items():
        if "error" in pl:
            metrics[f"{k}"] = f"not fitted: {pl['error']}"
            continue
        metrics[f"{k}: R2 fit"] = sa.r4(pl["r2"])
        metrics[f"{k}: R2 held-out"] = sa.r4(pl["r2_heldout"])
        metrics[f"{k}: held-out predicted vs measured"] = [
            [sa.r4(h["predicted"]), sa.r4(h["measured"])] for h in pl.get("heldout", [])
        ]
    extra = {"fits": clean(rep), "runs": run_table(rows)}
    write_result(name, metrics, dataset=dataset, protocol=PROTOCOL, command=cmd, notes=note,
                 extra=extra)  # fmt: skip
    return extra


ML1M = "ML-1M (6,040 x 3,416)"
BEAUTY = "Amazon Beauty (22,363 x 12,101)"
PROTOCOL = (
    "sweep specs in benchmarks/sweeps/, trained on the lent H100 (benchmarks/gpu/) except the "
    "runs whose 'device' is cpu (same spec and budget; 'stopped_by' says whether the time cap cut "
    "a run)"
)
ML1M_NOTE = (
    "One data size on ML-1M: D' = tokens x ApEn (or / ApEn) is the same for every run, so the "
    "law's data term ln D' + p2 D'^-w5 is a single constant: p2 and w5 are not identifiable "
    "separately (only their sum with ln D'), and the multiply and divide forms are the same fit. "
    "What is fitted is the N (layers) and d (width) part plus that constant, pooled over the "
    "three families (the law has no family term); d takes {widths} among the finished runs."
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--root", type=Path, default=ROOT / "gpu-runs" / "sweeps")
    args = ap.parse_args()
    data_dir()
    cmd = "SEQREC_DATA_DIR=/work/shared/data python benchmarks/scaling_report.py"
    ml_rows = table(args.root, "ml1m", want_apen=True)
    out = {"ml1m": ml1m(args.root, ml_rows, cmd)}
    out["plus"] = plus(args.root, table(args.root, "sasrec_plus"), cmd)
    widths = sorted({r["hidden"] for r in ml_rows})
    note = ML1M_NOTE.format(widths=f"the values {widths}" if len(widths) > 2 else
                            f"only the values {widths}, so w4 is weakly identified")  # fmt: skip
    out["pl_ml1m"] = perf_law(ml_rows, "perf_law_ml1m", ML1M, note, cmd)
    beauty = table(args.root, "beauty")
    out["pl_beauty"] = perf_law(beauty, "perf_law_beauty", BEAUTY, "", cmd)
    apen = json.loads((RESULTS / "apen_datasets.json").read_text())
    figs.apen(apen, FIG / "apen_datasets.png")
    out["apen"] = apen["metrics"]
    write_summary(out, cmd, NOTES / "scaling_summary.md")


if __name__ == "__main__":
    main()
