"""Tinted gray displays: B-mode shown through a colour map of its gray level (sepia, "chroma" or "colorize" presets).

Many scanners can show B-mode through such a map, and archives keep the screen as shown. Every bright pixel of a
tinted image has channels that differ, so the test "channels differ, so it is colour" (Doppler flow, coloured
calipers) takes the tissue itself for flow: a sepia frame loses most of its field of view to inpainting, or is
dropped as Doppler. The display's map is estimated from the image itself: at each luma level, the per-channel median
of the pixels at that level (Doppler-like colours left out: no tint has them), smoothed across levels. It is taken as
the display's map only when it is one:

* the bulk of the tissue is coloured all over the frame, not only its bright tail (pale flow or coloured text over
  dark gray B-mode can outnumber tissue at the brightest levels, and flow fills a box, not the frame);
* it explains much of what looks like colour (a tint colours nearly all bright pixels; colour flow or marks over
  gray B-mode leave the median at nearly every level gray);
* few gray pixels disagree with it (under a tint, tissue is never gray where the map is coloured; over gray B-mode,
  tissue stays gray at the levels where flow is common).

Colour is then what departs from the map, so flow and coloured marks over a tinted image are still found. No
library estimates a display's colour map from one frame, hence this module.
"""

from __future__ import annotations

import cv2
import numpy as np

#: Levels at or below this are left out of the estimate: background and dark tissue, where tints and gray coincide.
TINT_MIN_LEVEL = 16
#: A tint colours the bulk of the tissue (lit pixels between these luma percentiles), not only its bright tail:
#: their median channel spread must be at least ``TINT_MIN_BULK_RATIO`` of their luma. Gray B-mode stays near 0
#: there (JPEG chroma noise included), whatever pale flow or coloured text covers its bright levels.
TINT_BULK_PERCENTILES = (25, 90)
TINT_MIN_BULK_RATIO = 0.1
#: ... in at least this share of the tiles of a ``TINT_TILES`` x ``TINT_TILES`` grid that hold at least
#: ``TINT_MIN_TILE_PIXELS`` such pixels.
TINT_TILES = 6
TINT_MIN_TILE_PIXELS = 16
TINT_MIN_TINTED_TILES = 0.9
#: The map must explain at least this fraction of the pixels that look like colour.
TINT_MIN_EXPLAINED = 0.15
#: Gray pixels off the map, at most this many per coloured pixel on it (white text and scales over a tinted image).
TINT_MAX_GRAY_CONFLICT = 0.2
#: Doppler-like colours are left out of the estimate: a channel at most this share of the brightest one, which is
#: at least ``TINT_DOPPLER_MIN_PEAK``. Velocity and power scales switch a channel off; a tint, amber included,
#: keeps every channel lit where the tissue is bright.
TINT_DOPPLER_MAX_SHARE = 0.1
TINT_DOPPLER_MIN_PEAK = 96
#: The map is estimated on at most this many pixels, taken on a regular grid.
TINT_SAMPLE_PIXELS = 1 << 15
#: Width, in levels, of the running median that smooths the map (a display's map is smooth in the level).
TINT_SMOOTHING = 9


def channel_spread(rgb: np.ndarray) -> np.ndarray:
    """How far a pixel's channels differ: (H, W, 3) uint8 -> (H, W) uint8, max minus min."""
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    # Channel slices with cv2.max/min: numpy's reductions over a last axis of 3 are an order of magnitude slower.
    return cv2.subtract(cv2.max(cv2.max(r, g), b), cv2.min(cv2.min(r, g), b))


def map_deviation(rgb: np.ndarray, luma: np.ndarray, tint: np.ndarray) -> np.ndarray:
    """How far each pixel is from the map's colour at its luma: (H, W, 3) uint8, (H, W) uint8, (256, 3) uint8 ->
    (H, W) uint8, the largest channel difference."""
    deviation = [cv2.absdiff(rgb[..., c], cv2.LUT(luma, tint[:, c].copy())) for c in range(3)]
    return cv2.max(cv2.max(deviation[0], deviation[1]), deviation[2])


def display_tint(rgb: np.ndarray, chroma: int = 40) -> np.ndarray | None:
    """The colour map of a tinted gray display, or None when the frame is gray B-mode (with or without colour).

    Args:
        rgb: (H, W, 3) uint8 frame (C-contiguous).
        chroma: channel spread above which a pixel looks like colour (see ``colour_mask``).

    Returns:
        (256, 3) uint8: the colour shown for each luma level; None when the frame is not tinted.
    """
    rgb = _sample(rgb)
    luma = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    lit = luma > TINT_MIN_LEVEL
    spread = channel_spread(rgb)
    looks_coloured = (spread > chroma) & lit
    candidates = lit & ~_doppler_like(rgb)
    coloured = int(np.count_nonzero(looks_coloured))
    tint_like = int(np.count_nonzero(looks_coloured & candidates))
    # a map estimated from the candidates explains at most their colour: where that cannot pass the tests below
    # (gray B-mode, with or without Doppler), nothing is estimated. No share of coloured-looking pixels is asked
    # for: on a dim tinted frame only the brightest echoes cross ``chroma``, and a frame taken for gray then had its
    # bright reflectors erased as colour flow; the bulk test decides instead
    if tint_like == 0 or (
            tint_like < TINT_MIN_EXPLAINED * coloured) or not _bulk_is_tinted(luma, spread, candidates):
        return None
    tint = _level_medians(rgb[candidates], luma[candidates])
    on_map = (map_deviation(rgb, luma, tint) <= chroma) & lit
    explained = int(np.count_nonzero(on_map & looks_coloured))
    conflicting = int(np.count_nonzero(lit & ~on_map & ~looks_coloured))
    if explained < TINT_MIN_EXPLAINED * coloured or conflicting > TINT_MAX_GRAY_CONFLICT * explained:
        return None
    return tint


def _doppler_like(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 -> (H, W) bool: bright pixels with a channel (nearly) off, the colours of Doppler scales."""
    brightest = cv2.max(cv2.max(rgb[..., 0], rgb[..., 1]), rgb[..., 2]).astype(np.float32)
    darkest = cv2.min(cv2.min(rgb[..., 0], rgb[..., 1]), rgb[..., 2]).astype(np.float32)
    return (brightest >= TINT_DOPPLER_MIN_PEAK) & (darkest <= TINT_DOPPLER_MAX_SHARE * brightest)


def _bulk_is_tinted(luma: np.ndarray, spread: np.ndarray, candidates: np.ndarray) -> bool:
    """Whether the bulk of the tissue is coloured all over the frame, as a display's map colours it: in nearly every
    tile of a ``TINT_TILES`` grid that holds tissue, the candidate pixels between the frame's
    ``TINT_BULK_PERCENTILES`` of luma have a median channel spread of at least ``TINT_MIN_BULK_RATIO`` of their luma.
    Colour flow, however pale and large, fills a box, not the whole image."""
    levels = luma[candidates]
    low, high = np.percentile(levels, TINT_BULK_PERCENTILES)
    bulk = candidates & (luma >= low) & (luma <= high)
    tinted = eligible = 0
    for rows in np.array_split(np.arange(luma.shape[0]), TINT_TILES):
        for cols in np.array_split(np.arange(luma.shape[1]), TINT_TILES):
            tile = np.ix_(rows, cols)
            inside = bulk[tile]
            if np.count_nonzero(inside) < TINT_MIN_TILE_PIXELS:
                continue
            eligible += 1
            ratio = spread[tile][inside].astype(np.float32) / luma[tile][inside].astype(np.float32)
            tinted += float(np.median(ratio)) >= TINT_MIN_BULK_RATIO
    return eligible > 0 and tinted >= TINT_MIN_TINTED_TILES * eligible


def _sample(rgb: np.ndarray) -> np.ndarray:
    """Every k-th row and column, k chosen to keep at most ``TINT_SAMPLE_PIXELS`` pixels: a display's map is a
    property of the whole frame, and the estimate then costs the same on any screen size."""
    step = max(1, int(np.ceil(np.sqrt(rgb.shape[0] * rgb.shape[1] / TINT_SAMPLE_PIXELS))))
    return rgb if step == 1 else np.ascontiguousarray(rgb[::step, ::step])


def _level_medians(pixels: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """Per-channel median colour at each luma level, smoothed: (N, 3) uint8 pixels, (N,) uint8 levels -> (256, 3)
    uint8 (levels without pixels interpolated from their neighbours, gray below the lowest)."""
    counts = np.bincount(levels, minlength=256)
    present = np.flatnonzero(counts)
    tint = np.empty((256, 3), np.float64)
    for c in range(3):
        # a (level, value) histogram: the median is where a level's cumulative count passes half its count
        histogram = np.bincount(levels.astype(np.int64) * 256 + pixels[:, c], minlength=256 * 256).reshape(256, 256)
        medians = np.argmax(np.cumsum(histogram, axis=1) * 2 >= counts[:, None], axis=1)
        tint[:, c] = np.interp(np.arange(256), present, medians[present])
    tint[: present[0]] = np.arange(present[0])[:, None]
    return np.round(_running_median(tint, TINT_SMOOTHING)).clip(0, 255).astype(np.uint8)


def _running_median(values: np.ndarray, width: int) -> np.ndarray:
    """Median over ``width`` neighbouring rows of (256, 3) ``values``, edges repeated."""
    half = width // 2
    padded = np.pad(values, ((half, half), (0, 0)), mode="edge")
    return np.median(np.lib.stride_tricks.sliding_window_view(padded, width, axis=0), axis=-1)
