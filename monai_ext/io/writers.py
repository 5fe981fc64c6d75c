"""Writers for test and demo data in the formats users bring: DICOM (pydicom) and NIfTI (nibabel)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np


def new_dicom_dataset(path: Path, sop_class: str, modality: str = "US") -> object:
    """An empty explicit-little-endian DICOM dataset of ``sop_class`` with fresh UIDs and an empty patient identity
    (as anonymised exports have); callers add the image attributes and pixel data."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Modality, ds.PatientName, ds.PatientID = modality, "", ""
    return ds


def write_dicom(image: np.ndarray, path: str | os.PathLike, modality: str = "US") -> Path:
    """Write a uint8 grayscale (H, W) or RGB (H, W, 3) image as an uncompressed single-frame DICOM file.

    The file carries no patient identity: the patient name and ID are empty, as anonymised exports are.
    """
    from pydicom.uid import UltrasoundImageStorage

    if image.dtype != np.uint8 or image.ndim not in (2, 3):
        raise ValueError(f"expected a uint8 (H, W) or (H, W, 3) image, got {image.dtype} {image.shape!r}")
    path = Path(path)
    ds = new_dicom_dataset(path, UltrasoundImageStorage, modality)
    ds.Rows, ds.Columns = int(image.shape[0]), int(image.shape[1])
    ds.SamplesPerPixel = 1 if image.ndim == 2 else 3
    ds.PhotometricInterpretation = "MONOCHROME2" if image.ndim == 2 else "RGB"
    if image.ndim == 3:
        ds.PlanarConfiguration = 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = np.ascontiguousarray(image).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def write_nifti(image: np.ndarray, path: str | os.PathLike) -> Path:
    """Write a (H, W) image as a 2-D NIfTI file (rows along the first axis)."""
    import nibabel as nib

    path = Path(path)
    nib.save(nib.Nifti1Image(np.asarray(image), affine=np.eye(4)), str(path))
    return path


PHOTOMETRICS = ("MONOCHROME2", "MONOCHROME1", "RGB", "YBR_FULL", "YBR_FULL_422", "PALETTE COLOR")


def _stored_pixels(frames: np.ndarray, photometric: str) -> np.ndarray:
    """(N, H, W) uint8 gray -> what a file of ``photometric`` stores so that it displays as that gray."""
    from pydicom.pixels import convert_color_space

    if photometric == "MONOCHROME2":
        return frames
    if photometric == "MONOCHROME1":
        return 255 - frames
    if photometric == "PALETTE COLOR":
        return 255 - frames  # the palette below maps index i to gray 255 - i
    rgb = np.repeat(frames[..., None], 3, axis=-1)
    return convert_color_space(rgb, "RGB", "YBR_FULL") if photometric == "YBR_FULL" else rgb


def write_dicom_frames(frames: np.ndarray, path: str | os.PathLike, photometric: str = "MONOCHROME2",
                       transfer_syntax: str = "explicit", modality: str = "US",
                       region_box: tuple[int, int, int, int] | None = None,
                       identity: dict[str, str] | None = None) -> Path:
    """Write (N, H, W) uint8 gray frames as a multi-frame DICOM that displays as those frames.

    Args:
        photometric: one of ``PHOTOMETRICS``. "YBR_FULL_422" needs ``transfer_syntax="jpeg_baseline"`` (the way
            scanners write it); a colour "jpeg_baseline" file should be "YBR_FULL_422".
        transfer_syntax: "explicit" (uncompressed), "rle", "jpeg2000" (lossless) or "jpeg_baseline" (lossy).
        region_box: (x0, y0, x1, y1) exclusive ends, written as a 2-D tissue ``SequenceOfUltrasoundRegions`` item.
        identity: patient attributes to write (for de-identification tests), e.g. {"PatientName": "DOE^JANE"}.
    """
    import io

    import pydicom
    from PIL import Image
    from pydicom.dataset import Dataset
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEG2000Lossless, JPEGBaseline8Bit, RLELossless, UltrasoundMultiFrameImageStorage

    if photometric not in PHOTOMETRICS:
        raise ValueError(f"photometric must be one of {PHOTOMETRICS}, got {photometric!r}")
    if photometric == "YBR_FULL_422" and transfer_syntax != "jpeg_baseline":
        raise ValueError(f"YBR_FULL_422 goes with jpeg_baseline only, got {photometric!r} with {transfer_syntax!r}")
    frames = np.ascontiguousarray(frames, dtype=np.uint8)
    stored = _stored_pixels(frames, photometric)
    path = Path(path)
    ds = new_dicom_dataset(path, UltrasoundMultiFrameImageStorage, modality)
    for key, value in (identity or {}).items():
        setattr(ds, key, value)
    ds.NumberOfFrames = int(frames.shape[0])
    ds.Rows, ds.Columns = int(frames.shape[1]), int(frames.shape[2])
    colour = photometric in ("RGB", "YBR_FULL", "YBR_FULL_422")
    ds.SamplesPerPixel = 3 if colour else 1
    ds.PhotometricInterpretation = photometric
    if colour:
        ds.PlanarConfiguration = 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    if photometric == "PALETTE COLOR":
        lut = ((255 - np.arange(256)) * 257).astype("<u2").tobytes()
        for colour_name in ("Red", "Green", "Blue"):
            setattr(ds, f"{colour_name}PaletteColorLookupTableDescriptor", [256, 0, 16])
            setattr(ds, f"{colour_name}PaletteColorLookupTableData", lut)
    if region_box is not None:
        region = Dataset()
        region.RegionSpatialFormat, region.RegionDataType, region.RegionFlags = 1, 1, 0
        (region.RegionLocationMinX0, region.RegionLocationMinY0, region.RegionLocationMaxX1,
         region.RegionLocationMaxY1) = region_box[0], region_box[1], region_box[2] - 1, region_box[3] - 1
        ds.SequenceOfUltrasoundRegions = pydicom.Sequence([region])
    if transfer_syntax == "jpeg_baseline":
        encoded = []
        for frame in stored:
            buffer = io.BytesIO()
            mode = "RGB" if colour else "L"
            Image.fromarray(frame, mode).save(buffer, format="JPEG", quality=95, subsampling=1)  # 4:2:2
            encoded.append(buffer.getvalue())
        ds.PixelData = encapsulate(encoded)
        ds["PixelData"].VR = "OB"
        ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
        ds.LossyImageCompression = "01"
    else:
        ds.PixelData = stored.tobytes()
        if transfer_syntax in ("rle", "jpeg2000"):
            ds.compress(RLELossless if transfer_syntax == "rle" else JPEG2000Lossless, stored)
        elif transfer_syntax != "explicit":
            raise ValueError(f"transfer_syntax must be explicit, rle, jpeg2000 or jpeg_baseline, got {transfer_syntax!r}")
    ds.save_as(path, enforce_file_format=True)
    return path
