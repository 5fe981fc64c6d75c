"""ONNX export argument checks (the export itself is exercised end to end in tests/bundles/test_model_zoo.py)."""

from __future__ import annotations

import pytest
import torch

from monai_ext.io.checkpoints import CheckpointError
from monai_ext.networks.checkpoints import save_model_checkpoint
from monai_ext.networks.export import export_checkpoint_onnx, export_onnx
from monai_ext.networks.mae import build_mae


@pytest.mark.parametrize("shape", [(3, 64, 64), (1, 3, 64, 0), (1, 3, 64, 64, 1)])
def test_export_rejects_a_shape_that_is_not_a_positive_nchw(shape, tmp_path) -> None:
    with pytest.raises(ValueError, match="input_shape must be"):
        export_onnx(torch.nn.Identity(), tmp_path / "x.onnx", shape)
    assert not (tmp_path / "x.onnx").exists()


def test_checkpoint_export_refuses_a_pretraining_checkpoint_before_writing(tmp_path) -> None:
    save_model_checkpoint(tmp_path / "mae.pt", build_mae("mae_vit_tiny_patch16_dec128d2b", img_size=32), "mae")
    with pytest.raises(CheckpointError, match="holds a 'mae' model"):
        export_checkpoint_onnx(tmp_path / "mae.pt", tmp_path / "x.onnx")
    assert not (tmp_path / "x.onnx").exists()
