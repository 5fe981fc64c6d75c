"""A small fine-tuned classifier (ViT-Tiny, 64 px, synthetic lesions) shared by the MONAI Label tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.bundles.helpers import run_bundle, tiny_classify_overrides

TRAIN = "bundles/usf_mae_classify/configs/train.yaml"
INFERENCE = "bundles/usf_mae_classify/configs/inference.yaml"


@pytest.fixture(scope="session")
def classifier_run(tmp_path_factory) -> Path:
    """Folder whose ``models/model.pt`` is a classification-bundle checkpoint trained for two epochs."""
    out = tmp_path_factory.mktemp("label_classifier")
    # enough epochs at a high rate that scores vary between images, so equality checks mean something
    run_bundle([TRAIN], tiny_classify_overrides(out, out / "cache", epochs=8, base_lr=0.02, label_smoothing=0.0))
    return out
