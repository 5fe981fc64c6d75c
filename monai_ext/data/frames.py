"""Every 2-D frame of an ultrasound file, whatever its container: images (every page of a multi-page TIFF), DICOM
(single or multi-frame, any transfer syntax pydicom's pylibjpeg plugins decode), NIfTI and NRRD/MHA/MHD volumes (3-D,
or 4-D time series), AVI/MP4 cine loops.

Each source yields :class:`Frame` objects holding 8-bit pixels as displayed, gray or RGB: colour is kept, because
de-annotation needs it to tell colour flow and coloured marks from tissue (gray is taken after it, with the same
luma as :func:`monai_ext.io.display.to_gray_uint8`). A DICOM frame with several views in
``SequenceOfUltrasoundRegions`` gives one :class:`Frame` per view; one whose regions are all spectral, M-mode or
traces is skipped (:class:`SkippedSource`): it holds no image of tissue. The decoding is
:mod:`monai_ext.io`'s, the one the training loader, bundle inference and MONAI Label use (they take a file's first
frame): a frame here equals ``rint(255 * LoadUltrasoundImage()(path))`` of that frame. Only pixel-describing DICOM
attributes are read (photometric interpretation, bits, LUTs and windows, frames, modality, ultrasound regions);
patient attributes are never touched, so they cannot leak into manifests or logs.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from monai_ext.io.dicom import (
    iter_dicom_frames,
    non_tissue_region_kinds,
    read_dicom,
    read_dicom_header,
    ultrasound_region_boxes,
)
from monai_ext.io.display import to_gray_uint8
from monai_ext.io.errors import SkippedSource, UnreadableImageError, one_line
from monai_ext.io.images import ALL_SUFFIXES, iter_picture_frames, kind_by_content, source_kind
from monai_ext.io.video import iter_video_frames
from monai_ext.io.volumes import iter_volume_frames

__all__ = ["ALL_SUFFIXES", "Frame", "FrameOptions", "SkippedSource", "iter_frames", "source_kind"]


@dataclass
class Frame:
    """One 2-D frame.

    Attributes:
        index: frame (cine, multi-frame DICOM), page (multi-page TIFF) or slice (volume) number in the source,
            ``t * slices + slice`` in a 4-D volume; 0 for a plain image.
        pixels: (H, W) uint8 gray or (H, W, 3) uint8 RGB as displayed.
        region_box: (x0, y0, x1, y1) of the DICOM region holding this view, if the file gives one.
        view: number of the view on the frame (DICOM regions, left to right); 0 for a single view.
    """

    index: int
    pixels: np.ndarray
    region_box: tuple[int, int, int, int] | None = None
    view: int = 0

    def gray(self) -> np.ndarray:
        """(H, W) uint8 BT.601 luma of the pixels (the gray every other path of the project reads)."""
        return to_gray_uint8(self.pixels, f"frame {self.index}")


@dataclass(frozen=True)
class FrameOptions:
    """How sources are cut into frames.

    Args:
        frame_stride: keep every n-th frame of cine loops, multi-frame DICOM and multi-page TIFF, and time point of
            4-D volumes.
        slice_axis: stored volume axis to slice along, in (x, y, z) order (2: the acquired slices).
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


def iter_frames(path: str | os.PathLike, options: FrameOptions = FrameOptions()) -> Iterator[Frame]:
    """Frames of ``path``; raises :class:`UnreadableImageError` (naming the file and why) or :class:`SkippedSource`."""
    path = Path(path)
    if not path.is_file():
        raise UnreadableImageError(f"{path}: cannot open (missing, a broken link or not a file)")
    if path.stat().st_size == 0:
        raise UnreadableImageError(f"{path}: empty file (0 bytes)")
    kind = kind_by_content(path)  # a picture named .dcm, a DICOM named .png: read as what they are, as the loaders do
    readers = {"image": _image_frames, "dicom": _dicom_frames, "nifti": _volume_frames, "itk": _volume_frames,
               "video": _video_frames}
    if kind is None:
        raise UnreadableImageError(f"{path}: unsupported file type")
    try:
        yield from readers[kind](path, options)
    except (UnreadableImageError, SkippedSource):
        raise
    except Exception as e:  # decoders raise many types; all mean "this file cannot be read"
        raise UnreadableImageError(one_line(f"{path}: cannot decode ({type(e).__name__}: {e})")) from e


def to_display_uint8(pixels: np.ndarray, source: str) -> np.ndarray:
    """Display-ready pixels (see :mod:`monai_ext.io.display`) -> (H, W) uint8 gray or (H, W, 3) uint8 RGB (alpha
    dropped; deeper colour scaled from its white level: the type's maximum, or 1 for floats)."""
    if pixels.ndim == 3 and pixels.shape[2] in (3, 4):
        rgb = pixels[..., :3]
        if rgb.dtype == np.uint8:
            return np.ascontiguousarray(rgb)
        white = float(np.iinfo(rgb.dtype).max) if np.issubdtype(rgb.dtype, np.unsignedinteger) else 1.0
        return np.clip(np.rint(rgb.astype(np.float32) * np.float32(255.0 / white)), 0, 255).astype(np.uint8)
    return to_gray_uint8(pixels, source)


def _image_frames(path: Path, options: FrameOptions) -> Iterator[Frame]:
    for index, pixels in iter_picture_frames(path, options.frame_stride, colour=True):
        yield Frame(index, to_display_uint8(pixels, str(path)))


def _dicom_frames(path: Path, options: FrameOptions) -> Iterator[Frame]:
    # Read the header without pixel data first: the modality filter costs no decoding.
    if options.modality:
        modality = str(read_dicom_header(path).get("Modality", ""))
        if modality.upper() != options.modality.upper():
            raise SkippedSource(f"{path}: modality {modality or 'missing'!r} is not {options.modality!r}")
    ds = read_dicom(path)
    if kinds := non_tissue_region_kinds(ds):
        # detection on the whole screen would take the spectrum or the M-mode trace for the field of view
        raise SkippedSource(f"{path}: no tissue region: its ultrasound regions are {', '.join(kinds)} only "
                            "(SequenceOfUltrasoundRegions lists no 2-D tissue or colour-flow region)")
    # no sequence, or its tissue regions are off the frame (a resized export): the views are detected
    boxes = ultrasound_region_boxes(ds) or [None]
    for index, pixels in iter_dicom_frames(ds, str(path), options.frame_stride):
        display = to_display_uint8(pixels, str(path))
        for view, box in enumerate(boxes):
            yield Frame(index, display, box, view)


def _volume_frames(path: Path, options: FrameOptions) -> Iterator[Frame]:
    for index, pixels in iter_volume_frames(path, options.slice_axis, options.slice_stride, options.frame_stride):
        # colour kept until de-annotation, as for pictures, DICOM and video: a colour-flow volume's flow is found
        yield Frame(index, to_display_uint8(pixels, str(path)))


def _video_frames(path: Path, options: FrameOptions) -> Iterator[Frame]:
    for index, pixels in iter_video_frames(path, options.frame_stride, colour=True):
        yield Frame(index, pixels)
