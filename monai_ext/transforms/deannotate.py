"""De-annotation and colour-Doppler handling for ultrasound screen captures.

The published pipeline found burned-in text with OCR, colours by clustering, then inpainted; it is slow and needs an
OCR binary. Here annotations are found by what they are on a screen, with OpenCV morphology:

* everything outside the field of view that is not black (text, depth scales, colour bars, logos);
* coloured pixels (B-mode is gray, or follows the display's tint: :mod:`monai_ext.transforms.tint`; calipers,
  markers and Doppler overlays do not), split into colour flow (filled areas, nine pixels across or more somewhere:
  :func:`colour_flow`) and coloured marks (strokes up to four pixels wide: text, calipers, measurement tables);
* bright strokes one or two pixels thin inside the field of view (white calipers, dotted measurement lines, text
  over the image), found with a white top-hat under a 3x3 opening. The scanner's point-spread function makes tissue
  echoes, including specular reflectors, wider than the opening, so they survive; the rare bright, isolated speckle
  grain is the false positive that remains;
* white or gray strokes up to three pixels wide in the few exact gray levels annotations are drawn in (text bold or
  not, in white or gray down to 200, body-marker and box outlines): levels over-represented among the pixels a
  top-hat under a 4x4 opening finds (tissue grains spread over all levels), every pixel of those levels standing
  out from the tissue, grown through glyph edges blended with the tissue (:func:`drawn_level_strokes`). Clipping
  puts a saturated echo line up to three pixels wide (bone cortex, pleura, A-line, needle shaft) on level 255 too:
  white strokes longer than a glyph and thin along their length are kept as such lines (:func:`saturated_lines`).
  JPEG blurs the exact levels, leaving the top-hats;
* bright runs of one exact gray level, seven pixels or longer, across or down (box outlines, caliper arms, rulers
  drawn over bright tissue, where the top-hat contrast is too low): speckle never repeats one level that long, and
  saturated tissue (255) is left alone.

In-field marks (and colour flow, unless kept) are filled with OpenCV's Telea inpainting (or a local mean); outside the
field of view the image is set to black.
"""

from __future__ import annotations

import inspect
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
from monai.config import KeysCollection
from monai.transforms import MapTransform, Transform
from monai.utils import TransformBackends, convert_to_dst_type

from monai_ext.transforms.black_level import detection_gray
from monai_ext.transforms.fov import (
    FieldOfView,
    channel_last,
    detect_screen_fov,
    display_scale,
    mask_like,
    to_gray_uint8,
    to_hwc_uint8,
)
from monai_ext.transforms.intensity import ToGrayscale
from monai_ext.transforms.tint import channel_spread, display_tint, map_deviation

#: Inpainting radius in pixels (OpenCV's Telea method).
INPAINT_RADIUS = 3
#: What :func:`deannotate` does with colour flow: fill it from the B-mode around it, or keep it as its luma.
DOPPLER_MODES = ("inpaint", "keep")
#: Colour flow fills an area: a colour region is flow only if a disk of this radius (pixels: the region is some
#: nine pixels across there) fits in it somewhere (see :func:`colour_flow`). Coloured strokes up to four pixels wide
#: stay below
#: it where they cross (4.2 at most) and where they join in glyphs (4.0 for OpenCV text of thickness 2 up to scale
#: 1.0); a vessel's lumen in a colour box is wider. Narrower flow (small vessels) counts as marks: it is filled all
#: the same, only not kept by ``doppler="keep"`` nor counted as flow.
FLOW_MIN_RADIUS = 4.5
#: How :func:`deannotate` fills: OpenCV's Telea inpainting, or the mean of the known pixels around (see
#: :func:`fill_with_local_mean`).
FILL_METHODS = ("telea", "mean")
#: Widest white or gray stroke (pixels) :func:`drawn_level_strokes` finds: OpenCV text of thickness 2 or 3 up to scale
#: 0.6 and circles of thickness 2 are at most three wide (a 4x4 opening leaves 3% of such text); a flat four-pixel
#: band is taken for tissue, a specular interface (as by :func:`flat_bright_runs`).
STROKE_WIDTH = 3
#: Burned-in annotations are drawn in a few exact gray levels, tissue spreads over all: a level is an annotation's
#: when at least this many bright, high-contrast pixels have it (a short word of 1 px text has a hundred; bright
#: tissue grains of a clean 256 px frame have at most nine of any one level) ...
MIN_LEVEL_PIXELS = 12
#: ... and this many times the mean count of the levels around it (tissue's counts change smoothly with the level)
LEVEL_EXCESS = 4
#: ... the levels this far on each side (the blended edges of glyphs spread over many levels below the glyph's).
LEVEL_SPREAD = 3
#: Steps (pixels) strokes grow through pixels of their level and blended glyph edges: the edges of 1 px text, three
#: quarters of its pixels, chain several pixels away from the nearest exact-level pixel (gray-200 text: 85% found
#: with 6 steps, 74% with 3).
LEVEL_GROWTH = 6
#: Top-hat contrast above which a pixel next to a stroke is filled too: glyph edges covered less than half still
#: leave a legible ghost, while the tissue beside crisp marks (calipers) mostly stays below it.
EDGE_CONTRAST = 10
#: Top-hat contrast a pixel of an annotation level, or a glyph edge blended with the tissue, needs to be a stroke's:
#: it stands out from the tissue around (a level found, its pixels need not reach ``min_contrast``).
STAND_OUT_CONTRAST = 20
#: Length (pixels, along its main axis) above which a white stroke found by its level may be an echo line: a capital
#: of OpenCV text at scale 1.0 is 22 px tall, screen text smaller; a saturated (255) echo line (bone cortex, pleura,
#: A-line, needle shaft) runs longer.
ECHO_LINE_LENGTH = 24
#: Gap (pixels) across which pieces of one echo line are joined: speckle breaks a clipped line's 255 core into pieces
#: 10-20 px long up to about ten pixels apart (6 px left a third of the pieces of curved 1 px lines found); the
#: letters, words and lines of text this joins too are told apart by their height.
ECHO_LINE_GAP = 10
#: Widest (pixels, across its main axis, at three quarters of the positions along it) an echo line found by its level
#: is: three pixels and the blurred edges grown on either side; the stems of the capitals a word is made of span the
#: text's height, at least 7 px at screen sizes.
ECHO_LINE_WIDTH = 6
#: Positions along a stroke (pixels) its width across is measured over: two, so an oblique line's staircase counts
#: once per position.
ECHO_LINE_BIN = 2
#: Percentile of those widths held to ``ECHO_LINE_WIDTH``: a line's ends, and bright grains touching it, may be wider.
ECHO_LINE_WIDTH_PERCENTILE = 75
#: Least ratio of an echo line's length to its overall extent across (its width and its sag): a slightly curved line
#: 30 px long, 3 px wide, sagging 3 px is 4; half a body-marker circle (JPEG breaks the outline into arcs) is 2.
ECHO_LINE_ELONGATION = 3.0



@dataclass
class Deannotation:
    """Result of :func:`deannotate`.

    Attributes:
        image: (H, W) uint8 gray, annotations removed, black outside the field of view.
        annotations: (H, W) bool, the pixels found to be annotations (outside and inside the field of view), colour
            flow not included.
        fov: the detected field of view.
        flow: (H, W) bool, colour-flow pixels inside the field of view.
    """

    image: np.ndarray
    annotations: np.ndarray
    fov: FieldOfView
    flow: np.ndarray


def colour_mask(rgb: np.ndarray, chroma: int = 40) -> np.ndarray:
    """Pixels that are colour, not B-mode: (H, W, C) uint8 -> (H, W) bool (gray input: all False).

    On a gray display, pixels whose channels differ by more than ``chroma`` levels; on a tinted one (B-mode shown
    through a colour map, :func:`~monai_ext.transforms.tint.display_tint`), pixels more than ``chroma`` levels
    from the map's colour at their luma.
    """
    if rgb.shape[-1] < 3:
        return np.zeros(rgb.shape[:2], bool)
    rgb = np.ascontiguousarray(rgb[..., :3])
    tint = display_tint(rgb, chroma)
    if tint is None:
        return channel_spread(rgb) > chroma
    return map_deviation(rgb, cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), tint) > chroma


def thin_bright_strokes(gray: np.ndarray, min_level: int = 180, min_contrast: int = 60) -> np.ndarray:
    """Bright structures at most 2 px thin: (H, W) uint8 -> (H, W) bool (white top-hat under a 3x3 opening)."""
    tophat = cv2.morphologyEx(gray, cv2.MORPH_TOPHAT, np.ones((3, 3), np.uint8))
    return (gray >= min_level) & (tophat >= min_contrast)


def stroke_opening(gray: np.ndarray) -> np.ndarray:
    """Grayscale opening of (H, W) uint8 ``gray`` with a ``STROKE_WIDTH + 1`` square: (H, W) uint8.

    The erosion's anchor is mirrored in the dilation (OpenCV does not reflect an even kernel), so this is a true
    opening: never above ``gray``, and a stroke up to ``STROKE_WIDTH`` pixels wide is gone from it.
    """
    side = STROKE_WIDTH + 1
    kernel = np.ones((side, side), np.uint8)
    anchor = (side - 1) // 2
    eroded = cv2.erode(gray, kernel, anchor=(anchor, anchor))
    return cv2.dilate(eroded, kernel, anchor=(side - 1 - anchor,) * 2)


def annotation_levels(levels: np.ndarray) -> np.ndarray:
    """The exact gray levels over-represented among ``levels``, the (N,) uint8 levels of bright, high-contrast
    pixels: (256,) bool lookup table (True: an annotation level).

    A level counts when it holds at least ``MIN_LEVEL_PIXELS`` of them and ``LEVEL_EXCESS`` times the mean count of
    the ``LEVEL_SPREAD`` levels on each side (those within 0-255; the mean is taken as at least one).
    """
    counts = np.bincount(levels, minlength=256).astype(np.float32)
    kernel = np.ones(2 * LEVEL_SPREAD + 1, np.float32)
    kernel[LEVEL_SPREAD] = 0
    neighbours = np.convolve(np.ones(256, np.float32), kernel, mode="same")  # fewer at either end of the range
    around = np.convolve(counts, kernel, mode="same") / neighbours
    return (counts >= MIN_LEVEL_PIXELS) & (counts >= LEVEL_EXCESS * np.maximum(around, 1.0))


def drawn_level_strokes(gray: np.ndarray, zone: np.ndarray, min_level: int = 180,
                        min_contrast: int = 60) -> tuple[np.ndarray, np.ndarray]:
    """Bright strokes up to ``STROKE_WIDTH`` pixels wide drawn in a few exact gray levels (white or gray text,
    body-marker and box outlines, bold or not), and the pixels around them to fill as well.

    Seeds are the ``zone`` pixels of at least ``min_level`` whose top-hat under :func:`stroke_opening` reaches
    ``min_contrast``, at a level :func:`annotation_levels` finds over-represented among them. Every pixel of those
    levels standing out from the tissue (top-hat ``STAND_OUT_CONTRAST``) is a stroke's; strokes grow ``LEVEL_GROWTH``
    steps (8-connected) through pixels of their levels and through glyph edges blended with the tissue (at least
    half-way from the tissue to the lowest such level). Tissue is left alone: its bright grains spread over many
    levels, and a band wider than a stroke (a specular interface, a bone surface) survives the opening.

    Args:
        gray: (H, W) uint8.
        zone: (H, W) bool, where to look (the field of view).
        min_level, min_contrast: level and top-hat contrast of the seeds.

    Returns:
        (H, W) bool strokes (annotations), and (H, W) bool the zone's pixels next to them with a top-hat of
        ``EDGE_CONTRAST`` (glyph edges covered less than half, which leave a legible ghost: filled, not counted as
        annotations).
    """
    opened = stroke_opening(gray)
    tophat = gray - opened  # the opening is never above gray: no wrap-around
    seeds = zone & (gray >= min_level) & (tophat >= min_contrast)
    found = np.zeros(gray.shape, bool)
    lookup = annotation_levels(gray[seeds]) if seeds.any() else np.zeros(256, bool)
    lookup &= drawn_share(gray, zone, seeds) >= MIN_DRAWN_SHARE
    same = zone & lookup[gray] & (tophat >= STAND_OUT_CONTRAST)
    if not same.any():
        return found, found.copy()
    # inside the strokes' bounding box grown by the steps they may take: a few words cost their size, not the frame's
    left, top, width, height = cv2.boundingRect(same.astype(np.uint8))
    reach = LEVEL_GROWTH + 1
    box = (slice(max(top - reach, 0), top + height + reach), slice(max(left - reach, 0), left + width + reach))
    level = int(np.flatnonzero(lookup)[0])
    # a glyph's edge pixel at least half covered is at least half-way from the tissue to the glyph's level
    blended = 2 * gray[box].astype(np.int16) >= opened[box].astype(np.int16) + level
    standing_out = zone[box] & (tophat[box] >= STAND_OUT_CONTRAST)
    path = zone[box] & lookup[gray[box]] | standing_out & blended  # a stroke's level may match the tissue there
    strokes = _grow_within(same[box], path, LEVEL_GROWTH)
    strokes &= ~saturated_lines(strokes, same[box] & (gray[box] == 255))
    found[box] = strokes
    halo = np.zeros(gray.shape, bool)
    halo[box] = _grow_within(strokes, zone[box] & (tophat[box] >= EDGE_CONTRAST), 1) & ~strokes
    return found, halo


#: A drawn level's pixels in the field of view are mostly the marks' own, which stand out (the seeds): at least this
#: share of them. Two kinds of tissue are over-represented among the seeds at one level too, but most of that
#: level's pixels are plain tissue: speckle clipped at 255 (gain raised: 1-35% of the pixels at 255 are seeds on
#: simulated frames at 1.5 and 2 times their gain), and a level that a contrast stretch of 8-bit data leaves
#: populated among empty ones (a comb histogram: 11-34%). Without it 2-76% of such tissue was filled as marks. White
#: and light text keep 0.6-1.0; gray-200 text over tissue of its own level falls below it in part (0.07-0.88).
MIN_DRAWN_SHARE = 0.4


def drawn_share(gray: np.ndarray, zone: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    """(256,) float: per gray level, the share of (H, W) bool ``zone``'s pixels of (H, W) uint8 ``gray`` at that level
    that are (H, W) bool ``seeds`` (0 where the zone has none)."""
    in_zone = np.bincount(gray[zone], minlength=256)
    return np.bincount(gray[seeds], minlength=256) / np.maximum(in_zone, 1)


def saturated_lines(strokes: np.ndarray, white: np.ndarray) -> np.ndarray:
    """The strokes that are saturated echo lines, not drawn marks: (H, W) bool, of (H, W) bool ``strokes`` some of
    whose (H, W) bool ``white`` pixels (those of an annotation level at 255) they grew from.

    Clipping at 255 makes 255 an over-represented level, so a bright echo line up to three pixels wide (bone cortex,
    pleural line, A-line, needle shaft) is found like white text. Strokes are joined across ``ECHO_LINE_GAP`` (speckle
    breaks such a line into pieces); a group is taken for a line when it grew from ``white`` pixels, is longer than
    ``ECHO_LINE_LENGTH`` and ``ECHO_LINE_ELONGATION`` times its extent across its main axis, and at most
    ``ECHO_LINE_WIDTH`` wide across it at most positions (straight or slightly curved): glyphs are shorter, words
    and markers (arcs of them too) wider. Gray strokes (below 255: never clipped tissue) are all kept, and a white
    line drawn 1-2 px wide is still found by :func:`thin_bright_strokes`.
    """
    join = np.ones((ECHO_LINE_GAP + 1,) * 2, np.uint8)
    count, groups = cv2.connectedComponents(cv2.dilate(strokes.astype(np.uint8), join), connectivity=8)
    groups = np.where(strokes, groups, 0)
    lines = np.zeros(count, bool)
    for label in np.unique(groups[white & strokes]):
        lines[label] = label > 0 and _is_thin_and_long(np.argwhere(groups == label).astype(np.float32))
    return lines[groups]


def _is_thin_and_long(points: np.ndarray) -> bool:
    """Whether (N, 2) float32 pixel coordinates are longer than ``ECHO_LINE_LENGTH`` along their main axis and
    ``ECHO_LINE_ELONGATION`` times their extent across it, and at most ``ECHO_LINE_WIDTH`` wide across it at
    ``ECHO_LINE_WIDTH_PERCENTILE`` percent of the ``ECHO_LINE_BIN`` px bins along it (see :func:`saturated_lines`).

    Args:
        points: (N, 2) float32 (row, column) of one group of strokes.

    Returns:
        True for a long, thin (straight or slightly curved) line.
    """
    centred = points - points.mean(0)
    _, axes = np.linalg.eigh(centred.T @ centred)  # ascending: the last is the main axis
    along, across = centred @ axes[:, 1], centred @ axes[:, 0]
    length = along.max() - along.min() + 1
    if length <= ECHO_LINE_LENGTH or length < ECHO_LINE_ELONGATION * (across.max() - across.min() + 1):
        return False
    bins = np.floor((along - along.min()) / ECHO_LINE_BIN).astype(np.int64)
    highest = np.full(bins.max() + 1, -np.inf)
    lowest = np.full(bins.max() + 1, np.inf)
    np.maximum.at(highest, bins, across)
    np.minimum.at(lowest, bins, across)
    occupied = np.isfinite(highest)
    widths = highest[occupied] - lowest[occupied] + 1
    return bool(np.percentile(widths, ECHO_LINE_WIDTH_PERCENTILE) <= ECHO_LINE_WIDTH)


def _grow_within(mask: np.ndarray, within: np.ndarray, steps: int) -> np.ndarray:
    """(H, W) bool ``mask`` grown ``steps`` times by its 8 neighbours, each time kept to (H, W) bool ``within``
    (``mask`` itself always kept): (H, W) bool."""
    step = np.ones((3, 3), np.uint8)
    grown = mask.astype(np.uint8)
    allowed = (within | mask).astype(np.uint8)
    for _ in range(steps):
        grown = cv2.dilate(grown, step) & allowed
    return grown > 0


def colour_flow(colour: np.ndarray, min_radius: float = FLOW_MIN_RADIUS) -> np.ndarray:
    """The colour-flow part of a colour mask: (H, W) bool -> (H, W) bool.

    What survives a 3x3 opening (calipers, markers and text one or two pixels thin do not), in connected parts that
    hold a disk of ``min_radius`` (:func:`wide_components`): flow fills an area, while bolder coloured marks (text,
    calipers, measurement tables drawn three or four pixels thick) survive the opening but stay strokes. Colour is
    not asked: aliased or fast flow shows yellow and cyan as marks do.
    """
    if not colour.any():
        return colour
    solid = cv2.morphologyEx(colour.astype(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    return wide_components(solid, min_radius)


def wide_components(mask: np.ndarray, min_radius: float) -> np.ndarray:
    """The 8-connected components of (H, W) ``mask`` (bool or 0/1) that hold a disk of ``min_radius``: a pixel with
    no background pixel (nor the image's outside) closer than that, where the Euclidean distance transform reaches
    ``min_radius``: (H, W) bool.

    That radius is half a component's widest stroke: about w/2 along a stroke w pixels wide, up to w/2 * sqrt(2)
    where strokes cross and a little more at acute joins, but the radius of the largest disk inside a filled area.
    Found by an erosion with the disk (:func:`disk_kernel`: the same pixels as OpenCV's exact distance transform, a
    few times faster), then the components holding one.
    """
    wide = np.zeros(mask.shape, bool)
    # inside the mask's bounding box only (background all around it): a colour box costs its size, not the frame's
    left, top, width, height = cv2.boundingRect(mask.astype(np.uint8))
    if width == 0:
        return wide
    solid = np.ascontiguousarray(mask[top : top + height, left : left + width], dtype=np.uint8)
    core = cv2.erode(solid, disk_kernel(min_radius), borderType=cv2.BORDER_CONSTANT, borderValue=0) > 0
    if not core.any():  # B-mode with coloured marks only: no labelling
        return wide
    _, labels, stats, _ = cv2.connectedComponentsWithStats(solid, connectivity=8)
    inside = wide[top : top + height, left : left + width]  # a view: written through
    for label in np.unique(labels[core]):
        x, y, box_width, box_height = stats[label, :4]
        box = (slice(y, y + box_height), slice(x, x + box_width))
        inside[box] |= labels[box] == label
    return wide


def disk_kernel(radius: float) -> np.ndarray:
    """(2k + 1, 2k + 1) uint8 structuring element of the whole offsets closer than ``radius`` to its centre: an
    erosion with it keeps the pixels whose distance transform is at least ``radius``."""
    half = int(np.ceil(radius)) - 1  # the farthest whole offset closer than radius
    offsets = np.arange(-half, half + 1)
    return (offsets[:, None] ** 2 + offsets[None, :] ** 2 < radius**2).astype(np.uint8)


def flat_bright_runs(gray: np.ndarray, min_level: int = 180, length: int = 7) -> np.ndarray:
    """Pixels in a horizontal or vertical run of at least ``length`` pixels of one exact gray level in
    [min_level, 254], at most three pixels thick: (H, W) uint8 -> (H, W) bool.

    A run of ``length`` equal pixels is ``length - 1`` equal neighbour pairs in a row: an opening of the "equals the
    next pixel" map with a ``length - 1`` line keeps exactly those, and the run's last pixel is added back. A run
    pixel is thin when the pixels two away across the run both differ from it (a flat bright band is not a stroke).
    """
    bright = (gray >= min_level) & (gray < 255)
    runs = np.zeros(gray.shape, bool)
    if not bright.any():
        return runs
    for axis, kernel in ((1, np.ones((1, length - 1), np.uint8)), (0, np.ones((length - 1, 1), np.uint8))):
        equal = np.zeros(gray.shape, np.uint8)
        ahead = [slice(None), slice(None)]
        behind = [slice(None), slice(None)]
        ahead[axis], behind[axis] = slice(None, -1), slice(1, None)
        equal[tuple(ahead)] = gray[tuple(ahead)] == gray[tuple(behind)]
        pairs = cv2.morphologyEx(equal, cv2.MORPH_OPEN, kernel, borderType=cv2.BORDER_CONSTANT, borderValue=0) > 0
        along = pairs.copy()
        along[tuple(behind)] |= pairs[tuple(ahead)]
        runs |= along & _thin_across(gray, 1 - axis)
    return runs & bright


def _thin_across(gray: np.ndarray, axis: int) -> np.ndarray:
    """(H, W) bool: the pixels two before and two after along ``axis`` both differ from the pixel (image borders
    count as different)."""
    padded = np.pad(gray.astype(np.int16), [(2, 2) if a == axis else (0, 0) for a in (0, 1)], constant_values=-1)
    before = np.take(padded, np.arange(0, gray.shape[axis]), axis=axis)
    after = np.take(padded, np.arange(4, gray.shape[axis] + 4), axis=axis)
    return (before != gray) & (after != gray)


def fill_with_local_mean(gray: np.ndarray, mask: np.ndarray, radius: int = 2) -> np.ndarray:
    """Fill the ``mask`` pixels of (H, W) uint8 ``gray`` with the mean of the known pixels in a square window around
    each, the window tripled until it reaches known pixels: (H, W) uint8.

    Hand-written because ingestion needs a fill whose cost does not grow with the masked area: OpenCV's Telea
    inpainting marches pixel by pixel (about 20 ms for 1000 scattered pixels on one core), while this is two box
    filters per window size over the masked area's bounding box only. Known pixels are never changed, and only
    known pixels enter the means (the result does not depend on the masked values).
    """
    out = gray.copy()
    todo = mask.copy()
    size = 2 * radius + 1
    while todo.any() and size <= 3 * max(gray.shape):
        rows, cols = np.flatnonzero(todo.any(1)), np.flatnonzero(todo.any(0))
        top, bottom = max(rows[0] - size, 0), min(rows[-1] + size + 1, gray.shape[0])
        left, right = max(cols[0] - size, 0), min(cols[-1] + size + 1, gray.shape[1])
        box = (slice(top, bottom), slice(left, right))
        known = (~mask[box]).astype(np.float32)
        total = cv2.boxFilter(gray[box].astype(np.float32) * known, -1, (size, size), normalize=False,
                              borderType=cv2.BORDER_CONSTANT)
        weight = cv2.boxFilter(known, -1, (size, size), normalize=False, borderType=cv2.BORDER_CONSTANT)
        ready = todo[box] & (weight > 0.5)
        out[box][ready] = np.clip(np.rint(total[ready] / weight[ready]), 0, 255).astype(np.uint8)
        todo[box] &= ~ready
        size *= 3
    return out


def check_chroma(chroma: int) -> None:
    """``chroma`` is a channel spread of 8-bit levels: in [0, 255] (255: nothing counts as colour)."""
    if not 0 <= chroma <= 255:
        raise ValueError(f"chroma must be in [0, 255], got {chroma!r}")


def check_options(margin: int = 2, chroma: int = 40, min_level: int = 180, min_contrast: int = 60,
                  dilate_marks: int = 0, doppler: str = "inpaint", fill: str = "telea") -> None:
    """Raise ``ValueError`` quoting the first bad option of :func:`deannotate`."""
    for name, value in (("margin", margin), ("dilate_marks", dilate_marks)):
        if value < 0:
            raise ValueError(f"{name} must be >= 0, got {value!r}")
    check_chroma(chroma)
    for name, value in (("min_level", min_level), ("min_contrast", min_contrast)):
        if not 0 <= value <= 255:
            raise ValueError(f"{name} must be in [0, 255], got {value!r}")
    if doppler not in DOPPLER_MODES:
        raise ValueError(f"doppler must be one of {DOPPLER_MODES}, got {doppler!r}")
    if fill not in FILL_METHODS:
        raise ValueError(f"fill must be one of {FILL_METHODS}, got {fill!r}")


def _checked_options(kwargs: dict[str, Any]) -> dict[str, Any]:
    """``kwargs`` of :func:`deannotate` checked when a transform is built, so a bad bundle config fails there and
    not in a loader worker: an unknown name raises ``TypeError`` (as the call would), a bad value ``ValueError``."""
    bound = inspect.signature(deannotate).bind(None, **kwargs)
    bound.apply_defaults()
    check_options(**{name: value for name, value in bound.arguments.items() if name not in ("image", "fov")})
    return dict(kwargs)


def deannotate(image: Any, fov: FieldOfView | None = None, margin: int = 2, chroma: int = 40, min_level: int = 180,
               min_contrast: int = 60, dilate_marks: int = 0, doppler: str = "inpaint", fill: str = "telea") -> Deannotation:
    """Remove burned-in annotations from a screen capture.

    Args:
        image: (H, W), (H, W, 3) or (C, H, W) screen capture: 8-bit, 16-bit (uint16, or int32 as PIL holds it),
            or float in [0, 1] or [0, 255]; the result is in the input's range.
        fov: a field of view found already (for example from DICOM regions); detected when None, in every view of
            a dual- or quad-view screen (:func:`detect_screen_fov`), a raised black brought to 0 first
            (:func:`~monai_ext.transforms.black_level.detection_gray`).
        margin: the field of view is grown by this many pixels before blanking, so tissue at its edge is never lost.
        chroma: channel spread above which a pixel is colour (see :func:`colour_mask`).
        min_level, min_contrast: thresholds of :func:`thin_bright_strokes` and of the seeds of
            :func:`drawn_level_strokes` (``min_level`` also of :func:`flat_bright_runs`).
        dilate_marks: grow in-field marks by this many pixels before inpainting (anti-aliased or JPEG screens).
        doppler: "inpaint" fills colour flow from the B-mode around it; "keep" leaves it as its luma.
        fill: "telea" (OpenCV's inpainting, smooth) or "mean" (:func:`fill_with_local_mean`, a cost that does not
            grow with the filled area: ingestion's choice).

    Returns:
        :class:`Deannotation`.
    """
    check_options(margin, chroma, min_level, min_contrast, dilate_marks, doppler, fill)
    rgb = to_hwc_uint8(image)
    gray = to_gray_uint8(rgb)
    # every view of a dual- or quad-view screen; above a raised black (a JPEG black decoded as 1, a grabber's 16),
    # which at threshold 0 made the whole screen the field of view and kept its text and bars
    fov = fov or detect_screen_fov(*detection_gray(gray))
    zone = cv2.dilate(fov.mask.astype(np.uint8), np.ones((2 * margin + 1,) * 2, np.uint8)) > 0
    colour = colour_mask(rgb, chroma)
    outside = ~zone & ((gray > 0) | colour)
    flow = zone & colour_flow(colour)
    # colour pixels count as white (never lowering the opening of the gray ones beside) and are not looked at: what
    # is found does not depend on the colours (colour flow's palette puts its luma on a few exact levels too)
    bmode = np.where(colour, np.uint8(255), gray) if colour.any() else gray
    drawn, edges = drawn_level_strokes(bmode, zone & ~colour, min_level, min_contrast)
    strokes = thin_bright_strokes(gray, min_level, min_contrast) | flat_bright_runs(gray, min_level) | drawn
    marks = zone & ~flow & (colour | strokes)
    target = (marks | flow if doppler == "inpaint" else marks) | (edges & ~flow)
    if dilate_marks:
        target = zone & (cv2.dilate(target.astype(np.uint8), np.ones((2 * dilate_marks + 1,) * 2, np.uint8)) > 0)
    if not target.any():
        cleaned = gray.copy()
    elif fill == "mean":
        cleaned = fill_with_local_mean(gray, target)
    else:
        cleaned = cv2.inpaint(gray, target.astype(np.uint8), INPAINT_RADIUS, cv2.INPAINT_TELEA)
    cleaned[~zone] = 0
    return Deannotation(cleaned, outside | marks, fov, flow)


def _gray_out(cleaned: np.ndarray, like: Any, hwc: np.ndarray) -> Any:
    """The 8-bit result (H, W) of a repair of ``like`` (whose (H, W, C) view is ``hwc``) -> (1, H, W) in ``like``'s
    type, device, dtype and value range, so the transforms after this one see the same range with or without it.

    Only the pixels the repair changed take its 8-bit values (scaled back: uint16 and int32 to 0-65535, floats to
    [0, 1] or [0, 255]); every other pixel keeps the input's own gray at full precision (16-bit and float frames
    were quantised to 256 levels everywhere).
    """
    full = ToGrayscale()(np.moveaxis(hwc, -1, 0))[0]  # (H, W) luma in the input's dtype (integers rounded)
    repaired = cleaned.astype(np.float32) / display_scale(hwc)
    is_float = np.issubdtype(hwc.dtype, np.floating)
    if not is_float:
        repaired = np.rint(repaired)
    # a pixel the repair left as it was keeps its own value; one it set to 0 (blanked, or masked colour) stays 0
    # even where the input's 8-bit gray was 0 already
    kept = (cleaned == to_gray_uint8(hwc)) & (cleaned > 0)
    kept &= np.isfinite(full) if is_float else True  # NaN and inf pixels stay 0, as to_hwc_uint8 made them
    out = np.where(kept, full.astype(np.float32), repaired)[None]
    return convert_to_dst_type(out, like, dtype=like.dtype)[0]


class Deannotate(Transform):
    """Screen capture (C, H, W) -> de-annotated gray (1, H, W), same array type, device and value range.

    Args:
        **kwargs: options of :func:`deannotate` (``margin``, ``chroma``, ``min_level``, ``min_contrast``,
            ``dilate_marks``, ``doppler``, ``fill``), checked here.
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = _checked_options(kwargs)

    def __call__(self, img: Any) -> Any:
        hwc = channel_last(img)
        return _gray_out(deannotate(hwc, **self.kwargs).image, img, hwc)


class Deannotated(MapTransform):
    """Dictionary version of :class:`Deannotate`; optionally stores the annotation and field-of-view masks
    (1, H, W) bool under ``annotation_key`` / ``fov_key``, in the image's array type (and device and metadata, as
    :class:`~monai_ext.transforms.fov.FieldOfViewMaskd` stores its mask)."""

    backend = Deannotate.backend

    def __init__(self, keys: KeysCollection, annotation_key: str | None = None, fov_key: str | None = None,
                 allow_missing_keys: bool = False, **kwargs: Any) -> None:
        super().__init__(keys, allow_missing_keys)
        self.annotation_key = annotation_key
        self.fov_key = fov_key
        self.kwargs = _checked_options(kwargs)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            image = d[key]
            hwc = channel_last(image)
            result = deannotate(hwc, **self.kwargs)
            d[key] = _gray_out(result.image, image, hwc)
            # the masks in the image's type: they were numpy beside a tensor image (a tensor pipeline met a numpy
            # mask, off the image's device and without its metadata)
            if self.annotation_key:
                d[self.annotation_key] = mask_like(result.annotations, image)
            if self.fov_key:
                d[self.fov_key] = mask_like(result.fov.mask, image)
        return d


class DopplerToGray(Transform):
    """Colour-Doppler frame (3, H, W) -> gray (1, H, W) with the colour pixels handled.

    Colour flow replaces the B-mode pixels under it, so the gray value there is unknown. ``mode="inpaint"``
    estimates it from the surrounding B-mode (Telea inpainting); ``mode="mask"`` sets those pixels to 0 so a loss
    or a mask can ignore them. Gray pixels are returned unchanged. Same array type, device and value range.

    Args:
        mode: "inpaint" or "mask".
        chroma: channel spread above which a pixel is colour.
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(self, mode: str = "inpaint", chroma: int = 40) -> None:
        if mode not in ("inpaint", "mask"):
            raise ValueError(f"mode must be 'inpaint' or 'mask', got {mode!r}")
        check_chroma(chroma)
        self.mode = mode
        self.chroma = chroma

    def __call__(self, img: Any) -> Any:
        hwc = channel_last(img)
        rgb = to_hwc_uint8(hwc)
        gray = to_gray_uint8(rgb)
        colour = colour_mask(rgb, self.chroma)
        if self.mode == "mask":
            gray = np.where(colour, 0, gray).astype(np.uint8)
        elif colour.any():
            gray = cv2.inpaint(gray, colour.astype(np.uint8), INPAINT_RADIUS, cv2.INPAINT_TELEA)
        return _gray_out(gray, img, hwc)


class DopplerToGrayd(MapTransform):
    """Dictionary version of :class:`DopplerToGray`; optionally stores the colour mask (1, H, W) bool under
    ``colour_key``, in the image's array type (and device and metadata)."""

    backend = DopplerToGray.backend

    def __init__(self, keys: KeysCollection, mode: str = "inpaint", chroma: int = 40, colour_key: str | None = None,
                 allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.converter = DopplerToGray(mode, chroma)
        self.colour_key = colour_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            if self.colour_key:
                colour = colour_mask(to_hwc_uint8(channel_last(d[key])), self.converter.chroma)
                d[self.colour_key] = mask_like(colour, d[key])  # in the image's type, as Deannotated's masks
            d[key] = self.converter(d[key])
        return d
