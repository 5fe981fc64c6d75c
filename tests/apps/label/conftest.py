"""Shared by the MONAI Label tests: a small fine-tuned classifier (ViT-Tiny, 64 px, synthetic lesions), and
MONAI Label's own environment to run scripts in."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.bundles.helpers import run_bundle, tiny_classify_overrides

REPO = Path(__file__).resolve().parents[3]
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
    interpreter, so that what the failed one changed (a patched module) cannot change the tests that follow."""

    def __init__(self, label_python: Path, log: Path) -> None:
        self._label_python, self._log = label_python, log
        self._process: subprocess.Popen | None = None

    def _started(self) -> subprocess.Popen:
        if self._process is None or self._process.poll() is not None:
            with open(self._log, "a", encoding="utf-8") as stderr:  # the child keeps its own descriptor
                self._process = subprocess.Popen([str(self._label_python), "-c", DRIVER], cwd=REPO,
                                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr,
                                                 text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
        return self._process

    def run(self, script: str, *args: str) -> dict:
        """Runs ``script`` with ``sys.argv[1:] == args``; returns the JSON object it prints last."""
        process = self._started()
        assert process.stdin is not None and process.stdout is not None
        log_start = self._log.stat().st_size
        process.stdin.write(json.dumps({"script": script, "args": list(args)}) + "\n")
        process.stdin.flush()
        # a line without the prefix was written by something the script started (a subprocess shares the stream)
        reply = next((json.loads(line[len("ANSWER "):]) for line in process.stdout if line.startswith("ANSWER ")),
                     None)
        stderr = self._log.read_text(encoding="utf-8", errors="replace")[log_start:][-4000:]
        if reply is None:
            raise AssertionError(f"MONAI Label's interpreter ended (exit code {process.wait()}): {stderr}")
        if not reply["ok"]:
            self.close()
            raise AssertionError(reply["error"] + stderr)
        lines = reply["stdout"].strip().splitlines()
        assert lines, f"the script printed no JSON line: {stderr}"
        return json.loads(lines[-1])

    def close(self) -> None:
        if self._process is None:
            return
        with contextlib.suppress(BrokenPipeError, OSError):
            self._process.stdin.close()
        try:
            self._process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._process = None


@pytest.fixture(scope="session")
def label_env(label_python, tmp_path_factory) -> Iterator[LabelEnvironment]:
    """MONAI Label's environment, shared by this test worker's label-app tests."""
    log = tmp_path_factory.mktemp("label_env") / "stderr.log"
    log.touch()
    environment = LabelEnvironment(label_python, log)
    yield environment
    environment.close()
