"""One torchrun rank forked from the tests' warm interpreter: ``python -m MODULE ARGS`` or ``python SCRIPT ARGS``.

    torchrun --run-path --start-method fork tests/warm_rank.py [-m MODULE | SCRIPT] ARGS...

:func:`tests.launch.run_torchrun` runs ``torchrun`` itself in a fork of the worker's warm interpreter
(:mod:`tests.warm_python`, which has imported MONAI, torch, ignite and MLflow), and torchrun's ``--run-path
--start-method fork`` makes each rank a fork of it that runs this file, where a fresh rank spends about 6 s importing
those libraries: a 3-rank launch saved about 20 s of CPU on the 2-core CI machine. Each rank is set up as a fresh
interpreter would be (its own random states, torch's thread count from ``OMP_NUM_THREADS``, the script's folder first
on ``sys.path``, its own exit handlers), then runs its target as Python would, with an uncaught exception printed by
``sys.excepthook`` and the interpreter's exit code. This package is not imported before the fork, as in
:mod:`tests.warm_python`. What is not redone: the string hash seed, which every rank shares (a fresh rank has its
own), so a rank's order of a set of strings is the others'; the launcher tests of kills and signals and one run of
each bundle start fresh ranks.
"""

from __future__ import annotations

import atexit
import ctypes
import importlib.util
import logging
import os
import runpy
import signal
import sys
from pathlib import Path

import numpy as np
import torch

PR_SET_PDEATHSIG = 1


def _run_as_main():
    """:func:`tests.warm_python.run_as_main`, loaded from its file: the rank's ``sys.path`` is left as a fresh rank's,
    which need not hold the repository."""
    spec = importlib.util.spec_from_file_location("_warm_python", Path(__file__).with_name("warm_python.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.run_as_main


def _fresh_process() -> None:
    """What a fresh interpreter has that a fork of the launcher does not."""
    # a fresh rank is the launcher's child too, but its end is the launcher's SIGTERM to every rank; a fork killed
    # with its launcher past the test's timeout would otherwise run on, orphaned, in a collective
    ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    atexit._clear()  # the launcher's exit handlers are not the rank's: its own imports and run register them
    atexit.register(logging.shutdown)
    # nor are its signal handlers: torchrun's Python handler of SIGTERM kept the project's stop handling from being
    # installed (it installs only over the default), and never ran in a rank blocked in a collective
    for number in (signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(number, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    if os.environ.get("OMP_NUM_THREADS", "").isdigit():  # torchrun sets it to 1 for several ranks
        torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    torch.seed()
    np.random.seed()


def main() -> None:
    """Run ``sys.argv[1:]`` (``-m MODULE ARGS`` or ``SCRIPT ARGS``) as this rank's interpreter would, then return
    (torchrun waits for the entrypoint's return value) or exit with the interpreter's exit code."""
    _fresh_process()
    run_as_main = _run_as_main()
    target = sys.argv[1:]
    if target[:1] == ["-m"]:
        sys.argv = [sys.argv[0], *target[2:]]  # alter_sys: the module's file at argv[0], as -m puts it
        code = run_as_main(lambda: runpy.run_module(target[1], run_name="__main__", alter_sys=True))
    else:
        sys.argv = target
        # as python SCRIPT puts its folder first, in place of the launcher's working folder ("": it has none)
        sys.path[0] = str(Path(target[0]).resolve().parent)
        code = run_as_main(lambda: runpy.run_path(target[0], run_name="__main__"))
    if code is None:  # Ctrl-C: Python ends by SIGINT
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
    if code:
        sys.exit(code)


if __name__ == "__main__":
    main()
