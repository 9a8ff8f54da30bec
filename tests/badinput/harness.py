"""The bad-input suite's harness: run a case as a user would, then check what the user sees.

Every case asserts the same four things, whichever door it comes through:

1. **status**: the CLI exits with 2 (a `SeqrecError`), the Python API raises `SeqrecError`, the
   server answers the status the API documents, in its one error shape ``{error, message,
   detail}``;
2. **one line**: the message has no line break and no ``Traceback``, and the CLI prints nothing
   else on stderr but the trainer's own progress lines (`PROGRESS`);
3. **a fix**: the message names the problem (each case lists the words it must contain) and
   says what to do, by the rule `FIX` spells out below;
4. **nothing lost**: every file and folder that existed before the command, under the case's
   folder and under any shared input it used, is still there with the same sha256 after it,
   and the command created nothing except what it is documented to create (``creates``; the
   data cache is never counted).

A case is tagged with its class through `case`, so ``benchmarks/bad_input.py`` can count the
suite by class (``conftest.py`` writes each case's class and outcome to a report file).
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import re
import sys
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from conftest import asgi_requests
from seqrec import cli
from seqrec.errors import SeqrecError

CLASSES = (
    "files",  # data files: malformed, ambiguous, bad values, broken compression, not a file
    "configs",  # presets, YAML files, overrides, contradictory options
    "checkpoints",  # resume and saved weights: missing, corrupt, another model's
    "packages",  # model packages: missing files, tampered hashes, not a package
    "paths",  # output paths: unwritable, under a file, a user's own folder, existing files
    "signals",  # SIGINT / SIGTERM during training
    "short-answers",  # fewer than k items to return, unknown and duplicate ids
    "sampled-eval",  # --negatives and the other evaluation options
    "requests",  # HTTP requests the server must refuse in its one error shape
)
"""Every class of bad input issue 22 names; `case` accepts only these."""

MARK = "badinput"

# The fix rule, explicit: outside the paths it quotes, a message suggests the fix when it has
# (a) an imperative fix verb, (b) a dotted setting to use (`data.format=pairs`), (c) the values
# that would be accepted ("must be between 1 and 30", pydantic's "Input should be a valid
# integer" or "List should have at least 1 item"), or (d) the nearest valid name ("Did you mean
# 'train.epochs'?").
FIX_VERBS = (
    "add", "ask", "check", "choose", "continue", "convert", "copy", "decompress", "delete",
    "download", "drop", "evaluate", "export", "fill", "fix", "give", "install", "join", "keep",
    "leave", "make", "move", "pass", "point", "remove", "rename", "replace", "restore", "resume",
    "retrain", "retry", "select", "send", "set", "start", "store", "train", "upgrade", "use",
    "write",
)  # fmt: skip
FIX = re.compile(
    r"\b(?:" + "|".join(FIX_VERBS) + r")\b"
    r"|\b[a-z_]+(?:\.[a-z_]+)+=\S"
    r"|\b(?:must|should) (?:be|have)\b"
    r"|\bdid you mean\b",
    re.IGNORECASE,
)
PROGRESS = re.compile(r"^(?:\S+: [\d,]+ parameters|epoch +\d+ |training throughput )")
"""Lines the trainer prints on stderr while it works; anything else there is a message."""
HTTP_STATUSES = {400, 404, 405, 413, 415, 422, 500, 503}  # seqrec.serve.errors.ERROR_CODES


def case(cls: str, id: str, *values: Any, marks: Iterable[Any] = ()) -> Any:
    """One parametrized case of class ``cls``; ``id`` reads as a sentence in pytest's output."""
    assert cls in CLASSES, f"unknown bad-input class {cls!r}"
    assert " " not in id, f"write the id with hyphens: {id!r}"
    return pytest.param(*values, id=id, marks=[getattr(pytest.mark, MARK)(cls), *marks])


SEEN: dict[str, list[str]] = {}
"""Every message a case checked, by test id: the report lists them, so a person can read what
users are told without running anything."""


def check_message(msg: str, says: Iterable[str] = (), not_says: Iterable[str] = ()) -> str:
    """The message rules shared by the CLI, the API and HTTP (points 2 and 3 above)."""
    current = os.environ.get("PYTEST_CURRENT_TEST", "").rsplit(" ", 1)[0]
    SEEN.setdefault(current, []).append(msg)
    assert msg.strip(), "empty message"
    assert "\n" not in msg.strip(), f"more than one line:\n{msg}"
    assert "Traceback" not in msg, msg
    assert len(msg) < 1000, f"{len(msg)} characters is not a line a person reads: {msg}"
    for word in says:
        assert word in msg, f"{word!r} not in: {msg}"
    for word in not_says:
        assert word not in msg, f"{word!r} should not be in: {msg}"
    outside_paths = re.sub(r"\S*/\S*", " ", msg)  # a folder named "use" is no advice
    assert FIX.search(outside_paths), f"no fix suggested (harness.FIX) in: {msg}"
    return msg


def _words(says: str | Iterable[str]) -> tuple[str, ...]:
    return (says,) if isinstance(says, str) else tuple(says)


# ------------------------------------------------------------------------------- snapshots


def snapshot(roots: Iterable[Path], skip: Iterable[Path] = ()) -> dict[str, str]:
    """Every file (its sha256) and folder ("dir") under ``roots``, by absolute path."""
    skip = [Path(s) for s in skip]
    seen: dict[str, str] = {}
    for root in roots:
        root = Path(root)
        if not root.exists():
            continue
        for p in [root, *root.rglob("*")]:
            if any(p == s or s in p.parents for s in skip):
                continue
            if p.is_symlink() or not (p.is_file() or p.is_dir()):
                seen[str(p)] = "other"
            elif p.is_dir():
                seen[str(p)] = "dir"
            else:
                seen[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
    return seen


def assert_unchanged(
    before: dict[str, str],
    after: dict[str, str],
    creates: Iterable[str],
    rewrites: Iterable[str] = (),
) -> None:
    """Point 4: nothing that existed changed or went, nothing undocumented appeared; only a
    command documented to rewrite files (``--resume`` its run folder) lists them in
    ``rewrites``."""
    kept = [p for p in before if not any(fnmatch.fnmatch(p, r) for r in rewrites)]
    changed = [p for p in kept if after.get(p) != before[p]]
    assert not changed, "pre-existing files changed or removed: " + ", ".join(changed)
    allowed = list(creates)
    new = [p for p in after if p not in before and not any(fnmatch.fnmatch(p, a) for a in allowed)]
    assert not new, "undocumented new files: " + ", ".join(sorted(new))


# ------------------------------------------------------------------------------------- CLI


@dataclass
class Result:
    """What a command printed and how it ended."""

    code: int
    out: str
    err: str

    @property
    def messages(self) -> list[str]:
        """stderr lines that are not the trainer's progress lines."""
        return [ln for ln in self.err.splitlines() if ln.strip() and not PROGRESS.match(ln)]


def run_cli(args: Iterable[Any], env: dict[str, str] | None = None) -> Result:
    """``seqrec ARGS`` in this process, through the console entry point `seqrec.cli.main` (which
    turns a `SeqrecError` into one line and exit 2), with typer's CliRunner capturing the
    streams. An exception that escapes is printed as the terminal would show it, exit 1."""
    argv = ["seqrec", *map(str, args)]
    saved = sys.argv
    with CliRunner().isolation(env=env) as (out, err, _):
        sys.argv = argv
        try:
            cli.main()
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
        except BaseException:  # a bug: what the user would see is the traceback
            traceback.print_exc(file=sys.stderr)
            code = 1
        finally:
            sys.argv = saved
            sys.stdout.flush()
            sys.stderr.flush()
        return Result(code, out.getvalue().decode(), err.getvalue().decode())


def check_cli_error(res: Result, says: Iterable[str] = (), not_says: Iterable[str] = ()) -> str:
    """Points 1-3 for a command that must refuse: exit 2, one `error:` line with a fix."""
    shown = f"exit {res.code}\nstdout:\n{res.out}\nstderr:\n{res.err}"
    assert "Traceback" not in res.out + res.err, shown
    assert res.code == 2, shown
    assert len(res.messages) == 1, f"not one message line: {shown}"
    line = res.messages[0]
    assert line.startswith("error: "), shown
    return check_message(line.removeprefix("error: "), says, not_says)


# ------------------------------------------------------------------------------------ HTTP


def http(app: Any, method: str, url: str, **kw: Any) -> Any:
    """One request to the ASGI ``app`` (httpx, no socket); a server error stays a response."""
    return asgi_requests(app, (method, url, kw), raise_app_exceptions=False)[0]


def check_http_error(res: Any, status: int, says: Iterable[str] = ()) -> dict:
    """Points 1-3 for a refused request: the status, the one error shape, one line with a fix."""
    from seqrec.serve.errors import ERROR_CODES

    assert status in HTTP_STATUSES
    assert res.status_code == status, f"{res.status_code}: {res.text[:500]}"
    assert res.headers["content-type"] == "application/json", res.headers
    body = res.json()
    assert set(body) == {"error", "message", "detail"}, body
    assert body["error"] == ERROR_CODES[status][0], body
    check_message(body["message"], says)
    return body


# --------------------------------------------------------------------------------- the user


class User:
    """A person in their own folder (the case's ``tmp_path``), with their own files, running
    seqrec. Every call takes the before/after snapshot of point 4 around the command."""

    def __init__(self, root: Path, cache: Path, monkeypatch: pytest.MonkeyPatch):
        self.root = root
        self.cache = cache
        self.watched: list[Path] = [root]
        self._mp = monkeypatch
        self.run: Path | None = None  # the session's finished run, when the case uses it
        self.package: Path | None = None  # the session's package, when the case uses it

    # ---- the user's own things

    def write(self, name: str, content: str | bytes) -> Path:
        """A file of the user's (text is written as UTF-8)."""
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode() if isinstance(content, str) else content)
        return path

    def folder(self, name: str, files: dict[str, str] | None = None) -> Path:
        """A folder of the user's own files (nothing seqrec wrote)."""
        path = self.root / name
        path.mkdir(parents=True, exist_ok=True)
        for fname, text in (files or {"notes.txt": "my notes\n", "photo.jpg": "jpeg"}).items():
            (path / fname).write_text(text)
        return path

    def yaml(self, name: str, raw: dict) -> Path:
        import yaml

        return self.write(name, yaml.safe_dump(raw))

    def watch(self, *paths: Path) -> None:
        """Shared inputs outside the case's folder (the session's run and package): they must
        come out of every command unchanged too."""
        self.watched += [Path(p) for p in paths]

    def locked(self, path: Path) -> Path:
        """Make ``path`` a folder this user cannot write to. As root, permissions do not stop
        a write, so `os.access` is made to answer as it would for a user (the pre-flight
        check is what is tested; a write that got through would still show as a new file)."""
        path.mkdir(parents=True, exist_ok=True)
        path.chmod(0o555)
        if os.geteuid() == 0:
            real = os.access

            def access(p, mode, *args, **kwargs):
                inside = Path(os.path.abspath(p))
                if mode & os.W_OK and (inside == path or path in inside.parents):
                    return False
                return real(p, mode, *args, **kwargs)

            self._mp.setattr(os, "access", access)
        return path

    # ---- running seqrec

    def _snap(self) -> dict[str, str]:
        return snapshot(self.watched, skip=[self.cache])

    def _guarded(
        self, action: Callable[[], Any], creates: Iterable[str], rewrites: Iterable[str] = ()
    ) -> Any:
        before = self._snap()
        try:
            return action()
        finally:
            assert_unchanged(
                before,
                self._snap(),
                [str(self.root / c) for c in creates],
                [str(self.root / r) for r in rewrites],
            )

    def cli(self, *args: Any, creates: Iterable[str] = (), rewrites: Iterable[str] = ()) -> Result:
        """``seqrec ARGS`` with point 4 checked; the result is the caller's to judge."""
        return self._guarded(lambda: run_cli(args), creates, rewrites)

    def cli_fails(
        self,
        *args: Any,
        says: str | Iterable[str] = (),
        not_says: str | Iterable[str] = (),
        creates: Iterable[str] = (),
    ) -> str:
        """``seqrec ARGS`` must refuse (points 1-4); returns the message."""
        res = self.cli(*args, creates=creates)
        return check_cli_error(res, _words(says), _words(not_says))

    def cli_ok(
        self, *args: Any, creates: Iterable[str] = (), rewrites: Iterable[str] = ()
    ) -> Result:
        """``seqrec ARGS`` must succeed, with no traceback and only ``creates`` new."""
        res = self.cli(*args, creates=creates, rewrites=rewrites)
        assert res.code == 0 and "Traceback" not in res.err, (res.code, res.out, res.err)
        return res

    def api_fails(
        self,
        call: Callable[[], Any],
        says: str | Iterable[str] = (),
        not_says: str | Iterable[str] = (),
        creates: Iterable[str] = (),
    ) -> str:
        """``call()`` must raise `SeqrecError` with a one-line message (points 1-4)."""

        def action():
            with pytest.raises(SeqrecError) as info:
                call()
            return str(info.value)

        msg = self._guarded(action, creates)
        return check_message(msg, _words(says), _words(not_says))

    def api(self, call: Callable[[], Any], creates: Iterable[str] = ()) -> Any:
        """``call()`` must succeed with point 4 checked; returns its result."""
        return self._guarded(call, creates)

    def request(self, app: Any, method: str, url: str, **kw: Any) -> Any:
        """One HTTP request with point 4 checked; the response is the caller's to judge."""
        return self._guarded(lambda: http(app, method, url, **kw), ())

    def http_fails(
        self, app: Any, method: str, url: str, status: int, says: str | Iterable[str] = (), **kw
    ) -> dict:
        """The request must be refused with ``status`` in the error shape (points 1-4)."""
        res = self.request(app, method, url, **kw)
        return check_http_error(res, status, _words(says))


def json_body(body: Any) -> dict[str, Any]:
    """Keyword arguments for a JSON request with the right Content-Type."""
    return {"content": json.dumps(body), "headers": {"content-type": "application/json"}}
