"""Label maps as 3D Slicer lays them over their image: a PNG, or a TIFF of the image's pixel size."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from monai_ext.io.label_maps import LABEL_MAP_SUFFIXES, itk_pixel_spacing, label_map_suffix, save_label_map
from monai_ext.io.writers import write_dicom, write_nifti

itk = pytest.importorskip("itk")


def write_with_pixel_size(path, kind: str) -> tuple[float, float] | None:
    """A 60 x 90 scan written as ``kind``; the (x, y) pixel size in mm ITK reads from it, None for 1 x 1."""
    scan = np.full((60, 90), 150, np.uint8)
    if kind == "jpeg-72dpi":
        Image.fromarray(scan).save(path, dpi=(72, 72), quality=95)
        return 25.4 / 72, 25.4 / 72
    if kind == "tiff-300x150dpi":
        Image.fromarray(scan).save(path, dpi=(300, 150))
        return 25.4 / 300, 25.4 / 150
    if kind in ("dicom-pixel-spacing", "dicom"):
        import pydicom

        write_dicom(scan, path)
        if kind == "dicom-pixel-spacing":
            ds = pydicom.dcmread(path)
            ds.PixelSpacing = [0.2, 0.1]  # rows, columns
            ds.save_as(path)
            return 0.1, 0.2
        return None
    if kind == "png-72dpi":  # ITK ignores a PNG's resolution: 1 x 1, as a PNG mask's
        Image.fromarray(scan).save(path, dpi=(72, 72))
        return None
    write_nifti(scan, path)  # a volume's mask is on its displayed plane, not ITK's grid: no spacing claimed
    return None


@pytest.mark.parametrize(("kind", "name"), [
    ("jpeg-72dpi", "scan.jpg"), ("tiff-300x150dpi", "scan.tif"), ("dicom-pixel-spacing", "scan.dcm"),
    ("dicom", "plain.dcm"), ("png-72dpi", "scan.png"), ("nifti", "scan.nii.gz"),
])
def test_a_label_map_lies_where_3d_slicer_places_its_image(tmp_path, kind: str, name: str) -> None:
    """3D Slicer reads the image with ITK (a 72-dpi JPEG at 0.353 mm a pixel, a DICOM at its PixelSpacing) and a
    label map with ITK too: a PNG mask, 1 mm a pixel whatever the image, covered 2.8 to 12 times the image's area.
    The label map carries the image's pixel size, its class indices unchanged."""
    image = tmp_path / name
    expected = write_with_pixel_size(image, kind)
    mask = np.zeros((60, 90), np.uint8)
    mask[20:40, 30:60] = 1
    spacing = itk_pixel_spacing(image, mask.shape)
    assert spacing == pytest.approx(expected) if expected else spacing is None
    label_file = tmp_path / f"label{label_map_suffix(spacing)}"
    assert label_file.suffix == (".png" if expected is None else ".tif") and label_file.suffix in LABEL_MAP_SUFFIXES
    save_label_map(mask, label_file, spacing)
    label = itk.imread(str(label_file))
    np.testing.assert_array_equal(itk.array_from_image(label), mask)
    if expected:
        assert tuple(label.GetSpacing()) == pytest.approx(tuple(itk.imread(str(image)).GetSpacing())[:2], rel=1e-6)
    else:
        assert tuple(label.GetSpacing()) == (1.0, 1.0)


def test_no_pixel_size_is_claimed_for_another_grid_or_a_missing_file(tmp_path) -> None:
    """A mask of another size than ITK's grid (a resampled read) gets no pixel size; nor does a name with no file."""
    write_with_pixel_size(tmp_path / "scan.jpg", "jpeg-72dpi")
    assert itk_pixel_spacing(tmp_path / "scan.jpg", (90, 60)) is None
    assert itk_pixel_spacing(tmp_path / "gone.jpg", (60, 90)) is None
