"""The demo's GPU route on the CPU: scripts/make_start_checkpoint.sh publishes a checked start, and
scripts/run_demo.sh continues from it and compares random, the start and the continued encoder."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest
import torch

from monai_ext.networks.checkpoints import build_from_checkpoint, read_checkpoint

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def run_script(name: str, cwd: Path = REPO, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(REPO / "scripts" / name)], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, **env}, check=False, timeout=600)


@pytest.fixture(scope="module")
def start(module_tmp) -> Path:
    """A start published by the script in its SMOKE mode (a few CPU steps)."""
    root = module_tmp("start")
    # an apostrophe in the path: it was pasted into Python source and ended in a SyntaxError
    result = run_script("make_start_checkpoint.sh", SMOKE="1", DEST=str(root / "dest"), WORK=str(root / "bob's work"))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return root / "dest"


def test_published_start_is_checked_small_and_described(start: Path) -> None:
    model = start / "model.pt"
    digest, name = (start / "SHA256SUMS").read_text().split()
    assert name == "model.pt" and digest == hashlib.sha256(model.read_bytes()).hexdigest()
    assert model.stat().st_size <= 25 * 2**20
    mae = build_from_checkpoint(read_checkpoint(model))  # the demo's architecture, rebuilt from the file alone
    assert (mae.arch_args["img_size"], mae.arch_args["in_chans"], mae.arch_args["embed_dim"]) == (128, 1, 192)
    command = (start / "command.txt").read_text()
    assert "monai.bundle run" in command and "--norm_pix_loss true" in command and "--image_size 128" in command
    assert json.loads((start / "machine.txt").read_text())["device"] == "none (CPU)"
    assert "epoch 1 validation" in (start / "train.log").read_text()
    assert (start / "representation_quality.png").read_bytes()[:4] == b"\x89PNG"


def test_demo_continues_from_the_start_and_compares_three_starts(start: Path, tmp_path: Path) -> None:
    out = tmp_path / "bob's demo"  # an apostrophe: pasted into Python source it was a SyntaxError
    # one fold: the three starts' comparison is the point here; paired intervals over folds are tested in
    # tests/apps/test_comparison.py
    result = run_script("run_demo.sh", OUT=str(out), START=str(start / "model.pt"), EPOCHS="1", NUM_IMAGES="80",
                        PER_CLASS="6", FOLDS="0")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert f"initial weights: {start / 'model.pt'}: layout=monai_ext" in result.stdout
    record = json.loads((out / "probe_seed0" / "cv_summary.json").read_text())
    assert set(record["summary"]) == {"random", "start", "continued"}
    assert set(record["differences_from_random"]) == {"start", "continued"}
    assert "start - random, macro_f1:" in result.stdout and "continued - random, auc:" in result.stdout
    assert "[95% CI, unadjusted n/a, n/a]" in result.stdout  # one fold: no interval (null in cv_summary.json), no crash
    assert "    1 | " in result.stdout and " | nan" not in result.stdout  # an epoch not monitored shows "-"
    # each start's frozen encoder (saved with its probe head): the start is the published file, the continued one
    # is the demo's own pretraining output, different from both the start and the random one
    def encoder(name: str):
        return read_checkpoint(out / "probe_seed0" / name / "fold0" / "models" / "model.pt")["model"]["blocks.0.attn.qkv.weight"]

    published = read_checkpoint(start / "model.pt")["model"]["blocks.0.attn.qkv.weight"]
    continued = read_checkpoint(out / "pretrain_seed0" / "models" / "model.pt")["model"]["blocks.0.attn.qkv.weight"]
    assert torch.equal(encoder("start"), published) and torch.equal(encoder("continued"), continued)
    assert not torch.equal(published, continued) and not torch.equal(encoder("random"), published)


def test_demo_refuses_a_start_whose_digest_does_not_match(start: Path, tmp_path: Path) -> None:
    copy = tmp_path / "start"
    copy.mkdir()
    (copy / "model.pt").write_bytes((start / "model.pt").read_bytes())
    (copy / "SHA256SUMS").write_text(f"{'ab' * 32}  model.pt\n")
    # run from the user's own folder with relative paths: they mean that folder, not the repository
    result = run_script("run_demo.sh", cwd=tmp_path, OUT="demo", START="start/model.pt", EPOCHS="1",
                        NUM_IMAGES="80", PER_CLASS="6", FOLDS="0")
    assert result.returncode != 0
    assert "has SHA-256" in result.stdout + result.stderr and "expected 'abab" in result.stdout + result.stderr
    assert (tmp_path / "demo" / "pretrain_seed0.log").is_file()
    assert not (tmp_path / "demo" / "probe_seed0").exists()  # stopped before the benchmark
