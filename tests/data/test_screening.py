"""Files that cannot be images are left out while a labelled set is listed (monai_ext/data/screening.py)."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import pytest

from monai_ext.data import downstream as ds
from monai_ext.data.screening import why_not_an_image
from tests.data.test_downstream import write_stub


@pytest.mark.parametrize("name, content, reason", [
    ("empty.png", b"", "empty file (0 bytes)"),
    ("text.png", b"garbage, not pixels", "not a picture PIL recognises (UnidentifiedImageError)"),
    ("cut.png", b"\x89PNG\r\n\x1a\n\x00\x00", "not a picture PIL recognises"),
    ("scan.dcm", b"DICM is its readers' to judge", None),  # headers PIL cannot read are left to their readers
])
def test_why_a_file_cannot_be_an_image(name, content, reason, tmp_path) -> None:
    (tmp_path / name).write_bytes(content)
    found = why_not_an_image(tmp_path / name)
    assert found == reason if reason is None else reason in found


def test_a_picture_that_cannot_be_opened_is_said_so_not_called_unrecognised(tmp_path, monkeypatch) -> None:
    """A picture the user may not read (copied off a scanner as another user) was "not a picture PIL recognises"."""
    from monai_ext.data import screening

    (tmp_path / "scan.png").write_bytes(b"\x89PNG\r\n\x1a\n")

    def refused(path, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))  # root reads every file: the refusal simulated

    monkeypatch.setattr(screening.Image, "open", refused)
    assert why_not_an_image(tmp_path / "scan.png") == "cannot be opened (Permission denied)"


def a_folder_set(root: Path, bad: dict[str, bytes]) -> None:
    for name in ("benign", "malignant"):
        (root / name).mkdir(parents=True)
        for i in range(10):
            write_stub(root / name / f"{name}_{i}.png", "png")
    for relative, content in bad.items():
        (root / relative).parent.mkdir(exist_ok=True)
        (root / relative).write_bytes(content)


def test_folder_and_csv_sets_leave_out_what_cannot_be_an_image(tmp_path, caplog) -> None:
    """They were counted in their class and stratified into folds, and skipped only by the bundle later."""
    bad = {"benign/cut.png": b"garbage", "malignant/empty.png": b""}
    a_folder_set(tmp_path / "data", bad)
    with caplog.at_level(logging.WARNING):
        proto = ds.folder_protocol(tmp_path / "data", folds=5)
    listed = {Path(it["image"]).name for split in proto.splits[:1] for part in split.values() for it in part}
    assert len(listed) == 20 and not {"cut.png", "empty.png"} & listed
    assert "2 file(s) cannot be images and are left out" in caplog.text and "empty file (0 bytes)" in caplog.text
    with open(tmp_path / "labels.csv", "w", newline="") as f:
        rows = [(f"data/{c}/{c}_{i}.png", c) for c in ("benign", "malignant") for i in range(10)]
        csv.writer(f).writerows([("path", "label"), *rows, ("data/benign/cut.png", "benign")])
    proto = ds.csv_protocol(tmp_path / "labels.csv", folds=5)
    assert all(Path(it["image"]).name != "cut.png" for part in proto.splits[0].values() for it in part)


@pytest.mark.parametrize("name", ["export_0001.png", "export_0001.JPG", "export_0001.jpeg", "export_0001.bmp"])
def test_a_dicom_file_under_a_pictures_name_is_kept_in_its_class(name, tmp_path, caplog) -> None:
    """A PACS export named .png was left out of its class as "not a picture PIL recognises", though every loader
    reads it as DICOM (b"DICM" at byte 128)."""
    import numpy as np

    from monai_ext.io.writers import write_dicom_frames

    a_folder_set(tmp_path / "data", {})
    frame = np.random.default_rng(7).integers(0, 256, (1, 16, 16), np.uint8)
    write_dicom_frames(frame, tmp_path / "data" / "benign" / name)
    assert why_not_an_image(tmp_path / "data" / "benign" / name) is None
    with caplog.at_level(logging.WARNING):
        proto = ds.folder_protocol(tmp_path / "data", folds=5)
    listed = {Path(it["image"]).name for split in proto.splits[:1] for part in split.values() for it in part}
    assert name in listed and len(listed) == 21
    assert "cannot be images" not in caplog.text


def test_a_class_with_no_image_left_is_refused_by_name(tmp_path) -> None:
    a_folder_set(tmp_path / "data", {"empty_class/a.png": b"", "empty_class/b.png": b"not a picture"})
    with pytest.raises(ValueError, match=r"class\(es\) \['empty_class'\] have no image left"):
        ds.folder_protocol(tmp_path / "data", folds=5)
