"""Reading files that may kill their reader's process, without losing the run.

A codec that segfaults on one corrupt file, or a file the kernel's out-of-memory killer stops, takes the whole
process with it: no Python exception, so the batch's per-file error handling never sees it. A process pool then
fails with ``BrokenProcessPool`` for every chunk in flight, and a rerun meets the same file again, so an archive
holding one such file could never be ingested. The remedy is to read a suspect group of files one by one, each in a
process of its own, and to skip the file that kills its process, named.
"""

from __future__ import annotations

import logging
import multiprocessing
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

#: The skip reason of a file whose reading killed its process.
KILLED_READER = "its reader's process died while reading it (a crash in a decoder, or stopped for memory)"


def completes_in_own_process(function: Callable[[Any], Any], argument: Any) -> bool:
    """Whether ``function(argument)`` returns in a fresh process; False when that process dies.

    Exceptions raised by ``function`` are the caller's to see: they come through unchanged.
    """
    # spawn, not fork: forking a process that already runs OpenMP / OpenCV threads can deadlock the child
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        try:
            pool.submit(function, argument).result()
        except BrokenProcessPool:
            return False
    return True


def files_that_kill_their_reader(read_one: Callable[[Any], Any], files: Iterable[str],
                                 argument_of: Callable[[str], Any]) -> dict[str, str]:
    """Read each file in a process of its own; {file: reason} for those whose process died.

    Args:
        read_one: reads one file (its result is dropped); it must catch what a bad file raises.
        files: the suspect group.
        argument_of: the argument ``read_one`` takes for a file.
    """
    killers = {}
    for name in files:
        if not completes_in_own_process(read_one, argument_of(name)):
            logger.warning("%s: %s; it is skipped", name, KILLED_READER)
            killers[name] = KILLED_READER
    return killers


def started_marker(result: Path) -> Path:
    """The file that says work on ``result`` began: present without ``result``, the work's process died (or the
    whole run was stopped) while on it."""
    return result.with_name(result.name + ".started")
