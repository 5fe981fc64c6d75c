"""The one conversion from display-ready pixels to the gray images every path uses.

Every decoder in :mod:`monai_ext.io` returns *display-ready* pixels: (H, W) gray or (H, W, C) colour (C = 3 RGB,
4 RGBA, 2 gray + alpha) where unsigned integer types span their whole range (0 black, the type's maximum white),
booleans are 0/1 and floating-point values lie in [0, 1]. DICOM bit depths, LUTs and windows, photometric
interpretations and volume intensities are resolved before this point, so the conversion below is shared: the
corpus (uint8), the training loader, bundle inference and MONAI Label (float in [0, 1]) all call it on the same
pixels and therefore agree exactly (``to_gray_uint8(p) == rint(to_gray_unit(p) * 255)``).
"""

from __future__ import annotations

import cv2
import numpy as np

from monai_ext.io.errors import UnreadableImageError
from monai_ext.io.once import warn_once

__all__ = ["LUMA", "WINDOW_PERCENTILES", "to_gray_uint8", "to_gray_unit", "warn_if_few_bits_used", "window_to_unit"]

#: ITU-R BT.601 luma weights (R, G, B), the conversion OpenCV and PIL use.
LUMA = (0.299, 0.587, 0.114)
#: Percentiles of the window for intensities that are not display values (volumes that are not 8-bit, float
#: pictures beyond [0, 1], signed pictures below 0).
WINDOW_PERCENTILES = (0.5, 99.5)


def window_to_unit(values: np.ndarray) -> np.ndarray:
    """Intensities of any real type and shape -> float32 display values in [0, 1] of the same shape, windowed to
    their ``WINDOW_PERCENTILES`` (to the finite maximum where the two are equal). NaN is shown as black, infinities
    as black or white; without a finite value (or with one value only) everything is black."""
    values = values.astype(np.float32)
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return np.zeros_like(values)
    low, high = (float(v) for v in np.percentile(finite, WINDOW_PERCENTILES))
    high = high if high > low else float(finite.max())
    width = high - low if high > low else 1.0
    return np.clip((np.nan_to_num(values, nan=low, posinf=high, neginf=low) - low) / width, 0.0, 1.0)


def _gray_at_source_depth(pixels: np.ndarray, source: str) -> np.ndarray:
    """(H, W) or (H, W, C) display-ready pixels -> (H, W) gray of the same kind (alpha dropped).

    8-bit colour goes through OpenCV's fixed-point BT.601 luma, which stays 8-bit: that keeps 8-bit sources exact
    in both outputs (and is several times faster than float arithmetic, the largest cost of corpus ingestion).
    Deeper colour is weighted in float32 after scaling to [0, 1], so it comes back as float.
    """
    if pixels.ndim == 3:
        channels = pixels.shape[2]
        if channels in (3, 4) and pixels.dtype == np.uint8:
            return cv2.cvtColor(np.ascontiguousarray(pixels[..., :3]), cv2.COLOR_RGB2GRAY)
        if channels in (3, 4):
            # element-wise in a fixed order, not a matrix product: BLAS kernels (chosen per CPU and thread count)
            # may sum in another order and change the last bit between environments
            rgb = pixels[..., :3].astype(np.float32) / np.float32(_white_level(pixels, source))
            red, green, blue = (np.float32(w) for w in LUMA)
            return rgb[..., 0] * red + rgb[..., 1] * green + rgb[..., 2] * blue
        if channels in (1, 2):
            return pixels[..., 0]
    if pixels.ndim != 2:
        raise UnreadableImageError(f"{source}: expected a 2-D image, got shape {pixels.shape!r}")
    return pixels


def _white_level(gray: np.ndarray, source: str) -> float:
    """The value displayed as white: the type's maximum for unsigned integers, 1 for booleans and floats."""
    if gray.dtype == np.bool_ or np.issubdtype(gray.dtype, np.floating):
        return 1.0
    if np.issubdtype(gray.dtype, np.unsignedinteger):
        return float(np.iinfo(gray.dtype).max)
    raise UnreadableImageError(f"{source}: display pixels must be unsigned, boolean or float, got {gray.dtype}")


def to_gray_unit(pixels: np.ndarray, source: str) -> np.ndarray:
    """Display-ready pixels -> (H, W) float32 gray in [0, 1].

    Args:
        pixels: (H, W) or (H, W, C) display-ready pixels (see the module docstring).
        source: the file they came from, named in errors.

    Raises:
        UnreadableImageError: for a shape or type that is not a displayable 2-D image.
    """
    gray = _gray_at_source_depth(pixels, source)
    unit = gray.astype(np.float32) / np.float32(_white_level(gray, source))
    return np.clip(unit, 0.0, 1.0) if np.issubdtype(gray.dtype, np.floating) else unit


def to_gray_uint8(pixels: np.ndarray, source: str) -> np.ndarray:
    """Display-ready pixels -> (H, W) uint8 gray, equal to ``rint(to_gray_unit(pixels) * 255)``.

    Args:
        pixels: (H, W) or (H, W, C) display-ready pixels (see the module docstring).
        source: the file they came from, named in errors.
    """
    gray = _gray_at_source_depth(pixels, source)
    if gray.dtype == np.uint8:
        return gray  # 8-bit input: already the answer, no float round trip
    return np.rint(to_gray_unit(gray, source) * np.float32(255.0)).astype(np.uint8)


#: The largest value of 12-bit data: a 16-bit picture whose values stay at or below it uses 1/16 of its range.
TWELVE_BIT_MAX = 4095


def warn_if_few_bits_used(pixels: np.ndarray, source: str) -> None:
    """Warn, once per file in a job, where a 16-bit picture's values reach at most :data:`TWELVE_BIT_MAX`.

    A PNG or TIFF is displayed by its type's range (65535 white), and so it is read here: right for a standard file.
    Some exporters write 12-bit data (0..4095) into 16-bit files without scaling it up: shown and read as such, the
    image is nearly black (1/16 of white at most), and the network predicted as for a black image without a word.
    DICOM says its bit depth (``BitsStored``) and is read by it, so this is for pictures only: the caller's to ask.

    Args:
        pixels: a picture's display-ready pixels; only uint16 ones are looked at.
        source: the file, named in the warning.
    """
    if pixels.dtype != np.uint16 or pixels.size == 0:
        return
    brightest = int(pixels.max())
    if not 0 < brightest <= TWELVE_BIT_MAX:
        return
    warn_once(f"{source}: a 16-bit picture whose values reach only {brightest} of 65535 (12 of its 16 bits used "
              f"at most): read as viewers display it, nearly black, and so the network sees it. If it holds 12-bit "
              f"data that its exporter did not scale up, scale the files (values x 16) or export 8-bit pictures; "
              f"a picture that is truly this dark needs nothing", UserWarning, stacklevel=2)

