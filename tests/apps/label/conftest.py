"""Shared by the MONAI Label tests: a small fine-tuned classifier (ViT-Tiny, 64 px, synthetic lesions), and
MONAI Label's own environment to run scripts in."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest

from tests.bundles.helpers import run_bundle, tiny_classify_overrides

REPO = Path(__file__).resolve().parents[3]
#: how long one script may run: the longest (a fine-tuning on CPU) take a few minutes; past this it hangs
SCRIPT_TIMEOUT_S = 900
TRAIN = "bundles/usf_mae_classify/configs/train.yaml"
INFERENCE = "bundles/usf_mae_classify/configs/inference.yaml"


@pytest.fixture(scope="session")
def classifier_run(tmp_path_factory) -> Path:
    """Folder whose ``models/model.pt`` is a classification-bundle checkpoint trained for two epochs."""
    out = tmp_path_factory.mktemp("label_classifier")
    # enough epochs at a high rate that scores vary between images, so equality checks mean something
    run_bundle([TRAIN], tiny_classify_overrides(out, out / "cache", epochs=8, base_lr=0.02, label_smoothing=0.0))
    return out


#: Runs in MONAI Label's environment: executes each script sent as a JSON line ({"script", "args"}) in a fresh
#: namespace and answers with one line starting with ANSWER. One process serves a test worker's scripts: the imports
#: (monailabel, torch, MONAI) take about 10 s, which each script would otherwise pay again. Requests come on a private
#: copy of the pipe; the scripts (and what they start) get /dev/null as stdin, so one that reads it cannot take the
#: next request. The working folder, environment and import path are put back after each script.
DRIVER = r"""
import contextlib, io, json, os, sys, traceback
requests = os.fdopen(os.dup(0), "r")
null = os.open(os.devnull, os.O_RDONLY)
os.dup2(null, 0)
sys.stdin = open(os.devnull)
answer = sys.stdout
for line in requests:
    request = json.loads(line)
    sys.argv = ["-c", *request["args"]]
    cwd, environ, path = os.getcwd(), dict(os.environ), list(sys.path)
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            exec(compile(request["script"], "<label-script>", "exec"), {"__name__": "__main__"})
        reply = {"ok": True, "stdout": printed.getvalue()}
    except BaseException:  # a script's SystemExit too: the answer says what ended it
        reply = {"ok": False, "stdout": printed.getvalue(), "error": traceback.format_exc()}
    finally:
        os.chdir(cwd)
        os.environ.clear()
        os.environ.update(environ)
        sys.path[:] = path
    answer.write("ANSWER " + json.dumps(reply) + "\n")
    answer.flush()
"""


class LabelEnvironment:
    """A long-lived interpreter of MONAI Label's environment with this checkout first on the path. The app's modules
    import ``monailabel``, which the main environment lacks. After a script fails, the next one gets a fresh
    interpreter, so that what the failed one changed (a patched module) cannot change the tests that follow. A script
    that runs past its time has the interpreter, and all it started, stopped: a hanging script fails its test, not
    the whole CI job at its own time limit."""

    def __init__(self, label_python: Path, log: Path) -> None:
        self._label_python, self._log = label_python, log
        self._process: subprocess.Popen | None = None
        self._lines: queue.Queue[str | None] = queue.Queue()

    def _started(self) -> subprocess.Popen:
        if self._process is None or self._process.poll() is not None:
            with open(self._log, "a", encoding="utf-8") as stderr:  # the child keeps its own descriptor
                # its own process group: a script past its time is stopped with whatever it started
                self._process = subprocess.Popen([str(self._label_python), "-c", DRIVER], cwd=REPO,
                                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr,
                                                 text=True, env={**os.environ, "PYTHONPATH": str(REPO)},
                                                 start_new_session=True)
            # read by a thread, so that run() can wait with a deadline (a pipe's readline has none)
            self._lines = queue.Queue()
            threading.Thread(target=_pump, args=(self._process.stdout, self._lines), daemon=True,
                             name="label-env-stdout").start()
        return self._process

    def run(self, script: str, *args: str, timeout_s: float = SCRIPT_TIMEOUT_S) -> dict:
        """Runs ``script`` with ``sys.argv[1:] == args``; returns the JSON object it prints last.

        Raises:
            AssertionError: the script failed, printed no JSON line, or ran past ``timeout_s`` (the interpreter and
                what the script started are then stopped), with the end of its stderr.
        """
        process = self._started()
        assert process.stdin is not None
        log_start = self._log.stat().st_size
        process.stdin.write(json.dumps({"script": script, "args": list(args)}) + "\n")
        process.stdin.flush()
        try:
            reply = self._reply(time.monotonic() + timeout_s)
        except TimeoutError:
            self._stop()
            stderr = self._log.read_text(encoding="utf-8", errors="replace")[log_start:][-4000:]
            raise AssertionError(f"the script ran past {timeout_s} s; MONAI Label's interpreter was stopped. Its "
                                 f"stderr ends:\n{stderr}") from None
        stderr = self._log.read_text(encoding="utf-8", errors="replace")[log_start:][-4000:]
        if reply is None:
            raise AssertionError(f"MONAI Label's interpreter ended (exit code {process.wait()}): {stderr}")
        if not reply["ok"]:
            self.close()
            raise AssertionError(reply["error"] + stderr)
        lines = reply["stdout"].strip().splitlines()
        assert lines, f"the script printed no JSON line: {stderr}"
        return json.loads(lines[-1])

    def _reply(self, deadline: float) -> dict | None:
        """The driver's answer, or None when its output ended first (it died).

        Raises:
            TimeoutError: no answer by ``deadline`` (``time.monotonic()``).
        """
        while True:
            try:
                line = self._lines.get(timeout=max(deadline - time.monotonic(), 0.0))
            except queue.Empty:
                raise TimeoutError from None
            if line is None:
                return None
            # a line without the prefix was written by something the script started (a subprocess shares the stream)
            if line.startswith("ANSWER "):
                return json.loads(line[len("ANSWER "):])

    def _stop(self) -> None:
        """Kill the interpreter and everything in its process group; the next script gets a fresh one."""
        if self._process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._process.pid, signal.SIGKILL)
        self._process.wait()
        self._process = None

    def close(self) -> None:
        if self._process is None:
            return
        with contextlib.suppress(BrokenPipeError, OSError):
            self._process.stdin.close()
        try:
            self._process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self._stop()
        self._process = None


def _pump(stream: IO[str], lines: queue.Queue[str | None]) -> None:
    """Put each line of ``stream`` on ``lines``, then None at its end."""
    for line in stream:
        lines.put(line)
    lines.put(None)


@pytest.fixture(scope="session")
def label_env(label_python, tmp_path_factory) -> Iterator[LabelEnvironment]:
    """MONAI Label's environment, shared by this test worker's label-app tests."""
    log = tmp_path_factory.mktemp("label_env") / "stderr.log"
    log.touch()
    environment = LabelEnvironment(label_python, log)
    yield environment
    environment.close()
