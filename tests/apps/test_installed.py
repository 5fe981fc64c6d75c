"""The package as a user gets it: ``pip install`` into a fresh target, then both bundles and the CLI run from a folder
outside the checkout, with nothing on the import path that leads back to the checkout."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.bundles.helpers import REPO, bundle_command, tiny_classify_overrides, tiny_pretrain_overrides

pytestmark = pytest.mark.slow
# What an sdist of the project holds; copied so that the build leaves nothing (build/, *.egg-info) in the checkout.
SOURCE_ENTRIES = ("pyproject.toml", "setup.py", "README.md", "LICENSE", "monai_ext", "bundles")
# A user's runs inside a checkout's bundle folders; they must not be shipped, so they are not copied either.
NOT_SOURCE = shutil.ignore_patterns("__pycache__", "*.pyc", "models", "eval", "cache", "*.egg-info")


@pytest.fixture(scope="module")
def installed(module_tmp) -> dict[str, Path]:
    """``site``: the install target; ``work``: an empty working folder outside the checkout; ``env``-ready paths."""
    root = module_tmp("installed")
    source = root / "source"
    source.mkdir()
    for entry in SOURCE_ENTRIES:
        path = REPO / entry
        if path.is_dir():
            shutil.copytree(path, source / entry, ignore=NOT_SOURCE)
        else:
            shutil.copy2(path, source / entry)
    site = root / "site"
    # --no-build-isolation: the venv's setuptools builds it, so the test needs no network
    result = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                             "--no-index", "--target", str(site), str(source)], capture_output=True, text=True,
                            timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-4000:]
    shutil.rmtree(source)  # nothing may be found through the copy the package was built from
    work = root / "work"
    work.mkdir()
    return {"site": site, "work": work}


def user_env(site: Path) -> dict[str, str]:
    """The environment of a user who installed into ``site``: the venv's packages, ``site``, nothing of the checkout."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "MLFLOW"))}
    return {**env, "PYTHONPATH": str(site), "PYTHONUNBUFFERED": "1"}


def run_as_user(cmd: list[str], installed: dict[str, Path], timeout: float = 300) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, cwd=installed["work"], env=user_env(installed["site"]), capture_output=True,
                            text=True, timeout=timeout, check=False)
    assert result.returncode == 0, f"{cmd}\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
    return result


def test_the_installed_package_is_imported_and_finds_its_bundles(installed) -> None:
    code = ("import json, monai_ext; from monai_ext.apps.bundle_support import locate_bundle_root as r; "
            "print(json.dumps([monai_ext.__file__, r('usf_mae_pretrain'), r('usf_mae_classify')]))")
    paths = json.loads(run_as_user([sys.executable, "-c", code], installed).stdout)
    package = installed["site"] / "monai_ext"
    assert paths == [str(package / "__init__.py"), str(package / "bundles" / "usf_mae_pretrain"),
                     str(package / "bundles" / "usf_mae_classify")]
    printed = run_as_user([sys.executable, "-m", "monai_ext", "bundle-path", "usf_mae_classify"], installed).stdout
    assert printed.strip() == paths[2]
    # a user's runs in the checkout's bundle folders were not shipped
    assert not (package / "bundles" / "usf_mae_classify" / "models").exists()


@pytest.mark.parametrize("name, tiny_overrides", [("usf_mae_pretrain", tiny_pretrain_overrides),
                                                  ("usf_mae_classify", tiny_classify_overrides)])
def test_each_bundle_trains_one_tiny_epoch_from_outside_the_checkout(installed, name, tiny_overrides) -> None:
    out = installed["work"] / name
    train = installed["site"] / "monai_ext" / "bundles" / name / "configs" / "train.yaml"
    run_as_user(bundle_command("run", [str(train)], tiny_overrides(out, out / "cache", epochs=1)), installed)
    assert (out / "models" / "model.pt").is_file()
    assert [h["epoch"] for h in json.loads((out / "eval" / "metrics.json").read_text())] == [1]


def test_the_label_apps_model_loads_from_the_installed_bundle(installed) -> None:
    """What the MONAI Label app serves: the installed classification bundle's model, found without a checkout."""
    checkpoint = installed["work"] / "usf_mae_classify" / "models" / "model.pt"
    if not checkpoint.is_file():
        run_as_user(bundle_command("run", [str(installed["site"] / "monai_ext" / "bundles" / "usf_mae_classify" /
                                              "configs" / "train.yaml")],
                                   tiny_classify_overrides(checkpoint.parents[1], checkpoint.parents[1] / "cache",
                                                           epochs=1)), installed)
    image = installed["work"] / "scan.png"
    cv2.imwrite(str(image), np.random.default_rng(0).integers(0, 256, (70, 90), np.uint8))
    code = ("import json, sys; from monai_ext.apps.bundle_support import locate_bundle_root; "
            "from monai_ext.apps.label.bundle_model import load_bundle_classifier; "
            "model = load_bundle_classifier(locate_bundle_root('usf_mae_classify'), sys.argv[1], 'cpu'); "
            "print(json.dumps(model.predict(sys.argv[2])))")
    result = json.loads(run_as_user([sys.executable, "-c", code, str(checkpoint), str(image)], installed)
                        .stdout.strip().splitlines()[-1])
    assert set(result["probabilities"]) == {"benign", "malignant"}
    assert sum(result["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)


def test_cross_validate_runs_the_installed_classification_bundle(installed) -> None:
    cv = installed["work"] / "cv"
    run_as_user([sys.executable, "-m", "monai_ext", "cross-validate", "synthetic", str(cv), "--methods", "random",
                 "--folds", "0", "--cache_dir", str(installed["work"] / "cv_cache"), "--per_class", "12",
                 "--arch", "mae_vit_tiny_patch16_dec128d2b", "--image_size", "64", "--epochs", "1",
                 "--batch_size", "8", "--num_workers", "0"], installed)
    summary = json.loads((cv / "cv_summary.json").read_text())
    assert list(summary["summary"]) == ["random"] and len(summary["summary"]["random"]["macro_f1"]["folds"]) == 1
    assert (cv / "random" / "fold0" / "models" / "model.pt").is_file()
