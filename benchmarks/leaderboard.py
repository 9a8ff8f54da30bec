"""The leaderboard: every trained configuration's test NDCG@10 / HR@10, per dataset and protocol.

Built by make_results.py from the quality result files (benchmarks/quality.py writes them: test
metrics, the full config, where the run trained). Result files whose configs are equal apart
from the seed and `seqrec.comparison.RUN_ENVIRONMENT` (device, threads, time budget, ...), that
trained on the same kind of hardware and, under a fixed-epoch protocol, all reached (or all
missed) the last epoch are one row; results are placed in one table when they
rank the same test users and items under the same test protocol and the same training protocol
(early stopping on validation, or generative-recommenders' fixed epochs on 512 validation
users), because only then are their numbers comparable.

A row's ± is the 95% CI half-width of its mean: a t-interval over the seeds' test values with
two seeds or more (what a reader re-running the command should expect), and with one seed the
normal CI over that run's test users, which leaves out seed noise; the table marks it.
"""

from __future__ import annotations

import json
import re
import shlex
import textwrap
from collections import defaultdict
from pathlib import Path

from seqrec.comparison import RUN_ENVIRONMENT, config_differences
from seqrec.eval.stats import t_interval

KEYS = ("NDCG@10", "HR@10")

# dataset (catalogue name, or a data file's name without its suffixes) and item count -> label
DATASETS = {
    ("ml-1m-sasrec", 3416): "ML-1M, SASRec's ml-1m.txt",
    ("ml-1m", 3416): "ML-1M, DiffuRec's copy filtered as SASRec (same-second ratings in random "
    "order)",
    ("ml-1m", 3706): "ML-1M raw, DiffuRec's copy (every item)",
    ("amazon-beauty", 12101): "Amazon Beauty, the S3-Rec file",
    ("ml-1m.fileorder-u2998", 3416): "ML-1M, users 1..2,998 in ratings.dat's order of "
    "same-second ratings ([experiment](../experiments/ml1m_tie_order/README.md))",
    ("ml-1m.partial-ts", 3706): "ML-1M raw, timestamps for users 1..2,998 "
    "([experiment](../experiments/hstu_time_bias/README.md))",
    ("ml-1m.timed-only", 3615): "ML-1M users 1..2,998 alone, with timestamps "
    "([experiment](../experiments/hstu_time_bias/README.md))",
    ("ratings.PARTIAL_first487650lines", 3266): "ML-1M ratings.dat, its first 487,650 lines "
    "(5-core), ratings as behaviours",
}
# data files named after the catalogue entry they copy
ALIASES = {"ml-1m.txt": "ml-1m-sasrec"}
# boards shown first, in this order: the datasets and protocols papers report on
FIRST = [
    ("ml-1m-sasrec", 3416, "best"),
    ("ml-1m", 3416, "best"),
    ("ml-1m", 3706, "gr"),
    ("ml-1m", 3706, "best"),
    ("amazon-beauty", 12101, "best"),
]
SHORT = {
    "best": "early stopping",
    "gr": "generative-recommenders' protocol",
    "best-512": "512 validation users, early stopping",
    "last": "fixed epochs",
}
PROTOCOLS = {
    "best": "early stopping on validation NDCG@10, best epoch tested",
    "gr": "generative-recommenders' protocol: 512 validation users, everyone else trains "
    "through the second-to-last item, fixed epochs, last epoch tested",
    "best-512": "512 validation users (everyone else trains through the second-to-last item), "
    "early stopping, best epoch tested",
    "last": "fixed epochs, last epoch tested",
}


def is_quality(rec: dict) -> bool:
    return bool(rec.get("config")) and "test/NDCG@10" in rec.get("metrics", {})


def dataset_slug(dataset: str) -> str:
    name = Path(dataset).name
    name = ALIASES.get(name, name)
    return re.sub(r"(\.seq)?(\.txt|\.csv|\.dat)?(\.gz)?$", "", name)


def board_key(rec: dict) -> tuple[str, int, str]:
    """(dataset, items, training protocol): the results that share it rank the same test users
    and items under the same protocol (checked: every quality result's test protocol is full
    ranking, leave-one-out, seen items masked)."""
    items = int(re.search(r"([\d,]+) items", rec["dataset"]).group(1).replace(",", ""))
    data, train = rec["config"]["data"], rec["config"]["train"]
    last = train.get("select", "best") == "last"
    if data.get("valid_users") == 512:
        protocol = "gr" if last else "best-512"
    else:
        protocol = "last" if last else "best"
    return dataset_slug(data["dataset"]), items, protocol


def hardware(rec: dict) -> str:
    """ "GPU H100" or "CPU": the kind of machine that trained the run (seeds share it)."""
    trained = rec.get("train_machine") or {}
    if trained.get("cuda"):
        return "GPU " + trained["cuda"].replace("NVIDIA ", "").split(" ")[0]
    return "CPU"


def _hardware_cell(row: list[dict]) -> str:
    kind = hardware(row[0])
    if kind != "CPU":
        return kind
    threads = sorted({(r.get("train_machine") or r["machine"]).get("threads") for r in row})
    span = f"{threads[0]}" if len(threads) == 1 else f"{threads[0]}-{threads[-1]}"
    return f"CPU, {span} thread{'s' if threads[-1] > 1 else ''}"


def ended_by(rec: dict) -> str:
    """How training ended: the protocol's own end, or a cut that makes the row provisional."""
    m, train = rec["metrics"], rec["config"]["train"]
    if _cut(rec):
        return f"time budget at epoch {m['tested_epoch'] + 1} of {train['epochs']}"
    if "time_budget" in rec.get("notes", "") or "training was stopped" in rec.get("notes", ""):
        return "time budget"
    if train.get("select") == "last":
        return "fixed epochs"
    return "epoch cap" if m.get("epochs_run", 0) >= train["epochs"] else "early stop"


def _cut(rec: dict) -> bool:
    """A fixed-epoch run that a time budget stopped early tested an earlier epoch than its
    protocol names, so it is not a seed of the runs that finished (early-stopping runs are:
    the cut only ends their search sooner, which the ended-by column shows)."""
    tested = rec["metrics"].get("tested_epoch")
    return tested is not None and tested < rec["config"]["train"]["epochs"] - 1


def _rows(records: list[dict]) -> dict[tuple, list[list[dict]]]:
    """Board key -> rows; a row is the result files of one configuration, seed 42 first."""
    boards: dict[tuple, list[list[dict]]] = defaultdict(list)
    for rec in records:
        rows = boards[board_key(rec)]
        seed = rec["config"]["train"]["seed"]
        for row in rows:
            same = (
                hardware(row[0]) == hardware(rec)
                and _cut(row[0]) == _cut(rec)
                and not config_differences(row[0]["config"], rec["config"], RUN_ENVIRONMENT)
            )
            if same and seed not in {r["config"]["train"]["seed"] for r in row}:
                row.append(rec)
                break
        else:
            rows.append([rec])
    for rows in boards.values():
        for row in rows:
            row.sort(
                key=lambda r: (r["config"]["train"]["seed"] != 42, r["config"]["train"]["seed"])
            )
    return boards


def _cell(row: list[dict], key: str) -> dict:
    values = [r["metrics"][f"test/{key}"] for r in row]
    if len(values) > 1:
        mean, low, high = t_interval(values)
        return {"mean": mean, "low": low, "high": high, "half_width": (high - low) / 2,
                "ci": "seeds", "values": values}  # fmt: skip
    low, high = row[0]["metrics"][f"test/{key} 95% CI"]
    return {"mean": values[0], "low": low, "high": high, "half_width": (high - low) / 2,
            "ci": "users", "values": values}  # fmt: skip


def _counted(values: list[str]) -> str:
    counts = {v: values.count(v) for v in dict.fromkeys(values)}
    return ", ".join(v if len(counts) == 1 else f"{v} ({n})" for v, n in counts.items())


def build(records: list[dict]) -> list[dict]:
    """Every board with its rows ranked by mean test NDCG@10, as plain data."""
    boards = _rows([r for r in records if is_quality(r)])
    order = [k for k in FIRST if k in boards] + sorted(k for k in boards if k not in FIRST)
    out = []
    for key in order:
        slug, items, protocol = key
        rows = []
        for row in boards[key]:
            cfg = row[0]["config"]
            rows.append({
                "name": row[0]["name"],
                "results": [r["name"] for r in row],
                "model": cfg["model"]["name"],
                "objective": cfg["objective"]["name"],
                "seeds": [r["config"]["train"]["seed"] for r in row],
                "hardware": _hardware_cell(row),
                "ended_by": _counted([ended_by(r) for r in row]),
                "commands": [r["command"] for r in row],
                **{key_: _cell(row, key_) for key_ in KEYS},
            })  # fmt: skip
        rows.sort(key=lambda r: -r["NDCG@10"]["mean"])
        first = boards[key][0][0]
        out.append({
            "dataset": slug,
            "items": items,
            "protocol": protocol,
            "title": DATASETS.get((slug, items), first["dataset"].split(" (")[0])
            + f": {SHORT[protocol]}",
            "data": first["dataset"].split(" (", 1)[-1].rstrip(")"),
            "training": PROTOCOLS[protocol],
            "standard": key in FIRST,
            "rows": rows,
        })  # fmt: skip
    return out


def _fmt(cell: dict) -> str:
    return f"{cell['mean']:.4f} ± {cell['half_width']:.4f}" + ("†" if cell["ci"] == "users" else "")


def _preset(command: str) -> str:
    words = shlex.split(command.split("&&")[0])
    preset = words[words.index("-c") + 1] if "-c" in words else "?"
    return f"`{preset}` +{words.count('-o')}"


def markdown(boards: list[dict], archive: str) -> str:
    """The leaderboard section: one table per board, standard boards first."""
    lines = []
    standard = True
    for board in boards:
        if standard and not board["standard"]:
            lines += ["### Other datasets and protocols (from investigations)", ""]
            standard = False
        lines += [f"{'###' if board['standard'] else '####'} {board['title']}", "",
                  f"{board['data']}; {board['training']}.", "",
                  "| # | result | model | NDCG@10 | HR@10 | seeds | trained on | ended by | command |",
                  "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
        for i, row in enumerate(board["rows"], 1):
            link = f"[{row['name']}]({archive}#{row['name']})"
            more = f" +{len(row['results']) - 1}" if len(row["results"]) > 1 else ""
            lines.append(
                f"| {i} | {link}{more} | {row['model']} · {row['objective']} "
                f"| {_fmt(row['NDCG@10'])} | {_fmt(row['HR@10'])} | {len(row['seeds'])} "
                f"| {row['hardware']} | {row['ended_by']} "
                f"| [{_preset(row['commands'][0])}](#{row['name']}) |"
            )
        lines.append("")
    return "\n".join(lines)


def commands(boards: list[dict], archive: str) -> str:
    """Each row's command in full (its first seed's), and what each other seed changes in it."""
    lines = ["## Leaderboard commands", "",
             "Each row's command for its first seed, and the overrides each other seed changes "
             "(its own result name replaces the first's in --out, --name and --run-dir). "
             "`gpu-runs/` folders were trained by benchmarks/gpu/run_jobs.py and scored on CPU by "
             "the quality.py part of the command.", ""]  # fmt: skip
    for board in boards:
        for row in board["rows"]:
            first_name, first = row["results"][0], row["commands"][0]
            lines += [f"#### {first_name}", "", f"{board['title']}:", "", "```", first, "```"]
            others = zip(row["results"][1:], row["seeds"][1:], row["commands"][1:], strict=True)
            for name, seed, cmd in others:
                change = _seed_change(first, cmd.replace(name, first_name))
                shown = f"`{change}`" if change is not None else f"`{cmd}`"
                lines.append(f"- seed {seed} ([{name}]({archive}#{name})): {shown}")
            lines.append("")
    return "\n".join(lines)


def _overrides(command: str) -> tuple[dict[str, str], list[str]]:
    """The `-o key=value` overrides of a recorded command, and every other word of it (a value
    may hold spaces, e.g. `train.betas=[0.9, 0.999]`: it runs to the next flag)."""
    words, out, rest, i = command.split(), {}, [], 0
    while i < len(words):
        if words[i] != "-o":
            rest.append(words[i])
            i += 1
            continue
        j = i + 2
        while j < len(words) and not words[j].startswith("-"):
            j += 1
        key, _, value = " ".join(words[i + 1 : j]).partition("=")
        out[key] = value
        i = j
    return out, rest


def _seed_change(first: str, other: str) -> str | None:
    """The overrides that turn ``first`` into ``other``, or None if more than those differ."""
    (a, rest_a), (b, rest_b) = _overrides(first), _overrides(other)
    if rest_a != rest_b:
        return None
    changed = [f"-o {k}={v}" for k, v in b.items() if a.get(k) != v]
    return " ".join(changed + [f"(no -o {k})" for k in a if k not in b]) or "(the same)"


def to_json(boards: list[dict]) -> str:
    return json.dumps({"keys": list(KEYS), "boards": boards}, indent=1) + "\n"


def figure_name(board: dict) -> str:
    return f"leaderboard_{board['dataset']}_{board['items']}_{board['protocol']}"


def plain_title(board: dict) -> str:
    """The board's title without its link to an experiment (for figure titles and headings)."""
    return re.sub(r" \(\[experiment\]\([^)]*\)\)", "", board["title"])


def figures(boards: list[dict], folder: Path) -> list[Path]:
    """One PNG per board (rows ranked, 95% CI bars); none when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    written = []
    for board in boards:
        rows = board["rows"][::-1]  # best at the top
        fig, ax = plt.subplots(figsize=(8, 0.32 * len(rows) + 1.3))
        for y, row in enumerate(rows):
            cell = row["NDCG@10"]
            seeds = cell["ci"] == "seeds"
            ax.errorbar(cell["mean"], y, xerr=cell["half_width"], fmt="o", capsize=3,
                        color="C0" if seeds else "C1", mfc="C0" if seeds else "white")  # fmt: skip
        labels = [
            f"{r['name']} ({len(r['seeds'])} seed{'s' * (len(r['seeds']) > 1)})" for r in rows
        ]
        ax.set_yticks(range(len(rows)), labels, fontsize=8)
        ax.set_xlabel("test NDCG@10, 95% CI (filled: over seeds; open: over users, one seed)")
        ax.set_title(textwrap.fill(plain_title(board), 80), fontsize=9)
        ax.grid(axis="x", alpha=0.3)
        fig.tight_layout()
        path = folder / f"{figure_name(board)}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written
