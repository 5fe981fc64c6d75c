"""Stop signals as exceptions: a batch job or a training stopped by its queue ends as Ctrl-C ends it, with what it
has done written and its MLflow run marked, instead of vanishing mid-write."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

#: What a queue's time limit (SLURM), ``docker stop``, Kubernetes and ``timeout`` send (SIGTERM), and a closed SSH
#: session (SIGHUP): by default they end the process at once, with the work since the last save lost and an MLflow
#: run left RUNNING.
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name))


@contextmanager
def stop_signals_raise() -> Iterator[None]:
    """Within the block, :data:`STOP_SIGNALS` that would end the process (default handling) raise
    ``SystemExit(128 + signal)`` (the exit status a shell reports for a killed process) instead, so the batch writes
    what it has done, and a training's exception handlers run, as Ctrl-C's do. An ignored signal (``nohup``) or one
    the caller handles keeps its handling.

    Python delivers signals to the main thread only; elsewhere (a server's worker thread) nothing changes.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    # only where the signal would end the process: one that is ignored (nohup's SIGHUP) or handled by the caller
    # keeps what it does
    previous = {number: signal.signal(number, stop) for number in STOP_SIGNALS
                if signal.getsignal(number) is signal.SIG_DFL}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler if handler is not None else signal.SIG_DFL)
