"""A sweep's results table, ``DIR/results.parquet``: one row per config hash (schema
``COLUMNS``, documented in docs/SCALING.md), built from each finished run's folder.

Only numpy at import time (pyarrow when the table is read or written), so `seqrec fit` reads
a sweep's table without loading the training stack.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from seqrec.eval.metrics import confidence_interval, per_user_metrics

if TYPE_CHECKING:  # the spec module loads the config classes (pydantic); rows need only fields
    from seqrec.scaling.sweep_spec import SweepRun

# column -> arrow dtype name; the documented schema of results.parquet (docs/SCALING.md)
COLUMNS: dict[str, str] = {
    "config_hash": "str",
    "status": "str",  # ok | failed
    "error": "str",
    "model": "str",
    "dataset": "str",
    "layers": "int",
    "hidden": "int",
    "heads": "int",
    "max_len": "int",
    "data_fraction": "float",
    "seed": "int",
    "point": "str",  # JSON of the spec keys this run set (grid + runs entry)
    "params": "int",
    "embedding_params": "int",
    "non_embedding_params": "int",
    "flops_forward": "float",  # per scored interaction
    "flops_train": "float",  # per trained interaction (~3x forward)
    "train_interactions": "int",  # targets trained on, all epochs
    "train_flops": "float",  # flops_train * train_interactions
    "train_users": "int",  # training users kept (data_fraction)
    "train_tokens": "int",  # interactions in the kept training sequences
    "apen": "float",  # dataset ApEn, |.| per user (m=2, last 50), null when not computed
    "train_seconds": "float",
    "epochs_run": "int",
    "best_epoch": "int",
    "valid_ndcg10": "float",
    "valid_hr10": "float",
    "test_ndcg10": "float",
    "test_ndcg10_lo": "float",
    "test_ndcg10_hi": "float",
    "test_hr10": "float",
    "test_hr10_lo": "float",
    "test_hr10_hi": "float",
    "train_loss": "float",  # mean training loss of the last epoch
    "metrics_path": "str",  # relative to the sweep folder
}


def _ci(ranks: np.ndarray, name: str, k: int) -> tuple[float, float]:
    """95% interval of a metric's mean over the test users, from their ranks."""
    return confidence_interval(per_user_metrics(ranks, [k])[f"{name}@{k}"])


def _config_fields(run: SweepRun) -> dict[str, Any]:
    cfg = run.cfg
    return {
        "config_hash": run.config_hash,
        "model": cfg.model.name,
        "dataset": cfg.data.dataset,
        "layers": cfg.model.layers,
        "hidden": cfg.model.hidden,
        "heads": cfg.model.heads,
        "max_len": cfg.data.max_len,
        "data_fraction": cfg.data.train_fraction,
        "seed": cfg.train.seed,
        "point": json.dumps(run.point, sort_keys=True),
    }


def row_from_run(root: Path, run: SweepRun, apen: float | None) -> dict[str, Any]:
    """The table row of a finished run, from its results.json and test_ranks.npy."""
    run_dir = root / "runs" / run.config_hash
    res = json.loads((run_dir / "results.json").read_text())
    ranks = np.load(run_dir / "test_ranks.npy")
    valid, test = res["valid"]["metrics"], res["test"]["metrics"]
    params, flops = res["params"], res["flops_per_interaction"]
    seen = res.get("train_interactions")
    data = res.get("train_data", {})
    ndcg_lo, ndcg_hi = _ci(ranks, "NDCG", 10)
    hr_lo, hr_hi = _ci(ranks, "HR", 10)
    return {
        **_config_fields(run),
        "status": "ok",
        "error": None,
        "params": params["total"],
        "embedding_params": params["embedding"],
        "non_embedding_params": params["non_embedding"],
        "flops_forward": flops["forward"],
        "flops_train": flops["train"],
        "train_interactions": seen,
        "train_flops": None if seen is None else flops["train"] * seen,
        "train_users": data.get("users"),
        "train_tokens": data.get("interactions"),
        "apen": apen,
        "train_seconds": res["train_seconds"],
        "epochs_run": res["epochs_run"],
        "best_epoch": res["best_epoch"],
        "valid_ndcg10": valid["NDCG@10"],
        "valid_hr10": valid["HR@10"],
        "test_ndcg10": test["NDCG@10"],
        "test_ndcg10_lo": ndcg_lo,
        "test_ndcg10_hi": ndcg_hi,
        "test_hr10": test["HR@10"],
        "test_hr10_lo": hr_lo,
        "test_hr10_hi": hr_hi,
        "train_loss": res.get("train_loss"),
        "metrics_path": f"runs/{run.config_hash}/metrics.jsonl",
    }


def failed_row(run: SweepRun, error: str) -> dict[str, Any]:
    """The table row of a run that could not finish: its config columns and the error."""
    return {**_config_fields(run), "status": "failed", "error": error}


def atomic_text(path: Path, text: str) -> None:
    """Write a small text file via a temporary file renamed into place: a sweep stopped
    mid-write never leaves a truncated spec or config behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def _arrow_schema():
    import pyarrow as pa

    types = {"str": pa.string(), "int": pa.int64(), "float": pa.float64()}
    return pa.schema([(name, types[t]) for name, t in COLUMNS.items()])


def read_table(path: Path) -> list[dict[str, Any]]:
    """The table's rows as dicts; no table yet is an empty list (a sweep's first start)."""
    import pyarrow.parquet as pq

    if not Path(path).is_file():
        return []
    return pq.read_table(path).to_pylist()


def write_table(path: Path, rows: list[dict[str, Any]]) -> None:
    """Rows -> parquet with the documented schema, via a temp file renamed into place.

    pyarrow rather than polars: the sweep must run wherever training runs, and pyarrow is the
    smaller, more commonly preinstalled dependency (GPU images ship it)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    full = [{name: row.get(name) for name in COLUMNS} for row in rows]
    table = pa.Table.from_pylist(full, schema=_arrow_schema())
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        pq.write_table(table, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
