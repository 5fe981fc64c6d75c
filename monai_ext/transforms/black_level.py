"""Raised black levels of screen captures: a frame grabber's limited-range video (ITU-R BT.601/709: black 16, white
235) or a black a few levels above 0, found on a frame and brought to 0 (:func:`restore_black`).

Field-of-view detection takes pixels above a threshold for image, so a raised black made the crop the whole screen,
text and bars included; the corpus brings the black to 0 before detection and caching (monai_ext/data/views.py).
Written by hand: the conversion is one lookup table (OpenCV's ``LUT``), the detection a histogram rule no library
ships for screens.
"""

from __future__ import annotations

import cv2
import numpy as np

from monai_ext.transforms.fov import to_gray_uint8

#: A screen's black is looked for up to this level: frame grabbers give video range (black 16, JPEG spreading it to
#: 18) or a black a few levels up. A flat background brighter than this is a vendor's gray interface around an image
#: whose own black is 0 (at 24, subtracting it darkened the tissue by a third and sent its cysts' edges to 0).
MAX_BLACK_LEVEL = 20
#: JPEG spreads a flat black over a few levels (14-18 for a black of 16 at quality 75): counted give or take this.
BLACK_SPREAD = 2
#: The black must cover this share of the frame: the background of a screen around a sector or a linear image
#: (0.38-0.53 of the simulator's screens measured, JPEG quality 50-95 included). Dark tissue or fluid spreads over
#: tens of levels and does not pile up on five.
MIN_BLACK_SHARE = 0.15
#: ... with at most this share of the frame more than ``BLACK_SPREAD`` darker: JPEG undershoot beside the image's
#: edges and bright text (0.006-0.008 of the simulator's raised-black screens at quality 95, 0.02-0.035 at 75,
#: 0.03-0.04 at 50); a true black of 0 over more of the frame than this stays the black.
MAX_BELOW_BLACK = 0.06
#: ... and flat: at least this share of the pixels within ``4 * BLACK_SPREAD`` levels of it lie within
#: ``BLACK_SPREAD`` (a background is one level, JPEG noise a few: 0.86-0.99 measured at quality 50-95; dark tissue
#: is a slope over many: 0.26-0.38 for a linear image darkened to levels 4-40).
MIN_BLACK_PEAK = 0.6
#: Limited-range (ITU-R BT.601/709 "video range") captures: black 16 (give or take one for the grabber's rounding),
#: white 235, with nothing in the gray above ``VIDEO_WHITE_CEILING`` save this share of the frame (overshoot of a
#: grabber's scaler or of JPEG beside white text).
VIDEO_BLACK = 16
VIDEO_BLACK_TOLERANCE = 1
VIDEO_WHITE = 235
VIDEO_WHITE_CEILING = 240
VIDEO_MAX_ABOVE_CEILING = 0.001


def black_level(gray: np.ndarray) -> int:
    """The black level of a screen: the most frequent of the dark levels (up to :data:`MAX_BLACK_LEVEL`), when it
    covers a clear share of the frame as one flat level with next to nothing darker; else 0.

    Args:
        gray: (H, W) uint8 frame.

    Returns:
        The level, 0 when the black is 0 already or none is found (a frame filled by tissue has no background).
    """
    if gray.size == 0:
        return 0
    counts = np.bincount(gray.ravel(), minlength=256) / gray.size
    window = np.convolve(counts, np.ones(2 * BLACK_SPREAD + 1), mode="same")  # window[i]: counts within i +- spread
    peak = int(np.argmax(window[: MAX_BLACK_LEVEL + 1]))
    low = max(peak - BLACK_SPREAD, 0)
    high = min(peak + BLACK_SPREAD, MAX_BLACK_LEVEL) + 1
    level = low + int(np.argmax(counts[low:high]))  # the mode of the peak, not its window's centre
    share = float(counts[max(level - BLACK_SPREAD, 0) : level + BLACK_SPREAD + 1].sum())
    below = float(counts[: max(level - BLACK_SPREAD, 0)].sum())
    near = float(counts[max(level - 4 * BLACK_SPREAD, 0) : level + 4 * BLACK_SPREAD + 1].sum())
    if share < MIN_BLACK_SHARE or below > MAX_BELOW_BLACK or share < MIN_BLACK_PEAK * near:
        return 0
    return level


def detection_gray(gray: np.ndarray, threshold: int = 0) -> tuple[np.ndarray, int]:
    """(H, W) uint8 ``gray`` and a background ``threshold`` as field-of-view detection needs them: a raised black
    (:func:`black_level`) brought to 0 as :func:`restore_black` brings it, and the threshold at least
    ``BLACK_SPREAD`` (the JPEG noise left around the restored black).

    The transforms that detect the field of view themselves (``Deannotate``, ``FieldOfViewMask``) meet frames whose
    black was never brought to 0 (the corpus restores it first; a bundle's loader does not): a JPEG screenshot whose
    black decodes as 1 (libjpeg at quality 70), a grabber's video-range black of 16. At threshold 0 every pixel of
    such a screen was signal and the field of view the whole screen, text, gray bar and depth scale kept; raising the
    threshold alone is not enough, as a fitted sector is widened over dim edges above half of it, which the raised
    black then was everywhere. A frame whose black is 0 (the simulator's screens, PNG captures) comes back as it is.

    Args:
        gray: (H, W) uint8 frame.
        threshold: the background level asked for (0-254).

    Returns:
        (the (H, W) uint8 gray to detect on, the threshold to detect with).
    """
    level = black_level(gray)
    if level == 0:
        return gray, threshold
    restored = cv2.LUT(np.ascontiguousarray(gray), black_lut(level, is_video_range(gray, level)))
    return restored, max(threshold, BLACK_SPREAD)


def is_video_range(gray: np.ndarray, level: int) -> bool:
    """True when (H, W) uint8 ``gray`` with black ``level`` is a limited-range capture (black 16, white 235).

    A full-range screen with a black raised to 16 and nothing above 240 cannot be told from one: it is expanded
    too, its tissue up to 16% brighter than shown.
    """
    above = np.count_nonzero(gray > VIDEO_WHITE_CEILING) / max(gray.size, 1)
    return bool(abs(level - VIDEO_BLACK) <= VIDEO_BLACK_TOLERANCE and above <= VIDEO_MAX_ABOVE_CEILING)


def black_lut(level: int, video_range: bool) -> np.ndarray:
    """(256,) uint8 lookup table bringing black ``level`` to 0: video range expanded to full
    (``(x - 16) * 255 / 219``), else the level subtracted; clipped to [0, 255]."""
    values = np.arange(256, dtype=np.float64)
    if video_range:
        values = (values - VIDEO_BLACK) * 255.0 / (VIDEO_WHITE - VIDEO_BLACK)
    else:
        values = values - level
    return np.clip(np.round(values), 0, 255).astype(np.uint8)


def restore_black(pixels: np.ndarray, gray: np.ndarray) -> tuple[np.ndarray, np.ndarray, int, bool]:
    """A frame with a raised black (see :func:`black_level`) brought to black 0 on every channel.

    Args:
        pixels: (H, W) gray or (H, W, 3) RGB uint8 frame.
        gray: (H, W) its luma.

    Returns:
        (pixels, gray, black level found (0: unchanged), whether it was expanded from video range).
    """
    level = black_level(gray)
    if level == 0:
        return pixels, gray, 0, False
    video_range = is_video_range(gray, level)
    pixels = cv2.LUT(np.ascontiguousarray(pixels), black_lut(level, video_range))
    return pixels, to_gray_uint8(pixels), level, video_range
