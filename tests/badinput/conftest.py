"""Fixtures and the report of the bad-input suite.

The inputs every case shares are made once per session and kept tiny, so the whole suite runs
in well under a minute: the session's trained run (``tests/conftest.py``), its exported
package, and two one-epoch runs whose checkpoints belong to another model and to another
dataset. Cases that damage a run or a package work on a private copy in their own folder.

Each case carries its class (`harness.case`); with ``SEQREC_BADINPUT_REPORT=FILE`` set, the
session writes every case's class and outcome to FILE as JSON (``benchmarks/bad_input.py`` reads
it: no pytest plugin needed).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest

from conftest import cycle_sequences, tiny_config, write_csv_log

from .harness import CLASSES, MARK, SEEN, User

HERE = Path(__file__).resolve().parent
_CLASS_OF: dict[str, str] = {}
_OUTCOME: dict[str, str] = {}
_XFAIL: dict[str, str] = {}  # the reason each expected failure gives
_STARTED = time.monotonic()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", f"{MARK}(cls): a bad-input case of class cls")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test in this folder must be a tagged case: a case without a class would go
    uncounted."""
    for item in items:
        if HERE not in Path(str(item.path)).parents:
            continue
        mark = item.get_closest_marker(MARK)
        if mark is None or mark.args[0] not in CLASSES:
            raise pytest.UsageError(f"{item.nodeid}: tag it with harness.case(CLASS, ...)")
        _CLASS_OF[item.nodeid] = mark.args[0]


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.nodeid not in _CLASS_OF:
        return
    if hasattr(report, "wasxfail"):
        outcome = "xfailed" if report.skipped else "xpassed"
        _XFAIL[report.nodeid] = report.wasxfail
    elif report.failed:
        outcome = "failed" if report.when == "call" else "error"
    elif report.skipped:
        outcome = "skipped"
    else:
        outcome = "passed"
    # setup / call / teardown: keep the worst word, the call's when all passed
    settled = _OUTCOME.get(report.nodeid) in ("failed", "error")
    if (report.when == "call" or outcome != "passed") and not settled:
        _OUTCOME[report.nodeid] = outcome


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    target = os.environ.get("SEQREC_BADINPUT_REPORT")
    if not target or not _CLASS_OF:
        return
    cases = [
        {
            "id": nodeid,
            "class": cls,
            "outcome": _OUTCOME.get(nodeid, "not run"),
            "messages": SEEN.get(nodeid, []),
            **({"xfail_reason": _XFAIL[nodeid]} if nodeid in _XFAIL else {}),
        }
        for nodeid, cls in _CLASS_OF.items()
    ]
    body = {"seconds": round(time.monotonic() - _STARTED, 2), "cases": cases}
    Path(target).write_text(json.dumps(body, indent=1) + "\n")


# ------------------------------------------------------------------------------- fixtures


@pytest.fixture
def user(tmp_path, monkeypatch) -> User:
    """A person in a scratch folder of their own (the working directory, so a default output
    path lands where the checks see it)."""
    monkeypatch.chdir(tmp_path)
    return User(tmp_path, tmp_path / "cache", monkeypatch)


@pytest.fixture(autouse=True)
def _no_server(monkeypatch):
    """`seqrec serve` must refuse before it listens; a case that got as far as uvicorn fails
    instead of hanging the suite."""
    import uvicorn

    def started(*args, **kwargs):
        raise AssertionError("seqrec serve started a server instead of refusing")

    monkeypatch.setattr(uvicorn, "run", started)


@pytest.fixture
def run(trained_run, user) -> Path:
    """The session's finished run, watched: no case may change it."""
    user.watch(trained_run)
    user.run = trained_run
    return trained_run


@pytest.fixture
def run_copy(trained_run, user) -> Path:
    """A private copy of the finished run inside the case's folder, for cases that damage it."""
    dst = user.root / "run"
    shutil.copytree(trained_run, dst)
    return dst


@pytest.fixture
def unfinished(run_copy) -> Path:
    """What a run stopped after its last checkpoint leaves: no results.json."""
    (run_copy / "results.json").unlink()
    return run_copy


@pytest.fixture(scope="session")
def shared_package(exported_package) -> Path:
    """The finished run exported once: the package serve, recommend and load read."""
    return exported_package


@pytest.fixture
def package(shared_package, user) -> Path:
    """The shared package, watched: no case may change it."""
    user.watch(shared_package)
    user.package = shared_package
    return shared_package


@pytest.fixture
def package_copy(shared_package, user) -> Path:
    """A private copy of the package inside the case's folder, for cases that tamper with it."""
    dst = user.root / "pkg"
    shutil.copytree(shared_package, dst)
    return dst


@pytest.fixture(scope="session")
def foreign_checkpoints(tmp_path_factory) -> dict[str, Path]:
    """checkpoint.pt files a run must refuse to resume from: one of another model family
    (gru4rec) on the same data, one of the same model on a dataset of 25 items."""
    from seqrec.recipe import build_config
    from seqrec.trainer.run import train_run

    root = tmp_path_factory.mktemp("badinput-foreign")
    same_data = write_csv_log(root / "log.csv", cycle_sequences())
    other_data = write_csv_log(root / "other.csv", cycle_sequences(n_users=30, n_items=25))
    found = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SEQREC_CACHE_DIR", str(root / "cache"))
        for name, data, model in (
            ("model", same_data, {"name": "gru4rec"}),
            ("dataset", other_data, {}),
        ):
            raw = tiny_config(data, model=model, train={"epochs": 1})
            train_run(build_config(raw), root / name, progress=False)
            found[name] = root / name / "checkpoint.pt"
    return found
