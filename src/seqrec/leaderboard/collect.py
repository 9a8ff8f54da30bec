"""The leaderboard's numbers: finished runs (and quality result files) as boards of rows.

Sources: every finished retrieval run under ``DIR/runs/`` (results.json + test_ranks.npy), and
optionally the result files benchmarks/quality.py writes (``--results benchmarks/results``:
test metrics, the per-user CIs and the full config, but no ranks).

A board holds the results that rank the same test users and items under the same protocol
(dataset, user and item counts, full or sampled ranking, which seen items are masked, the
``eval.repeat_targets`` rule) after the same training protocol (early stopping on validation,
or fixed epochs with the last tested), because only those numbers are comparable. A row is one
configuration: results whose configs are equal apart from the seed and the other
``RUN_ENVIRONMENT`` fields (device, threads, ...), from one source.

A row's ± is the 95% CI half-width of its mean: a t-interval over the seeds' test values with
two seeds or more, what someone re-running the row should expect; with one seed the normal CI
over that run's test users, which leaves out seed noise (the row is marked). Each run-backed
row is tested against the board's best run-backed row, paired over the same test users
(`seqrec.comparison.compare`: per-user values averaged over each row's seeds, paired t-test and
Wilcoxon), with Holm's correction over the board's rows; result files have no per-user ranks,
so their rows have no paired test.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from seqrec.comparison import RUN_ENVIRONMENT, compare, config_differences, repeat_rule
from seqrec.errors import SeqrecError
from seqrec.eval import stats
from seqrec.fsutil import read_format
from seqrec.leaderboard.files import LEDGER, LEDGER_FORMAT

KEYS = ("NDCG@10", "HR@10")
TRAINING = {
    "best": "early stopping on validation NDCG@10, best epoch tested",
    "last": "fixed epochs, last epoch tested",
    "best-512": "512 validation users, early stopping, best epoch tested",
    "gr": "generative-recommenders' protocol: 512 validation users, fixed epochs, last epoch "
    "tested",
}


def slug(dataset: str) -> str:
    """A catalogue name, or a data file's name without its suffixes: the board's dataset."""
    return re.sub(r"(\.seq)?(\.txt|\.csv|\.dat|\.tsv|\.parquet)?(\.gz)?$", "", Path(dataset).name)


def training_protocol(config: dict) -> str:
    last = config["train"].get("select", "best") == "last"
    if config["data"].get("valid_users") == 512:
        return "gr" if last else "best-512"
    return "last" if last else "best"


def hardware(machine: dict | None) -> str:
    """``GPU H100`` or ``CPU, 2 threads``: the kind of machine a result trained on."""
    machine = machine or {}
    gpu = machine.get("cuda") or machine.get("gpu")
    if gpu:
        return "GPU " + gpu.replace("NVIDIA ", "").split(" ")[0]
    threads = machine.get("threads")
    return f"CPU, {threads} thread{'s' * (threads != 1)}" if threads else "CPU"


def _protocol_fields(protocol: dict) -> dict[str, Any]:
    return {
        "ranking": protocol.get("ranking", "full"),
        "mask_seen": protocol.get("mask_seen", True),
        "repeat_targets": repeat_rule(protocol),
        "repeat_share": protocol.get("repeat_share"),
    }


def run_record(run_dir: Path, ledger: dict[str, dict]) -> dict[str, Any] | None:
    """A finished retrieval run as a record (None for anything else in runs/)."""
    try:
        res = json.loads((run_dir / "results.json").read_text())
    except (OSError, ValueError):
        return None
    if "NDCG@10" not in res.get("test", {}).get("metrics", {}) or "config" not in res:
        return None  # a ranking-task run, or not seqrec's
    if not (run_dir / "test_ranks.npy").is_file():
        return None
    per_user = stats.per_user_metrics(np.load(run_dir / "test_ranks.npy"), [10])
    entry = ledger.get(run_dir.name, {})
    return {
        "name": run_dir.name,
        "source": "run",
        "path": str(run_dir),
        "row": entry.get("row") or re.sub(r"-s\d+$", "", run_dir.name),
        "config": res["config"],
        "dataset": slug(res["dataset"]["name"]),
        "users": res["dataset"]["users"],
        "items": res["dataset"]["items"],
        **_protocol_fields(res["test"]["protocol"]),
        "training": training_protocol(res["config"]),
        "metrics": {k: res["test"]["metrics"][k] for k in KEYS},
        "user_ci": {k: list(stats.normal_ci(per_user[k])) for k in KEYS},
        "train_seconds": res.get("train_seconds"),
        "hardware": hardware(res.get("machine")),
        "preset": entry.get("preset"),
        "tuning": entry.get("tuning"),
    }


def result_record(path: Path) -> dict[str, Any] | None:
    """A benchmarks/quality.py result file as a record (None for other result files)."""
    try:
        rec = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    metrics = rec.get("metrics", {}) if isinstance(rec, dict) else {}
    counts = re.search(r"\(([\d,]+) users, ([\d,]+) items", str(rec.get("dataset", "")))
    if not rec.get("config") or "test/NDCG@10" not in metrics or counts is None:
        return None
    protocol = rec.get("protocol") or {}
    protocol = protocol.get("full", protocol) if isinstance(protocol, dict) else {}
    name = rec.get("name", path.stem)
    return {
        "name": name,
        "source": "result",
        "path": str(path),
        "row": re.sub(r"_s(eed)?\d+$", "", name),
        "config": rec["config"],
        "dataset": slug(rec["config"]["data"]["dataset"]),
        "users": int(counts.group(1).replace(",", "")),
        "items": int(counts.group(2).replace(",", "")),
        **_protocol_fields(protocol),
        "training": training_protocol(rec["config"]),
        "metrics": {k: metrics[f"test/{k}"] for k in KEYS},
        "user_ci": {k: metrics.get(f"test/{k} 95% CI") for k in KEYS},
        "train_seconds": metrics.get("train_seconds"),
        "hardware": hardware(rec.get("train_machine") or rec.get("machine")),
        "preset": None,
        "tuning": None,
    }


def read_ledger(root: Path) -> dict[str, dict]:
    return dict((read_format(Path(root) / LEDGER, LEDGER_FORMAT) or {}).get("cells", {}))


def collect(root: Path | None, results: Path | None = None) -> list[dict[str, Any]]:
    """Every usable record under ``root/runs`` and in the ``results`` folder."""
    records = []
    if root is not None:
        ledger = read_ledger(root)
        runs = Path(root) / "runs"
        for run_dir in sorted(runs.iterdir()) if runs.is_dir() else []:
            rec = run_record(run_dir, ledger)
            if rec is not None:
                records.append(rec)
    if results is not None:
        if not Path(results).is_dir():
            raise SeqrecError(f"--results {results} is not a folder; pass benchmarks/results")
        for path in sorted(Path(results).glob("*.json")):
            rec = result_record(path)
            if rec is not None:
                records.append(rec)
    return records


def board_key(rec: dict) -> tuple:
    return (rec["dataset"], rec["users"], rec["items"], rec["ranking"], str(rec["mask_seen"]),
            rec["repeat_targets"], rec["training"])  # fmt: skip


def _same_row(row: list[dict], rec: dict) -> bool:
    first = row[0]
    seeds = {r["config"]["train"]["seed"] for r in row}
    return (
        first["source"] == rec["source"]
        and rec["config"]["train"]["seed"] not in seeds
        and not config_differences(first["config"], rec["config"], RUN_ENVIRONMENT)
    )


def group(records: list[dict]) -> dict[tuple, list[list[dict]]]:
    """Board key -> rows; a row is the records (seeds) of one configuration and source."""
    boards: dict[tuple, list[list[dict]]] = {}
    for rec in records:
        rows = boards.setdefault(board_key(rec), [])
        row = next((row for row in rows if _same_row(row, rec)), None)
        if row is None:
            rows.append([rec])
        else:
            row.append(rec)
    return boards


def metric_cell(row: list[dict], key: str) -> dict[str, Any]:
    """The row's mean of one metric and its 95% CI: over seeds (t) or, one seed, over users."""
    values = [r["metrics"][key] for r in row]
    if len(values) > 1:
        mean, low, high = stats.t_interval(values)
        ci = "seeds"
    elif row[0]["user_ci"].get(key):
        mean, (low, high) = values[0], row[0]["user_ci"][key]
        ci = "users"
    else:
        mean, low, high, ci = values[0], values[0], values[0], "none"
    return {"mean": mean, "low": low, "high": high, "half_width": (high - low) / 2, "ci": ci,
            "values": values}  # fmt: skip


def _counted(values: list[str]) -> str:
    counts = Counter(values)
    return ", ".join(v if len(counts) == 1 else f"{v} ({n})" for v, n in counts.items())


def summarise_row(row: list[dict]) -> dict[str, Any]:
    row = sorted(row, key=lambda r: r["config"]["train"]["seed"])
    first = row[0]
    seconds = [r["train_seconds"] for r in row if r["train_seconds"] is not None]
    shares = [r["repeat_share"] for r in row if r["repeat_share"] is not None]
    return {
        "label": first["row"],
        "model": first["config"]["model"]["name"],
        "objective": first["config"]["objective"]["name"],
        "source": first["source"],
        "runs": [r["name"] for r in row],
        "paths": [r["path"] for r in row],
        "seeds": [r["config"]["train"]["seed"] for r in row],
        **{key: metric_cell(row, key) for key in KEYS},
        "repeat_targets": first["repeat_targets"],
        "repeat_share": float(np.mean(shares)) if shares else None,
        "train_seconds": float(np.mean(seconds)) if seconds else None,
        "hardware": _counted([r["hardware"] for r in row]),
        "preset": first["preset"],
        "tuning": first["tuning"],
        "vs_best": None,
    }


def paired_against_best(rows: list[dict]) -> str | None:
    """Each run-backed row against the best run-backed one, paired per test user; Holm over
    the board's rows, per metric. Returns the reference row's label."""
    backed = [r for r in rows if r["source"] == "run"]
    if not backed:
        return None
    best = max(backed, key=lambda r: r["NDCG@10"]["mean"])
    tested = []
    for row in backed:
        if row is best:
            continue
        try:
            res = compare([best["paths"], row["paths"]], baseline=True, metrics=list(KEYS))
        except SeqrecError as err:
            row["vs_best"] = {"error": str(err)}
            continue
        row["vs_best"] = {p["metric"]: {k: v for k, v in p.items() if k not in ("a", "b", "metric",
                                                                       "p_ttest_holm")}
                          for p in res.pairs}  # fmt: skip
        tested.append(row)
    for key in KEYS:
        adjusted = stats.holm([r["vs_best"][key]["p_ttest"] for r in tested])
        for row, p in zip(tested, adjusted, strict=True):
            row["vs_best"][key]["p_holm"] = p
    return best["label"]


def _unique_labels(rows: list[dict]) -> None:
    seen: Counter = Counter()
    for row in rows:
        seen[row["label"]] += 1
        if seen[row["label"]] > 1:
            row["label"] = f"{row['label']} ({seen[row['label']]})"


def build(records: list[dict]) -> list[dict[str, Any]]:
    """Every board with its rows ranked by mean test NDCG@10, as plain data."""
    boards = []
    for key, raw_rows in sorted(group(records).items(), key=lambda kv: kv[0]):
        dataset, users, items, ranking, _, rule, training = key
        rows = sorted((summarise_row(r) for r in raw_rows), key=lambda r: -r["NDCG@10"]["mean"])
        _unique_labels(rows)
        first = raw_rows[0][0]
        boards.append({
            "dataset": dataset,
            "users": users,
            "items": items,
            "ranking": ranking,
            "mask_seen": first["mask_seen"],
            "repeat_targets": rule,
            "training": training,
            "training_text": TRAINING[training],
            "paired_against": paired_against_best(rows),
            "rows": rows,
        })  # fmt: skip
    _name_figures(boards)
    return boards


def _name_figures(boards: list[dict]) -> None:
    """``leaderboard-<dataset>.png``, with the protocol when a dataset has several boards."""
    per_dataset = Counter(b["dataset"] for b in boards)
    for board in boards:
        name = board["dataset"]
        if per_dataset[name] > 1:  # items, training protocol and repeat rule tell them apart
            name += f"-{board['items']}-{board['training']}-{board['repeat_targets']}"
        board["figure"] = f"leaderboard-{re.sub(r'[^A-Za-z0-9_.-]+', '_', name)}.png"
