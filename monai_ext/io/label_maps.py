"""2-D label maps (uint8 class-index masks) as files that 3D Slicer lays over their image: a PNG, or a TIFF carrying
the image's pixel size where ITK reads one from the image.

3D Slicer places an image by the pixel size its ITK reader finds (a DICOM's ``PixelSpacing``, a JPEG's JFIF or a
TIFF's resolution in dots per inch, as millimetres) and a label map by its own: a PNG's, which ITK ignores, is always
1 mm a pixel, so the mask of a 72-dpi JPEG covered 2.8 times the image's width. The segmentation bundle's inference
(:func:`~monai_ext.engines.segmentation.predict_mask_files`) and the MONAI Label app's served masks both write their
masks here, so the two lie alike.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from io import BytesIO
from pathlib import Path

import numpy as np
from PIL import Image

from monai_ext.io.atomic import atomic_write_bytes
from monai_ext.io.figures import save_png
from monai_ext.io.images import source_kind

__all__ = ["LABEL_MAP_SUFFIXES", "itk_pixel_spacing", "label_map_suffix", "save_label_map"]

logger = logging.getLogger(__name__)

#: The suffixes :func:`save_label_map` writes: a PNG where the image has no pixel size, a TIFF where it has one.
LABEL_MAP_SUFFIXES = (".png", ".tif")


def itk_pixel_spacing(image: str | os.PathLike, mask_shape: Sequence[int]) -> tuple[float, float] | None:
    """The (x, y) pixel size in mm that ITK reads from the picture or DICOM file ``image``, where it is not 1 x 1;
    None where it is, where ITK reads no such file, or where ITK's grid is not the mask's (H, W).

    3D Slicer places an image by it (its volume reader is ITK's, and a DICOM's ``PixelSpacing``, a JPEG's JFIF or a
    TIFF's resolution in dots per inch become millimetres), and its MONAI Label module reads the served label map
    with SimpleITK: a PNG, whose resolution ITK ignores, always lies at 1 mm a pixel, 2.8 times the size of a 72-dpi
    JPEG beside it. Volumes (NIfTI, NRRD, MHA) are left out: their mask is on the displayed plane, not on ITK's grid.
    """
    # no file (a loader stand-in's name): no spacing, and ITK (seconds to import) is not loaded for it
    if source_kind(image) not in ("image", "dicom", None) or not Path(image).is_file():
        return None
    try:
        import itk

        io = itk.ImageIOFactory.CreateImageIO(str(image), itk.CommonEnums.IOFileMode_ReadMode)
        if io is None:
            return None
        io.SetFileName(str(image))
        io.ReadImageInformation()
        size = (io.GetDimensions(1) if io.GetNumberOfDimensions() > 1 else 1, io.GetDimensions(0))
        spacing = (float(io.GetSpacing(0)), float(io.GetSpacing(1)) if io.GetNumberOfDimensions() > 1 else 1.0)
    except Exception as e:  # noqa: BLE001 - ITK raises RuntimeError and others for files it half reads
        logger.debug("%s: no ITK pixel spacing (%s); the mask is written as a PNG", image, e)
        return None
    if size != tuple(mask_shape) or not all(np.isfinite(spacing)) or min(spacing) <= 0:
        return None
    return None if np.allclose(spacing, 1.0, rtol=0, atol=1e-6) else spacing


def label_map_suffix(spacing: tuple[float, float] | None) -> str:
    """The suffix :func:`save_label_map` writes for ``spacing``: ``.png`` without one, ``.tif`` with one."""
    return LABEL_MAP_SUFFIXES[0] if spacing is None else LABEL_MAP_SUFFIXES[1]


def save_label_map(mask: np.ndarray, path: Path, spacing: tuple[float, float] | None = None) -> None:
    """Write the (H, W) uint8 class-index ``mask`` as a PNG, or, given an (x, y) ``spacing`` in mm, as a TIFF whose
    resolution ITK reads back as that spacing (a TIFF, not a NIfTI label map: training reads masks as pictures),
    atomically. ``path``'s suffix should be :func:`label_map_suffix`'s: the format follows ``spacing``, not it."""
    if spacing is None:
        save_png(mask, path)
        return
    buffer = BytesIO()
    Image.fromarray(mask).save(buffer, format="TIFF", dpi=(25.4 / spacing[0], 25.4 / spacing[1]),
                               compression="tiff_deflate")
    atomic_write_bytes(path, buffer.getvalue())
