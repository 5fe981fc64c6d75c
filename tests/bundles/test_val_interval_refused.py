"""``--val_interval`` that is not a whole number of at least 1, under torchrun: refused on every rank before any
training, in one line, instead of a ZeroDivisionError traceback once every rank had trained a whole epoch."""

from __future__ import annotations

import json
import os

import pytest

from tests.bundles.helpers import REPO, tiny_classify_overrides
from tests.launch import run_torchrun

pytestmark = pytest.mark.slow


def test_val_interval_0_under_torchrun_is_refused_before_the_first_epoch(tmp_path) -> None:
    overrides = tiny_classify_overrides(tmp_path, tmp_path / "cache", device="cpu", val_interval=0)
    configs = json.dumps(["bundles/usf_mae_classify/configs/train.yaml",
                          "bundles/usf_mae_classify/configs/multi_gpu_train.yaml"])
    target = ["-m", "monai.bundle", "run", "--config_file", configs]
    for key, value in overrides.items():
        target += [f"--{key}", value if isinstance(value, str) else json.dumps(value)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    result = run_torchrun(target, processes=2, cwd=REPO, env=env, timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-3000:]
    assert "--val_interval must be a whole number of at least 1, got 0" in output, output[-3000:]
    assert "ZeroDivisionError" not in output, output[-3000:]
    assert "Epoch [1/2]" not in output  # the progress bar of a training epoch: none ran
    assert not (tmp_path / "models").exists()  # no checkpoint, no best model
