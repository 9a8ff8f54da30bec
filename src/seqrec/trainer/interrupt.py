"""Stopping a training run from outside: Ctrl-C, and SIGTERM treated like it.

Why a module of its own: an interrupted run must end with a checkpoint and the command that
resumes it, whoever sent the signal, and ``--resume`` must then continue exactly where it
stopped. A KeyboardInterrupt raised wherever Python happens to be breaks that: in the middle of
a step it lands after dropout or negative sampling drew from the RNG, or after the optimiser
moved the weights but before the step counter did, and the resumed run replays that step from
another state. So the trainer holds the two signals back (`StopSignals.held`) and takes them
only where the state it would save is whole: between steps, and inside validation and the
final test (`StopSignals.taken`), which it redoes from a snapshot taken before them.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

from seqrec.errors import SeqrecError


class TrainingInterrupted(SeqrecError):
    """Ctrl-C during training; the checkpoint was saved first."""


class StopSignals:
    """SIGINT and SIGTERM as `KeyboardInterrupt`, raised at once or held back until a point
    where the trainer can stop exactly.

    Outside `installed` (under DDP, off the main thread) nothing is installed, and a signal
    does what it did before: Ctrl-C raises wherever Python is, SIGTERM ends the process.
    """

    def __init__(self) -> None:
        self._holding = False
        self.pending: int | None = None  # a held signal not yet raised

    def _on_signal(self, signum, frame) -> None:
        if self._holding:
            self.pending = signum
            return
        raise KeyboardInterrupt

    @contextlib.contextmanager
    def installed(self, enabled: bool = True) -> Iterator[None]:
        """Handle both signals while the block runs; the previous handlers come back after.

        SIGINT is left alone where it is ignored: background jobs (``cmd &``, nohup) ignore
        it on purpose. Not under DDP: torchrun sends SIGTERM to the survivors when a rank dies,
        and a checkpoint written then would not hold every rank's state; the ranks would also
        stop at different steps. Only the main thread may install handlers; elsewhere no-op.
        """
        if not enabled or threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {}
        for sig in (signal.SIGINT, signal.SIGTERM):
            current = signal.getsignal(sig)
            # None: a handler not set from Python (it could not be put back)
            if current is None or (sig == signal.SIGINT and current is signal.SIG_IGN):
                continue
            previous[sig] = signal.signal(sig, self._on_signal)
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self.pending = None

    @contextlib.contextmanager
    def held(self, deliver: bool = True) -> Iterator[None]:
        """Hold signals back while the block runs; with ``deliver``, one that came is raised
        when the block ends without an error (else it is dropped: e.g. a second Ctrl-C while
        the checkpoint of the first is being written)."""
        before, self._holding = self._holding, True
        try:
            yield
        finally:
            self._holding = before
        if not before:
            self.raise_pending(deliver)

    @contextlib.contextmanager
    def taken(self) -> Iterator[None]:
        """Inside a held block: raise a signal at once while this block runs (one that was
        held is raised on entry). For work the trainer can redo from a snapshot: validation
        and the final test, which may take long on a large catalogue."""
        self.raise_pending()
        before, self._holding = self._holding, False
        try:
            yield
        finally:
            self._holding = before

    def check(self) -> None:
        """A point where stopping is exact: raise a held signal now."""
        self.raise_pending()

    def raise_pending(self, deliver: bool = True) -> None:
        if self.pending is not None:
            self.pending = None
            if deliver:
                raise KeyboardInterrupt
