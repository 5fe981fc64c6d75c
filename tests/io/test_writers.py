"""Test-data writers: files other tools read back as written; bad arguments refused, quoting the value."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pydicom
import pytest

from monai_ext.io.images import read_image
from monai_ext.io.writers import write_dicom_frames, write_dicom_values, write_nifti


@pytest.mark.parametrize("name", ["image.nii", "image.nii.gz"])
def test_nifti_reads_back_as_written_with_columns_along_x(tmp_path, name) -> None:
    """Columns along x, rows along y, as NIfTI viewers and this project's reader show a slice (the image was
    stored rows along x, so every reader showed it transposed)."""
    image = (np.arange(12, dtype=np.uint8).reshape(3, 4) + 1) * 20
    path = write_nifti(image, tmp_path / name)
    np.testing.assert_array_equal(np.asanyarray(nib.load(str(path)).dataobj), image.T)
    np.testing.assert_array_equal(read_image(path).pixels, image)
    assert [p.name for p in tmp_path.iterdir()] == [name]  # written atomically: no temporary left


@pytest.mark.parametrize("values, bits, high_bit", [
    (np.array([[0, 4095], [17, 2048]], np.uint16), 12, None),
    (np.array([[-2048, 2047], [-1, 0]], np.int16), 12, 15),
    (np.array([[0, 255]], np.uint8), 8, None),
])
def test_stored_values_are_written_verbatim_at_high_bit(tmp_path, values, bits, high_bit) -> None:
    path = write_dicom_values(values, tmp_path / "v.dcm", bits_stored=bits, high_bit=high_bit,
                              attributes={"WindowCenter": 100, "WindowWidth": 50})
    ds = pydicom.dcmread(path)
    shift = (bits - 1 if high_bit is None else high_bit) + 1 - bits
    raw = np.frombuffer(ds.PixelData, f"<u{ds.BitsAllocated // 8}").reshape(values.shape).astype(np.int64) >> shift
    signed = np.where(raw >= 2 ** (bits - 1), raw - 2**bits, raw) if ds.PixelRepresentation else raw
    np.testing.assert_array_equal(signed, values)
    assert (ds.BitsStored, ds.HighBit, ds.WindowCenter) == (bits, bits - 1 if high_bit is None else high_bit, 100)


@pytest.mark.parametrize("call, match", [
    (lambda p: write_dicom_values(np.zeros((2, 2), np.uint16), p, 12, photometric="RGB"), "MONOCHROME1 or MONOCHROME2"),
    (lambda p: write_dicom_values(np.zeros((2, 2), np.uint16), p, 17), "bits_stored must be in 1..16, got 17"),
    (lambda p: write_dicom_values(np.zeros((2, 2), np.float32), p, 12), "expected .* integers, got float32"),
    (lambda p: write_dicom_values(np.zeros((2, 2), np.uint16), p, 12, high_bit=16), "high_bit must be in 11..15"),
    (lambda p: write_dicom_frames(np.zeros((1, 2, 2), np.uint8), p, "YBR_FULL_422"), "goes with jpeg_baseline"),
    (lambda p: write_dicom_frames(np.zeros((1, 2, 2), np.uint8), p, transfer_syntax="zip"), "got 'zip'"),
    (lambda p: write_dicom_frames(np.zeros((1, 2, 2, 3), np.uint8), p, "MONOCHROME2"), r"\(1, 2, 2, 3\) with"),
])
def test_bad_arguments_are_refused(tmp_path, call, match) -> None:
    with pytest.raises(ValueError, match=match):
        call(tmp_path / "x.dcm")
    assert not list(tmp_path.iterdir())
