"""Shared by the MONAI Label tests: a small fine-tuned classifier (ViT-Tiny, 64 px, synthetic lesions), and
MONAI Label's own environment to run scripts in."""

from __future__ import annotations

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
#: namespace and answers with one line starting with ANSWER. One process serves a test worker's whole session: the
#: imports (monailabel, torch, MONAI) take about 10 s, which each script would otherwise pay again.
DRIVER = r"""
import contextlib, io, json, sys, traceback
answer = sys.stdout
for line in sys.stdin:
    request = json.loads(line)
    sys.argv = ["-c", *request["args"]]
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            exec(compile(request["script"], "<label-script>", "exec"), {"__name__": "__main__"})
        reply = {"ok": True, "stdout": printed.getvalue()}
    except BaseException:  # a script's SystemExit too: the answer says what ended it
        reply = {"ok": False, "stdout": printed.getvalue(), "error": traceback.format_exc()}
    answer.write("ANSWER " + json.dumps(reply) + "\n")
    answer.flush()
"""


class LabelEnvironment:
    """One long-lived interpreter of MONAI Label's environment with this checkout first on the path. The app's modules
    import ``monailabel``, which the main environment lacks."""

    def __init__(self, label_python: Path, log: Path) -> None:
        self._log = log
        self._stderr = open(log, "w", encoding="utf-8")  # noqa: SIM115 - open for the process's life, closed in close()
        self._process = subprocess.Popen([str(label_python), "-c", DRIVER], cwd=REPO, stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, stderr=self._stderr, text=True,
                                         env={**os.environ, "PYTHONPATH": str(REPO)})

    def run(self, script: str, *args: str) -> dict:
        """Runs ``script`` with ``sys.argv[1:] == args``; returns the JSON object it prints last."""
        assert self._process.stdin is not None and self._process.stdout is not None
        self._process.stdin.write(json.dumps({"script": script, "args": list(args)}) + "\n")
        self._process.stdin.flush()
        # a line without the prefix was written by something the script started (a subprocess shares the stream)
        for line in self._process.stdout:
            if line.startswith("ANSWER "):
                reply = json.loads(line[len("ANSWER "):])
                assert reply["ok"], reply["error"] + self._log.read_text(encoding="utf-8")[-4000:]
                return json.loads(reply["stdout"].strip().splitlines()[-1])
        raise AssertionError("MONAI Label's interpreter ended: " + self._log.read_text(encoding="utf-8")[-4000:])

    def close(self) -> None:
        assert self._process.stdin is not None
        self._process.stdin.close()
        try:
            self._process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._stderr.close()


@pytest.fixture(scope="session")
def label_env(label_python, tmp_path_factory) -> Iterator[LabelEnvironment]:
    """MONAI Label's environment, shared by this test worker's label-app tests."""
    environment = LabelEnvironment(label_python, tmp_path_factory.mktemp("label_env") / "stderr.log")
    yield environment
    environment.close()
