"""RESULTS.md's speed section (issue 23), from the result files of the scripts that measure it:
time to quality against the modern peers (time_to_quality.py), the training step before and
after (step_speed.py), the warm-up choice (warmup.py), and RecBole as one more row
(speed_ml1m.py). Called by make_results.py."""

from __future__ import annotations

from pathlib import Path

FIGURES = Path(__file__).resolve().parent / "figures"

SIDES = {"seqrec": "seqrec", "replay": "RePlay 0.22 SASRec", "kv": "Klenitskiy & Vasilev's code"}
TTQ = (("time_to_quality_ml-1m", "ML-1M (max length 200)"),
       ("time_to_quality_beauty", "Beauty (max length 50)"))  # fmt: skip


def _seeds(per_seed: dict) -> str:
    return ", ".join(f"{v:.0f}" if v is not None else "never" for v in per_seed.values())


def time_to_quality(rec: dict, title: str) -> list[str]:
    s, m = rec["summary"], rec["machine"]
    target = sum(s["target_per_seed"].values()) / len(s["target_per_seed"])
    lines = [
        f"**{title}**: {len(s['seeds_complete'])} seeds, common target = the best validation "
        f"NDCG@10 the weakest side reaches in each seed (mean {target:.4f}); clock = training "
        f"seconds (validation excluded); {m['cpu']}, {m['threads']} threads on every side. "
        f"Command: `{rec['command']}`",
        "",
        "| side | s to target (mean) | per seed | s/epoch | best valid NDCG@10 | test NDCG@10 "
        "| test HR@10 | stopped by |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for side in s["sides"]:
        t = s["time_to_target"][side]
        stops = sorted(set(s["stopped_by"][side].values()))
        lines.append(
            f"| {SIDES.get(side, side)} | {t['mean']:.0f} | {_seeds(t['per_seed'])} | "
            f"{s['sec_per_epoch'][side]:.1f} | {s['best_valid_ndcg10'][side]['mean']:.4f} | "
            f"{s['test_ndcg10'][side]['mean']:.4f} | {s['test_hr10'][side]['mean']:.4f} | "
            f"{', '.join(stops)} |"
        )
    vs = s["seqrec_vs_replay"]
    lines += ["", f"seqrec / RePlay time to target: **{vs['time_ratio_of_means']:.2f}** "
              f"(criterion: {vs['criterion']}: {'met' if vs['met'] else 'not met'}).", ""]  # fmt: skip
    if (FIGURES / f"{rec['name']}.png").is_file():
        lines += [
            f"![{title}: validation NDCG@10 against training seconds](figures/{rec['name']}.png)",
            "",
        ]
    return lines


STEP_SPEED = {  # result name: (what the preset trains, the change its baseline predates)
    "step_speed_sasrec_ml_1m": ("SASRec ML-1M", "issue 23's step speed-ups"),
    "step_speed_sasrec_gbce_ml_1m": (
        "gSASRec ML-1M (gBCE, 256 negatives per position, length 200)",
        "gBCE on the chunked candidate loop (objectives/candidates.py)",
    ),
}


def step_speed(rec: dict) -> list[str]:
    m, p = rec["metrics"], rec["protocol"]
    title, change = STEP_SPEED[rec["name"]]
    lines = [
        f"**Training step, {title} (`{rec['dataset']}`)**: the runs' own logged throughput, "
        f"{p['rounds']} alternating rounds of {p['steps']} steps, baseline = main {p['baseline']} "
        f"before {change}; {rec['machine']['cpu']}, {p['threads']} threads. "
        f"Command: `{rec['command']}`",
        "",
        "| code | training interactions/s (mean, range) | achieved GFLOP/s | MFU |",
        "|---|---|---|---|",
    ]
    for side in ("baseline", "current"):
        r = m[side]
        lo, hi = r["interactions_per_s_range"]
        lines.append(f"| {side} | {r['interactions_per_s_mean']:,.0f} ({lo:,.0f}-{hi:,.0f}) | "
                     f"{r['achieved_gflops_mean']:.1f} | {r['mfu_mean']:.1%} |")  # fmt: skip
    lines += ["", f"Speed-up: **{m['speedup']:.2f}x** against a measured fp32 matmul peak of "
              f"{m['current']['peak_gflops']:.0f} GFLOP/s.", ""]  # fmt: skip
    return lines


def warmup(rec: dict) -> list[str]:
    curves = rec["metrics"]["mean_valid_ndcg10_by_epoch"]
    epochs = len(next(iter(curves.values())))
    lines = [
        f"**Warm-up, {rec['dataset']}** (`{rec['protocol']['preset']}`, seeds "
        f"{rec['protocol']['seeds']}): validation NDCG@10 after each epoch. "
        f"Command: `{rec['command']}`",
        "",
        "| warm-up | " + " | ".join(f"epoch {e + 1}" for e in range(epochs)) + " |",
        "|---|" + "---|" * epochs,
    ]
    lines += [f"| {k} | " + " | ".join(f"{v:.4f}" for v in c) + " |" for k, c in curves.items()]
    return [*lines, ""]


def recbole(rec: dict) -> list[str]:
    m = rec["metrics"]
    return [
        f"RecBole 1.2.1 (one target per stored prefix) stays as a row: "
        f"{m['recbole/train_interactions_per_sec']:,.0f} training interactions/s and "
        f"{m['recbole/sec_per_epoch (extrapolated)']:,.0f} s/epoch (extrapolated) on ML-1M, "
        f"against seqrec's {m['seqrec/train_interactions_per_sec']:,.0f} at that run's commit "
        f"{rec.get('commit')} (`{rec['command']}`, {rec['date'][:10]}).",
        "",
    ]


def speed(by_name: dict[str, dict]) -> str:
    """The speed section, or nothing when none of its result files exist."""
    parts: list[str] = []
    for name, title in TTQ:
        if rec := by_name.get(name):
            parts += time_to_quality(rec, title)
    for name in STEP_SPEED:
        if rec := by_name.get(name):
            parts += step_speed(rec)
    for name in ("warmup_ml1m", "warmup_beauty"):
        if rec := by_name.get(name):
            parts += warmup(rec)
    if rec := by_name.get("speed_ml1m_vs_recbole"):
        parts += recbole(rec)
    if not parts:
        return ""
    intro = ("## Speed\n\nTime to quality against the fastest modern peers on one CPU machine, "
             "each side's code run as published (benchmarks/time_to_quality.py), then the step "
             "itself. Each time-to-quality run had 300 s (training + validation); no side "
             "converged in it, so *test* is the best-validation weights at that budget. No GPU "
             "figures: none was lent to the session that measured these.\n")  # fmt: skip
    return intro + "\n" + "\n".join(parts)
