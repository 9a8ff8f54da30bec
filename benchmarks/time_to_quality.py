"""Time to quality on CPU: seqrec against RePlay's SASRec (and Klenitskiy & Vasilev's code).

    SEQREC_DATA_DIR=../shared/data python benchmarks/time_to_quality.py --dataset ml-1m --seeds 42 1 2
    SEQREC_DATA_DIR=../shared/data python benchmarks/time_to_quality.py --dataset beauty --seeds 42 1 2
    ... --sides seqrec replay kv --kv-repo PATH/sasrec-bert4rec-recsys23

Every side trains SASRec with full cross-entropy over all items on the same data with the same
model and training hyper-parameters (seqrec's preset: ``sasrec-ml-1m`` = ML-1M, max length 200,
width 64, 2 blocks, 1 head, dropout 0.1, batch 128, lr 1e-3; ``sasrec-beauty`` = Beauty, max
length 50, 2 heads, dropout 0.5, batch 256), validates NDCG@10 after every epoch and stops after
``patience`` (the preset's 10) validations without a gain, or at the epoch cap or time budget.

* seqrec: ``python -m seqrec train -c PRESET`` (the library's CLI), seed / threads / cap as
  overrides; its metrics.jsonl gives each epoch's training wall time and validation NDCG@10,
  results.json the test metrics of the best-validation weights.
* replay: RePlay's SASRec (pip ``replay-rec`` 0.22, its ``replay.nn`` API trained by Lightning),
  run by benchmarks/peers/replay_side.py under a throwaway venv this script sets up on first use
  (``--venv``, default /tmp/replay-venv: ``python -m venv --system-site-packages``, so it reuses
  this environment's torch and never downloads one; ``replay-rec[torch]==0.22.*`` and matplotlib
  are pip-installed into it, torch held at this environment's version by a constraints file).
* kv: Klenitskiy & Vasilev's reference code (github antklen/sasrec-bert4rec-recsys23) from a
  local checkout, ``--kv-repo PATH`` (benchmarks/peers/kv_side.py; the venv gets transformers,
  which their models.py imports).

Same data: seqrec's prepared store and leave-one-out split (``seqrec.data.prepare``) are handed
to the peers as data.npz: each user's training sequence, the valid / test histories and targets.
Same metric: the peers score every item for each validation user's last position, and the rank
of the held-out item follows seqrec's rule (benchmarks/peers/protocol.py mirrors
seqrec.eval.ranking: the whole history masked except the target, rank = 1 + #items scored
strictly higher); NDCG@10 / HR@10 come from seqrec.eval.metrics on those ranks. Same clock: the
wall time of each epoch's training loop (data loading and batch building included, validation
excluded and reported apart), summed; the same span seqrec logs as ``epoch_seconds``. Sides run
one after another on the same machine with the same torch threads, in an order that alternates
from seed to seed so that drift of the machine hits every side alike.

Reported, per side and seed: the curve (training seconds, valid NDCG@10) per epoch, the best
valid NDCG@10, test NDCG@10 / HR@10 of the best-validation weights, seconds per epoch, why it
stopped. Summary: the common target per seed (the lowest best valid NDCG@10 over the sides,
which every side reaches), each side's training seconds to reach it (the first epoch end at or
above it; validation happens at epoch ends only), their mean over seeds and the ratio
seqrec / RePlay; the mean-over-seeds rule (target = the lowest side mean of best valid NDCG@10;
a run below it never reaches it) beside it; test NDCG@10 per side with its mean. One JSON per
dataset (benchmarks/results/time_to_quality_<dataset>.json) and one PNG (benchmarks/figures/
time_to_quality_<dataset>.png: valid NDCG@10 against training seconds, all sides, drawn by the
venv's matplotlib). Partial results are written after every run; ``--resume`` reuses them.

Run it on an idle machine: on 2 cores another process's load slows the sides unequally (seen
here: a concurrent job made a seqrec epoch 7x slower, a RePlay epoch 1.6x). Each run records
``other_cores_busy``, the cores other processes kept busy while it ran, and the summary lists
the runs where that passed 0.1. Each seqrec run also records ``src_state`` (commit, uncommitted
files under src/ and a hash of their diff): seqrec's side is whatever src/ holds when it runs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shlex
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from common import RESULTS, ROOT, data_dir, git_commit, machine

DATASETS = {"ml-1m": "sasrec-ml-1m", "beauty": "sasrec-beauty"}
# per side and seed, training + validation wall seconds (seqrec's train.time_budget_s): a cap
# against runaway runs, not the expected length. Patience 10 should end every run first (a
# peer epoch takes ~40 s on ML-1M and ~100 s on Beauty on the 2-core CPU, so 4 h allows about
# 300 and 140 epochs); a run the cap ends is flagged (stopped_by, summary.all_plateaued)
DEFAULT_BUDGET = {"ml-1m": 4 * 3600.0, "beauty": 4 * 3600.0}
SIDES = ("seqrec", "replay", "kv")
BUSY = 0.1  # cores other processes may keep busy during a run before it is flagged
PEERS = ROOT / "benchmarks" / "peers"
REPLAY_SPEC = "replay-rec[torch]==0.22.*"
FIGURES = ROOT / "benchmarks" / "figures"


def say(msg: str) -> None:
    print(f"[time_to_quality {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------- the peer venv
def venv_check(py: Path, kv: bool) -> str | None:
    """None when the venv imports what the sides need with this environment's torch."""
    import torch

    mods = "replay, lightning, matplotlib, pyarrow" + (
        ", transformers, pytorch_lightning" if kv else ""
    )
    code = (
        f"import torch, {mods}; from importlib.metadata import version; "
        f"assert torch.__version__ == {torch.__version__!r}, torch.__version__; "
        "assert version('replay-rec').startswith('0.2'), version('replay-rec')"
    )
    if not py.is_file():
        return f"{py} does not exist"
    r = subprocess.run([str(py), "-c", code], capture_output=True, text=True)
    return None if r.returncode == 0 else (r.stderr.strip().splitlines() or ["?"])[-1]


def ensure_venv(venv: Path, kv: bool) -> Path:
    """The throwaway venv the peers run in (module docstring); set up once, checked each time."""
    import torch

    py = venv / "bin" / "python"
    if venv_check(py, kv) is None:
        return py
    say(f"setting up {venv} ({REPLAY_SPEC}, matplotlib{', transformers' if kv else ''})")
    if not py.is_file():
        subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)],
                       check=True)  # fmt: skip
    constraints = venv / "constraints.txt"
    constraints.write_text(f"torch=={torch.__version__}\n")  # never another torch build
    pkgs = [REPLAY_SPEC, "matplotlib"] + (["transformers", "pandas"] if kv else [])
    cmd = [str(py), "-m", "pip", "install", "--disable-pip-version-check", "-q",
           "-c", str(constraints), *pkgs]  # fmt: skip
    failed = subprocess.run(cmd).returncode != 0
    why = "pip failed" if failed else venv_check(py, kv)
    if why is not None:
        sys.exit(f"could not set up the peer venv {venv} ({why}); remove the folder and retry")
    freeze = subprocess.run([str(py), "-m", "pip", "freeze"], capture_output=True, text=True)
    (venv / "freeze.txt").write_text(freeze.stdout)
    say(f"{venv} ready (pip freeze in {venv / 'freeze.txt'})")
    return py


# ---------------------------------------------------------------------- the shared data
def gather_rows(items: np.ndarray, starts: np.ndarray, ends: np.ndarray):
    """CSR copy of the slices items[starts[r]:ends[r]]: (offsets [n + 1], flat int32 items)."""
    lens = np.asarray(ends, dtype=np.int64) - np.asarray(starts, dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
    # the k-th flat position belongs to row r at index k - offsets[r]: items[starts[r] + that]
    idx = np.repeat(np.asarray(starts, dtype=np.int64) - offsets[:-1], lens)
    idx += np.arange(int(offsets[-1]))
    return offsets, np.asarray(items)[idx].astype(np.int32)


def export_data(cfg, path: Path) -> dict:
    """seqrec's prepared split -> data.npz for the peers (benchmarks/peers/protocol.py)."""
    from seqrec.data import prepare

    store, split = prepare(cfg.data)
    items = np.asarray(store.items)
    arrays: dict[str, np.ndarray] = {
        "n_items": np.int64(store.n_items),
        "max_len": np.int64(cfg.data.max_len),
    }
    train = split.train
    keep = np.flatnonzero(train.ends - train.starts >= 2)  # the rows seqrec trains on
    views = {"train": (train.starts[keep], train.ends[keep], None),
             "valid": (split.valid.starts, split.valid.ends, split.valid.targets),
             "test": (split.test.starts, split.test.ends, split.test.targets)}  # fmt: skip
    for name, (st, en, targets) in views.items():
        arrays[f"{name}_offsets"], arrays[f"{name}_items"] = gather_rows(items, st, en)
        if targets is not None:
            arrays[f"{name}_targets"] = np.asarray(targets, dtype=np.int64)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)
    return {
        "name": store.name,
        "users": int(store.n_users),
        "items": int(store.n_items),
        "interactions": len(items),
        "train_rows": len(keep),
        "valid_rows": len(split.valid),
        "test_rows": len(split.test),
        "split": split.protocol,
    }


# ---------------------------------------------------------------------- one run per side
def hyper(cfg, args, dataset: str) -> dict:
    m, t = cfg.model, cfg.train
    return {
        "hidden": m.hidden,
        "blocks": m.layers,
        "heads": m.heads,
        "dropout": m.dropout,
        "max_len": cfg.data.max_len,
        "batch_size": t.batch_size,
        "lr": t.lr,
        "epochs": args.epochs or t.epochs,
        "patience": t.patience,
        "time_budget": args.time_budget or DEFAULT_BUDGET[dataset],
    }


class OtherLoad:
    """Cores kept busy by *other* processes while a run goes on: the machine's busy CPU time
    (/proc/stat) minus this process's and its children's, over the wall time. The benchmark's
    timings mean something only where this stays near 0 (``with OtherLoad() as load: ...;
    load.cores``; None off Linux)."""

    @staticmethod
    def _busy_seconds() -> float:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
        return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")

    @staticmethod
    def _own_seconds() -> float:
        own = resource.getrusage(resource.RUSAGE_SELF)
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime

    def __enter__(self) -> OtherLoad:
        self.cores: float | None = None
        try:
            self._start = (self._busy_seconds(), self._own_seconds(), time.perf_counter())
        except (OSError, ValueError, IndexError):
            self._start = None
        return self

    def __exit__(self, *exc) -> None:
        if self._start is None:
            return
        busy0, own0, t0 = self._start
        busy = self._busy_seconds() - busy0
        own = self._own_seconds() - own0
        self.cores = round(max(busy - own, 0.0) / max(time.perf_counter() - t0, 1e-9), 3)


def child_env(threads: int) -> dict:
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), PYTHONUNBUFFERED="1")
    return env


def run_seqrec(preset: str, seed: int, hp: dict, args, folder: Path) -> dict:
    run_dir = folder / "run"
    cmd = [sys.executable, "-m", "seqrec", "train", "-c", preset,
           "-o", f"train.seed={seed}", "-o", f"train.threads={args.threads}",
           "-o", "train.device=cpu", "-o", f"train.epochs={hp['epochs']}",
           "-o", f"train.time_budget_s={hp['time_budget']}",
           "--out", str(run_dir), "--overwrite", "--no-progress"]  # fmt: skip
    if run_dir.is_dir() and (run_dir / "config.yaml").is_file():
        shutil.rmtree(run_dir)  # this script's own earlier run: its log must not be read again
    folder.mkdir(parents=True, exist_ok=True)
    log_path = run_dir / "metrics.jsonl"
    t0 = time.perf_counter()
    with open(folder / "stdout.log", "w") as out:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, env=child_env(args.threads)
        )
        seen, total = 0, 0.0
        while True:
            done = proc.poll() is not None
            events = _valid_events(log_path)
            for ev in events[seen:]:
                total += ev["epoch_seconds"]
                print(f"[seqrec seed {seed}] epoch {ev['epoch']:3d}  {ev['epoch_seconds']:7.1f} s "
                      f"train (total {total:8.1f} s)  valid NDCG@10 {ev['valid/NDCG@10']:.4f}  "
                      f"({ev['eval_seconds']:.1f} s)", file=sys.stderr, flush=True)  # fmt: skip
            seen = len(events)
            if done:
                break
            time.sleep(2.0)
    if proc.returncode != 0:
        tail = (folder / "stdout.log").read_text(errors="replace").strip().splitlines()[-5:]
        sys.exit(f"seqrec side failed (exit {proc.returncode}): {' | '.join(tail)}")
    results = json.loads((run_dir / "results.json").read_text())
    epochs, cum = [], 0.0
    for ev in _valid_events(log_path):
        cum += ev["epoch_seconds"]
        epochs.append({"epoch": ev["epoch"], "epoch_seconds": ev["epoch_seconds"],
                       "train_seconds": cum, "valid_seconds": ev["eval_seconds"],
                       "valid_ndcg10": ev["valid/NDCG@10"], "valid_hr10": ev["valid/HR@10"]})  # fmt: skip
    test = results["test"]["metrics"]
    import seqrec

    return _record("seqrec", seed, epochs, {
        "test_ndcg10": test["NDCG@10"], "test_hr10": test["HR@10"],
        "stopped_by": results.get("stopped_by"), "best_epoch_reported": results.get("best_epoch"),
        "params": _params_total(results.get("params")),
        "versions": {"seqrec": seqrec.__version__, "torch": _torch_version()},
        "command": shlex.join(cmd), "process_seconds": time.perf_counter() - t0,
        "recipe": {k: results["config"][k] for k in ("model", "objective", "train")},
    })  # fmt: skip


def _valid_events(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            ev = json.loads(line)
        except json.JSONDecodeError:  # a line being written
            continue
        if ev.get("event") == "valid":
            out.append(ev)
    return out


def _params_total(p) -> int | None:
    return p.get("total") if isinstance(p, dict) else p


def _torch_version() -> str:
    import torch

    return torch.__version__


def run_peer(side: str, py: Path, data: Path, seed: int, hp: dict, args, folder: Path) -> dict:
    from seqrec.eval.metrics import per_user_metrics

    script = PEERS / f"{side}_side.py"
    cmd = [str(py), str(script), "--data", str(data), "--out", str(folder),
           "--hidden", str(hp["hidden"]), "--blocks", str(hp["blocks"]),
           "--heads", str(hp["heads"]), "--dropout", str(hp["dropout"]),
           "--batch-size", str(hp["batch_size"]), "--lr", str(hp["lr"]),
           "--epochs", str(hp["epochs"]), "--patience", str(hp["patience"]),
           "--time-budget", str(hp["time_budget"]), "--seed", str(seed),
           "--threads", str(args.threads)]  # fmt: skip
    if side == "kv":
        cmd += ["--kv-repo", str(args.kv_repo)]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "result.json").unlink(missing_ok=True)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=child_env(args.threads))
    if proc.returncode != 0 or not (folder / "result.json").is_file():
        sys.exit(f"{side} side failed (exit {proc.returncode}): {shlex.join(cmd)}")
    peer = json.loads((folder / "result.json").read_text())
    ranks = np.load(folder / "ranks.npz")
    epochs = []
    for ev, r in zip(peer["epochs"], ranks["valid"], strict=True):
        m = per_user_metrics(r, [10])
        epochs.append({**{k: ev[k] for k in ("epoch", "epoch_seconds", "train_seconds",
                                              "valid_seconds", "train_loss")},
                       "valid_ndcg10": float(m["NDCG@10"].mean()),
                       "valid_hr10": float(m["HR@10"].mean())})  # fmt: skip
    test = per_user_metrics(ranks["test"], [10])
    return _record(side, seed, epochs, {
        "test_ndcg10": float(test["NDCG@10"].mean()), "test_hr10": float(test["HR@10"].mean()),
        "stopped_by": peer["stopped_by"], "best_epoch_reported": peer["best_epoch"],
        "params": peer["params"], "versions": peer["versions"], "command": shlex.join(cmd),
        "process_seconds": time.perf_counter() - t0, "recipe": peer.get("optimizer"),
        "test_seconds": peer["test_seconds"],
    })  # fmt: skip


def _record(side: str, seed: int, epochs: list[dict], extra: dict) -> dict:
    curve = [[e["train_seconds"], e["valid_ndcg10"]] for e in epochs]
    best = int(np.argmax([v for _, v in curve])) if curve else -1
    secs = [e["epoch_seconds"] for e in epochs]
    return {
        "side": side,
        "seed": seed,
        "curve": curve,
        "best_epoch": best,
        "best_valid_ndcg10": curve[best][1] if curve else None,
        "best_valid_hr10": epochs[best]["valid_hr10"] if curve else None,
        "train_seconds_to_best": curve[best][0] if curve else None,
        "train_seconds": curve[-1][0] if curve else 0.0,
        "valid_seconds": float(sum(e["valid_seconds"] for e in epochs)),
        "epochs_run": len(epochs),
        "sec_per_epoch_mean": float(np.mean(secs)) if secs else None,
        "sec_per_epoch_median": float(np.median(secs)) if secs else None,
        "epochs": epochs,
        **extra,
    }


# ---------------------------------------------------------------------- the summary
def time_to(curve: list, target: float) -> float | None:
    """Training seconds at the first validation at or above ``target`` (None: never)."""
    for t, v in curve:
        if v >= target:
            return float(t)
    return None


def _mean(xs: list) -> float | None:
    xs = [x for x in xs if x is not None]
    return float(np.mean(xs)) if xs else None


def summarize(runs: dict[str, dict[int, dict]]) -> dict:
    """Targets, times to them, ratios and test NDCG@10 from {side: {seed: record}}."""
    sides = [s for s in SIDES if runs.get(s)]
    seeds = sorted(set.intersection(*(set(runs[s]) for s in sides)), key=str) if sides else []
    out: dict = {"sides": sides, "seeds_complete": seeds}
    if not seeds:
        return out
    best = {s: {k: runs[s][k]["best_valid_ndcg10"] for k in seeds} for s in sides}
    # per-seed rule: the weakest side's best in that seed; every side reaches it
    per_seed_target = {k: min(best[s][k] for s in sides) for k in seeds}
    t_seed = {s: {k: time_to(runs[s][k]["curve"], per_seed_target[k]) for k in seeds}
              for s in sides}  # fmt: skip
    # mean rule: the weakest side's mean over seeds of its best
    mean_best = {s: _mean(list(best[s].values())) for s in sides}
    mean_target = min(mean_best.values())
    t_mean = {s: {k: time_to(runs[s][k]["curve"], mean_target) for k in seeds} for s in sides}
    test = {s: {k: runs[s][k]["test_ndcg10"] for k in seeds} for s in sides}
    out.update({
        "target_rule": "per seed: the lowest best valid NDCG@10 over the sides in that seed "
                       "(every side reaches it); time = training seconds at the end of the first "
                       "epoch whose valid NDCG@10 is at or above it",
        "target_per_seed": per_seed_target,
        "time_to_target": {s: {"per_seed": t_seed[s], "mean": _mean(list(t_seed[s].values()))}
                           for s in sides},
        "mean_rule": {
            "target": mean_target,
            "rule": "the lowest over the sides of the mean over seeds of best valid NDCG@10; "
                    "a run whose best is below it never reaches it (null)",
            "time_to_target": {s: {"per_seed": t_mean[s], "mean_of_reached":
                                   _mean(list(t_mean[s].values())),
                                   "reached": sum(v is not None for v in t_mean[s].values())}
                               for s in sides},
        },
        "best_valid_ndcg10": {s: {"per_seed": best[s], "mean": mean_best[s]} for s in sides},
        "test_ndcg10": {s: {"per_seed": test[s], "mean": _mean(list(test[s].values()))}
                        for s in sides},
        "test_hr10": {s: {"per_seed": {k: runs[s][k]["test_hr10"] for k in seeds},
                          "mean": _mean([runs[s][k]["test_hr10"] for k in seeds])} for s in sides},
        "sec_per_epoch": {s: _mean([runs[s][k]["sec_per_epoch_mean"] for k in seeds])
                          for s in sides},
        "stopped_by": {s: {k: runs[s][k]["stopped_by"] for k in seeds} for s in sides},
        "all_plateaued": all(runs[s][k]["stopped_by"] == "patience" for s in sides for k in seeds),
        "runs_on_a_busy_machine": [f"{s} seed {k}: {runs[s][k]['other_cores_busy']} cores"
                                   for s in sides for k in seeds
                                   if (runs[s][k].get("other_cores_busy") or 0) > BUSY],
    })  # fmt: skip
    if "seqrec" in sides and "replay" in sides:
        a, b = out["time_to_target"]["seqrec"]["mean"], out["time_to_target"]["replay"]["mean"]
        per = {k: (t_seed["seqrec"][k] / t_seed["replay"][k]) if t_seed["replay"][k] else None
               for k in seeds}  # fmt: skip
        peers = [out["test_ndcg10"][s]["mean"] for s in sides if s != "seqrec"]
        out["seqrec_vs_replay"] = {
            "time_ratio_of_means": a / b if a is not None and b else None,
            "time_ratio_per_seed": per,
            "criterion": "seeds >= 3, time ratio <= 0.5, seqrec mean test NDCG@10 >= every "
                         "peer's mean",
            "met": bool(len(seeds) >= 3 and a is not None and b and a / b <= 0.5
                        and out["test_ndcg10"]["seqrec"]["mean"] >= max(peers)),
        }  # fmt: skip
    return out


def headline(summary: dict) -> dict:
    """The flat metric table (make_results.py renders it)."""
    m: dict = {}
    if not summary.get("seeds_complete"):
        return m
    m["seeds"] = len(summary["seeds_complete"])
    m["target valid NDCG@10 (per-seed rule, mean)"] = _mean(
        list(summary["target_per_seed"].values())
    )
    for s in summary["sides"]:
        m[f"{s}/train seconds to target (mean)"] = summary["time_to_target"][s]["mean"]
        m[f"{s}/best valid NDCG@10 (mean)"] = summary["best_valid_ndcg10"][s]["mean"]
        m[f"{s}/test NDCG@10 (mean)"] = summary["test_ndcg10"][s]["mean"]
        m[f"{s}/test HR@10 (mean)"] = summary["test_hr10"][s]["mean"]
        m[f"{s}/seconds per epoch (mean)"] = summary["sec_per_epoch"][s]
    if "seqrec_vs_replay" in summary:
        m["time to target seqrec / replay"] = summary["seqrec_vs_replay"]["time_ratio_of_means"]
        m["criterion met"] = summary["seqrec_vs_replay"]["met"]
    return m


# ---------------------------------------------------------------------- the driver
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--dataset", nargs="+", choices=sorted(DATASETS), default=["ml-1m"],
                    help="one or both (default ml-1m)")  # fmt: skip
    ap.add_argument("--seeds", nargs="+", type=int, default=[42, 1, 2])
    ap.add_argument("--sides", nargs="+", choices=SIDES, default=["seqrec", "replay"],
                    help="default seqrec replay (kv also needs --kv-repo)")  # fmt: skip
    ap.add_argument("--epochs", type=int, default=None,
                    help="epoch cap per run (default: the preset's, 200 on ML-1M, 300 on "
                         "Beauty; patience 10 ends the runs well before)")  # fmt: skip
    ap.add_argument("--time-budget", type=float, default=None,
                    help="per run, training + validation wall seconds, checked after each "
                         "validation (seqrec's train.time_budget_s); default "
                         + ", ".join(f"{k} {v:.0f}" for k, v in DEFAULT_BUDGET.items()))  # fmt: skip
    ap.add_argument("--kv-repo", type=Path, help="a checkout of antklen/sasrec-bert4rec-recsys23")
    ap.add_argument("--threads", type=int, default=2, help="torch threads of every side")
    ap.add_argument("-o", "--out", type=Path,
                    help="result JSON (one dataset only; default "
                         "benchmarks/results/time_to_quality_<dataset>.json)")  # fmt: skip
    ap.add_argument("--figure", type=Path,
                    help="PNG (one dataset only; default "
                         "benchmarks/figures/time_to_quality_<dataset>.png)")  # fmt: skip
    ap.add_argument("--venv", type=Path, default=Path("/tmp/replay-venv"),
                    help="the peers' throwaway venv (set up on first use)")  # fmt: skip
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/time_to_quality"),
                    help="run folders and the handed-over data")  # fmt: skip
    ap.add_argument("--resume", action="store_true",
                    help="keep the runs already in the result JSON that were made with the "
                         "same settings; run the rest")  # fmt: skip
    args = ap.parse_args(argv)
    args.dataset = list(dict.fromkeys(args.dataset))
    args.sides = list(dict.fromkeys(args.sides))
    if len(args.dataset) > 1 and (args.out or args.figure):
        ap.error("-o/--out and --figure name one dataset's files; give one --dataset")
    if args.kv_repo is not None and "kv" not in args.sides:
        args.sides.append("kv")  # a checkout given is a side to run
    if "kv" in args.sides:
        if args.kv_repo is None:
            ap.error(
                "--sides kv needs --kv-repo PATH (a checkout of antklen/sasrec-bert4rec-recsys23)"
            )
        sys.path.insert(0, str(PEERS))
        from kv_side import check_repo

        if why := check_repo(str(args.kv_repo)):
            ap.exit(2, why + "\n")
    return args


def settings_of(side: str, hp: dict, args) -> dict:
    return {"hyper": hp, "threads": args.threads, "side": side,
            "kv_repo": str(args.kv_repo) if side == "kv" else None}  # fmt: skip


def write_record(path: Path, dataset: str, info: dict, runs: dict, settings: dict, args) -> dict:
    summary = summarize(runs)
    record = {
        "name": path.stem,
        "metrics": headline(summary),
        "dataset": f"{dataset} ({info['users']:,} users, {info['items']:,} items, "
        f"{info['interactions']:,} interactions; seqrec's prepared store '{info['name']}')",
        "protocol": {
            "split": info["split"],
            "handed_to_peers": "seqrec's training sequences and valid/test histories and "
            "targets (data.npz), unchanged",
            "metric": "full ranking over all items, the user's whole history masked except "
            "the target, rank = 1 + #items scored strictly higher; NDCG@10 / HR@10 from "
            "seqrec.eval.metrics",
            "clock": "sum over epochs of the wall time of the epoch's training loop (data "
            "loading and batch building included, validation excluded and reported apart)",
            "selection": "test of the weights with the best valid NDCG@10",
            "stopping": "patience (validations without a gain), epoch cap or time budget "
            "(training + validation wall), the same rule on every side",
            "order": "seeds one after another; within a seed the sides in an order rotated by "
            "the seed's position, so that each side goes first as often as the others",
            "hyper": settings.get("hyper"),
            "threads": args.threads,
        },
        "command": "python " + shlex.join(sys.argv),
        "machine": machine(),
        "commit": git_commit(),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "notes": "",
        "summary": summary,
        "runs": {s: {str(k): r for k, r in runs[s].items()} for s in runs},
        "settings": settings,
        "data_info": info,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=2, default=float) + "\n")
    tmp.replace(path)
    return record


def src_state() -> dict:
    """The seqrec code a seqrec run used: the commit and, when src/ has uncommitted changes,
    the files and a hash of the diff (a run is only comparable with runs of the same state)."""

    def git(*a: str) -> str:
        try:
            return subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True).stdout
        except OSError:
            return ""

    diff = git("diff", "HEAD", "--", "src")
    return {
        "commit": git("rev-parse", "--short", "HEAD").strip() or None,
        "dirty_files": sorted(
            line[3:] for line in git("status", "--porcelain", "--", "src").splitlines()
        ),
        "diff_sha256": hashlib.sha256(diff.encode()).hexdigest()[:16] if diff else None,
    }


def resumed_runs(out: Path, sides: list[str], seeds: list[int], settings: dict) -> dict:
    """{side: {seed: record}} of ``out``'s runs made with the same settings (and, for seqrec,
    the same src/ state)."""
    runs: dict[str, dict[int, dict]] = {s: {} for s in sides}
    if not out.is_file():
        return runs
    old = json.loads(out.read_text())
    for s in sides:
        if old.get("settings", {}).get(s) != settings[s]:
            continue
        for k, r in old.get("runs", {}).get(s, {}).items():
            if int(k) in seeds and (s != "seqrec" or r.get("src_state") == settings["src_state"]):
                runs[s][int(k)] = r
    say(f"resume: {sum(len(v) for v in runs.values())} runs kept from {out}")
    return runs


def run_dataset(dataset: str, args: argparse.Namespace, py: Path) -> dict:
    import seqrec

    preset = DATASETS[dataset]
    cfg = seqrec.config(preset)
    hp = hyper(cfg, args, dataset)
    out = args.out or RESULTS / f"time_to_quality_{dataset}.json"
    figure = args.figure or FIGURES / f"time_to_quality_{dataset}.png"
    work = args.workdir / dataset
    data = work / "data.npz"
    info = export_data(cfg, data)
    say(f"{dataset}: {info['users']:,} users, {info['items']:,} items, preset {preset}, sides "
        f"{' '.join(args.sides)}, seeds {' '.join(map(str, args.seeds))}, epochs <= "
        f"{hp['epochs']}, patience {hp['patience']}, budget {hp['time_budget']:.0f} s per run")  # fmt: skip
    settings = {s: settings_of(s, hp, args) for s in args.sides}
    settings.update(hyper=hp, src_state=src_state())
    if settings["src_state"]["dirty_files"]:
        say(f"note: src/ has uncommitted changes ({len(settings['src_state']['dirty_files'])} "
            "files); the seqrec side runs them, and the JSON records which")  # fmt: skip
    runs = resumed_runs(out, args.sides, args.seeds, settings) if args.resume else {
        s: {} for s in args.sides}  # fmt: skip
    for i, seed in enumerate(args.seeds):
        order = args.sides[i % len(args.sides) :] + args.sides[: i % len(args.sides)]
        for side in (s for s in order if seed not in runs[s]):
            say(f"{dataset} seed {seed}: {side}")
            folder = work / f"{side}_s{seed}"
            with OtherLoad() as load:
                if side == "seqrec":
                    rec = run_seqrec(preset, seed, hp, args, folder)
                    rec["src_state"] = settings["src_state"]
                else:
                    rec = run_peer(side, py, data, seed, hp, args, folder)
            rec["other_cores_busy"] = load.cores
            runs[side][seed] = rec
            if load.cores is not None and load.cores > BUSY:
                say(f"warning: other processes kept {load.cores:.2f} cores busy on average "
                    "during this run; its timings are not comparable with an idle machine's")  # fmt: skip
            say(f"{dataset} seed {seed} {side}: {rec['epochs_run']} epochs ({rec['stopped_by']}), "
                f"{rec['sec_per_epoch_mean']:.1f} s/epoch, best valid NDCG@10 "
                f"{rec['best_valid_ndcg10']:.4f} after {rec['train_seconds_to_best']:.0f} s, "
                f"test NDCG@10 {rec['test_ndcg10']:.4f}")  # fmt: skip
            write_record(out, dataset, info, runs, settings, args)
    record = write_record(out, dataset, info, runs, settings, args)
    say(f"wrote {out}")
    plot = subprocess.run([str(py), str(PEERS / "plot_curves.py"), str(out), str(figure)])
    say(f"wrote {figure}" if plot.returncode == 0
        else f"the figure failed (exit {plot.returncode}); the JSON is complete")  # fmt: skip
    return record


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    data_dir()
    import torch

    torch.set_num_threads(args.threads)
    py = ensure_venv(args.venv, "kv" in args.sides)  # the peers' and the figure's python
    for dataset in args.dataset:
        record = run_dataset(dataset, args, py)
        print(json.dumps(record["metrics"], indent=2, default=float))


if __name__ == "__main__":
    main()
