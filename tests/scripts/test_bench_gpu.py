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


@pytest.mark.parametrize("option, value", [("--warmup", "0"), ("--steps", "0"), ("--batch", "-4"),
                                           ("--image-size", "big")])
def test_a_count_below_one_is_refused_before_anything_runs(option, value):
    """--warmup 0 never started the end-to-end clock and ended in 'the cache was too small for the requested
    steps'."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "bench_gpu.py"), "--smoke", option, value],
                            env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and f"argument {option}: must be" in result.stderr, result.stderr


@pytest.mark.parametrize("device, peak", [("NVIDIA H100 80GB HBM3", 989.4), ("NVIDIA H100 PCIe", 756.0),
                                          ("NVIDIA H200", 989.4), ("NVIDIA A100-SXM4-80GB", 312.0)])
def test_mfu_is_against_the_datasheet_peak_of_the_device(device, peak):
    """788 (a matrix product measured here, not the datasheet's 989) overstated MFU on an H100 SXM or H200 by a
    quarter."""
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        import bench_gpu
    finally:
        sys.path.remove(str(REPO / "scripts"))
    assert bench_gpu.peak_tflops(device) == peak and bench_gpu.peak_tflops("CPU") is None
