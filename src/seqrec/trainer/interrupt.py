"""Stopping a training run from outside: Ctrl-C, and SIGTERM treated like it.

Why a module of its own: an interrupted run must end with a checkpoint and the command that
resumes it, whoever sent the signal; the trainer catches `KeyboardInterrupt` once, and this
turns SIGTERM into one where that is safe.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

from seqrec.errors import SeqrecError


class TrainingInterrupted(SeqrecError):
    """Ctrl-C during training; the checkpoint was saved first."""


@contextlib.contextmanager
def sigterm_as_interrupt(enabled: bool = True) -> Iterator[None]:
    """Treat SIGTERM (``kill``, SLURM pre-emption) like Ctrl-C while training one process.

    Background jobs ignore SIGINT, so without this a stopped job would lose every step since the
    last epoch-end checkpoint. Not under DDP: torchrun sends SIGTERM to the survivors when a rank
    dies, and a checkpoint written then would not hold every rank's state. Only the main thread
    may install handlers; elsewhere it is a no-op.
    """
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield
        return

    def _raise(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, _raise)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
