"""Starting a test server on a free loopback port without a race for the port.

A port chosen by binding port 0 and closing the socket is free only until someone else binds it: on a CI machine a
parallel test's server or a torchrun rendezvous can take it before our server does. The server then exits with
"address already in use" and the test would fail for a reason that has nothing to do with the code under test. Both
servers here (``mlflow server`` and MONAI Label's uvicorn) take a port number only, not an open socket, so the fix is
to start again on a new port when, and only when, that is why the server stopped.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

#: Starts on a port chosen afresh each time; a lost race is rare, so three chances are plenty.
ATTEMPTS = 3
#: What the servers' logs say when the port was taken (Linux errno 98, and macOS's wording).
PORT_TAKEN = ("Address already in use", "address already in use", "Errno 98", "Errno 48")


def start_mlflow_server(root: Path, port: int, log: Path, **popen_kwargs) -> subprocess.Popen:
    """``mlflow server`` with its SQLite store and artifacts in ``root``, on ``port`` of the loopback, output in ``log``.

    Without MLflow's job execution (``MLFLOW_SERVER_ENABLE_JOB_EXECUTION``): with a database store, MLflow 3 starts a
    job runner and three task consumers beside the server, four more interpreters importing MLflow that no test uses.
    """
    exe = shutil.which("mlflow", path=str(Path(sys.executable).parent)) or "mlflow"
    cmd = [exe, "server", "--backend-store-uri", f"sqlite:///{root}/mlflow.db", "--artifacts-destination",
           str(root / "artifacts"), "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    with open(log, "wb") as out:
        return subprocess.Popen(cmd, cwd=root, stdout=out, stderr=subprocess.STDOUT, env=env, **popen_kwargs)


def free_port() -> int:
    """A loopback port that was free a moment ago (the caller must cope with losing it: see :func:`serve`)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def refused_port() -> Iterator[int]:
    """A loopback port that refuses connections for the whole block: bound, never listening, so no other process
    (another test worker's server, a torchrun rendezvous) can take it between the choice and the use, as it could a
    :func:`free_port`."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield s.getsockname()[1]


def port_was_taken(log: Path) -> bool:
    """Whether the server's log says it could not bind its port."""
    text = log.read_text(errors="replace") if log.exists() else ""
    return any(marker in text for marker in PORT_TAKEN)


def serve(start: Callable[[int], subprocess.Popen], wait: Callable[[str, subprocess.Popen], None],
          stop: Callable[[subprocess.Popen], None], log: Path,
          ports: Callable[[], int] = free_port) -> tuple[subprocess.Popen, str]:
    """Start a server on a free port, again on a new one if another process took the port first.

    Args:
        start: starts the server on the port it is given, its output going to ``log``.
        wait: returns once the server at the URL serves; raises ``RuntimeError`` if the process exits first.
        stop: stops the server and whatever it started (called if ``wait`` fails in any other way).
        log: the server's log, read when it exits to tell a lost port from a real failure.
        ports: the source of ports (a test may hand out a taken one).

    Returns:
        The running process and its base URL.

    Raises:
        RuntimeError: the server stopped for another reason, or lost its port on every attempt; with its log's end.
    """
    for _ in range(ATTEMPTS):
        port = ports()
        url = f"http://127.0.0.1:{port}"
        process = start(port)
        try:
            wait(url, process)
            return process, url
        except RuntimeError:
            process.wait(timeout=30)
            if not port_was_taken(log):
                raise
        except BaseException:
            stop(process)  # a timeout or an interrupt must not leave the server running
            raise
    raise RuntimeError(f"the port was taken on {ATTEMPTS} attempts:\n{log.read_text(errors='replace')[-3000:]}")
