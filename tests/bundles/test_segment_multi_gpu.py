"""The segmentation bundle under torchrun with two CPU processes (gloo): validation shards of unequal size (3 images
over 2 ranks) and metrics that still cover every validation image exactly once."""

from __future__ import annotations

import json
import os
import sys

import pytest

from monai_ext.data.segmentation import synthetic_segmentation_protocol
from monai_ext.networks.checkpoints import read_checkpoint
from tests.bundles.helpers import REPO, tiny_segment_overrides
from tests.launch import run_bounded

pytestmark = pytest.mark.slow


def test_segment_bundle_under_torchrun_reports_every_validation_image(tmp_path) -> None:
    configs = json.dumps(["bundles/usf_mae_segment/configs/train.yaml", "bundles/usf_mae_segment/configs/multi_gpu_train.yaml"])
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "monai.bundle",
           "run", "--config_file", configs]
    for key, value in tiny_segment_overrides(tmp_path, tmp_path / "cache").items():
        cmd += [f"--{key}", value if isinstance(value, str) else json.dumps(value)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    result = run_bounded(cmd, cwd=REPO, env=env, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    validation = synthetic_segmentation_protocol(tmp_path / "cache", 20, 42, 14).splits[0]["validation"]
    assert len(validation) == 3  # shards of 2 and 1 images: nothing padded, nothing counted twice
    report = json.loads((tmp_path / "eval" / "validation_report.json").read_text())
    assert report["n"] == 3
    assert sorted(e["id"] for e in report["per_image"]) == sorted(it["id"] for it in validation)
    # the gathered per-image Dice values give the logged mean: no padded duplicate entered it
    dice = [e["dice"]["lesion"] for e in report["per_image"] if e["dice"]["lesion"] is not None]
    assert report["score"] == pytest.approx(sum(dice) / len(dice), abs=1e-6)
    history = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2]
    final = read_checkpoint(tmp_path / "models" / "checkpoint_iteration=2.pt")  # 11 train / (4 x 2 ranks) = 1 step
    assert final["trainer"]["iteration"] == 2 and "module." not in next(iter(final["network"]))
