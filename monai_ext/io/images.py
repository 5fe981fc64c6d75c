"""Reading one ultrasound image (PNG/JPG/BMP/TIFF or DICOM) as an 8-bit-range grayscale array, the same way
whatever the container: a DICOM and a PNG holding the same pixels give the same array.

MONAI's ``LoadImage`` picks its reader by suffix and the readers disagree on axis order (PIL's is reversed by
default, pydicom's is swapped), and neither applies DICOM photometric interpretations or ultrasound regions; this
small MONAI transform pair puts one convention on both: (1, rows, columns), float32 in [0, 1].
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from monai_ext.io.errors import UnreadableImageError

#: ITU-R BT.601 luma weights (R, G, B), the conversion OpenCV and PIL use.
LUMA = (0.299, 0.587, 0.114)
DICOM_SUFFIXES = (".dcm", ".dicom")




def _to_gray_unit(pixels: np.ndarray, source: str) -> np.ndarray:
    """(H, W) or (H, W, C) pixels -> (H, W) float32 in [0, 1]: integers scaled by their type's maximum, colour to
    BT.601 luma (alpha dropped), float assumed in [0, 1] already."""
    peak = float(np.iinfo(pixels.dtype).max) if np.issubdtype(pixels.dtype, np.integer) else 1.0
    if pixels.ndim == 3:
        if pixels.shape[2] in (3, 4):
            pixels = pixels[..., :3].astype(np.float32) @ np.array(LUMA, np.float32)
        else:
            pixels = pixels[..., 0]
    if pixels.ndim != 2:
        raise UnreadableImageError(f"{source}: expected a 2-D image, got shape {pixels.shape!r}")
    return (pixels.astype(np.float32) / peak).astype(np.float32)


def read_dicom_pixels(path: str | os.PathLike) -> np.ndarray:
    """First frame of a DICOM file as displayed: (H, W) or (H, W, 3) RGB, MONOCHROME1 inverted."""
    import pydicom

    try:
        from pydicom.pixels import apply_color_lut, convert_color_space
    except ImportError:  # pydicom 2.4: MONAI Label's environment needs it (pydicom-seg imports 2.x-only modules)
        from pydicom.pixel_data_handlers.util import apply_color_lut, convert_color_space

    ds = pydicom.dcmread(path)
    if "PixelData" not in ds:
        raise UnreadableImageError(f"{path}: DICOM file has no pixel data")
    pixels = ds.pixel_array
    frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    if frames > 1:
        pixels = pixels[0]
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2"))
    if photometric == "MONOCHROME1":
        pixels = np.iinfo(pixels.dtype).max - pixels if np.issubdtype(pixels.dtype, np.integer) else pixels.max() - pixels
    elif photometric == "PALETTE COLOR":
        pixels = apply_color_lut(pixels, ds)
    elif photometric.startswith("YBR") and ds.file_meta.TransferSyntaxUID.is_compressed is False:
        pixels = convert_color_space(pixels, photometric, "RGB")
    if int(ds.get("BitsStored", 8)) <= 8 and pixels.dtype != np.uint8:
        pixels = pixels.astype(np.uint8)
    return pixels


def read_image_pixels(path: str | os.PathLike) -> np.ndarray:
    """Pixels of a PNG/JPG/BMP/TIFF (PIL) or DICOM (pydicom) file, raising :class:`UnreadableImageError`."""
    path = Path(path)
    try:
        if path.suffix.lower() in DICOM_SUFFIXES:
            return read_dicom_pixels(path)
        with Image.open(path) as img:
            if img.mode == "P":
                img = img.convert("RGBA" if "transparency" in img.info else "RGB")
            elif img.mode in ("I;16", "I;16B", "I;16L"):
                return np.asarray(img, dtype=np.uint16)
            elif img.mode == "I":
                return np.asarray(img).astype(np.uint16)
            return np.asarray(img)
    except UnreadableImageError:
        raise
    except Exception as e:  # decoders raise many types; all mean the same thing to the caller
        raise UnreadableImageError(f"{path}: cannot decode ({type(e).__name__}: {e})") from e




