"""The bundle-backed classifier that MONAI Label serves, tested in the main environment (no MONAI Label needed)."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from monai_ext.apps.label import bundle_model
from monai_ext.apps.label.bundle_model import BundleClassifier, load_bundle_classifier, overrides_from_checkpoint
from monai_ext.io.errors import UnreadableImageError, root_cause
from monai_ext.io.images import read_image
from monai_ext.io.writers import write_dicom_frames
from tests.apps.label.conftest import INFERENCE, TRAIN
from tests.apps.label.test_segment_model import write_sideways
from tests.bundles.helpers import CLASSIFY, run_bundle, tiny_classify_overrides

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def classifier(classifier_run):
    return load_bundle_classifier(CLASSIFY, classifier_run / "models" / "model.pt", device="cpu")


def test_architecture_comes_from_the_checkpoint(classifier_run, classifier) -> None:
    found = overrides_from_checkpoint(classifier_run / "models" / "model.pt")
    assert found == {"arch": "mae_vit_tiny_patch16_dec128d2b", "image_size": 64, "in_channels": 3,
                     "global_pool": "avg", "linear_probe": False}
    assert classifier.class_names == ["benign", "malignant"]
    assert classifier.network.patch_embed.grid_size == (4, 4)


def test_predictions_equal_the_bundle_inference(classifier_run, classifier, tmp_path) -> None:
    rng = np.random.default_rng(0)
    files = []
    for index in range(3):
        pixels = cv2.GaussianBlur(rng.integers(0, 256, (80 + 16 * index, 120), np.uint8), (0, 0), 1 + index)
        cv2.imwrite(str(tmp_path / f"image{index}.png"), pixels)
        files.append(tmp_path / f"image{index}.png")
    write_dicom_frames(np.stack([pixels, 255 - pixels]), tmp_path / "image3.dcm")  # a loop: its first frame counts
    files.append(tmp_path / "image3.dcm")
    run_bundle([TRAIN, INFERENCE], {**tiny_classify_overrides(classifier_run, classifier_run / "cache"),
                                    "input_dir": str(tmp_path)})
    expected = json.loads((classifier_run / "eval" / "predictions.json").read_text())["predictions"]
    for path in files:
        got = classifier.predict(path)
        assert got["class"] == expected[str(path)]["class"]
        assert got["probabilities"] == pytest.approx(expected[str(path)]["probabilities"], abs=1e-6)
        assert got.get("frames") == expected[str(path)].get("frames") == (2 if path.suffix == ".dcm" else None)
    spread = [classifier.predict(p)["probabilities"]["benign"] for p in files[:3]]
    assert max(spread) - min(spread) > 1e-4  # distinct inputs give distinct scores, so equality above means something


@pytest.mark.parametrize("content", [b"", b"plain text, not pixels", b"\x89PNG\r\n\x1a\n truncated"])
def test_unreadable_upload_raises_the_reader_error_naming_the_file(classifier, tmp_path, content) -> None:
    bad = tmp_path / "upload.png"
    bad.write_bytes(content)
    with pytest.raises(UnreadableImageError, match="upload.png"):
        classifier.predict(bad)


def test_heatmap_is_an_rgb_overlay_at_the_files_size(classifier, tmp_path) -> None:
    # the network sees 64 x 64; the viewer shows the file, over which the overlay must lie
    cv2.imwrite(str(tmp_path / "scan.png"), np.random.default_rng(1).integers(0, 256, (90, 70), np.uint8))
    overlay = classifier.heatmap(tmp_path / "scan.png", class_index=1)
    assert overlay.shape == (90, 70, 3) and overlay.dtype == np.uint8
    assert overlay.std() > 0


@pytest.mark.parametrize("shape", [(77, 123), (64, 64)], ids=["non-square", "square"])
@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_the_heatmap_lies_on_the_files_stored_grid_as_viewers_show_it(tmp_path, monkeypatch, shape,
                                                                       orientation) -> None:
    """The overlay of an EXIF-turned picture came back upright (77x123 over an image 3D Slicer shows 123x77), while
    served masks lie on the stored grid. Stand-ins: the overlay is the display pixels it is drawn over."""
    write_sideways(tmp_path / "photo.jpg", shape, orientation)
    drawn_over = []
    monkeypatch.setattr(bundle_model, "has_token_blocks", lambda network: True)
    monkeypatch.setattr(bundle_model, "gradcam_overlay", lambda network, image, index, display: drawn_over.append(
        display.shape) or np.repeat(display[..., None], 3, axis=2))
    classifier = BundleClassifier(network=torch.nn.Identity(), transform=lambda item: {"image": np.zeros((1, 8, 8))},
                                  class_names=["benign", "malignant"], device=torch.device("cpu"), precision="fp32",
                                  checkpoint="stand-in")
    overlay = classifier.heatmap(tmp_path / "photo.jpg", class_index=1)
    stored = np.asarray(Image.open(tmp_path / "photo.jpg"))  # PIL leaves the EXIF orientation unapplied
    assert drawn_over == [read_image(tmp_path / "photo.jpg").pixels.shape]  # drawn over the upright picture
    assert overlay.shape == (*shape, 3)
    np.testing.assert_allclose(overlay[..., 0], stored, atol=2)


def test_the_heatmap_of_an_exif_turned_picture_is_the_upright_ones_turned_back(classifier, tmp_path) -> None:
    """The real Grad-CAM: the network sees the picture upright either way, so the overlay of the stored file is
    the overlay of its upright copy, turned back onto the stored grid."""
    write_sideways(tmp_path / "photo.jpg", (77, 123), 6)
    cv2.imwrite(str(tmp_path / "upright.png"), read_image(tmp_path / "photo.jpg").pixels)
    overlay = classifier.heatmap(tmp_path / "photo.jpg", class_index=1)
    assert overlay.shape == (77, 123, 3)
    np.testing.assert_array_equal(overlay, np.rot90(classifier.heatmap(tmp_path / "upright.png", 1), 1))


@pytest.mark.parametrize(
    "bundle_root, checkpoint, match",
    [("missing_bundle", None, "is not a classification bundle"), (None, "missing.pt", "does not exist")],
)
def test_bad_paths_raise_value_errors_quoting_them(classifier_run, tmp_path, bundle_root, checkpoint, match) -> None:
    root = tmp_path / bundle_root if bundle_root else CLASSIFY
    ckpt = tmp_path / checkpoint if checkpoint else classifier_run / "models" / "model.pt"
    with pytest.raises(ValueError, match=match):
        load_bundle_classifier(root, ckpt, device="cpu")


def test_explicit_overrides_win_over_the_checkpoint(classifier_run) -> None:
    with pytest.raises(Exception) as caught:
        load_bundle_classifier(CLASSIFY, classifier_run / "models" / "model.pt", "cpu", {"image_size": 96})
    assert "pos_embed" in root_cause(caught.value)  # a 96 px network cannot take the 64 px weights


def test_predict_and_explain_gives_the_prediction_and_its_class_overlay(classifier, tmp_path) -> None:
    cv2.imwrite(str(tmp_path / "scan.png"), np.random.default_rng(2).integers(0, 256, (90, 70), np.uint8))
    result, overlay = classifier.predict_and_explain(tmp_path / "scan.png")
    assert result == classifier.predict(tmp_path / "scan.png")
    np.testing.assert_array_equal(overlay, classifier.heatmap(tmp_path / "scan.png", result["label"]))


def test_a_blank_upload_is_answered_and_flagged(classifier, tmp_path) -> None:
    cv2.imwrite(str(tmp_path / "blank.png"), np.zeros((48, 64), np.uint8))
    cv2.imwrite(str(tmp_path / "scan.png"), np.random.default_rng(3).integers(0, 256, (48, 64), np.uint8))
    blank, _ = classifier.predict_and_explain(tmp_path / "blank.png")
    assert blank["warning"].startswith("blank image") and classifier.predict(tmp_path / "blank.png") == blank
    assert "warning" not in classifier.predict(tmp_path / "scan.png")


def test_heatmaps_from_concurrent_threads_equal_sequential_ones(classifier, tmp_path) -> None:
    """The served model is shared by every request: Grad-CAM must not let concurrent requests interfere."""
    rng = np.random.default_rng(3)
    files = []
    for index in range(4):
        pixels = cv2.GaussianBlur(rng.integers(0, 256, (72, 96), np.uint8), (0, 0), 1 + index)
        files.append(tmp_path / f"image{index}.png")
        cv2.imwrite(str(files[-1]), pixels)
    jobs = [(path, index % 2) for index, path in enumerate(files * 2)]
    sequential = [classifier.heatmap(path, class_index) for path, class_index in jobs]
    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        concurrent = list(pool.map(lambda job: classifier.heatmap(*job), jobs))
    for got, want in zip(concurrent, sequential):
        np.testing.assert_array_equal(got, want)
    assert all(p.grad is None for p in classifier.network.parameters())


def test_a_non_square_dicoms_heat_map_lies_on_its_stored_grid(classifier, tmp_path) -> None:
    """A DICOM of non-square pixels (PixelAspectRatio 2\\1) is explained on square pixels (80 x 60); the overlay
    served with it was that size over an image the viewer shows 40 x 60."""
    import warnings

    import pydicom

    from monai_ext.io.writers import write_dicom_frames

    write_dicom_frames(np.random.default_rng(4).integers(0, 256, (1, 40, 60)).astype(np.uint8), tmp_path / "s.dcm")
    ds = pydicom.dcmread(tmp_path / "s.dcm")
    ds.PixelAspectRatio = [2, 1]
    ds.save_as(tmp_path / "s.dcm")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the reader's note that the frames are resampled
        assert classifier.heatmap(tmp_path / "s.dcm", 0).shape[:2] == (40, 60)
