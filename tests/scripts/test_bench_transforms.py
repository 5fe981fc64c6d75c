"""scripts/bench_transforms.py: both sides of each ratio warmed up and timed alike, per CPU-second; bad counts are
one line and exit code 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.scripts.helpers import refusal
from tests.warm_python import run_python

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "bench_transforms.py"


def bench(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return run_python([sys.executable, SCRIPT, *args], env=env, timeout=300, check=check)


def test_every_rate_is_per_cpu_second_and_every_ratio_printed():
    out = bench("--images", "2", "--batch", "2", "--repeats", "1").stdout
    lines = out.splitlines()
    assert len(lines) == 4, out
    assert all("per CPU-s)" in line for line in lines), out
    assert "de-annotation / decode = " in lines[1] and "batch / per-sample = " in lines[3], out


def test_both_sides_get_a_warm_up_pass_then_the_best_of_the_timed_ones():
    """The per-sample side was one cold pass (the process's first MONAI call) against a warmed-up batch path timed
    over five batches: the ratio swung from 1.04 to 1.92 between runs."""
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        import bench_transforms
    finally:
        sys.path.remove(str(REPO / "scripts"))
    calls = []
    rate = bench_transforms.per_second(calls.append, ["a", "b"], repeats=3, warmup=1)
    assert calls == ["a", "b"] * 4
    assert rate > 0 and rate.cpu > 0 and "per CPU-s" in f"{rate:.1f}"


@pytest.mark.parametrize("option, value", [("--images", "0"), ("--images", "-3"), ("--batch", "0"),
                                           ("--repeats", "0"), ("--batch", "two")])
def test_a_count_below_one_is_one_line_and_exit_code_2(option, value, monkeypatch, capsys):
    stderr = refusal("bench_transforms", [option, value], monkeypatch, capsys)
    assert f"argument {option}: must be" in stderr and "Traceback" not in stderr, stderr
