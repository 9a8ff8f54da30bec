"""Shared fixtures: generated interaction logs with learnable structure, tiny configs, one run.

Everything is small (tens of users and items, a one-layer 16-wide model) so the trainer, CLI and
error tests run in seconds on one CPU thread. Every test gets its own SEQREC_CACHE_DIR, so
nothing is ever written to the home cache.
"""

from __future__ import annotations

import asyncio
import gzip
import io
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from seqrec.data.batches import SeqBatch
from seqrec.models import config_class
from seqrec.recipe import build_config

N_ITEMS = 30
N_USERS = 40
ITEM_OFFSET = 100  # original item id = ITEM_OFFSET + internal cycle position
USER_OFFSET = 500


def cycle_sequences(
    n_users: int = N_USERS, n_items: int = N_ITEMS, seed: int = 0
) -> dict[str, list[str]]:
    """Each user walks a deterministic cycle item j -> j+1 (mod n_items) from a random start.

    Sequences stay shorter than the catalogue so no item repeats within a user (the validation
    and test targets are then never among the masked seen items).
    """
    rng = np.random.default_rng(seed)
    seqs = {}
    for u in range(n_users):
        start = int(rng.integers(n_items))
        length = int(rng.integers(6, 13))
        seqs[str(USER_OFFSET + u)] = [
            str(ITEM_OFFSET + (start + t) % n_items) for t in range(length)
        ]
    return seqs


def seq_batch(items, targets=None, timestamps=None) -> SeqBatch:
    """A SeqBatch of right-padded ``items`` (0 = PAD); targets default to the items."""
    items = torch.as_tensor(items)
    return SeqBatch(
        items=items,
        targets=items if targets is None else targets,
        lengths=(items != 0).sum(1),
        users=torch.arange(items.shape[0]),
        timestamps=timestamps,
    )


def write_csv_log(path: Path, seqs: dict[str, list[str]], seed: int = 0) -> Path:
    """`user_id,item_id,timestamp` rows in shuffled file order (time gives the chronology)."""
    rows = [
        (user, item, 1_000_000 + 1_000 * i + t)
        for i, (user, items) in enumerate(seqs.items())
        for t, item in enumerate(items)
    ]
    order = np.random.default_rng(seed).permutation(len(rows))
    lines = ["user_id,item_id,timestamp"] + [",".join(map(str, rows[j])) for j in order]
    path.write_text("\n".join(lines) + "\n")
    return path


def write_domain_log(path: Path) -> Path:
    """The cycle log with a ``domain`` column: internal items 1..15 are domain "a" (code 1),
    16..N_ITEMS "b" (code 2), so each user's walk crosses both (rows in shuffled order)."""
    seqs = cycle_sequences()
    rows = [
        f"{u},{item},{1_000_000 + 1_000 * n + t},{'a' if int(item) - ITEM_OFFSET < 15 else 'b'}"
        for n, (u, items) in enumerate(seqs.items())
        for t, item in enumerate(items)
    ]
    order = np.random.default_rng(0).permutation(len(rows))
    path.write_text("\n".join(["user_id,item_id,timestamp,domain"] + [rows[j] for j in order]))
    return path


def write_movies(path: Path, ids: list[int], seed: int) -> Path:
    """A movies.csv for the generated items: one distinct title word per item (so items are
    told apart by features alone), a genre and a year."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    genres = ["Comedy", "Drama", "Action"]
    lines = ["movieId,title,genres"]
    for i in ids:
        year = 1980 + int(rng.integers(0, 20))
        lines.append(f"{i},Film w{i % 37}x ({year}),{genres[i % 3]}")
    path.write_text("\n".join(lines) + "\n")
    return path


def adam_losses(model, objective, batch, steps: int, lr: float) -> list[float]:
    """Fit ``model`` to one fixed ``batch`` with Adam for ``steps`` steps; the loss at each
    (the models' "does it learn at all" checks)."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        loss = objective(model, batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def adam_losses_and_aux(
    model, objective, batch, steps: int, lr: float, aux_seed: int | None = None
) -> tuple[list[float], list[float]]:
    """`adam_losses`, plus the model's auxiliary loss on the batch after each step (the
    contrastive models' "does the contrastive term fall too" checks); ``aux_seed`` reseeds
    before each probe, so only the model changes between probes."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    totals, aux = [], []
    for _ in range(steps):
        loss = objective(model, batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        totals.append(loss.item())
        if aux_seed is not None:
            torch.manual_seed(aux_seed)
        with torch.no_grad():
            aux.append(float(model.auxiliary_loss(batch)))
    return totals, aux


def tiny_config(dataset: Path, **sections) -> dict:
    """A raw config dict for a model that learns the cycle in a handful of epochs."""
    raw = {
        "data": {"dataset": str(dataset), "max_len": 12},
        "model": {"hidden": 16, "layers": 1, "heads": 2, "dropout": 0.1},
        "objective": {"name": "ce"},
        "train": {
            "epochs": 6,
            "batch_size": 8,
            "lr": 0.01,
            "warmup_steps": 0,
            "patience": 50,
            "device": "cpu",
            "threads": 1,
            "checkpoint_every": 1000,
        },
        "eval": {"ks": [1, 5, 10, 20]},
    }
    # the defaults above that the chosen family has (a GRU has no attention heads)
    fields = config_class(sections.get("model", {}).get("name", "sasrec")).model_fields
    raw["model"] = {k: v for k, v in raw["model"].items() if k in fields}
    for section, values in sections.items():
        raw.setdefault(section, {}).update(values)
    return raw


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SEQREC_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("SEQREC_DATA_DIR", raising=False)


@pytest.fixture
def in_tmp_dir(tmp_path, monkeypatch) -> Path:
    """Run from a scratch folder, so a default `runs/<name>` never lands in the repository."""
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


@pytest.fixture
def cycle_log(tmp_path) -> Path:
    return write_csv_log(tmp_path / "log.csv", cycle_sequences())


@pytest.fixture
def config_for():
    """config_for(dataset, train={...}, ...) -> validated RunConfig."""

    def make(dataset: Path, **sections):
        return build_config(tiny_config(dataset, **sections))

    return make


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory) -> Path:
    """One finished run (trained once per session); tests that modify it must copy it first."""
    from seqrec.trainer.run import train_run

    root = tmp_path_factory.mktemp("trained")
    data = write_csv_log(root / "log.csv", cycle_sequences())
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SEQREC_CACHE_DIR", str(root / "cache"))
        train_run(build_config(tiny_config(data)), root / "run", progress=False)
    return root / "run"


@pytest.fixture(scope="session")
def exported_package(trained_run, tmp_path_factory) -> Path:
    """The session's finished run exported once (no item metadata); read-only: tests that
    damage a package copy it first."""
    from seqrec.run import Run

    root = tmp_path_factory.mktemp("package")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SEQREC_CACHE_DIR", str(root / "cache"))
        Run(trained_run).export(root / "pkg")
    return root / "pkg"


@pytest.fixture
def run_copy(trained_run, tmp_path) -> Path:
    """A private copy of the finished run (its data file stays where the config points)."""
    dst = tmp_path / "run"
    shutil.copytree(trained_run, dst)
    return dst


def _ctrl_c() -> None:
    raise KeyboardInterrupt


def interrupt_after(monkeypatch, n_steps: int, interrupt=_ctrl_c) -> None:
    """Simulate Ctrl-C (or ``interrupt``) inside the objective on step ``n_steps`` (0-based)."""
    from seqrec.tasks import retrieval

    real = retrieval.build_objective

    def build(cfg):
        objective = real(cfg)
        calls = [0]

        def interrupted(model, batch):
            if calls[0] == n_steps:
                interrupt()
            calls[0] += 1
            return objective(model, batch)

        return interrupted

    monkeypatch.setattr(retrieval, "build_objective", build)


def interrupt_in_validation(monkeypatch, n_validation: int, interrupt=_ctrl_c) -> None:
    """Simulate Ctrl-C (or ``interrupt``) at the end of validation ``n_validation`` (0-based)
    of a retrieval run: after the trainer recorded it (best score, weights file, log line),
    before it went on."""
    from seqrec.tasks.retrieval import RetrievalTask

    real = RetrievalTask.report
    calls = [0]

    def report(self, *args, **kwargs):
        real(self, *args, **kwargs)
        if calls[0] == n_validation:
            interrupt()
        calls[0] += 1

    monkeypatch.setattr(RetrievalTask, "report", report)


def gzip_cut(text: str, keep: float) -> bytes:
    """``text`` gzipped, then cut to the first ``keep`` share of its bytes (a truncated file)."""
    data = gzip.compress(text.encode())
    return data[: int(len(data) * keep)]


def gzip_flipped() -> bytes:
    """A complete gzip file with two bytes in its middle flipped (fails its CRC or inflate)."""
    data = bytearray(gzip.compress(("1 2 978300760\n" * 50_000 + "2 5 978300761\n").encode()))
    data[len(data) // 2] ^= 0xFF
    data[len(data) // 2 + 1] ^= 0xFF
    return bytes(data)


def parquet_bytes(**columns) -> bytes:
    """A Parquet file of ``columns`` as bytes."""
    buf = io.BytesIO()
    pl.DataFrame(columns).write_parquet(buf)
    return buf.getvalue()


def asgi_requests(app, *requests, raise_app_exceptions: bool = True) -> list:
    """Send (method, url, kwargs) requests concurrently to the ASGI ``app`` (httpx, no socket)
    and close its micro-batcher; the responses in order. With ``raise_app_exceptions=False``
    a server error stays a response, as a client would see it."""
    import httpx

    async def go():
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=raise_app_exceptions)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            try:
                return await asyncio.gather(
                    *(client.request(m, url, **kw) for m, url, kw in requests)
                )
            finally:
                await app.state.batcher.close()

    return asyncio.run(go())
