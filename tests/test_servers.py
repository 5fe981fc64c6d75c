"""The test servers' port handling (tests/servers.py), with Python's own http.server as the server."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import free_port, serve


def wait(url: str, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.1)
    pytest.fail("http.server did not start")


def stop(process: subprocess.Popen) -> None:
    process.kill()
    process.wait(timeout=30)


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A loopback port held by another socket for the whole test, as a parallel test's server holds it."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


def http_server(tmp_path: Path, log: Path, *extra: str):
    def start(port: int) -> subprocess.Popen:
        cmd = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", *extra]
        with open(log, "wb") as out:
            return subprocess.Popen(cmd, cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT)
    return start


def test_a_port_taken_before_the_server_binds_it_is_replaced(tmp_path, taken_port) -> None:
    handed_out = []

    def ports() -> int:  # the first port is lost to another process, the second is free
        handed_out.append(taken_port if not handed_out else free_port())
        return handed_out[-1]

    log = tmp_path / "server.log"
    process, url = serve(http_server(tmp_path, log), wait, stop, log, ports=ports)
    try:
        assert len(handed_out) == 2 and url == f"http://127.0.0.1:{handed_out[1]}"
        with urllib.request.urlopen(url, timeout=5) as answer:
            assert answer.status == 200
    finally:
        stop(process)


def test_a_server_that_fails_for_another_reason_is_not_restarted(tmp_path) -> None:
    log, handed_out = tmp_path / "server.log", []

    def ports() -> int:
        handed_out.append(free_port())
        return handed_out[-1]

    with pytest.raises(RuntimeError, match="exited with 2"):
        serve(http_server(tmp_path, log, "--no-such-option"), wait, stop, log, ports=ports)
    assert len(handed_out) == 1 and "unrecognized arguments" in log.read_text()


def test_a_port_lost_on_every_attempt_is_reported_with_the_log(tmp_path, taken_port) -> None:
    log = tmp_path / "server.log"
    with pytest.raises(RuntimeError, match="taken on 3 attempts(.|\n)*Address already in use"):
        serve(http_server(tmp_path, log), wait, stop, log, ports=lambda: taken_port)
