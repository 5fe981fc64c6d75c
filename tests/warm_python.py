"""``python -m MODULE ARGS`` (or ``python SCRIPT ARGS``) for the tests, in a process forked from an interpreter that
has imported the libraries.

A bundle run of the CPU miniature spends about 6 of its 10 s importing MONAI (which loads every submodule), torch,
ignite, MLflow and scikit-learn, and the suite starts about a hundred of them: most of the suite's time went into
those imports. Each test worker therefore keeps one *warm* interpreter that has imported those third-party
libraries, and forks it for each run. The child takes the run's command line, working folder and environment, runs
the module as ``python -m`` does (``runpy``, ``sys.argv[0]`` the module's file, ``__main__``) or the script as
``python SCRIPT`` does (its folder first on ``sys.path``), with stdout and stderr in files, and exits with the code
the interpreter would give. ``torchrun`` runs in such a child too, its ranks forks of it (:mod:`tests.warm_rank`). This package is never imported before the fork: its
import-time behaviour (the one-line error hook of ``python -m monai.bundle``, settings checks) runs in each child as
it does in a user's process.

What a fresh interpreter sets up at start-up is redone in the child: ``OMP_NUM_THREADS`` (torch's thread count),
``PYTHONPATH``, ``TMPDIR``, fresh random states of numpy and torch. What cannot be redone: the string hash seed
(every run shares the server's), and ``PYTHONPATH`` cannot shadow a module of :data:`PRELOADED` or add a
``sitecustomize``; no test needs them. ``MONAI_EXT_TEST_FRESH_PYTHON=1`` starts a new interpreter for every run
instead, as the installed-package, kill-midway and reader-killing tests, one entry-point error test, the launcher
tests of kills and signals and one ``torchrun`` run of each bundle always do.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import threading
import traceback
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

#: Imported once by the warm interpreter: what every bundle run imports, and takes seconds to.
PRELOADED = ("torch", "monai", "monai.bundle.scripts", "monai.handlers", "ignite.engine", "mlflow",
             "sklearn.linear_model", "sklearn.metrics", "matplotlib.figure", "cv2", "PIL.Image", "pydicom")


def run_python(command: Sequence[str], cwd: str | os.PathLike | None = None, env: Mapping[str, str] | None = None,
               timeout: float | None = None, check: bool = False,
               grace: float | None = None) -> subprocess.CompletedProcess:
    """``subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=check)``;
    a ``[sys.executable, "-m", MODULE, *ARGS]`` or ``[sys.executable, SCRIPT.py, *ARGS]`` command runs in a fork of
    the worker's warm interpreter unless ``MONAI_EXT_TEST_FRESH_PYTHON=1``. Past ``timeout`` the run is killed, as
    subprocess kills it; with ``grace``, it is sent SIGTERM first and killed ``grace`` seconds later if still running
    (a launcher then stops its own workers).

    Raises:
        subprocess.TimeoutExpired: the run took longer than ``timeout`` seconds (it is killed, as subprocess does).
        subprocess.CalledProcessError: ``check`` and the run failed.
    """
    command = [os.fspath(part) for part in command]
    env = dict(os.environ if env is None else env)
    if cwd is not None and not os.path.isdir(cwd):  # as subprocess says it, before anything starts
        raise (NotADirectoryError if os.path.exists(cwd) else FileNotFoundError)(f"no folder {os.fspath(cwd)!r}")
    warm = (os.environ.get("MONAI_EXT_TEST_FRESH_PYTHON") != "1" and len(command) > 1 and command[0] == sys.executable
            and ((command[1] == "-m" and len(command) > 2) or command[1].endswith(".py")))
    if not warm:
        return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=check)
    if grace is not None and not warm:
        raise ValueError("grace is for warm runs; a fresh one is tests.launch.run_bounded's")
    result = _warm().run(command, os.fspath(cwd or os.getcwd()), env, timeout, grace)
    if check:
        result.check_returncode()
    return result


class _WarmInterpreter:
    """The forking server (:func:`serve`) in a child process, and the pipe to it; one run at a time."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        boot = f"import runpy; runpy.run_path({__file__!r}, run_name='warm_python_server')"
        # -c leaves sys.path[0] == "": the working folder, which each run sets, as -m puts it first. Unbuffered, so
        # that a run killed midway leaves what it printed, as run_bundle asks of fresh interpreters too.
        self.process = subprocess.Popen([sys.executable, "-c", boot], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        cwd=Path(__file__).parents[1], text=True, bufsize=1,
                                        env={**os.environ, "PYTHONUNBUFFERED": "1"})

    def alive(self) -> bool:
        return self.process.poll() is None

    def run(self, command: list[str], cwd: str, env: dict[str, str], timeout: float | None,
            grace: float | None = None) -> subprocess.CompletedProcess:
        folder = Path(tempfile.gettempdir())
        out, err = (folder / f"warm_python_{os.getpid()}.{name}" for name in ("out", "err"))
        target = {"module": command[2], "args": command[3:]} if command[1] == "-m" else {
            "script": command[1], "args": command[2:]}
        request = {**target, "cwd": cwd, "env": env, "stdout": str(out), "stderr": str(err), "timeout": timeout,
                   "grace": grace}
        with self.lock:
            pid = None
            try:
                self.process.stdin.write(json.dumps(request) + "\n")
                pid = self._answer()["pid"]
                ended = self._answer()
                stdout, stderr = (path.read_text(errors="replace") for path in (out, err))
            except BaseException:  # interrupted (Ctrl-C, a failed read): the run and the server go, as subprocess
                if pid is not None:  # kills its child; the next run starts a new server
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                self.process.kill()
                self.process.wait()
                raise
            finally:
                out.unlink(missing_ok=True)
                err.unlink(missing_ok=True)
        if ended["timed_out"]:
            raise subprocess.TimeoutExpired(command, timeout, stdout, stderr)
        return subprocess.CompletedProcess(command, ended["returncode"], stdout, stderr)

    def _answer(self) -> dict[str, int]:
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the tests' warm interpreter ended (exit code {self.process.wait()}); "
                               "MONAI_EXT_TEST_FRESH_PYTHON=1 runs without it")
        return json.loads(line)

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=30)


_server: _WarmInterpreter | None = None


def _warm() -> _WarmInterpreter:
    global _server
    if _server is None or not _server.alive():
        _server = _WarmInterpreter()
        atexit.register(_server.close)
    return _server


def serve() -> None:
    """The warm interpreter: import :data:`PRELOADED`, then for each request on stdin (one JSON line) fork a child
    that runs it, and answer ``{"pid": ...}`` at once and ``{"returncode": ..., "timed_out": ...}`` when the child
    has ended (killed past its timeout, as ``subprocess.run`` does)."""
    import importlib

    for name in PRELOADED:
        importlib.import_module(name)
    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            try:
                _child(request)  # never returns
            except BaseException:  # noqa: BLE001 - a failure before the module runs: never back into this loop
                traceback.print_exc()
            os._exit(1)
        print(json.dumps({"pid": pid}), flush=True)
        status, timed_out = _wait(pid, request["timeout"], request["grace"])
        print(json.dumps({"returncode": os.waitstatus_to_exitcode(status), "timed_out": timed_out}), flush=True)


def _wait(pid: int, timeout: float | None, grace: float | None) -> tuple[int, bool]:
    """The wait status of child ``pid``, and whether it was stopped for running past ``timeout`` seconds: killed, or
    with ``grace`` sent SIGTERM and killed ``grace`` seconds later if still running. It is signalled before it is
    reaped, so the pid is still its own."""
    pidfd = os.pidfd_open(pid)  # readable when the process ends (Linux 5.3+)
    try:
        ended, _, _ = select.select([pidfd], [], [], timeout)
        if not ended and grace is not None:
            os.kill(pid, signal.SIGTERM)
            if select.select([pidfd], [], [], grace)[0]:
                return os.waitpid(pid, 0)[1], True
    finally:
        os.close(pidfd)
    if not ended:
        os.kill(pid, signal.SIGKILL)
    return os.waitpid(pid, 0)[1], not ended


def _child(request: dict) -> None:
    """Become ``python -m MODULE ARGS`` in the request's folder and environment, then exit as Python would."""
    import ctypes
    import runpy

    import numpy as np
    import torch

    ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: die with the server, never run on as an orphan
    for fd, path, flags in ((0, os.devnull, os.O_RDONLY), (1, request["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
                            (2, request["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)):
        opened = os.open(path, flags, 0o600)
        os.dup2(opened, fd)
        os.close(opened)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    tempfile.tempdir = None  # gettempdir() caches its answer: read TMPDIR again
    if os.environ.get("OMP_NUM_THREADS", "").isdigit():
        torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    torch.seed()  # fresh interpreters start from fresh random states (Python's random reseeds itself on fork)
    np.random.seed()
    sys.path[1:1] = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p not in sys.path]
    if "script" in request:  # what python SCRIPT runs: the script's folder first on sys.path, argv[0] the script
        script = request["script"]
        if not os.path.isfile(script):  # as Python says it, exit code 2
            print(f"{sys.executable}: can't open file {os.path.abspath(script)!r}: [Errno 2] No such file or "
                  "directory", file=sys.stderr)
            os._exit(2)
        sys.path[0] = os.path.dirname(os.path.realpath(script))
        sys.argv = [script, *request["args"]]
        code = run_as_main(lambda: _run_script(script))
    else:  # what -m runs: the module in __main__, which stays in place for the exit handlers; argv[0] its file
        sys.argv = [sys.argv[0], *request["args"]]
        code = run_as_main(lambda: runpy._run_module_as_main(request["module"], alter_argv=True))
    if code is None:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
    os._exit(1 if code is None else code)


def _run_script(script: str) -> None:
    """Run ``script`` in a new ``__main__`` module (the server's holds its own globals), as Python runs a script,
    which takes its ``__file__`` away again once it has run (so exit handlers see a ``__main__`` without one)."""
    import builtins
    import importlib.machinery
    import types

    module = types.ModuleType("__main__")
    main = module.__dict__
    main.update(__builtins__=builtins, __file__=script, __cached__=None, __package__=None, __spec__=None,
                __loader__=importlib.machinery.SourceFileLoader("__main__", script))
    sys.modules["__main__"] = module
    try:
        exec(compile(Path(script).read_bytes(), script, "exec"), main)
    finally:
        main.pop("__file__", None)
        main.pop("__cached__", None)


def run_as_main(run: Callable[[], object]) -> int | None:
    """Run ``run`` as the interpreter runs its main module, up to its exit: an uncaught exception printed by
    ``sys.excepthook``, then the wait for non-daemon threads and the exit handlers.

    Returns:
        The exit code the interpreter would give, or None for a run ended by Ctrl-C (Python then ends by SIGINT).
    """
    code: int | None = 0
    try:
        run()
    except SystemExit as e:
        code = _exit_code(e.code)
    except KeyboardInterrupt:
        sys.excepthook(*sys.exc_info())
        code = None
    except BaseException:  # noqa: BLE001 - what the interpreter does with an uncaught exception
        sys.excepthook(*sys.exc_info())
        code = 1
    threading._shutdown()  # wait for non-daemon threads, as the interpreter does before its exit handlers
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    return code


def _exit_code(code: object) -> int:
    """The exit status of ``sys.exit(code)``: None is 0, a number itself, anything else printed and 1."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


if __name__ == "warm_python_server":
    serve()
