"""Scaling results from the sweeps: tables, power-law and Performance Law fits, figures.

    python benchmarks/scaling_report.py [--root gpu-runs/sweeps]

Reads every sweep folder under --root (runs/<config hash>/results.json as `seqrec sweep` or
benchmarks/gpu/recover.py wrote them), rebuilds each folder's results.parquet, and writes:
  - scaling_ml1m: SASRec test NDCG@10 vs non-embedding parameters on ML-1M (power law with a
    bootstrap CI, R² on the largest runs held out), per-family points;
  - scaling_sasrec_plus: SASRec with/without HSTU's relative attention bias and residual
    pattern, NDCG@10 by depth at width 64;
  - perf_law_beauty: the Performance Law fitted on the Beauty sweep (layers x width x data
    fraction; data term tokens x ApEn and the divide form), R² on held-out runs;
and PNGs in benchmarks/figures/. Runs listed in a folder's cut.json (stopped by the session's
deadline, not by their own budget) are left out.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

from common import ROOT, data_dir, write_result
from seqrec.errors import SeqrecError
from seqrec.scaling.fit import fit_table, plot_fit
from seqrec.scaling.sweep import (
    _data_key,
    _prepare_data,
    expand,
    load_spec,
    row_from_run,
    write_table,
)

SPECS = {
    "ml1m": "benchmarks/sweeps/ml1m-sasrec-hstu.yaml",
    "sasrec_plus": "benchmarks/sweeps/ml1m-sasrec-plus.yaml",
    "beauty": "benchmarks/sweeps/beauty-perf-law.yaml",
}
FIG = ROOT / "benchmarks" / "figures"


def complete_accounting(run_dir: Path, cfg) -> None:
    """Recovered runs lack the trainer's accounting; compute it as the trainer does."""
    path = run_dir / "results.json"
    res = json.loads(path.read_text())
    if "flops_per_interaction" in res and "train_data" in res:
        return
    from seqrec.data import prepare
    from seqrec.train.loop import Trainer

    store, split = prepare(cfg.data)
    with tempfile.TemporaryDirectory() as tmp:
        cpu = cfg.model_copy(update={"train": cfg.train.model_copy(update={"device": "cpu"})})
        tr = Trainer(cpu, store, split, Path(tmp), progress=False)
        res.update(tr.accounting())
        res["train_data"] = {
            "users": len(tr.train_rows),
            "interactions": int(split.train.lengths()[tr.train_rows].sum()),
            "fraction": cfg.data.train_fraction,
        }
    res.setdefault("train_seconds", None)
    path.write_text(json.dumps(res, indent=1, default=float))


def table(root: Path, name: str) -> list[dict]:
    spec = load_spec(ROOT / SPECS[name])
    folder = root / name
    cut = (
        set(json.loads((folder / "cut.json").read_text()))
        if (folder / "cut.json").is_file()
        else set()
    )
    runs = [
        r
        for r in expand(spec, device="cpu")
        if (folder / "runs" / r.config_hash / "results.json").is_file() and r.config_hash not in cut
    ]
    apen = _prepare_data(runs, bool(spec.get("apen")))
    rows = []
    for r in runs:
        complete_accounting(folder / "runs" / r.config_hash, r.cfg)
        rows.append(row_from_run(folder, r, apen[_data_key(r.cfg)][0]))
    write_table(folder / "results.parquet", rows)
    return rows


def clean(report: dict) -> dict:
    return {k: v for k, v in report.items() if not k.startswith("_")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--root", type=Path, default=ROOT / "gpu-runs" / "sweeps")
    args = ap.parse_args()
    data_dir()
    cmd = f"python benchmarks/scaling_report.py --root {args.root}"
    protocol = "sweep specs in benchmarks/sweeps/, trained on the lent H100 (benchmarks/gpu/)"

    rows = table(args.root, "ml1m")
    sas = [r for r in rows if r["model"] == "sasrec"]
    rep = fit_table(sas, x="non_embedding", y="test_ndcg10", holdout="largest:2", perf_law=False)
    plot_fit(rep, FIG / "scaling_ml1m_sasrec.png")
    curve = rep["curve"]
    metrics = {
        "runs (finished)": len(rows),
        "families": sorted({r["model"] for r in rows}),
        "power law NDCG@10 = a * N^b, b": curve["params"].get("b"),
        "b 95% CI": curve.get("ci", {}).get("b"),
        "R2 fit": curve["r2"],
        "R2 held-out (2 largest)": curve["r2_heldout"],
    }
    for r in sorted(sas, key=lambda r: (r["layers"], r["hidden"])):
        metrics[f"L{r['layers']} d{r['hidden']} ({r['non_embedding_params']:,} non-emb.)"] = [
            round(r["test_ndcg10"], 4),
            [round(r["test_ndcg10_lo"], 4), round(r["test_ndcg10_hi"], 4)],
        ]
    write_result("scaling_ml1m", metrics, dataset="ML-1M (6,040 x 3,416)", protocol=protocol,
                 command=cmd, extra={"fit": clean(rep)})  # fmt: skip

    plus = table(args.root, "sasrec_plus")
    metrics = {"runs (finished)": len(plus)}
    for r in sorted(plus, key=lambda r: (r["point"], r["layers"])):
        point = json.loads(r["point"])
        arm = "+".join(f"{k.split('.')[-1]}={v}" for k, v in point.items() if k != "model.layers")
        metrics[f"{arm or 'plain'} L{r['layers']}"] = round(r["test_ndcg10"], 4)
    write_result("scaling_sasrec_plus", metrics, dataset="ML-1M (6,040 x 3,416)",
                 protocol=protocol, command=cmd)  # fmt: skip

    beauty = table(args.root, "beauty")
    metrics = {"runs (finished)": len(beauty)}
    for form in ("multiply", "divide"):
        try:
            rep = fit_table(beauty, x="params", y="test_ndcg10", holdout="random:3",
                            data_form=form, perf_law_boot=100)  # fmt: skip
        except SeqrecError as err:
            metrics[f"Performance Law ({form})"] = f"not fitted: {err}"
            continue
        pl = rep.get("perf_law", {})
        metrics[f"Performance Law ({form}) R2 fit"] = pl.get("r2")
        metrics[f"Performance Law ({form}) R2 held-out"] = pl.get("r2_heldout")
        metrics[f"Performance Law ({form}) held-out predicted vs measured"] = [
            [round(h["predicted"], 4), round(h["measured"], 4)] for h in pl.get("heldout", [])
        ]
        if form == "multiply":
            plot_fit(rep, FIG / "perf_law_beauty.png")
    for r in sorted(beauty, key=lambda r: (r["data_fraction"], r["layers"], r["hidden"])):
        metrics[f"L{r['layers']} d{r['hidden']} frac {r['data_fraction']}"] = round(
            r["test_ndcg10"], 4
        )
    write_result("perf_law_beauty", metrics, dataset="Amazon Beauty (22,363 x 12,101)",
                 protocol=protocol, command=cmd)  # fmt: skip
    print(np.__name__, "done")


if __name__ == "__main__":
    main()
