"""ONNX export argument checks (the export itself is exercised end to end in tests/bundles/test_model_zoo.py)."""

from __future__ import annotations

import re
from pathlib import Path

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


def test_checkpoint_export_says_bare_weights_have_no_architecture_record(tmp_path) -> None:
    """It said the file "holds a None model"."""
    torch.save({"head.weight": torch.zeros(2, 4)}, tmp_path / "bare.pt")
    with pytest.raises(CheckpointError, match=r"bare.pt' has no architecture record \(bare weights\); ONNX export"):
        export_checkpoint_onnx(tmp_path / "bare.pt", tmp_path / "x.onnx")


def _tiny_classifier_checkpoint(path, class_names: list[str] | None = None):
    from monai_ext.networks.classifier import build_classifier

    torch.manual_seed(0)
    model = build_classifier(arch="mae_vit_tiny_patch16_dec128d2b", num_classes=2, img_size=32, in_chans=1, depth=1)
    names = ["benign", "malignant"] if class_names is None else class_names
    save_model_checkpoint(path, model, "classifier", {"class_names": names} if names else None)
    return path


@pytest.mark.parametrize("tolerance", [-1.0, "tight"])
def test_checkpoint_export_refuses_a_bad_tolerance_before_reading(tolerance, tmp_path) -> None:
    with pytest.raises(ValueError, match="tolerance must be a number >= 0"):
        export_checkpoint_onnx(tmp_path / "missing.pt", tmp_path / "x.onnx", tolerance=tolerance)


def test_checkpoint_export_refuses_a_folder_as_output_before_exporting(tmp_path) -> None:
    with pytest.raises(IsADirectoryError, match="is a folder"):
        export_checkpoint_onnx(tmp_path / "missing.pt", tmp_path)


@pytest.mark.parametrize("output", ["model.pt", "link.pt", "./model.pt"])
def test_checkpoint_export_refuses_to_write_over_the_checkpoint(tmp_path, monkeypatch, output) -> None:
    """``export-onnx model.pt model.pt`` (the .pt left as the output) replaced the trained model by ONNX bytes."""
    checkpoint = _tiny_classifier_checkpoint(tmp_path / "model.pt")
    (tmp_path / "link.pt").symlink_to(checkpoint)
    before = checkpoint.read_bytes()
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match=f"ONNX output {re.escape(repr(str(Path(output))))} is the checkpoint itself"):
        export_checkpoint_onnx(checkpoint, output)
    assert checkpoint.read_bytes() == before


def test_a_file_that_fails_its_check_is_not_left_behind(tmp_path, monkeypatch) -> None:
    from monai_ext.networks import export

    checkpoint = _tiny_classifier_checkpoint(tmp_path / "model.pt")
    (tmp_path / "model.onnx").write_bytes(b"the previous export")
    # the check is what is under test, not onnxruntime's numerics: make it disagree by a known amount
    monkeypatch.setattr(export, "onnx_max_difference", lambda model, path, images: 0.5)
    with pytest.raises(ValueError, match="differs from the eager model by 0.5 > tolerance 0.1; nothing written"):
        export_checkpoint_onnx(checkpoint, tmp_path / "model.onnx", tolerance=0.1)
    assert (tmp_path / "model.onnx").read_bytes() == b"the previous export"   # the old file stands
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx", "model.pt"]  # no candidate left


@pytest.mark.parametrize("opset", [18, 17, 11])
def test_a_written_file_has_the_opset_asked_for(tmp_path, opset) -> None:
    """torch's exporter logs a failed down-conversion and writes its own opset instead; a user exporting for an older
    runtime was told it worked. Either the file has the opset asked for, or nothing is written."""
    import onnx

    from monai_ext.networks.classifier import build_classifier

    model = build_classifier(arch="mae_vit_tiny_patch16_dec128d2b", num_classes=2, img_size=32, in_chans=1, depth=1)
    path = tmp_path / "x.onnx"
    try:
        export_onnx(model, path, (1, 1, 32, 32), opset=opset)
    except ValueError as e:
        assert str(e).startswith(f"the model could not be exported at opset {opset} (torch wrote opset ")
        assert not path.exists()
    else:
        written = {entry.domain: entry.version for entry in onnx.load(str(path)).opset_import}
        assert written[""] == opset


def test_an_opset_torch_cannot_convert_to_is_refused_without_onnxscripts_traceback(tmp_path, caplog) -> None:
    """``--opset 5``: onnxscript logged its conversion failure with a whole traceback above the one-line refusal."""
    import logging

    model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.Flatten(), torch.nn.Linear(72, 2))
    with caplog.at_level(logging.WARNING), pytest.raises(ValueError, match="could not be exported at opset 5"):
        export_onnx(model, tmp_path / "x.onnx", (1, 1, 8, 8), opset=5)
    assert not [r for r in caplog.records if r.name.startswith("onnxscript") and r.exc_info], caplog.text[-2000:]
    assert logging.getLogger("onnxscript.version_converter").level == logging.NOTSET  # put back as it was


def test_export_refuses_an_opset_newer_than_onnx_knows(tmp_path) -> None:
    """--opset 99 failed inside onnxscript's converter, which printed its traceback before the one-line error."""
    import onnx

    newest = onnx.defs.onnx_opset_version()
    with pytest.raises(ValueError, match=f"opset must be at most {newest} .*, got {newest + 1}"):
        export_onnx(torch.nn.Identity(), tmp_path / "x.onnx", (1, 1, 8, 8), opset=newest + 1)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("opset", [0, -1, 18.0, True])
def test_export_refuses_an_opset_that_is_not_a_positive_integer(tmp_path, opset) -> None:
    with pytest.raises(ValueError, match=f"opset must be a positive integer, got {opset!r}"):
        export_onnx(torch.nn.Identity(), tmp_path / "x.onnx", (1, 1, 8, 8), opset=opset)


def test_export_gives_the_model_back_in_the_mode_it_came_in(tmp_path) -> None:
    """export_onnx and onnx_max_difference left a caller's training model in eval mode (and moved it to the CPU)."""
    from monai_ext.networks.classifier import build_classifier
    from monai_ext.networks.export import onnx_max_difference

    model = build_classifier(arch="mae_vit_tiny_patch16_dec128d2b", num_classes=2, img_size=32, in_chans=1, depth=1)
    model.train()
    model.blocks.eval()  # a frozen part stays as the caller set it
    modes = [m.training for m in model.modules()]
    export_onnx(model, tmp_path / "x.onnx", (1, 1, 32, 32))
    assert [m.training for m in model.modules()] == modes and not model.blocks.training
    assert onnx_max_difference(model, tmp_path / "x.onnx", torch.rand(2, 1, 32, 32)) < 1e-4  # compared in eval mode
    assert model.training


@pytest.mark.parametrize("class_names", [["normal", "abnormal"], []])
def test_the_file_carries_its_classes_and_preprocessing(tmp_path, class_names) -> None:
    """The .onnx held the graph alone: a team deploying it could not tell which logit is which class, nor the input
    the network expects; the classes were only in the export command's console line."""
    import json

    import onnx

    from monai_ext.networks.input_stats import input_stats

    checkpoint = _tiny_classifier_checkpoint(tmp_path / "model.pt", class_names)
    info = export_checkpoint_onnx(checkpoint, tmp_path / "model.onnx")
    props = {entry.key: entry.value for entry in onnx.load(str(tmp_path / "model.onnx")).metadata_props}
    assert json.loads(props["class_names"]) == class_names
    assert props["num_classes"] == "2" and info["num_classes"] == 2
    assert props["input"] == "image (N, 1, 32, 32) float32"
    mean, std = input_stats(1)
    assert json.loads(props["mean"]) == mean and json.loads(props["std"]) == std
    assert "resized to 32x32 by area" in props["preprocessing"]
    assert props["source_checkpoint"].startswith("model.pt sha256:")
