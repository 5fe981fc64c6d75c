"""Stop signals as exceptions: a batch job or a training stopped by its queue ends as Ctrl-C ends it, with what it
has done written and its MLflow run marked, instead of vanishing mid-write."""

from __future__ import annotations

import ctypes
import logging
import os
import re
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

#: What a queue's time limit (SLURM), ``docker stop``, Kubernetes and ``timeout`` send (SIGTERM), a closed SSH
#: session (SIGHUP), and a scheduler's warning ahead of its time limit (SLURM's ``--signal=USR1@120``; SIGUSR2 where a
#: site uses that one): by default they end the process at once, with the work since the last save lost and an MLflow
#: run left RUNNING. (torchrun's agent handles SIGTERM, SIGINT, SIGHUP and SIGQUIT only: SIGUSR1 ends it at once, while
#: rank 0 still writes; the docs tell torchrun users to ask for SIGTERM.)
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP", "SIGUSR1", "SIGUSR2")
                     if hasattr(signal, name))


class StopSignal(SystemExit):
    """The ``SystemExit(128 + signal)`` a stop signal raises inside :func:`stop_signals_raise`.

    A subclass, so that handlers can tell a stop from any other exit (a training writes its last checkpoint,
    loggers leave out its traceback) while code that catches ``SystemExit`` keeps working.

    Args:
        signum: the signal received.

    Attributes:
        signum: the signal received.
        report: the one line to show for the stop (set by whoever knows what was kept, such as the training
            checkpointer); None: :meth:`__str__`'s.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(128 + signum)
        self.signum = signum
        self.report: str | None = None

    @property
    def signal_name(self) -> str:
        """``"SIGTERM"``, ``"SIGHUP"``, or ``"signal N"`` for a number without a name."""
        try:
            return signal.Signals(self.signum).name
        except ValueError:
            return f"signal {self.signum}"

    def __str__(self) -> str:
        # ignite logs "Engine run is terminating due to exception: {e}": the signal's name, not a bare "143"
        return f"stopped by {self.signal_name}"


def is_stop_record(record: logging.LogRecord) -> bool:
    """Whether a log record only repeats a :class:`StopSignal`: one logged with it as its exception (MONAI's
    ``StatsHandler`` logs the traceback of every exception that ends a run), or ignite's "Engine run is terminating
    due to exception: stopped by SIGTERM" line. The stop is reported once, in one line, by whoever ran the engine."""
    error = record.exc_info[1] if record.exc_info else None
    if isinstance(error, StopSignal):
        return True
    message = record.getMessage()
    return message.startswith(_ENGINE_ERROR_PREFIX) and message[len(_ENGINE_ERROR_PREFIX):] in _STOP_MESSAGES


#: ignite's ERROR line for an exception that ends an engine's run
_ENGINE_ERROR_PREFIX = "Engine run is terminating due to exception: "
_STOP_MESSAGES = frozenset(str(StopSignal(number)) for number in STOP_SIGNALS)


class StopSignalLogFilter(logging.Filter):
    """Drops the records :func:`is_stop_record` finds: a stop signal is an expected end, not a fault to trace."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not is_stop_record(record)


#: The stop signals' shared state: how deep in :func:`stop_signals_deferred` blocks the main thread is, a signal held
#: there, and whether a stop was raised (the handler raises once).
_STOP = {"deferring": 0, "pending": None, "raised": False}


@contextmanager
def stop_signals_deferred() -> Iterator[None]:
    """Within the block, a stop signal that :func:`stop_signals_raise` would raise is held and raised at its end.

    For writes that must not be cut: a signal raised inside ``torch.save`` left a ``RuntimeError`` (the archive
    writer's) instead of the stop, and the checkpoint being written was lost. An exception leaving the block keeps
    the signal held for the next block's end or none (the exception ends the run anyway).
    """
    _STOP["deferring"] += 1
    try:
        yield
    except BaseException:
        _STOP["deferring"] -= 1
        raise
    _STOP["deferring"] -= 1
    pending = _STOP["pending"]
    if not _STOP["deferring"] and pending is not None:
        _STOP["pending"], _STOP["raised"] = None, True
        raise StopSignal(pending)


def _stop(signum: int, frame: Any) -> None:
    """The handler :func:`stop_signals_raise` installs: raise :class:`StopSignal` once; hold it inside
    :func:`stop_signals_deferred`; ignore later signals (torchrun's agent forwards a SIGTERM after the scheduler's,
    and a second stop raised inside the stop's own checkpoint write lost it)."""
    if _STOP["raised"] or _in_data_loader_worker():
        return
    if _STOP["deferring"]:
        _STOP["pending"] = signum
        return
    _STOP["raised"] = True
    raise StopSignal(signum)


#: PyTorch's error (from C) for a DataLoader worker that died of a signal, with the signal's name (``strsignal``).
_WORKER_KILLED = re.compile(r"DataLoader worker \(pid\(?s?\)? ?[\d, ]+\) is killed by signal: (Terminated|Hangup)")


def stop_of_a_worker_death(error: BaseException) -> BaseException:
    """``error``, or the :class:`StopSignal` it stands for where a DataLoader worker died of SIGTERM or SIGHUP while
    this process handles that signal as a stop (inside :func:`stop_signals_raise`).

    A job-wide SIGTERM (SLURM's time limit, ``kill -TERM -PGID``) reaches the workers too, and PyTorch's handler in
    each ends it; the main process then often met "DataLoader worker (pid N) is killed by signal: Terminated" before
    its own signal, and the stopped training ended as a failure (a FAILED MLflow run, a traceback, exit status 1).
    The worker's death is the same stop: the main process's own signal, on its way, is then ignored as a second one.
    """
    found = _worker_killed_by(error)
    if found is None or threading.current_thread() is not threading.main_thread():
        return error
    number = signal.SIGTERM if found.group(1) == "Terminated" else signal.SIGHUP
    if signal.getsignal(number) is not _stop:
        return error
    _STOP["raised"] = True
    stop = StopSignal(number)
    stop.__cause__ = error
    return stop


def _worker_killed_by(error: BaseException) -> re.Match[str] | None:
    """:data:`_WORKER_KILLED`'s match in ``error`` or the errors it was raised from. The main process waiting on
    the workers' queue (a training bound by its data) gets the death as PyTorch's "DataLoader worker (pid(s) N)
    exited unexpectedly", raised from the signal's message: only a death met elsewhere is that message itself."""
    seen: set[int] = set()
    # a RuntimeError's chain only: a stop already made of the death (ignite handles an iteration's error twice, the
    # second time as what the first handlers raised) is that stop
    while isinstance(error, RuntimeError) and id(error) not in seen:
        seen.add(id(error))
        if found := _WORKER_KILLED.search(str(error)):
            return found
        error = error.__cause__ or error.__context__
    return None


def _in_data_loader_worker() -> bool:
    """Whether this process is a PyTorch DataLoader worker: forked inside :func:`stop_signals_raise`, it has the
    handler too, and a signal sent to the whole job (SLURM's ``scancel --signal=USR1``, a closed session's SIGHUP)
    made each worker raise the stop and exit (status 138 for SIGUSR1), so the training also printed "DataLoader
    worker exited unexpectedly" and could take that for its error. The main process stops and ends its workers.
    (SIGTERM never gets here in a worker: PyTorch's own handler, installed in C, ends the worker, and the main
    process takes that death for the stop: :func:`stop_of_a_worker_death`.)"""
    data = sys.modules.get("torch.utils.data")  # never imported here: a process without torch has no such worker
    return data is not None and data.get_worker_info() is not None


@contextmanager
def stop_signals_raise() -> Iterator[None]:
    """Within the block, :data:`STOP_SIGNALS` that would end the process (default handling) raise
    :class:`StopSignal` (a ``SystemExit(128 + signal)``, the exit status a shell reports for a killed process)
    instead, so the batch writes what it has done, and a training's exception handlers run, as Ctrl-C's do. An
    ignored signal (``nohup``) or one the caller handles keeps its handling. The first signal raises; later ones
    are ignored, and one arriving inside :func:`stop_signals_deferred` is raised at that block's end.

    Python delivers signals to the main thread only; elsewhere (a server's worker thread) nothing changes.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    # only where the signal would end the process: one that is ignored (nohup's SIGHUP) or handled by the caller
    # keeps what it does, a handler installed in C too (faulthandler.register(SIGUSR1), a common way to dump a hung
    # job's stacks, which Python's getsignal reports as the default): replaced, a dump request stopped the training
    previous = {number: signal.signal(number, _stop) for number in STOP_SIGNALS
                if signal.getsignal(number) is signal.SIG_DFL and not _caught_outside_python(number)}
    saved = dict(_STOP)
    _STOP.update(pending=None, raised=False)
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler if handler is not None else signal.SIG_DFL)
        _STOP.update(pending=saved["pending"], raised=saved["raised"])


def _caught_outside_python(number: int) -> bool:
    """Whether the kernel holds a handler for signal ``number`` of this process (Linux: its bit in ``SigCgt`` of
    ``/proc/self/status``) where Python reports the default: one installed in C (``faulthandler.register``). False
    where the kernel does not say (another system): the signal is then taken as Python reports it."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            caught = next((line.split()[1] for line in status if line.startswith("SigCgt:")), None)
    except OSError:
        return False
    return caught is not None and bool(int(caught, 16) >> (number - 1) & 1)


def _reraise(engine: Any, error: BaseException) -> None:
    """The last ``EXCEPTION_RAISED`` handler (:func:`reraise_last`): the exception ends the run."""
    raise error


def reraise_last(engine: Any) -> None:
    """Make the last ``EXCEPTION_RAISED`` handler of an ignite engine re-raise the exception.

    ignite swallows an exception that every ``EXCEPTION_RAISED`` handler returns from, and the run then returns as
    if it had completed. The handlers that must see a stop before MONAI's ``StatsHandler`` re-raises it (the
    training checkpointer's write at a stop signal, MLflow's failure mark) return, so that the others run too; an
    engine without a re-raising handler would then go on to its finishing steps after a SIGTERM. Called again, the
    re-raising handler moves to the end (handlers attached since would follow it and never run).
    """
    from ignite.engine import Events

    if not engine.has_event_handler(_reraise, Events.EXCEPTION_RAISED):
        engine.add_event_handler(Events.EXCEPTION_RAISED, _reraise)
        return
    handlers = engine._event_handlers[Events.EXCEPTION_RAISED]  # ignite has no public way to reorder handlers
    handlers.append(handlers.pop(next(i for i, entry in enumerate(handlers) if entry[0] is _reraise)))


#: Linux ``prctl`` option: the signal this process gets when its parent dies (``<linux/prctl.h>``).
PR_SET_PDEATHSIG = 1


def end_with_the_launcher() -> bool:
    """Ask Linux to send this process SIGTERM when its parent (torchrun's agent, or the ingestion run of a corpus
    reader) dies; nothing elsewhere.

    torchrun starts its workers in sessions of their own, so a launcher killed with SIGKILL (a scheduler's hard
    limit, ``timeout -s KILL``) left them training and writing to ``ckpt_dir``, where a resumed run then met them;
    a killed ``prepare-corpus`` left its pool's readers reading on for ever. SIGTERM lets such a process stop as a
    queue's stop does (:func:`stop_signals_raise`).

    Returns:
        True when the request was made.
    """
    if not sys.platform.startswith("linux"):
        return False
    parent = os.getppid()
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0) != 0:
            return False
    except (OSError, AttributeError):  # no C library to ask (a static or unusual build)
        return False
    if os.getppid() != parent:  # the launcher died before the request: it would never come
        os.kill(os.getpid(), signal.SIGTERM)
    return True
