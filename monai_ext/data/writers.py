"""Writers for test and demo data in the formats users bring: DICOM (pydicom) and NIfTI (nibabel)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np


def write_dicom(image: np.ndarray, path: str | os.PathLike, modality: str = "US") -> Path:
    """Write a uint8 grayscale (H, W) or RGB (H, W, 3) image as an uncompressed single-frame DICOM file.

    The file carries no patient identity: the patient name and ID are empty, as anonymised exports are.
    """
    import pydicom
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, UltrasoundImageStorage, generate_uid

    if image.dtype != np.uint8 or image.ndim not in (2, 3):
        raise ValueError(f"expected a uint8 (H, W) or (H, W, 3) image, got {image.dtype} {image.shape!r}")
    path = Path(path)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UltrasoundImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Modality, ds.PatientName, ds.PatientID = modality, "", ""
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
