"""``python -m MODULE ARGS`` for the tests, in a process forked from an interpreter that has imported the libraries.

A bundle run of the CPU miniature spends about 6 of its 10 s importing MONAI (which loads every submodule), torch,
ignite, MLflow and scikit-learn, and the suite starts about a hundred of them: most of the suite's time went into
those imports. Each test worker therefore keeps one *warm* interpreter that has imported those third-party
libraries, and forks it for each run. The child takes the run's command line, working folder and environment, runs
the module as ``python -m`` does (``runpy``, ``sys.argv[0]`` the module's file, ``__main__``), with stdout and stderr
in files, and exits with the code the interpreter would give. This package is never imported before the fork: its
import-time behaviour (the one-line error hook of ``python -m monai.bundle``, settings checks) runs in each child as
it does in a user's process.

What a fresh interpreter reads at start-up is re-applied in the child: ``OMP_NUM_THREADS`` (torch's thread count),
``PYTHONPATH`` and ``TMPDIR``. ``MONAI_EXT_TEST_FRESH_PYTHON=1`` starts a new interpreter for every run instead, as
the tests that kill a run midway, or install the package, always do.
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
from collections.abc import Mapping, Sequence
from pathlib import Path

#: Imported once by the warm interpreter: what every bundle run imports, and takes seconds to.
PRELOADED = ("torch", "monai", "monai.bundle.scripts", "monai.handlers", "ignite.engine", "mlflow",
             "sklearn.linear_model", "sklearn.metrics", "matplotlib.figure", "cv2", "PIL.Image", "pydicom")


def run_python(command: Sequence[str], cwd: str | os.PathLike | None = None, env: Mapping[str, str] | None = None,
               timeout: float | None = None, check: bool = False) -> subprocess.CompletedProcess:
    """``subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=check)``;
    a ``[sys.executable, "-m", MODULE, *ARGS]`` command runs in a fork of the worker's warm interpreter unless
    ``MONAI_EXT_TEST_FRESH_PYTHON=1``.

    Raises:
        subprocess.TimeoutExpired: the run took longer than ``timeout`` seconds (it is killed, as subprocess does).
        subprocess.CalledProcessError: ``check`` and the run failed.
    """
    command = [os.fspath(part) for part in command]
    env = dict(os.environ if env is None else env)
    warm = (os.environ.get("MONAI_EXT_TEST_FRESH_PYTHON") != "1" and len(command) > 2
            and command[:2] == [sys.executable, "-m"])
    if not warm:
        return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=check)
    result = _warm().run(command, os.fspath(cwd or os.getcwd()), env, timeout)
    if check:
        result.check_returncode()
    return result


class _WarmInterpreter:
    """The forking server (:func:`serve`) in a child process, and the pipe to it; one run at a time."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        boot = f"import runpy; runpy.run_path({__file__!r}, run_name='warm_python_server')"
        # -c leaves sys.path[0] == "": the working folder, which each run sets, as -m puts it first
        self.process = subprocess.Popen([sys.executable, "-c", boot], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        cwd=Path(__file__).parents[1], text=True, bufsize=1)

    def alive(self) -> bool:
        return self.process.poll() is None

    def run(self, command: list[str], cwd: str, env: dict[str, str],
            timeout: float | None) -> subprocess.CompletedProcess:
        folder = Path(tempfile.gettempdir())
        out, err = (folder / f"warm_python_{os.getpid()}.{name}" for name in ("out", "err"))
        request = {"module": command[2], "args": command[3:], "cwd": cwd, "env": env, "stdout": str(out),
                   "stderr": str(err)}
        with self.lock:
            try:
                self.process.stdin.write(json.dumps(request) + "\n")
                pid = self._answer()["pid"]
                ready, _, _ = select.select([self.process.stdout], [], [], timeout)
                if not ready:
                    with contextlib.suppress(ProcessLookupError):  # it ended meanwhile
                        os.kill(pid, signal.SIGKILL)
                returncode = self._answer()["returncode"]
            except BaseException:  # an interrupted exchange leaves answers unread: the next run starts a new server
                self.process.kill()
                raise
        stdout, stderr = (path.read_text(errors="replace") for path in (out, err))
        out.unlink(), err.unlink()
        if not ready:
            raise subprocess.TimeoutExpired(command, timeout, stdout, stderr)
        return subprocess.CompletedProcess(command, returncode, stdout, stderr)

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
    that runs it, and answer ``{"pid": ...}`` at once and ``{"returncode": ...}`` when the child has ended."""
    import importlib

    for name in PRELOADED:
        importlib.import_module(name)
    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            _child(request)  # never returns
        print(json.dumps({"pid": pid}), flush=True)
        _, status = os.waitpid(pid, 0)
        print(json.dumps({"returncode": os.waitstatus_to_exitcode(status)}), flush=True)


def _child(request: dict) -> None:
    """Become ``python -m MODULE ARGS`` in the request's folder and environment, then exit as Python would."""
    import runpy

    import torch

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
    sys.path[1:1] = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p not in sys.path]
    sys.argv = [sys.argv[0], *request["args"]]  # runpy sets argv[0] to the module's file
    code = 0
    try:
        runpy.run_module(request["module"], run_name="__main__", alter_sys=True)
    except SystemExit as e:
        code = _exit_code(e.code)
    except BaseException:  # noqa: BLE001 - what the interpreter does with an uncaught exception
        sys.excepthook(*sys.exc_info())
        code = 1
    threading._shutdown()  # wait for non-daemon threads, as the interpreter does before its exit handlers
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


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
