"""Spectral Doppler and M-mode strips, and speckle texture: telling a screen's tissue image from the other regions
of a screen capture (a duplex screen's spectrum, an M-mode trace, a vendor's side panel), for
:mod:`monai_ext.transforms.fov`.

Written by hand: no library measures these; the filters are OpenCV's.
"""

from __future__ import annotations

import cv2
import numpy as np

#: Texture and streaks are measured on a copy halved until its long side is under twice this (the scale of
#: detection in data/views.py): speckle is smoother and a spectral trace's noise sharper at a screen's own resolution.
TEXTURE_SIDE = 160
#: Speckle texture is measured over the pixels above this level only: a view whose anechoic fluid (bladder,
#: gallbladder, amniotic fluid) covers more than half of it keeps the texture of its tissue (over all its pixels the
#: median fell to the fluid's noise, 0.12 of the tissue view beside it, and the view was dropped as a side panel); a
#: panel's fill is above it and flat. The corpus's default background threshold (``fov_threshold``).
TEXTURE_DARK_LEVEL = 10
#: A region at least this many times as wide as tall may be a spectral Doppler or M-mode strip (a band some 3-8
#: times as wide as tall under the B-mode image); B-mode images are rarely wider than 1.5 times their depth ...
MIN_STRIP_ASPECT = 2.0
#: ... and is one when its texture runs along the time axis: mean horizontal over mean vertical gray-level change at
#: most this (M-mode, one scan line repeated over time: 0.24; speckle 0.9-1.1, and 0.5-0.6 even stretched to 2.5
#: times its width) ...
MAX_STREAK_RATIO = 0.4
#: ... when at least this many times as wide as tall: horizontally layered tissue (tendon, muscle, abdominal wall)
#: streaks too (0.23-0.31 for a simulated linear image with strong layers, stretched to 2-2.5 times as wide as tall),
#: while an M-mode strip runs 3-8 times its height.
MIN_STREAKED_STRIP_ASPECT = 3.0
#: ... or when it fits neither model (a spectral trace's envelope) and one of its long sides is a straight line (the
#: baseline): its first or last row lies within a pixel of one row in at least this fraction of its columns; or when
#: a row across at least this fraction of its columns is a line drawn on it (a baseline inside a spectrum over a
#: noisy background, an M-mode time axis) ...
MIN_BASELINE_SHARE = 0.9
#: ... all within this many gray levels of the row's median (a row of speckle spreads over tens of levels) ...
BASELINE_SPREAD = 8
#: ... which stands at least this many levels above the row two above or two below it (a flat black or gray row of
#: a panel or background is no line).
BASELINE_CONTRAST = 40


def _detection_scale(shape: tuple[int, int]) -> int:
    """The halvings that bring an image of ``shape`` (H, W) to a long side under ``2 * TEXTURE_SIDE``, as a factor."""
    factor = 1
    while max(shape) >= 2 * factor * TEXTURE_SIDE and min(shape) >= 4 * factor:
        factor *= 2
    return factor


def _reduce(image: np.ndarray, factor: int) -> np.ndarray:
    """(H, W) uint8 or bool -> 2 x 2 means (bool: any) ``factor`` times smaller (odd last rows/columns dropped)."""
    if factor == 1:
        return image
    height, width = image.shape[0] // factor * factor, image.shape[1] // factor * factor
    small = cv2.resize(image[:height, :width].astype(np.uint8), (width // factor, height // factor),
                       interpolation=cv2.INTER_AREA)
    return small > 0 if image.dtype == bool else small


def speckle_texture(gray: np.ndarray, mask: np.ndarray) -> float:
    """Median absolute Laplacian of (H, W) uint8 ``gray`` inside (H, W) bool ``mask`` eroded by two pixels (its edge
    against the black around it is not texture), over its pixels above ``TEXTURE_DARK_LEVEL`` (all of them where
    none is), on a copy halved to the scale of detection
    (``TEXTURE_SIDE``), so that it is the same on a screen and on its reduced copy: tens over speckle, next to
    nothing over a flat or gradient panel, whose icons and labels are edges over a minority of its pixels."""
    factor = _detection_scale(gray.shape)
    gray, mask = _reduce(gray, factor), _reduce(mask, factor)
    inner = cv2.erode(mask.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    inner = inner if inner.any() else mask
    if not inner.any():
        return 0.0
    laplacian = cv2.Laplacian(gray, cv2.CV_16S, ksize=1)
    lit = inner & (gray > TEXTURE_DARK_LEVEL)
    return float(np.median(np.abs(laplacian[lit if lit.any() else inner])))


def streak_ratio(gray: np.ndarray, mask: np.ndarray) -> float:
    """Mean absolute gray-level change along the rows over that along the columns of (H, W) uint8 ``gray``, inside
    (H, W) bool ``mask``, at the scale of detection (``TEXTURE_SIDE``): about 1 for speckle, well under 1 for an
    M-mode strip (one scan line over time)."""
    factor = _detection_scale(gray.shape)
    values, mask = _reduce(gray, factor).astype(np.float32), _reduce(mask, factor)
    across = np.abs(np.diff(values, axis=1))[mask[:, 1:] & mask[:, :-1]]
    down = np.abs(np.diff(values, axis=0))[mask[1:] & mask[:-1]]
    if across.size == 0 or down.size == 0:
        return 1.0
    return float(across.mean() / max(float(down.mean()), 1e-6))


def straight_side(mask: np.ndarray) -> bool:
    """True when the first or the last row of (H, W) bool ``mask``'s columns lies within a pixel of one row over at
    least ``MIN_BASELINE_SHARE`` of them: a straight side, the baseline a spectral trace grows from."""
    columns = np.flatnonzero(mask.any(0))
    if columns.size == 0:
        return False
    first = mask[:, columns].argmax(0)
    last = mask.shape[0] - 1 - mask[::-1, columns].argmax(0)
    for ends in (first, last):
        near = np.convolve(np.bincount(ends, minlength=1), np.ones(3), mode="same")  # within one row of each row
        if near.max() >= MIN_BASELINE_SHARE * columns.size:
            return True
    return False


def drawn_line(gray: np.ndarray, mask: np.ndarray) -> bool:
    """True when a row of (H, W) uint8 ``gray`` is a straight line drawn across (H, W) bool ``mask`` (a spectral
    baseline, an M-mode time axis): over at least ``MIN_BASELINE_SHARE`` of the region's columns within
    ``BASELINE_SPREAD`` levels of its median, which is at least ``BASELINE_CONTRAST`` above the row two above or
    two below it."""
    columns = np.flatnonzero(mask.any(0))
    if columns.size == 0 or mask.shape[0] < 5:
        return False
    values = gray[:, columns].astype(np.int16)
    median = np.median(values, axis=1)
    flat = np.mean(np.abs(values - median[:, None]) <= BASELINE_SPREAD, axis=1) >= MIN_BASELINE_SHARE
    covered = np.mean(mask[:, columns], axis=1) >= MIN_BASELINE_SHARE
    raised = np.zeros_like(flat)
    raised[2:-2] = np.maximum(median[2:-2] - median[:-4], median[2:-2] - median[4:]) >= BASELINE_CONTRAST
    return bool(np.any(flat & covered & raised))


def is_strip(gray: np.ndarray, mask: np.ndarray, freeform: bool, full: np.ndarray | None = None) -> bool:
    """True when the (H, W) bool region ``mask`` over (H, W) uint8 ``gray`` is a spectral Doppler or M-mode strip,
    not a tissue image: wider than ``MIN_STRIP_ASPECT`` times its height, and streaked along the time axis
    (``MAX_STREAK_RATIO``, when wider than ``MIN_STREAKED_STRIP_ASPECT`` times its height), or ``freeform`` (fitting
    neither field-of-view model) with a straight baseline side (:func:`straight_side`), or crossed by a line drawn
    at the screen's resolution (:func:`drawn_line`, looked for on ``full``, the (H', W') screen ``gray`` was reduced
    from by an integer factor, when given: a reduced copy averages a one-pixel line away)."""
    rows, columns = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    if rows.size == 0:
        return False
    top, left, bottom, right = int(rows[0]), int(columns[0]), int(rows[-1]) + 1, int(columns[-1]) + 1
    if right - left < MIN_STRIP_ASPECT * (bottom - top):
        return False
    wide = right - left >= MIN_STREAKED_STRIP_ASPECT * (bottom - top)
    streaked = wide and streak_ratio(gray, mask) <= MAX_STREAK_RATIO
    if (freeform and straight_side(mask)) or streaked:
        return True
    factor = 1 if full is None else max(1, full.shape[0] // gray.shape[0])
    screen = gray if full is None else full
    inside = mask[top:bottom, left:right]
    if factor > 1:
        inside = np.repeat(np.repeat(inside, factor, 0), factor, 1)
    crop = screen[top * factor : bottom * factor, left * factor : right * factor]
    return drawn_line(crop, inside[: crop.shape[0], : crop.shape[1]])
