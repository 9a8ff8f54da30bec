"""Training one sweep run: as a ``python -m seqrec train`` subprocess (a crash or CUDA
out-of-memory stays in its run, and several runs can share a GPU) or in this process.

A run whose folder holds a checkpoint and a config is resumed, under the planned run's
stopping rules (a finished run its budget stopped goes on under a larger one:
trainer/extend.py); Ctrl-C reaches the live subprocesses as SIGINT, so each checkpoints and
exits instead of being lost.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from pathlib import Path

import yaml

from seqrec.errors import SeqrecError
from seqrec.scaling.sweep_spec import SweepRun
from seqrec.scaling.sweep_table import atomic_text
from seqrec.trainer.extend import stopping_overrides
from seqrec.trainer.loop import TrainingInterrupted
from seqrec.trainer.run import train_run


def _last_error(log: Path) -> str:
    """The CLI's one-line ``error: ...`` or the last line of a traceback."""
    try:
        lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return "no log written"
    for line in reversed(lines):
        if line.startswith("error:"):
            return line[len("error:") :].strip()
    return lines[-1] if lines else "the run exited without output"


class Runner:
    """Trains runs as subprocesses (or in this process); can interrupt the live ones."""

    def __init__(self, root: Path, in_process: bool) -> None:
        self.root, self.in_process = root, in_process
        self.stopping = threading.Event()
        self._procs: dict[str, subprocess.Popen] = {}
        self._lock = threading.Lock()

    def __call__(self, run: SweepRun) -> str | None:
        """Train one run; None on success, else the error message."""
        run_dir = self.root / "runs" / run.config_hash
        resume = (run_dir / "checkpoint.pt").is_file() and (run_dir / "config.yaml").is_file()
        if self.in_process:
            return self._in_process(run, run_dir, resume)
        cfg_path = self.root / "configs" / f"{run.config_hash}.yaml"
        atomic_text(cfg_path, yaml.safe_dump(run.cfg.model_dump(mode="json"), sort_keys=False))
        cmd = [sys.executable, "-m", "seqrec", "train", "--no-progress"]
        if resume:  # under the planned stopping rules: a larger budget reaches it
            cmd += ["--resume", str(run_dir)]
            cmd += [a for o in stopping_overrides(run.cfg) for a in ("-o", o)]
        else:
            cmd += ["-c", str(cfg_path), "--out", str(run_dir)]
        if not resume and run_dir.exists():
            cmd.append("--overwrite")  # a run that died before its first checkpoint
        log = self.root / "logs" / f"{run.config_hash}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with self._lock:
            if self.stopping.is_set():
                return None
            with log.open("a") as fh:
                fh.write(f"$ {' '.join(cmd)}\n")
                fh.flush()
                proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT)
            self._procs[run.config_hash] = proc
        rc = proc.wait()
        with self._lock:
            self._procs.pop(run.config_hash, None)
        return None if rc == 0 else _last_error(log)

    def _in_process(self, run: SweepRun, run_dir: Path, resume: bool) -> str | None:
        try:
            train_run(
                None if resume else run.cfg,
                run_dir,
                resume=resume,
                overwrite=run_dir.exists() and not resume,
                progress=False,
                extend=stopping_overrides(run.cfg) if resume else None,
            )
        except TrainingInterrupted:
            raise KeyboardInterrupt from None  # Ctrl-C: the run is unfinished, not failed
        except SeqrecError as err:
            return str(err)
        except Exception as err:  # a bug or an OOM in one run must not end the sweep
            return f"{type(err).__name__}: {err}"
        return None

    def interrupt(self) -> None:
        """Ctrl-C: start nothing new; live runs get SIGINT, so they checkpoint and exit."""
        self.stopping.set()
        with self._lock:
            procs = list(self._procs.values())
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        for proc in procs:
            try:
                proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                proc.kill()
