"""Both bundles under torchrun with two CPU processes (gloo) through their multi_gpu_train.yaml overlays."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from monai_ext.networks.checkpoints import read_checkpoint
from tests.bundles.helpers import REPO, tiny_classify_overrides, tiny_pretrain_overrides

pytestmark = pytest.mark.slow


def torchrun_bundle(bundle: str, overrides: dict[str, object]) -> subprocess.CompletedProcess:
    configs = json.dumps([f"bundles/{bundle}/configs/train.yaml", f"bundles/{bundle}/configs/multi_gpu_train.yaml"])
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "monai.bundle",
           "run", "--config_file", configs]
    for key, value in overrides.items():
        cmd += [f"--{key}", value if isinstance(value, str) else json.dumps(value)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    result = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return result


def test_pretrain_bundle_under_torchrun(tmp_path) -> None:
    result = torchrun_bundle("usf_mae_pretrain", tiny_pretrain_overrides(tmp_path, tmp_path / "cache", num_synthetic=32))
    history = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2]
    final = read_checkpoint(tmp_path / "models" / "checkpoint_iteration=2.pt")  # 24 train / (8 x 2 ranks) = 1 step
    assert final["trainer"]["iteration"] == 2 and "module." not in next(iter(final["network"]))
    assert result.stdout.count("reconstruction grid written") == 2  # rank 0 only, once per epoch


def test_classify_bundle_under_torchrun(tmp_path) -> None:
    torchrun_bundle("usf_mae_classify", tiny_classify_overrides(tmp_path, tmp_path / "cache"))
    history = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2]
    # The validation metric was computed over both ranks' shards: all 4 validation images of fold 0.
    assert history[-1]["n"] == 4
    assert (tmp_path / "models" / "model.pt").is_file()
