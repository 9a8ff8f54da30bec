"""Who the ranking task's examples are, per split, on the ML-1M ratings subset.

    python experiments/ranking_population/ranking_population.py

The ranking split is a global time cut, so training, validation and test examples come from
different moments of a user's life on the site. Recorded per split: how many examples there
are, the share that comes more than a day / more than 30 days after the user's first event
(a returning visit rather than the first rating burst), the median history length, and the
share with at least 50 history events (the encoders' window). This is the distribution shift
behind ``task.train_min_age_s`` and behind rankers whose validation GAUC peaks in epoch 0.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from seqrec.recipe import load_config
from seqrec.tasks.ranking.inputs import load_ranking_data

# benchmarks/common.py writes the result file, as every benchmark's does
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from common import data_dir, write_result

DAY = 86_400


def main() -> None:
    data_dir()
    cfg = load_config("ranking-sasrec-ml-1m", ["data.format=ml-dat"])
    store, data = load_ranking_data(cfg)
    ts = np.asarray(store.timestamps, dtype=np.int64)
    first = ts[np.asarray(store.offsets)[:-1]]
    metrics = {}
    for part in ("train", "valid", "test"):
        ex = getattr(data, part)
        age = ex.times - first[ex.users]
        hist = ex.ends - ex.starts
        metrics[f"{part}/examples"] = len(ex)
        metrics[f"{part}/share_after_1_day"] = float((age > DAY).mean())
        metrics[f"{part}/share_after_30_days"] = float((age > 30 * DAY).mean())
        metrics[f"{part}/median_history"] = float(np.median(hist))
        metrics[f"{part}/share_history_ge_50"] = float((hist >= 50).mean())
        metrics[f"{part}/positive_rate"] = float(ex.labels.mean())
    write_result(
        "ranking_population",
        metrics,
        dataset="ML-1M ratings, users 1-2999 (ratings.PARTIAL_first487650lines.dat.gz)",
        protocol=data.protocol,
        notes="age = candidate time - the user's first event time; history = events before it",
    )


if __name__ == "__main__":
    main()
