"""Which frame of a file of several a prediction is of: recorded beside their number, for every kind of file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from monai_ext.engines.inference import FRAMES_KEY, note_if_several_frames, predict_files, prepare_image
from monai_ext.transforms.loading import LoadUltrasoundImaged
from tests.engines.test_inference import Mean
from tests.engines.test_segmentation import _sweep_from_slice_3


@pytest.mark.parametrize(("kind", "frames", "frame"), [
    ("sweep_from_slice_3", 5, 3), ("nifti_cine_6", 6, 0), ("dicom_loop", 3, 0), ("avi_7", 7, 0), ("png", 1, None),
])
def test_a_prediction_of_a_file_of_several_frames_names_the_frame_it_is_of(tmp_path, kind, frames, frame) -> None:
    """predictions.json said "frames": 5 for a volume whose slice 3 was classified (its first with content)."""
    from tests.io.test_images import _frames_file

    if kind == "sweep_from_slice_3":
        path = str(tmp_path / "sweep.nii.gz")
        _sweep_from_slice_3(Path(path))
    else:
        path = _frames_file(kind, tmp_path)
    load = LoadUltrasoundImaged("image", frames_key=FRAMES_KEY)
    assert prepare_image(path, load, "cpu")[1:] == (frames, frame or 0)
    result = predict_files(Mean(), [path], load, ["dark", "bright"], "cpu", tmp_path / "predictions.json")
    entry = json.loads((tmp_path / "predictions.json").read_text())["predictions"][path]
    assert entry == result["predictions"][path]
    assert (entry.get("frames"), entry.get("frame")) == ((frames, frame) if frame is not None else (None, None))


def test_a_loading_that_records_no_frames_gives_neither_count_nor_index(tmp_path) -> None:
    """A custom loading config without ``frames_key``: no count and no index, not a wrong one."""
    path = tmp_path / "sweep.nii.gz"
    _sweep_from_slice_3(path)
    result = predict_files(Mean(), [str(path)], LoadUltrasoundImaged("image"), ["dark", "bright"], "cpu",
                           tmp_path / "predictions.json")
    assert "frames" not in result["predictions"][str(path)] and "frame" not in result["predictions"][str(path)]


@pytest.mark.parametrize(("frames", "frame", "expected"), [
    (1, 0, {}), (48, 0, {"frames": 48, "frame": 0}), (5, 3, {"frames": 5, "frame": 3}),
])
def test_note_if_several_frames_records_the_frame_beside_their_number(caplog, frames, frame, expected) -> None:
    entry: dict = {}
    with caplog.at_level("WARNING"):
        note_if_several_frames(entry, "scan", frames, frame)
    assert entry == expected
    assert ("holds" in caplog.text) is bool(expected)
