"""One reader for PNG/JPG/TIFF and DICOM: same pixels, same array; clear errors naming the file."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from PIL import Image

from monai_ext.transforms.loading import LoadUltrasoundImage, LoadUltrasoundImaged
from monai_ext.io.errors import UnreadableImageError
from monai_ext.io.writers import write_dicom

GRAY = np.random.default_rng(0).integers(0, 256, (20, 30), np.uint8)
RGB = np.random.default_rng(1).integers(0, 256, (20, 30, 3), np.uint8)


def test_png_and_dicom_with_the_same_pixels_read_the_same(tmp_path) -> None:
    Image.fromarray(GRAY).save(tmp_path / "a.png")
    write_dicom(GRAY, tmp_path / "a.dcm")
    png, dcm = LoadUltrasoundImage()(tmp_path / "a.png"), LoadUltrasoundImage()(tmp_path / "a.dcm")
    assert png.shape == (1, 20, 30) and png.dtype == np.float32
    np.testing.assert_array_equal(png, dcm)
    np.testing.assert_allclose(png[0], GRAY / 255.0, rtol=1e-6)


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "P", "I;16"])
def test_png_modes(tmp_path, mode: str) -> None:
    if mode == "I;16":
        img = Image.fromarray((GRAY.astype(np.uint16) * 257))
        expected = GRAY / 255.0
    else:
        img = Image.fromarray(RGB).convert(mode)
        rgb = np.asarray(img.convert("RGB")).astype(np.float32)
        expected = (rgb @ np.array([0.299, 0.587, 0.114], np.float32)) / 255.0
    img.save(tmp_path / "x.png")
    np.testing.assert_allclose(LoadUltrasoundImage()(tmp_path / "x.png")[0], expected, atol=1e-5)


def test_dicom_rgb_and_monochrome1(tmp_path) -> None:
    write_dicom(RGB, tmp_path / "rgb.dcm")
    out = LoadUltrasoundImage()(tmp_path / "rgb.dcm")[0]
    np.testing.assert_allclose(out, (RGB.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)) / 255,
                               atol=1e-5)
    path = write_dicom(GRAY, tmp_path / "m1.dcm")
    ds = pydicom.dcmread(path)
    ds.PhotometricInterpretation = "MONOCHROME1"
    ds.save_as(path)
    np.testing.assert_allclose(LoadUltrasoundImage()(path)[0], (255 - GRAY) / 255.0, atol=1e-6)


def test_errors_name_the_file(tmp_path) -> None:
    (tmp_path / "notes.dcm").write_text("not dicom")
    (tmp_path / "empty.png").write_bytes(b"")
    path = write_dicom(GRAY, tmp_path / "nopix.dcm")
    ds = pydicom.dcmread(path)
    del ds.PixelData
    ds.save_as(path)
    for name, reason in (("notes.dcm", "cannot decode"), ("empty.png", "cannot decode"), ("nopix.dcm", "no pixel data")):
        with pytest.raises(UnreadableImageError, match=f"{name}.*{reason}"):
            LoadUltrasoundImage()(tmp_path / name)


def test_dict_version_keeps_the_path(tmp_path) -> None:
    Image.fromarray(GRAY).save(tmp_path / "a.png")
    out = LoadUltrasoundImaged("image")({"image": str(tmp_path / "a.png"), "label": 1})
    assert out["image"].shape == (1, 20, 30) and out["image_path"].endswith("a.png") and out["label"] == 1
