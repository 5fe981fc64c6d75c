"""Writers for test and demo data in the formats users bring: DICOM (pydicom) and NIfTI (nibabel).

Every file is written atomically (:mod:`monai_ext.io.atomic`): the encoders write to memory, the bytes replace the
target in one rename, so a reader (or a second process generating the same file) never sees a partial file.
"""

from __future__ import annotations

import gzip
import io
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from monai_ext.io.atomic import atomic_write_bytes

__all__ = ["PHOTOMETRICS", "TRANSFER_SYNTAXES", "new_dicom_dataset", "save_dicom", "write_dicom", "write_dicom_frames",
           "write_dicom_values", "write_nifti"]

PHOTOMETRICS = ("MONOCHROME2", "MONOCHROME1", "RGB", "YBR_FULL", "YBR_FULL_422", "PALETTE COLOR")
TRANSFER_SYNTAXES = ("explicit", "rle", "jpeg2000", "jpeg_baseline")
_COLOUR = ("RGB", "YBR_FULL", "YBR_FULL_422")


def new_dicom_dataset(path: Path, sop_class: str, modality: str = "US") -> Any:
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


def save_dicom(ds: Any, path: str | os.PathLike) -> Path:
    """Encode ``ds`` as a DICOM file (preamble and file meta) in memory and write it to ``path`` atomically."""
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return atomic_write_bytes(path, buffer.getvalue())


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
    return save_dicom(ds, path)


def write_dicom_values(values: np.ndarray, path: str | os.PathLike, bits_stored: int,
                       photometric: str = "MONOCHROME2", high_bit: int | None = None,
                       attributes: Mapping[str, Any] | None = None, modality: str = "US") -> Path:
    """Write stored values verbatim as an uncompressed monochrome DICOM: for files with more than 8 bits, LUTs,
    windows or an unusual ``HighBit``, whose display the caller computes.

    Args:
        values: (H, W) or (N, H, W) integers; signed types are written with PixelRepresentation 1.
        bits_stored: BitsStored; BitsAllocated is 8 or 16, whichever holds it.
        photometric: "MONOCHROME2" or "MONOCHROME1".
        high_bit: HighBit (default ``bits_stored - 1``); values are shifted up to end at it.
        attributes: further data elements by keyword, e.g. ``{"WindowCenter": 40, "WindowWidth": 400}``.
    """
    from pydicom.uid import UltrasoundImageStorage, UltrasoundMultiFrameImageStorage

    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise ValueError(f"photometric must be MONOCHROME1 or MONOCHROME2, got {photometric!r}")
    if not 1 <= bits_stored <= 16:
        raise ValueError(f"bits_stored must be in 1..16, got {bits_stored!r}")
    values = np.asarray(values)
    if not np.issubdtype(values.dtype, np.integer) or values.ndim not in (2, 3):
        raise ValueError(f"expected (H, W) or (N, H, W) integers, got {values.dtype} {values.shape!r}")
    allocated = 8 if bits_stored <= 8 else 16
    high_bit = bits_stored - 1 if high_bit is None else high_bit
    if not bits_stored - 1 <= high_bit < allocated:
        raise ValueError(f"high_bit must be in {bits_stored - 1}..{allocated - 1}, got {high_bit!r}")
    signed = bool(np.issubdtype(values.dtype, np.signedinteger))
    frames = values[None] if values.ndim == 2 else values
    path = Path(path)
    ds = new_dicom_dataset(path, UltrasoundMultiFrameImageStorage if values.ndim == 3 else UltrasoundImageStorage,
                           modality)
    if values.ndim == 3:
        ds.NumberOfFrames = int(frames.shape[0])
    ds.Rows, ds.Columns = int(frames.shape[1]), int(frames.shape[2])
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = allocated, bits_stored, high_bit, int(signed)
    for keyword, value in (attributes or {}).items():
        setattr(ds, keyword, value)
    mask = (1 << bits_stored) - 1
    stored = (frames.astype(np.int64) & mask) << (high_bit + 1 - bits_stored)  # two's complement in bits_stored bits
    ds.PixelData = stored.astype(f"<u{allocated // 8}").tobytes()
    return save_dicom(ds, path)


#: A NIfTI affine (RAS) whose stored axes run along the patient's L, P and S: an axial slice stored (x, y) shows as
#: stored, columns x and rows y, in ITK-SNAP, 3D Slicer and :mod:`monai_ext.io.volumes` (with the identity, RAS,
#: the viewers and this package show the slices of a volume turned by 180 degrees; this package shows a one-plane
#: file with it as stored, the identity being what writers give when they know no orientation).
LPS_AFFINE = np.diag([-1.0, -1.0, 1.0, 1.0])


def write_nifti(image: np.ndarray, path: str | os.PathLike) -> Path:
    """Write a (H, W) image as a 2-D NIfTI file that displays as the image; ``.nii.gz`` paths are gzipped.

    The voxels are stored (x, y) = (columns, rows) along L and P (:data:`LPS_AFFINE`): NIfTI viewers, and
    :mod:`monai_ext.io.volumes`, show x across and y down, so an array stored rows-first would be shown transposed.
    """
    import nibabel as nib

    path = Path(path)
    data = nib.Nifti1Image(np.ascontiguousarray(np.asarray(image).T), affine=LPS_AFFINE).to_bytes()
    return atomic_write_bytes(path, gzip.compress(data, mtime=0) if path.name.endswith(".gz") else data)


def _stored_pixels(frames: np.ndarray, photometric: str) -> np.ndarray:
    """(N, H, W) gray or (N, H, W, 3) RGB uint8 -> what a file of ``photometric`` stores so that it displays so."""
    from pydicom.pixels import convert_color_space

    if photometric == "MONOCHROME2":
        return frames
    if photometric in ("MONOCHROME1", "PALETTE COLOR"):
        return 255 - frames  # the palette written below maps index i to gray 255 - i
    rgb = frames if frames.ndim == 4 else np.repeat(frames[..., None], 3, axis=-1)
    return convert_color_space(rgb, "RGB", "YBR_FULL") if photometric == "YBR_FULL" else rgb


def write_dicom_frames(frames: np.ndarray, path: str | os.PathLike, photometric: str = "MONOCHROME2",
                       transfer_syntax: str = "explicit", modality: str = "US",
                       region_box: tuple[int, int, int, int] | None = None,
                       identity: dict[str, str] | None = None) -> Path:
    """Write uint8 frames as a multi-frame DICOM that displays as those frames.

    Args:
        frames: (N, H, W) gray, or (N, H, W, 3) RGB for the colour interpretations (RGB, YBR_FULL, YBR_FULL_422).
        photometric: one of ``PHOTOMETRICS``. "YBR_FULL_422" needs ``transfer_syntax="jpeg_baseline"`` (the way
            scanners write it); a colour "jpeg_baseline" file is "YBR_FULL_422" as scanners write it, "YBR_FULL"
            (chroma not subsampled) or "RGB" (as some exports say of a YCbCr JPEG).
        transfer_syntax: "explicit" (uncompressed), "rle", "jpeg2000" (lossless) or "jpeg_baseline" (lossy).
        region_box: (x0, y0, x1, y1) exclusive ends, written as a 2-D tissue ``SequenceOfUltrasoundRegions`` item.
        identity: patient attributes to write (for de-identification tests), e.g. {"PatientName": "DOE^JANE"}.
    """
    if photometric not in PHOTOMETRICS:
        raise ValueError(f"photometric must be one of {PHOTOMETRICS}, got {photometric!r}")
    if transfer_syntax not in TRANSFER_SYNTAXES:
        raise ValueError(f"transfer_syntax must be one of {TRANSFER_SYNTAXES}, got {transfer_syntax!r}")
    if photometric == "YBR_FULL_422" and transfer_syntax != "jpeg_baseline":
        raise ValueError(f"YBR_FULL_422 goes with jpeg_baseline only, got {photometric!r} with {transfer_syntax!r}")
    frames = np.ascontiguousarray(frames, dtype=np.uint8)
    if frames.ndim not in (3, 4) or (frames.ndim == 4 and (frames.shape[3] != 3 or photometric not in _COLOUR)):
        raise ValueError(f"expected (N, H, W) frames, or (N, H, W, 3) with a colour photometric; got "
                         f"{frames.shape!r} with {photometric!r}")
    ds = _frames_dataset(frames, Path(path), photometric, modality, identity)
    if region_box is not None:
        ds.SequenceOfUltrasoundRegions = _tissue_region(region_box)
    # a JPEG encoder takes RGB and stores YCbCr itself: frames converted to YCbCr first were converted twice
    stored = _stored_pixels(frames, "RGB" if transfer_syntax == "jpeg_baseline" and photometric in _COLOUR
                            else photometric)
    _set_pixel_data(ds, stored, transfer_syntax, photometric in _COLOUR, photometric == "YBR_FULL")
    return save_dicom(ds, path)


def _frames_dataset(frames: np.ndarray, path: Path, photometric: str, modality: str,
                    identity: dict[str, str] | None) -> Any:
    """The image attributes of :func:`write_dicom_frames` (no pixel data yet)."""
    from pydicom.uid import UltrasoundMultiFrameImageStorage

    ds = new_dicom_dataset(path, UltrasoundMultiFrameImageStorage, modality)
    for key, value in (identity or {}).items():
        setattr(ds, key, value)
    ds.NumberOfFrames = int(frames.shape[0])
    ds.Rows, ds.Columns = int(frames.shape[1]), int(frames.shape[2])
    colour = photometric in _COLOUR
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
    return ds


def _tissue_region(region_box: tuple[int, int, int, int]) -> Any:
    """A ``SequenceOfUltrasoundRegions`` with one 2-D tissue region; ``region_box`` has exclusive ends."""
    import pydicom
    from pydicom.dataset import Dataset

    region = Dataset()
    region.RegionSpatialFormat, region.RegionDataType, region.RegionFlags = 1, 1, 0
    (region.RegionLocationMinX0, region.RegionLocationMinY0, region.RegionLocationMaxX1,
     region.RegionLocationMaxY1) = region_box[0], region_box[1], region_box[2] - 1, region_box[3] - 1
    return pydicom.Sequence([region])


def _set_pixel_data(ds: Any, stored: np.ndarray, transfer_syntax: str, colour: bool, full_chroma: bool = False) -> None:
    """Encode ``stored`` (N, H, W[, 3]) uint8 with ``transfer_syntax`` into ``ds``; a colour JPEG keeps every chroma
    sample with ``full_chroma`` (4:4:4, as YBR_FULL says), else every second one across (4:2:2, YBR_FULL_422)."""
    from PIL import Image
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEG2000Lossless, JPEGBaseline8Bit, RLELossless

    if transfer_syntax == "jpeg_baseline":
        encoded = []
        for frame in stored:
            buffer = io.BytesIO()
            Image.fromarray(frame, "RGB" if colour else "L").save(buffer, format="JPEG", quality=95,
                                                                  subsampling=0 if full_chroma else 1)
            encoded.append(buffer.getvalue())  # subsampling 0: 4:4:4, 1: 4:2:2
        ds.PixelData = encapsulate(encoded)
        ds["PixelData"].VR = "OB"
        ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
        ds.LossyImageCompression = "01"
    else:
        ds.PixelData = stored.tobytes()
        if transfer_syntax != "explicit":
            pixels = stored[0] if len(stored) == 1 else stored  # pydicom wants a single frame without its axis
            ds.compress(RLELossless if transfer_syntax == "rle" else JPEG2000Lossless, pixels)
