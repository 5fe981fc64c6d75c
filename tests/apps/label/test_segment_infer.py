"""UltrasoundSegmentInfer (apps/label/segment_infer.py) without a server, on a stand-in segmenter: labels without
the background, the mask written as a PNG label map at the image's size, the summary with its latency, and the
model reloaded when the served checkpoint is replaced. Runs in MONAI Label's environment."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow

SCRIPT = r"""
import json, os, sys, time
from pathlib import Path
import cv2
import numpy as np
from monailabel.interfaces.tasks.infer_v2 import InferType
from monai_ext.apps.label.segment_infer import UltrasoundSegmentInfer

tmp = Path(sys.argv[1])
checkpoint = tmp / "segmenter.pt"
checkpoint.write_bytes(b"1")
loads = []

class Stub:
    class_names = ["background", "benign", "malignant"]
    delay = 0.0  # seconds a segmentation takes

    def __init__(self, path):
        self.value = int(Path(path).read_bytes())

    def segment(self, image):
        time.sleep(self.delay)
        mask = np.zeros((9, 13), np.uint8)
        mask[2:5, 3:8] = self.value
        return mask, {"pixels": {"lesion": 15}, "fraction": {"lesion": 15 / 117}}

def load(path):
    loads.append(str(path))
    return Stub(path)

task = UltrasoundSegmentInfer(load, lambda: checkpoint)
out = {"loads_at_start": len(loads), "labels": task.labels, "segmentation": task.type == InferType.SEGMENTATION,
       "dimension": task.dimension, "valid": task.is_valid(), "description": task.description}
file, summary = task({"image": "x.png"})
mask = cv2.imread(file, cv2.IMREAD_UNCHANGED)
out["first"] = {"suffix": file[-9:], "mask": mask.tolist(), "summary": summary}
os.unlink(file)
replacement = tmp / "new.pt"
replacement.write_bytes(b"2")
os.replace(replacement, checkpoint)
file, _ = task({"image": "x.png"})
out["after_publish"] = sorted(set(cv2.imread(file, cv2.IMREAD_UNCHANGED).ravel().tolist()))
os.unlink(file)
out["loads"] = len(loads)
# two requests in flight: MONAI Label sends each file and then removes it, so each needs its own
first_file, _ = task({"image": "x.png"})
second_file, _ = task({"image": "y.png"})
out["two_files"] = [first_file, second_file, os.path.exists(first_file)]
os.unlink(first_file)
if os.path.exists(second_file):
    os.unlink(second_file)
# a 72-dpi JPEG of the stand-in's mask size: ITK (3D Slicer's reader) places it at 0.353 mm a pixel
from PIL import Image
import itk
photo = tmp / "photo.jpg"
Image.fromarray(np.full((9, 13), 128, np.uint8)).save(photo, dpi=(72, 72))
file, summary = task({"image": str(photo)})
label = itk.imread(file)
out["dpi72"] = {"suffix": Path(file).suffix, "spacing": list(label.GetSpacing()),
                "image_spacing": list(itk.imread(str(photo)).GetSpacing()),
                "values": sorted(set(itk.array_from_image(label).ravel().tolist())),
                "summary_spacing": summary.get("pixel_spacing_mm")}
os.unlink(file)
Stub.delay = 0.05
out["slow_latency"] = task({"image": "x.png"})[1]["latency_s"]
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def outcome(label_env, tmp_path_factory) -> dict:
    return label_env.run(SCRIPT, str(tmp_path_factory.mktemp("segment_infer")))


def test_the_task_names_the_foreground_classes_only(outcome) -> None:
    assert outcome["loads_at_start"] == 1
    assert outcome["labels"] == {"benign": 1, "malignant": 2}
    assert outcome["segmentation"] and outcome["dimension"] == 2 and outcome["valid"]
    assert "benign, malignant" in outcome["description"] and "background" not in outcome["description"]


def test_the_mask_is_a_png_label_map_of_class_indices(outcome) -> None:
    first = outcome["first"]
    expected = [[0] * 13 for _ in range(9)]
    for r in range(2, 5):
        expected[r][3:8] = [1] * 5
    assert first["suffix"] == "_mask.png" and first["mask"] == expected


def test_the_summary_carries_the_counts_and_the_latency(outcome) -> None:
    summary = outcome["first"]["summary"]
    assert summary["pixels"] == {"lesion": 15} and isinstance(summary["latency_s"], float)
    assert 0.05 <= outcome["slow_latency"] < 5  # the stand-in sleeps 0.05 s


def test_each_request_gets_its_own_mask_file(outcome) -> None:
    first, second, first_kept = outcome["two_files"]
    assert first != second and first_kept


def test_the_label_map_of_an_image_with_a_pixel_size_carries_it(outcome) -> None:
    """3D Slicer places the image by the pixel size ITK reads from it and the label map by its own: a PNG mask
    (1 mm a pixel) of a 72-dpi JPEG (0.353 mm) lay 2.8 times the image's size. The mask is a TIFF of that size."""
    served = outcome["dpi72"]
    assert served["suffix"] == ".tif" and served["values"] == [0, 2]
    assert served["spacing"] == pytest.approx(served["image_spacing"][:2])
    assert served["spacing"] == pytest.approx([25.4 / 72] * 2)
    assert served["summary_spacing"] == pytest.approx([25.4 / 72] * 2, abs=1e-6)


def test_a_replaced_checkpoint_is_loaded_by_the_next_request(outcome) -> None:
    assert outcome["after_publish"] == [0, 2] and outcome["loads"] == 2
