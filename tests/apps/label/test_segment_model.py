"""What the MONAI Label app serves for segmentation: the bundle's inference mask, loaded from the bundle's own
standalone inference config; and the datastore's masks as the bundle's datalist (main environment, no server)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from monai_ext.apps.label.segment_model import load_bundle_segmenter, mask_datalist, segmenter_overrides
from monai_ext.io.errors import UnreadableImageError
from tests.bundles.helpers import SEGMENT, run_bundle, tiny_segment_overrides

SEG_TRAIN = "bundles/usf_mae_segment/configs/train.yaml"
SEG_INFERENCE = "bundles/usf_mae_segment/configs/inference.yaml"


@pytest.fixture(scope="session")
def segmenter_run(tmp_path_factory) -> Path:
    """Folder whose ``models/model.pt`` is a segmentation-bundle checkpoint (ViT-Tiny, 64 px, two epochs)."""
    out = tmp_path_factory.mktemp("label_segmenter")
    run_bundle([SEG_TRAIN], tiny_segment_overrides(out, out / "cache", base_lr=0.05))
    return out


@pytest.mark.slow
def test_served_mask_equals_the_bundle_inference_mask(segmenter_run, tmp_path) -> None:
    rng = np.random.default_rng(2)
    files = []
    for index, shape in enumerate([(80, 120), (64, 64), (150, 100)]):
        files.append(tmp_path / f"case{index}.png")
        cv2.imwrite(str(files[-1]), cv2.GaussianBlur(rng.integers(0, 256, shape, np.uint8), (0, 0), 2))
    files.append(tmp_path / "blank.png")  # an all-black export: segmented, and flagged
    cv2.imwrite(str(files[-1]), np.zeros((50, 70), np.uint8))
    run_bundle([SEG_INFERENCE], {"ckpt_dir": str(segmenter_run / "models"), "output_dir": str(tmp_path / "bundle"),
                                 "input_files": [str(f) for f in files]})
    expected = json.loads((tmp_path / "bundle" / "masks.json").read_text())["masks"]
    model = load_bundle_segmenter(SEGMENT, segmenter_run / "models" / "model.pt", "cpu")
    for path in files:
        mask, summary = model.segment(path)
        np.testing.assert_array_equal(mask, cv2.imread(expected[str(path)]["mask"], cv2.IMREAD_UNCHANGED))
        assert summary["pixels"] == expected[str(path)]["pixels"]
        assert summary.get("warning") == expected[str(path)].get("warning")
        assert ("warning" in summary) is (path.name == "blank.png")
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(UnreadableImageError, match="notes.png"):
        model.segment(tmp_path / "notes.png")
    overrides = segmenter_overrides(segmenter_run / "models" / "model.pt")
    assert overrides["arch"] == "mae_vit_tiny_patch16_dec128d2b" and overrides["image_size"] == 64
    assert overrides["feature_size"] == 8


def test_mask_datalist_keeps_mask_labels_and_skips_class_labels(tmp_path) -> None:
    items = [{"image": str(tmp_path / f"case{i}.png"), "label": str(tmp_path / "labels" / f"case{i}.png")}
             for i in range(5)]
    items.append({"image": str(tmp_path / "case9.png"), "label": str(tmp_path / "labels" / "case9.json")})
    path, skipped = mask_datalist(items, ["background", "lesion"], tmp_path / "datalist.json", 0.2, 0)
    data = json.loads(path.read_text())
    assert data["class_names"] == ["background", "lesion"]
    assert sorted(it["id"] for it in data["train"] + data["validation"]) == [f"case{i}" for i in range(5)]
    assert len(data["validation"]) == 1 and list(skipped) == [str(tmp_path / "labels" / "case9.json")]
    with pytest.raises(ValueError, match="at least 2 images with saved masks"):
        mask_datalist(items[:1], ["background", "lesion"], tmp_path / "d.json", 0.2, 0)
