"""Approximate Entropy (Performance Law data term) of the catalogue datasets, default parameters.

    nice -n 10 python benchmarks/apen_datasets.py [--datasets ml-1m lastfm ...]

Each dataset is prepared with the catalogue's literature preprocessing (`seqrec.data.prepare`)
and ApEn is computed on every user's full chronological sequence, last 50 items, m = 2, r = 0
(exact m-gram match on item ids; `[PL]`'s r = 0.2 on integer ids is the same). Besides the
signed mean (Pincus' definition) the record holds the mean of |ApEn| (what `[PL]`'s script
averages) and the share of users whose last-n items contain no repeated m-gram: for them ApEn is
exactly ln((n-m)/(n-m+1)), a function of length alone, so a dataset with few repeats has an
ApEn that says little beyond its sequence lengths (also recorded: the share of users whose last-n
items repeat no item at all). Seconds are the ApEn computation (m = 2) only.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from common import data_dir, write_result

DATASETS = ["ml-1m", "ml-100k", "amazon-beauty", "amazon-video", "lastfm"]


def one(name: str) -> dict:
    from seqrec.data import prepare
    from seqrec.recipe import load_config
    from seqrec.scaling.apen import apen_store

    t0 = time.perf_counter()
    store, _ = prepare(load_config(None, [f"data.dataset={name}"]).data)
    load_s = time.perf_counter() - t0
    res = apen_store(store)  # defaults: m=2, r=0, last_n=50, signed
    m, last_n = res.params["m"], res.params["last_n"]
    n = np.minimum(store.lengths()[res.users], last_n)
    no_repeat = np.isclose(res.values, np.log((n - m) / (n - m + 1)), rtol=0, atol=1e-12)
    # the same test with m = 1: users whose last-n items repeat no item at all
    one_gram = apen_store(store, m=1)
    n1 = np.minimum(store.lengths()[one_gram.users], last_n)
    no_item_repeat = np.isclose(one_gram.values, np.log((n1 - 1) / n1), rtol=0, atol=1e-12)
    return {
        "users": store.n_users,
        "items": int(store.n_items),
        "interactions": len(store.items),
        "users_used": res.n_users,
        "users_skipped": res.n_skipped,
        "mean": res.mean,
        "std": res.std,
        "mean_abs": float(np.abs(res.values).mean()),
        "negative_users": int((res.values < 0).sum()),
        "no_repeat_share": float(no_repeat.mean()),
        "no_item_repeat_share": float(no_item_repeat.mean()),
        "mean_of_repeating_users": float(res.values[~no_repeat].mean())
        if (~no_repeat).any()
        else None,
        "seconds": res.seconds,
        "load_seconds": load_s,
        "params": res.params,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=DATASETS)
    parser.add_argument("--name", default="apen_datasets")
    args = parser.parse_args()
    data_dir()
    details, metrics = {}, {}
    for name in args.datasets:
        d = one(name)
        details[name] = d
        metrics[f"{name} users used"] = d["users_used"]
        metrics[f"{name} mean ApEn"] = d["mean"]
        metrics[f"{name} std ApEn"] = d["std"]
        metrics[f"{name} mean |ApEn|"] = d["mean_abs"]
        metrics[f"{name} share without repeated 2-gram"] = d["no_repeat_share"]
        metrics[f"{name} share without repeated item"] = d["no_item_repeat_share"]
        metrics[f"{name} seconds"] = d["seconds"]
        print(
            f"{name:14s} users {d['users_used']:>6,} (skipped {d['users_skipped']}) "
            f"ApEn {d['mean']:+.5f} ± {d['std']:.5f}  |ApEn| {d['mean_abs']:.5f}  "
            f"no-repeat {d['no_repeat_share']:.1%}  {d['seconds']:.2f} s (load {d['load_seconds']:.1f} s)",
            flush=True,
        )
    write_result(
        args.name,
        metrics,
        dataset=", ".join(args.datasets) + " (catalogue preprocessing)",
        protocol={
            "m": 2,
            "r": 0.0,
            "last_n": 50,
            "sequences": "full chronological sequence per user (all splits), seqrec internal ids",
            "std": "population std across users",
        },
        notes="ApEn(m, r) = Phi^m - Phi^(m+1), Chebyshev, self-matches counted, natural log; "
        "users with < m + 1 items skipped. mean |ApEn| is what the [PL] script averages.",
        extra={"datasets": details},
    )


if __name__ == "__main__":
    main()
