"""Running bundles as a user does: ``python -m monai.bundle run`` in a process of its own (forked from the test
worker's warm interpreter, :mod:`tests.warm_python`), with small CPU overrides."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

from tests.warm_python import run_python

REPO = Path(__file__).resolve().parents[2]
PRETRAIN = REPO / "bundles" / "usf_mae_pretrain"


def bundle_command(verb: str, configs: list[str], overrides: dict[str, object]) -> list[str]:
    config_arg = configs[0] if len(configs) == 1 else json.dumps(configs)
    cmd = [sys.executable, "-m", "monai.bundle", verb, "--config_file", config_arg]
    for key, value in overrides.items():
        cmd += [f"--{key}", value if isinstance(value, str) else json.dumps(value)]
    return cmd


def run_bundle(configs: list[str], overrides: dict[str, object], cwd: Path = REPO, verb: str = "run",
               check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    result = run_python(bundle_command(verb, configs, overrides), cwd=cwd, env=env, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"bundle run failed ({result.returncode}):\n{result.stdout[-4000:]}\n{result.stderr[-6000:]}")
    return result


def tiny_pretrain_overrides(tmp: Path, cache: Path, **extra: object) -> dict[str, object]:
    """A ViT-Tiny MAE at 64 px on 24 synthetic images: seconds per epoch on a CPU."""
    return {
        "arch": "mae_vit_tiny_patch16_dec128d2b",
        "image_size": 64,
        "num_synthetic": 24,
        "batch_size": 8,
        "num_workers": 0,
        "epochs": 2,
        "val_fraction": 0.25,
        "grid_images": 2,
        "ckpt_dir": str(tmp / "models"),
        "output_dir": str(tmp / "eval"),
        "cache_dir": str(cache),
        **extra,
    }


CLASSIFY = REPO / "bundles" / "usf_mae_classify"


def tiny_classify_overrides(tmp: Path, cache: Path, **extra: object) -> dict[str, object]:
    """A ViT-Tiny classifier at 64 px on a 5-fold synthetic benchmark of 12 images per class."""
    return {
        "arch": "mae_vit_tiny_patch16_dec128d2b",
        "image_size": 64,
        "synthetic_per_class": 12,
        "batch_size": 8,
        "num_workers": 0,
        "epochs": 2,
        "ckpt_dir": str(tmp / "models"),
        "output_dir": str(tmp / "eval"),
        "cache_dir": str(cache),
        **extra,
    }


SEGMENT = REPO / "bundles" / "usf_mae_segment"


def tiny_segment_overrides(tmp: Path, cache: Path, **extra: object) -> dict[str, object]:
    """A ViT-Tiny UNETR at 64 px on 5 folds of 20 simulated lesions (11 train, 3 validation, 4 test images)."""
    return {
        "arch": "mae_vit_tiny_patch16_dec128d2b",
        "image_size": 64,
        "feature_size": 8,
        "synthetic_images": 20,
        "max_train": 14,
        "batch_size": 4,
        "num_workers": 0,
        "epochs": 2,
        "num_overlays": 2,
        "ckpt_dir": str(tmp / "models"),
        "output_dir": str(tmp / "eval"),
        "cache_dir": str(cache),
        **extra,
    }


def readme_bundle_commands(bundle: str) -> list[list[str]]:
    """The ``monai.bundle`` commands of a bundle's docs/README.md as a user copies them: each bash line (with its
    backslash continuations) split as the shell splits it, from the verb on (``run``, ``ckpt_export``, ...)."""
    text = (REPO / "bundles" / bundle / "docs" / "README.md").read_text()
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            args = shlex.split(line)
            # a comment starts a word, as in bash (shlex's own comments also cut --recipes#ultrasound#base_lr)
            args = args[:next((i for i, arg in enumerate(args) if arg.startswith("#")), len(args))]
            if "monai.bundle" in args:
                commands.append(args[args.index("monai.bundle") + 1:])
    return commands
