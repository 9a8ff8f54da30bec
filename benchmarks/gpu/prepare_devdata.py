"""Stage what the lent-GPU session needs and cannot build there: data files and parsed stores.

    python benchmarks/gpu/prepare_devdata.py [JOBS.yaml ...]   # fills .devdata/ (git-ignored)

Without arguments it prepares for every jobs file in benchmarks/gpu/jobs/.

The device image has no polars, so every store the jobs (and sweep specs) use is parsed here
into .devdata/cache; a cached store opens with numpy alone. Data files are copied from
../shared/data (never committed: .devdata/ is in .git/info/exclude). For every sweep job, the
finished runs of its --out folder are staged (without weights) in .devdata/sweeps/NAME, so a
sweep resumed on the device trains only what is missing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
DEV = ROOT / ".devdata"
FILES = [
    "movielens/ml-1m/ml-1m.seq.txt.gz",
    "movielens/ml-1m/movies.dat",
    "movielens/ml-1m/users.dat",
    "movielens/ml-1m/ratings.PARTIAL_first487650lines.dat.gz",
    "amazon/s3rec/Beauty.txt.gz",
    "amazon/s3rec/Beauty_item2attributes.json.gz",
]


SWEEP_KEEP = ("results.json", "config.yaml", "test_ranks.npy", "metrics.jsonl")


def stage_finished_runs(src: Path, dst: Path) -> None:
    """Slim copies (no weights) of a sweep's finished runs, so the device's `seqrec sweep`
    skips them: a jobs entry copies .devdata/sweeps/NAME into its --out folder first."""
    if dst.exists():
        shutil.rmtree(dst)
    done = [r for r in sorted((src / "runs").glob("*")) if (r / "results.json").is_file()]
    for run in done:
        (dst / "runs" / run.name).mkdir(parents=True)
        for name in SWEEP_KEEP:
            if (run / name).is_file():
                shutil.copy2(run / name, dst / "runs" / run.name / name)
    print(f"{src}: {len(done)} finished runs staged in {dst}", flush=True)


def stage_sasrec_ml1m(src: Path) -> None:
    """`dataset=ml-1m-sasrec` (SASRec's ml-1m.txt) is not in shared/data: rebuild it from the two
    partial copies there (benchmarks/ml1m_sasrec_file.py checks it against the file's git blob)."""
    out = DEV / "data" / "movielens" / "ml-1m-sasrec" / "ml-1m.txt"
    if out.is_file():
        return
    env = {**os.environ, "SEQREC_DATA_DIR": str(src), "SEQREC_CACHE_DIR": str(DEV / "cache")}
    script = ROOT / "benchmarks" / "ml1m_sasrec_file.py"
    subprocess.run([sys.executable, str(script), "write", str(out)], env=env, check=True)


# copies of ML-1M that experiments write (not in shared/data): a job's data path -> the script
# and arguments that write it there (OUT)
DERIVED = {
    ".devdata/data/movielens/ml-1m/ml-1m.fileorder-u2998.seq.txt.gz": [
        "experiments/ml1m_tie_order/ml1m_file_order.py", "write", "OUT"],
    ".devdata/data/movielens/ml-1m/ml-1m.partial-ts.csv.gz": [
        "experiments/hstu_time_bias/ml1m_partial_timestamps.py", "OUT"],
    ".devdata/data/movielens/ml-1m/ml-1m.timed-only.csv.gz": [
        "experiments/hstu_time_bias/ml1m_partial_timestamps.py", "OUT", "--timed-only"],
}  # fmt: skip


def stage_derived(src: Path, jobs: list[dict]) -> None:
    """Write each experiment's copy of ML-1M that a job trains on, unless it is already there."""
    wanted = {s.split("=", 1)[1] for job in jobs for s in job.get("set", [])
              if s.startswith("data.dataset=")}  # fmt: skip
    env = {**os.environ, "SEQREC_DATA_DIR": str(src), "SEQREC_CACHE_DIR": str(DEV / "cache")}
    for rel in sorted(wanted & DERIVED.keys()):
        if not (ROOT / rel).is_file():
            script, *args = DERIVED[rel]
            args = [str(ROOT / rel) if a == "OUT" else a for a in args]
            subprocess.run([sys.executable, str(ROOT / script), *args], env=env, check=True)


def main() -> None:
    src = Path(os.environ.get("SEQREC_SHARED_DATA", ROOT.parent / "shared" / "data"))
    for rel in FILES:
        (DEV / "data" / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src / rel, DEV / "data" / rel)
    stage_sasrec_ml1m(src)
    os.environ["SEQREC_DATA_DIR"] = str(DEV / "data")
    os.environ["SEQREC_CACHE_DIR"] = str(DEV / "cache")
    os.chdir(ROOT)  # relative dataset paths in the jobs are relative to the repo root
    from seqrec.data import build_store
    from seqrec.data.features import load_item_features
    from seqrec.recipe import load_config
    from seqrec.scaling.sweep_spec import expand, load_spec
    from seqrec.tasks.ranking.inputs import load_ranking_data

    files = [Path(a) for a in sys.argv[1:]] or sorted((ROOT / "benchmarks/gpu/jobs").glob("*.yaml"))
    jobs = [job for f in files for job in yaml.safe_load(f.read_text())]
    stage_derived(src, jobs)
    configs, sweep_outs = [], []
    for job in jobs:
        if "preset" in job:
            configs.append(load_config(job["preset"], job.get("set", [])))
        elif " sweep " in job["cmd"]:
            spec = next(w for w in job["cmd"].split() if w.endswith(".yaml"))
            configs += [r.cfg for r in expand(load_spec(ROOT / spec))]
            words = job["cmd"].split()
            sweep_outs.append(words[words.index("--out") + 1])
    seen = set()
    for cfg in configs:
        key = cfg.data.model_dump_json(exclude={"max_len", "train_fraction"})
        if key in seen:
            continue
        seen.add(key)
        if cfg.task.name == "ranking":  # its presets name data relative to SEQREC_DATA_DIR
            store, _ = load_ranking_data(cfg)
        else:
            store = build_store(cfg.data)
        if cfg.data.item_features:
            load_item_features(cfg.data, store)  # fails here, not on the GPU, if a file is missing
        print(f"{cfg.data.dataset}: {store.n_users:,} users x {store.n_items:,} items", flush=True)
    for out in sweep_outs:
        stage_finished_runs(ROOT / out, DEV / "sweeps" / Path(out).name)
    n = len(list((DEV / "cache" / "stores").iterdir()))
    size = sum(p.stat().st_size for p in DEV.rglob("*") if p.is_file()) / 2**20
    print(f"{n} stores cached; .devdata holds {size:.1f} MiB", file=sys.stderr)


if __name__ == "__main__":
    main()
