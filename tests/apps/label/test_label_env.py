"""The MONAI Label test interpreter (tests/apps/label/conftest.py): a script that hangs fails its test within its
time, with the end of its stderr, and what it started is stopped; the next script runs in a fresh interpreter."""

from __future__ import annotations

import os
import time

import pytest

from tests.apps.label.conftest import LabelEnvironment

pytestmark = pytest.mark.slow

HANGS = r"""
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
with open(sys.argv[1], "w") as f:
    f.write(str(child.pid))
print("waiting for a lock that never comes", file=sys.stderr, flush=True)
time.sleep(600)
"""


def test_a_hanging_script_fails_within_its_time_and_is_stopped(label_python, tmp_path) -> None:
    """The driver's answer was read with no time limit: a hanging script hung the test run until CI's own limit."""
    log = tmp_path / "stderr.log"
    log.touch()
    environment = LabelEnvironment(label_python, log)
    try:
        with pytest.raises(AssertionError, match=r"(?s)ran past 5 s.*waiting for a lock that never comes"):
            environment.run(HANGS, str(tmp_path / "child.pid"), timeout_s=5)
        child = int((tmp_path / "child.pid").read_text())
        deadline = time.monotonic() + 10  # SIGKILL takes effect a moment after it is sent
        while _alive(child) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(child)  # stopped with the interpreter, not left running
        assert environment.run("import json; print(json.dumps({'fresh': True}))") == {"fresh": True}
    finally:
        environment.close()


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, killed but not yet reaped by its parent, counts as stopped)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
    except OSError:
        return os.path.exists(f"/proc/{pid}")
