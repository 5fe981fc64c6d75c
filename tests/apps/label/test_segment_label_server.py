"""A real MONAI Label server serving the segmentation bundle beside the classifier (``--conf
segmentation_checkpoint``): masks equal to the bundle's inference, 422 for non-images, fine-tuning on saved masks."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import requests
from PIL import Image

from tests.apps.label.test_label_server import label_server, wait_for_training
from tests.apps.label.test_segment_model import SEG_INFERENCE, segmenter_run, write_sideways  # noqa: F401  (fixture)
from tests.bundles.helpers import run_bundle

pytestmark = pytest.mark.slow
MODEL = "usf_mae_segmenter"


@pytest.fixture(scope="module")
def seg_server(classifier_run, segmenter_run, module_tmp):  # noqa: F811
    conf = {"checkpoint": str(classifier_run / "models" / "model.pt"), "device": "cpu",
            "overrides": json.dumps({"image_size": 64}),
            "segmentation_checkpoint": str(segmenter_run / "models" / "model.pt")}
    with label_server(module_tmp("seg_label_server"), conf) as running:
        yield running


def segment(url: str, path) -> requests.Response:
    with open(path, "rb") as f:
        return requests.post(f"{url}/infer/{MODEL}", params={"output": "image"}, files={"file": (path.name, f)},
                             timeout=300)


def bundle_masks(run_dir, files, out) -> dict[str, np.ndarray]:
    run_bundle([SEG_INFERENCE], {"ckpt_path": str(run_dir), "output_dir": str(out),
                                 "input_files": [str(p) for p in files]})
    masks = json.loads((out / "masks.json").read_text())["masks"]
    return {p: cv2.imread(m["mask"], cv2.IMREAD_UNCHANGED) for p, m in masks.items()}


def test_info_lists_the_segmenter(seg_server) -> None:
    url, _, _ = seg_server
    info = requests.get(f"{url}/info/", timeout=10).json()
    assert info["models"][MODEL]["type"] == "segmentation" and info["models"][MODEL]["labels"] == {"lesion": 1}
    assert MODEL in info["trainers"]


def test_served_masks_equal_the_bundle_inference(seg_server, segmenter_run, tmp_path) -> None:  # noqa: F811
    """Also for a picture stored 123 wide x 77 high with EXIF orientation 6 (a phone's photograph): both masks are
    on its stored grid, where 3D Slicer (ITK) and OHIF show it; it was served upright, 77x123, and overlaid turned."""
    url, files, _ = seg_server
    sideways = tmp_path / "exif6_77x123.jpg"
    write_sideways(sideways, (77, 123), 6)
    photo = tmp_path / "photo_72dpi.jpg"  # 3D Slicer reads it at 0.353 mm a pixel: the mask comes as a TIFF of it
    Image.fromarray(cv2.imread(str(files["case0_png"]), cv2.IMREAD_GRAYSCALE)).save(photo, dpi=(72, 72))
    uploads = [*files.values(), photo, sideways]
    expected = bundle_masks(segmenter_run / "models" / "model.pt", uploads, tmp_path / "bundle")
    for path in uploads:
        response = segment(url, path)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == ("image/tiff" if path == photo else "image/png")
        served = cv2.imdecode(np.frombuffer(response.content, np.uint8), cv2.IMREAD_UNCHANGED)
        np.testing.assert_array_equal(served, expected[str(path)])
    assert served.shape == (77, 123)


def test_non_image_upload_is_a_client_error_and_the_server_keeps_serving(seg_server, tmp_path) -> None:
    url, files, _ = seg_server
    (tmp_path / "notes.png").write_bytes(b"meeting notes, not pixels")
    response = segment(url, tmp_path / "notes.png")
    assert response.status_code == 422, response.text
    assert segment(url, files["case0_png"]).status_code == 200


def save_masks(url: str) -> None:
    """A lesion mask (a disc) for each of the datastore's four images, at each image's size."""
    for index, image_id in enumerate(["case0", "case1", "case2", "case3"]):
        mask = np.zeros((80 + 16 * min(index, 2), 120), np.uint8)
        cv2.circle(mask, (60, 40), 12 + 3 * index, 255, -1)
        ok, encoded = cv2.imencode(".png", mask)
        response = requests.put(f"{url}/datastore/label", params={"image": image_id, "tag": "final"},
                                files={"label": (f"{image_id}.png", encoded.tobytes())}, timeout=30)
        assert ok and response.status_code == 200, response.text


def test_a_diverging_train_fails_naming_the_reason_and_the_served_model_stays(seg_server) -> None:
    """A learning rate of 1e9 gave NaN weights, "DONE" with Dice 0.0, and a published model every request then
    failed on; a later train started from it. The reason was cut from the details, which MONAI Label limits to 20."""
    url, files, _ = seg_server
    save_masks(url)
    before = segment(url, files["case0_png"])
    response = requests.post(f"{url}/train/{MODEL}", json={"max_epochs": 1, "num_workers": 0, "batch_size": 2,
                                                           "base_lr": 1e9}, timeout=30)
    assert response.status_code == 200, response.text
    status = wait_for_training(url, timeout_s=600)
    assert status["status"] == "ERROR", status
    assert "the network's outputs are not finite" in status["details"][-1], status["details"]
    assert "lower the learning rate" in status["details"][-1]
    after = segment(url, files["case0_png"])
    assert after.status_code == 200 and after.content == before.content


def test_train_on_saved_masks_publishes_the_model_the_next_request_uses(seg_server, segmenter_run, tmp_path) -> None:  # noqa: F811
    url, files, log = seg_server
    save_masks(url)
    response = requests.post(f"{url}/train/{MODEL}", json={"max_epochs": 2, "num_workers": 0, "batch_size": 2,
                                                           "base_lr": 0.05}, timeout=30)
    assert response.status_code == 200, response.text
    status = wait_for_training(url, timeout_s=1200)
    assert status["status"] == "DONE", "\n".join(status.get("details", [])) + log.read_text()[-4000:]
    published = log.parent / "app" / "model" / f"{MODEL}.pt"
    assert published.is_file()
    expected = bundle_masks(published, [files["case0_png"]], tmp_path / "after")[str(files["case0_png"])]
    served = cv2.imdecode(np.frombuffer(segment(url, files["case0_png"]).content, np.uint8), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(served, expected)
