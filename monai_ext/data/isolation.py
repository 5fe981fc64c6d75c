"""Reading files that may kill their reader's process, without losing the run.

A codec that segfaults on one corrupt file, or a file the kernel's out-of-memory killer stops, takes the whole
process with it: no Python exception, so the batch's per-file error handling never sees it. A process pool then
fails with ``BrokenProcessPool`` for every chunk in flight, and a rerun meets the same file again, so an archive
holding one such file could never be ingested. The remedy is to read a suspect group of files one by one in a process
of their own, and to skip the file that kills it, named, going on with the rest in a fresh process.
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
from collections.abc import Callable, Iterable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from monai_ext.io.signals import end_with_the_launcher

logger = logging.getLogger(__name__)

#: The skip reason of a file whose reading killed its process.
KILLED_READER = "its reader's process died while reading it (a crash in a decoder, or stopped for memory)"


def files_that_kill_their_reader(read_one: Callable[[Any], Any], files: Iterable[str],
                                 argument_of: Callable[[str], Any]) -> dict[str, str]:
    """Read the files in turn in a process of their own; {file: reason} for those whose process died.

    One process reads file after file and reports each one done; when it dies, the file it was on is the killer, and
    a fresh process goes on from the next file. So a chunk of N files costs one process start per killer plus one,
    where a process per file cost N (a spawn imports the readers: seconds each).

    Args:
        read_one: reads one file (its result is dropped); it must catch what a bad file raises. A module-level
            function (it is pickled into the reader process).
        files: the suspect group.
        argument_of: the argument ``read_one`` takes for a file (picklable).

    Raises:
        Exception: what ``read_one`` raised: the caller's to see, not a death.
    """
    killers = {}
    pending = list(files)
    while pending:
        done = _read_until_death(read_one, [argument_of(name) for name in pending])
        if done == len(pending):
            break
        logger.warning("%s: %s; it is skipped", pending[done], KILLED_READER)
        killers[pending[done]] = KILLED_READER
        pending = pending[done + 1 :]
    return killers


def _read_until_death(read_one: Callable[[Any], Any], arguments: list[Any]) -> int:
    """How many of ``arguments`` a fresh process read in turn before it died (all of them when it did not)."""
    # spawn, not fork: forking a process that already runs OpenMP / OpenCV threads can deadlock the child
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    reader = context.Process(target=_read_in_turn, args=(read_one, arguments, sender), daemon=True)
    done, raised = 0, None
    try:
        reader.start()
        sender.close()  # the reader's end only: its death then ends the receiving below
        while True:
            kind, value = receiver.recv()
            if kind == "raised":
                raised = value
                break
            done += 1
    except EOFError:  # the reader ended: all read, or died on the file after the last one reported
        pass
    except BaseException:
        # Ctrl-C or a stop signal here: the reader is ended, not waited for; joined as it was, the run went on with
        # its file to the end (minutes of a cine loop) before it stopped, past a scheduler's grace period
        if reader.is_alive():
            reader.terminate()
        raise
    finally:
        sender.close()
        receiver.close()
        if reader.pid is not None:  # started
            reader.join()
    if raised is not None:
        raise raised
    return done


def _read_in_turn(read_one: Callable[[Any], Any], arguments: list[Any], sender: Connection) -> None:
    """The reader process: reads each argument in turn, reporting each one done, or what it raised.

    It leaves Ctrl-C to the run, which ends it (a terminal's Ctrl-C reaches the whole process group: the reader died
    of its ``KeyboardInterrupt`` with a traceback, a death on its file as a killer's is), and ends with the run (a
    run killed with SIGKILL left it reading its file on).
    """
    end_with_the_launcher()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for argument in arguments:
        try:
            read_one(argument)
        except Exception as e:  # noqa: BLE001 - handed to the caller, who sees it as if raised there
            try:
                sender.send(("raised", e))
            except Exception:  # noqa: BLE001 - an exception that does not pickle: its text still reaches the caller
                sender.send(("raised", RuntimeError(f"{type(e).__name__}: {e}")))
            return
        sender.send(("done", None))


def started_marker(result: Path) -> Path:
    """The file that says work on ``result`` began: present without ``result``, the work's process died (or the
    whole run was stopped) while on it."""
    return result.with_name(result.name + ".started")
