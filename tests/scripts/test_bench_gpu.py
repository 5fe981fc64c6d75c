"""scripts/bench_gpu.py: skips cleanly without a GPU; --smoke runs every part with tiny sizes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]


def run(*args: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "bench_gpu.py"), *args], env=env,
                            capture_output=True, text=True, timeout=600, check=True)
    return result.stdout


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the behaviour without a GPU")
def test_without_a_gpu_it_skips():
    assert run().strip() == "no GPU: skipped (use --smoke for a functional check on the CPU)"


def test_smoke_run_prints_every_measurement():
    out = run("--smoke")
    for line in ("pretraining step, this project", "pretraining step, MONAI MaskedAutoEncoderViT",
                 "pretraining step, this project / MONAI = ", "fine-tuning step, ViT classifier",
                 "end to end (cache -> GPU augmentation -> step)"):
        assert line in out, out
