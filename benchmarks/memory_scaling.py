"""Training memory grows with users x max length, not with interactions x max length.

    python benchmarks/memory_scaling.py

Generated data (fixed 2,000 users, 2,000 items) with 50 -> 1,600 interactions per user, trained
for 20 steps in a fresh process each, on the memory-mapped store cached by an earlier process;
the growth of peak RSS during training (above the level after loading data and building the
model) is recorded. A
prefix-materialising pipeline (RecBole-style, one padded row per prefix) would need
interactions x max_len x 8 bytes for its item matrix alone; that column is printed beside it.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

from common import write_result

CHILD = r"""
import json, resource, sys, numpy as np, torch
from pathlib import Path
torch.set_num_threads(1)
from seqrec.recipe import load_config
from seqrec.data import prepare
from seqrec.trainer.loop import Trainer
path, max_len, out, only_prepare = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4] == "1"
cfg = load_config(None, [f"data.dataset={path}", "data.format=seq", f"data.max_len={max_len}",
                         "model.hidden=32", "train.max_steps=20", "train.batch_size=128", "train.epochs=1",
                         f"data.cache_dir={out}/cache"])
store, split = prepare(cfg.data)  # the first (unmeasured) call parses; this one maps the cache
if only_prepare:
    sys.exit(0)
t = Trainer(cfg, store, split, Path(out) / "run", progress=False)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
from seqrec.trainer.log import TrainProgress
with TrainProgress(t.steps_per_epoch, enabled=False) as bar:
    bar.new_epoch(0, 0)
    t._train_epoch(bar)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"peak_rss_mib": (peak - base) / 1024, "interactions": int(len(store.items))}))
"""


def make_data(path: Path, users: int, per_user: int, items: int = 2000) -> None:
    import numpy as np

    rng = np.random.default_rng(0)
    seqs = rng.integers(1, items + 1, size=(users, per_user))
    with path.open("w") as f:
        for u in range(users):  # benchmark fixture writer, not a library hot path
            f.write(f"{u + 1} " + " ".join(map(str, seqs[u])) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.parse_args()
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for per_user, max_len in [
            (50, 50),
            (200, 50),
            (800, 50),
            (1600, 50),
            (1600, 100),
            (1600, 200),
        ]:
            data = Path(tmp) / f"seq_{per_user}.txt"
            if not data.exists():
                make_data(data, 2000, per_user)
            args = [sys.executable, "-c", CHILD, str(data), str(max_len), f"{tmp}/o{per_user}"]
            subprocess.run([*args, "1"], capture_output=True, text=True, check=True)
            res = subprocess.run([*args, "0"], capture_output=True, text=True, check=True)
            r = json.loads(res.stdout.strip().splitlines()[-1])
            key = f"{per_user} per user, max_len {max_len}"
            rows[key] = {
                "interactions": r["interactions"],
                "peak_rss_mib": round(r["peak_rss_mib"], 1),
                "prefix_matrix_mib": round(r["interactions"] * max_len * 8 / 2**20, 1),
            }
            print(key, rows[key], flush=True)
    metrics = {f"{k} / peak MiB": v["peak_rss_mib"] for k, v in rows.items()}
    metrics.update(
        {
            f"{k} / prefix-matrix MiB (RecBole-style)": v["prefix_matrix_mib"]
            for k, v in rows.items()
        }
    )
    write_result(
        "memory_scaling",
        metrics,
        dataset="generated: 2,000 users x {50..1,600} interactions, 2,000 items",
        protocol="peak RSS growth during 20 training steps (data loaded from the mmap cache, model built), batch 128, width 32, 1 thread",
        extra={
            "rows": rows,
            "self_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        },
    )


if __name__ == "__main__":
    main()
