"""The code's shape, checked by maintained tools rather than a hand-written counter.

The import layers and the absence of import cycles are import-linter contracts declared in
pyproject.toml (``[tool.importlinter]``; in-function imports count). Function size and
complexity are ruff's own rules (C901, PLR0912, PLR0915, run by `ruff check`). Ruff has no
module-length rule, so the "no source module over 400 lines" limit is pylint's
``too-many-lines`` (C0302) with every other pylint check disabled.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAX_MODULE_LINES = 400


def test_imports_follow_the_layers_and_form_no_cycle():
    pytest.importorskip(
        "importlinter", reason="import-linter is not installed: pip install -e '.[dev]'"
    )
    code = "from importlinter.cli import lint_imports; raise SystemExit(lint_imports())"
    res = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]


def test_no_source_module_over_400_lines():
    pytest.importorskip("pylint", reason="pylint is not installed: pip install -e '.[dev]'")
    cmd = [sys.executable, "-m", "pylint", "--disable=all", "--enable=too-many-lines",
           f"--max-module-lines={MAX_MODULE_LINES}", "--score=n", "src/seqrec"]  # fmt: skip
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
    # pylint's exit status is a bit mask; 1 (fatal) or 32 (usage error) means it did not run
    assert not res.returncode & (1 | 32), res.stdout + res.stderr
    too_long = [line for line in res.stdout.splitlines() if "C0302" in line]
    assert not too_long, f"modules over {MAX_MODULE_LINES} lines:\n" + "\n".join(too_long)
