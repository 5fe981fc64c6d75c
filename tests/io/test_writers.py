"""Test-data writers: files other tools read back as written; bad arguments refused, quoting the value."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pydicom
import pytest
from PIL import Image

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


@pytest.mark.parametrize("photometric, subsampling", [("YBR_FULL", "4:4:4"), ("YBR_FULL_422", "4:2:2")])
def test_a_colour_jpeg_baseline_file_displays_as_the_frames_given(tmp_path, photometric, subsampling) -> None:
    """YBR_FULL frames were converted to YCbCr before the JPEG encoder converted them again: the file showed other
    colours (up to 178 levels off) than the frames it was written from, with no error."""
    yy, xx = np.mgrid[0:32, 0:48]
    rgb = np.dstack([xx * 5, yy * 7, np.full_like(xx, 100)]).astype(np.uint8)[None]
    path = write_dicom_frames(rgb, tmp_path / "colour.dcm", photometric, "jpeg_baseline")
    shown = read_image(path, colour=True).pixels
    assert np.abs(shown.astype(int) - rgb[0].astype(int)).max() <= 8  # lossy JPEG at quality 95
    frame = next(iter(pydicom.encaps.generate_frames(pydicom.dcmread(path).PixelData, number_of_frames=1)))
    luma = Image.open(pydicom.filebase.DicomBytesIO(frame)).layer[0]  # (id, across, down, table): Y per Cb, Cr
    assert luma[1:3] == {"4:4:4": (1, 1), "4:2:2": (2, 1)}[subsampling]  # what the photometric interpretation says
