"""Every 2-D frame of an ultrasound file, whatever its container: images, DICOM (single or multi-frame, any
transfer syntax pydicom's pylibjpeg plugins decode), NIfTI and NRRD/MHA/MHD volumes, AVI/MP4 cine loops.

Each source yields :class:`Frame` objects holding 8-bit grayscale pixels as displayed. Only pixel-describing DICOM
attributes are read (photometric interpretation, bits, frames, modality, ultrasound regions); patient attributes
are never touched, so they cannot leak into manifests or logs.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from monai_ext.io.errors import UnreadableImageError
from monai_ext.io.images import DICOM_SUFFIXES, _to_gray_unit, read_image_pixels

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
NIFTI_SUFFIXES = (".nii", ".nii.gz")
ITK_SUFFIXES = (".nrrd", ".mha", ".mhd")
VIDEO_SUFFIXES = (".avi", ".mp4")
ALL_SUFFIXES = IMAGE_SUFFIXES + DICOM_SUFFIXES + NIFTI_SUFFIXES + ITK_SUFFIXES + VIDEO_SUFFIXES


@dataclass
class Frame:
    """One 2-D frame.

    Attributes:
        index: frame (cine, multi-frame DICOM) or slice (volume) number in the source; 0 for a plain image.
        pixels: (H, W) uint8 grayscale as displayed.
        region_box: (x0, y0, x1, y1) of the DICOM B-mode region, if the file gives one.
    """

    index: int
    pixels: np.ndarray
    region_box: tuple[int, int, int, int] | None = None


@dataclass(frozen=True)
class FrameOptions:
    """How sources are cut into frames.

    Args:
        frame_stride: keep every n-th frame of cine loops and multi-frame DICOM.
        slice_axis: volume axis to slice along, in (x, y, z) order (2: axial slices of a NIfTI volume).
        slice_stride: keep every n-th slice.
        modality: keep only DICOM files of this Modality (e.g. "US"); None keeps all.
    """

    frame_stride: int = 1
    slice_axis: int = 2
    slice_stride: int = 1
    modality: str | None = None

    def __post_init__(self) -> None:
        for name in ("frame_stride", "slice_stride"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)!r}")
        if self.slice_axis not in (0, 1, 2):
            raise ValueError(f"slice_axis must be 0, 1 or 2, got {self.slice_axis!r}")


class SkippedSource(ValueError):
    """A source that is valid but deliberately not ingested (a modality filter, a volume with no content)."""


def source_kind(path: str | os.PathLike) -> str | None:
    """"image", "dicom", "nifti", "itk", "video", or None for an unsupported suffix."""
    name = Path(path).name.lower()
    for kind, suffixes in (("nifti", NIFTI_SUFFIXES), ("image", IMAGE_SUFFIXES), ("dicom", DICOM_SUFFIXES),
                           ("itk", ITK_SUFFIXES), ("video", VIDEO_SUFFIXES)):
        if name.endswith(suffixes):
            return kind
    return None


def to_uint8_gray(pixels: np.ndarray, source: str) -> np.ndarray:
    """(H, W) or (H, W, C) pixels of any integer type -> (H, W) uint8 luma (integers scaled by their type's range)."""
    if pixels.dtype == np.uint8 and (pixels.ndim == 2 or (pixels.ndim == 3 and pixels.shape[2] in (3, 4))):
        # OpenCV's fixed-point BT.601 luma: the same weights as below, several times faster on 8-bit input.
        return pixels if pixels.ndim == 2 else cv2.cvtColor(np.ascontiguousarray(pixels[..., :3]), cv2.COLOR_RGB2GRAY)
    return np.clip(np.rint(_to_gray_unit(pixels, source) * 255.0), 0, 255).astype(np.uint8)


def iter_frames(path: str | os.PathLike, options: FrameOptions = FrameOptions()) -> Iterator[Frame]:
    """Frames of ``path``; raises :class:`UnreadableImageError` (naming the file and why) or :class:`SkippedSource`."""
    path = Path(path)
    if not path.is_file():
        raise UnreadableImageError(f"{path}: cannot open (missing, a broken link or not a file)")
    if path.stat().st_size == 0:
        raise UnreadableImageError(f"{path}: empty file (0 bytes)")
    kind = source_kind(path)
    readers = {"image": _image_frames, "dicom": _dicom_frames, "nifti": _nifti_frames, "itk": _itk_frames,
               "video": _video_frames}
    if kind is None:
        raise UnreadableImageError(f"{path}: unsupported file type")
    try:
        yield from readers[kind](path, options)
    except (UnreadableImageError, SkippedSource):
        raise
    except Exception as e:  # decoders raise many types; all mean "this file cannot be read"
        raise UnreadableImageError(f"{path}: cannot decode ({type(e).__name__}: {e})") from e


def _png_gray(path: Path) -> np.ndarray | None:
    """8-bit PNGs through OpenCV: its decoder and colour conversion run about 15% faster than PIL's plus ours, the
    largest single cost of ingestion. None for other depths (PIL's path scales them) or when OpenCV cannot decode
    the file (a truncated PNG is then reported by PIL with its reason)."""
    pixels = cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_UNCHANGED)
    if pixels is None or pixels.dtype != np.uint8:
        return None
    if pixels.ndim == 3:
        code = cv2.COLOR_BGRA2GRAY if pixels.shape[2] == 4 else cv2.COLOR_BGR2GRAY
        pixels = cv2.cvtColor(pixels, code)
    return pixels


def _image_frames(path: Path, options: FrameOptions) -> Iterator[Frame]:
    gray = _png_gray(path) if path.suffix.lower() == ".png" else None
    yield Frame(0, gray if gray is not None else to_uint8_gray(read_image_pixels(path), str(path)))


# ------------------------------------------------------------------------------------------------------------ DICOM
def ultrasound_region_box(ds: object) -> tuple[int, int, int, int] | None:
    """(x0, y0, x1, y1), exclusive ends, of the first 2-D tissue region in ``SequenceOfUltrasoundRegions``."""
    for region in getattr(ds, "SequenceOfUltrasoundRegions", []) or []:
        if int(region.get("RegionSpatialFormat", 0)) == 1 and int(region.get("RegionDataType", 0)) == 1:
            return (int(region.RegionLocationMinX0), int(region.RegionLocationMinY0),
                    int(region.RegionLocationMaxX1) + 1, int(region.RegionLocationMaxY1) + 1)
    return None


def _dicom_display(frame: np.ndarray, ds: object, photometric: str) -> np.ndarray:
    """One decoded frame as displayed: MONOCHROME1 inverted, palette applied (YBR is converted by pydicom)."""
    from pydicom.pixels import apply_color_lut

    if photometric == "MONOCHROME1":
        return np.iinfo(frame.dtype).max - frame if np.issubdtype(frame.dtype, np.integer) else frame.max() - frame
    if photometric == "PALETTE COLOR":
        return apply_color_lut(frame, ds)
    return frame


def _dicom_frames(path: Path, options: FrameOptions) -> Iterator[Frame]:
    import pydicom
    from pydicom.pixels import iter_pixels

    # Read the header without pixel data first: the modality filter and the "no pixel data" check cost no decoding.
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    if options.modality and str(ds.get("Modality", "")).upper() != options.modality.upper():
        raise SkippedSource(f"{path}: modality {str(ds.get('Modality', 'missing'))!r} is not {options.modality!r}")
    full = pydicom.dcmread(path)
    if "PixelData" not in full and "FloatPixelData" not in full:
        raise UnreadableImageError(f"{path}: DICOM file has no pixel data")
    photometric = str(full.get("PhotometricInterpretation", "MONOCHROME2"))
    bits = int(full.get("BitsStored", 8))
    box = ultrasound_region_box(full)
    for index, frame in enumerate(iter_pixels(full, as_rgb=True)):
        if index % options.frame_stride:
            continue
        pixels = _dicom_display(frame, full, photometric)
        if bits <= 8 and pixels.dtype != np.uint8:
            pixels = pixels.astype(np.uint8)
        elif 8 < bits < 16 and np.issubdtype(pixels.dtype, np.integer):
            pixels = (pixels.astype(np.float32) / float(2**bits - 1) * 65535.0).astype(np.uint16)  # use the stored range
        yield Frame(index, to_uint8_gray(pixels, str(path)), box)


# ---------------------------------------------------------------------------------------------------------- volumes
def _volume_frames(volume: np.ndarray, path: Path, options: FrameOptions) -> Iterator[Frame]:
    """Slices of an (x, y, z) volume as (rows = y, cols = x) images, windowed to the volume's 0.5-99.5 percentiles."""
    if volume.ndim == 4 and volume.shape[3] == 1:
        volume = volume[..., 0]
    if volume.ndim == 2:
        volume = volume[..., None]
    if volume.ndim != 3:
        raise UnreadableImageError(f"{path}: expected a 2-D or 3-D volume, got shape {volume.shape!r}")
    volume = np.asarray(volume, dtype=np.float32)
    finite = volume[np.isfinite(volume)]
    if finite.size == 0 or float(finite.max()) == float(finite.min()):
        raise SkippedSource(f"{path}: volume is constant (no content)")
    low, high = np.percentile(finite, [0.5, 99.5])
    high = high if high > low else float(finite.max())
    emitted = 0
    for k in range(0, volume.shape[options.slice_axis], options.slice_stride):
        plane = np.take(volume, k, axis=options.slice_axis)
        if not np.isfinite(plane).any() or float(np.nanmax(plane)) == float(np.nanmin(plane)):
            continue  # empty slice
        scaled = np.clip((np.nan_to_num(plane, nan=low) - low) / (high - low), 0.0, 1.0)
        emitted += 1
        yield Frame(k, np.rint(scaled.T * 255.0).astype(np.uint8))
    if emitted == 0:
        raise SkippedSource(f"{path}: every slice along axis {options.slice_axis} is empty")


def _nifti_frames(path: Path, options: FrameOptions) -> Iterator[Frame]:
    import nibabel as nib

    yield from _volume_frames(np.asanyarray(nib.load(str(path)).dataobj), path, options)


def _itk_frames(path: Path, options: FrameOptions) -> Iterator[Frame]:
    import SimpleITK as sitk

    array = sitk.GetArrayFromImage(sitk.ReadImage(str(path)))  # (z, y, x) or (y, x)
    yield from _volume_frames(array.T, path, options)  # -> (x, y, z)


# ------------------------------------------------------------------------------------------------------------ video
def _video_frames(path: Path, options: FrameOptions) -> Iterator[Frame]:
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise UnreadableImageError(f"{path}: OpenCV cannot open the video")
    try:
        index = 0
        while True:
            ok, bgr = capture.read()
            if not ok:
                break
            if index % options.frame_stride == 0:
                yield Frame(index, cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY))
            index += 1
        if index == 0:
            raise UnreadableImageError(f"{path}: video has no decodable frames")
    finally:
        capture.release()
