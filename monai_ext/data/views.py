"""From one decoded frame to the square training views of a pretraining corpus.

A frame (a screen capture, a DICOM frame, a volume slice) holds one view or several: DICOM ultrasound regions name
them; otherwise side-by-side views are detected on the screen. Each view is cropped to its field of view,
de-annotated on the colour pixels (colour is what tells Doppler flow and coloured calipers from tissue; in gray it
is lost), turned gray, checked for signal, and fitted into a square:

    colour frame -> black level -> views -> field of view -> crop -> de-annotation (colour) -> gray -> no-signal
    check -> square

A screen captured through a frame grabber often has a raised black (limited-range video: black 16, white 235; or a
black a few levels above 0): it is estimated on the frame and brought to 0 first
(:func:`~monai_ext.transforms.black_level.restore_black`), so that detection finds the image, not the whole screen,
and the cached view has black 0 like every other source.

Detection runs on copies halved until small (the field of view is a large, smooth shape); de-annotation runs at the
frame's own resolution inside the crop only, where the one- and two-pixel strokes it looks for are still thin.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from monai_ext.transforms.black_level import black_lut, restore_black
from monai_ext.transforms.deannotate import colour_flow, colour_mask, deannotate, fill_with_local_mean
from monai_ext.transforms.fov import (
    GAP_TISSUE_LEVEL,
    MAX_GAP_SIGNAL,
    MAX_STACKED_VIEW_ASPECT,
    MIN_GAP_WIDTH,
    MIN_VIEW_AREA,
    FieldOfView,
    detect_fov,
    detect_view_boxes,
    empty_column_runs,
    gap_columns,
    solid_components,
    view_gaps,
)

#: What happens to frames with colour-Doppler flow (see :class:`ViewOptions`).
DOPPLER_POLICIES = ("inpaint", "drop", "keep")


@dataclass(frozen=True)
class ViewOptions:
    """How a frame becomes cached views (part of the corpus settings).

    Args:
        size: side of the square views.
        crop_fov: crop each view to its DICOM region or detected field of view.
        fov_threshold: gray level at or below which a pixel is background for field-of-view detection (above 0 so
            that JPEG noise around the image does not count as image).
        deannotate: remove burned-in text, calipers, markers and overlays (on the colour frame) before gray.
        doppler: colour flow inside the image: "inpaint" fills it from the B-mode around it, and leaves frames
            whose colour covers more than ``MAX_INPAINT_FLOW`` of the field of view (an elastography or
            tissue-Doppler overlay, not flow) out of training (reason ``colour_overlay``); "drop" also leaves
            frames whose flow covers more than ``doppler_threshold`` of the field of view out of training (reason
            ``doppler_flow``); "keep" leaves the flow in as its gray luma. With or without ``deannotate``.
        doppler_threshold: flow fraction of the field of view above which "drop" leaves a frame out.
        split_views: detect side-by-side views on screens without DICOM regions and give one frame per view.
        min_signal_std: frames whose field of view varies less than this (gray levels, standard deviation), or
            that hold nothing above ``fov_threshold``, have no signal and are left out (reason ``no_signal``).
    """

    size: int = 256
    crop_fov: bool = True
    fov_threshold: int = 10
    deannotate: bool = True
    doppler: str = "inpaint"
    doppler_threshold: float = 0.02
    split_views: bool = True
    min_signal_std: float = 2.0

    def __post_init__(self) -> None:
        if self.size < 16:
            raise ValueError(f"size must be at least 16, got {self.size!r}")
        if self.doppler not in DOPPLER_POLICIES:
            raise ValueError(f"doppler must be one of {', '.join(DOPPLER_POLICIES)}, got {self.doppler!r}")
        if not 0.0 <= self.doppler_threshold <= 1.0:
            raise ValueError(f"doppler_threshold must be in [0, 1], got {self.doppler_threshold!r}")
        if not 0 <= self.fov_threshold < 255:
            raise ValueError(f"fov_threshold must be in [0, 255), got {self.fov_threshold!r}")
        if self.min_signal_std < 0:
            raise ValueError(f"min_signal_std must be >= 0, got {self.min_signal_std!r}")
        for name in ("crop_fov", "deannotate", "split_views"):
            if not isinstance(getattr(self, name), bool):
                # ValueError, not TypeError: a command-line value, reported to the user as one line
                raise ValueError(f"{name} must be true or false, got {getattr(self, name)!r}")  # noqa: TRY004


@dataclass
class PreparedView:
    """One view of a frame, ready for the cache.

    Attributes:
        pixels: (size, size) uint8 gray (black for a ``text_page``: the cache keeps no page of text).
        view: number of the view on its frame (0 for a single view).
        crop: (x0, y0, x1, y1) of the crop in the frame's pixels, exclusive ends.
        annotation_fraction: fraction of the field-of-view pixels found as annotation (and filled).
        flow_fraction: fraction of the field-of-view pixels found as colour-Doppler flow.
        drop: "" or why the view is left out of training (``no_signal``, ``extreme_aspect``, ``text_page``,
            ``doppler_flow``, ``colour_overlay``, ``spectral``: a spectral Doppler or M-mode strip and no image).
        black_level: the frame's raised black level brought to 0 before detection (0: black already 0).
        video_range: the frame was limited-range video (black 16, white 235) and was expanded to full range.
    """

    pixels: np.ndarray
    view: int
    crop: tuple[int, int, int, int]
    annotation_fraction: float = 0.0
    flow_fraction: float = 0.0
    drop: str = ""
    black_level: int = 0
    video_range: bool = False


# ------------------------------------------------------------------------------------------------- resizing helpers
def fit_square(gray: np.ndarray, size: int) -> np.ndarray:
    """Resize (H, W) uint8 keeping the aspect ratio, then pad to (size, size): centred across, padded below (the
    probe stays at the top)."""
    h, w = gray.shape
    scale = size / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(gray, (nw, nh), interpolation=interpolation)
    out = np.zeros((size, size), np.uint8)
    left = (size - nw) // 2
    out[:nh, left : left + nw] = resized
    return out


def shrink_large(pixels: np.ndarray, size: int) -> tuple[np.ndarray, float]:
    """Frames far larger than the cache resolution are reduced to ``max(1024, 4 * size)`` on their long side first:
    detection and de-annotation then cost the same on a 12000 x 12000 scan as on a screen capture.

    Returns:
        (pixels (h, w) or (h, w, 3), the scale applied).
    """
    limit = max(1024, 4 * size)
    h, w = pixels.shape[:2]
    if max(h, w) <= limit:
        return pixels, 1.0
    scale = limit / max(h, w)
    small = cv2.resize(pixels, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    return small, scale


def halve_until(gray: np.ndarray, side: int, least: int = 2) -> tuple[np.ndarray, int]:
    """Halve (H, W) uint8 with 2x2 means while its long side stays at least ``side`` and its short side at least
    ``least``: (reduced, total factor).

    Exact halvings take OpenCV's integer-factor INTER_AREA path, over ten times faster than an arbitrary scale (an
    odd last row or column is dropped, which detection does not notice).
    """
    if least < 1:
        raise ValueError(f"least must be at least 1, got {least!r}")
    factor = 1
    while max(gray.shape) >= 2 * side and min(gray.shape) >= 2 * least:
        h, w = gray.shape[0] // 2 * 2, gray.shape[1] // 2 * 2
        gray = cv2.resize(gray[:h, :w], (w // 2, h // 2), interpolation=cv2.INTER_AREA)
        factor *= 2
    return gray, factor


def to_gray(pixels: np.ndarray) -> np.ndarray:
    """(H, W) or (H, W, 3) RGB uint8 -> (H, W) uint8 BT.601 luma."""
    return pixels if pixels.ndim == 2 else cv2.cvtColor(pixels, cv2.COLOR_RGB2GRAY)


# --------------------------------------------------------------------------------------------------- field of view
@dataclass
class ReducedCopy:
    """A gray view halved for detection, with its detection threshold and solid regions (computed once, used by
    both side-by-side view detection and field-of-view detection)."""

    small: np.ndarray
    factor: int
    threshold: int
    solid: tuple[np.ndarray, np.ndarray]


#: Detection's copy is not halved below this many pixels on its short side: halved for its long side alone, a
#: 600 x 3000 duplex screen (at ``--size 700``) was 37 rows high, where its image and its spectral strip merged into
#: one region (cached as the view, or left out as a strip). Screens up to 5:2 reach the long side first and are reduced
#: as before.
MIN_DETECT_SHORT_SIDE = 64


def reduce_for_detection(gray: np.ndarray, threshold: int, detect_side: int = 160) -> ReducedCopy:
    """(H, W) uint8 -> :class:`ReducedCopy`, halved until its long side is below ``2 * detect_side`` or its short
    side would fall below ``MIN_DETECT_SHORT_SIDE``."""
    small, factor = halve_until(gray, detect_side, MIN_DETECT_SHORT_SIDE)
    # Each reduced pixel averages factor**2 pixels: noise around the image (JPEG ringing) averages out towards 0,
    # while low-gain speckle at a sector's dim edges averages to its (low but steady) mean. Half the threshold
    # still rejects the first and keeps the second.
    level = threshold // 2 if factor > 1 else threshold
    return ReducedCopy(small, factor, level, solid_components(small, level))


def locate_fov(gray: np.ndarray, threshold: int = 10, detect_side: int = 160,
               reduced: ReducedCopy | None = None) -> tuple[tuple[int, int, int, int], np.ndarray]:
    """Field of view of a gray view: (crop (x0, y0, x1, y1), mask over the crop (h, w) bool); the whole view with
    an all-True mask when none is found (see :func:`find_fov`, which also says what kind it is)."""
    crop, mask, _ = find_fov(gray, threshold, detect_side, reduced)
    return crop, mask


def find_fov(gray: np.ndarray, threshold: int = 10, detect_side: int = 160, reduced: ReducedCopy | None = None,
             full: np.ndarray | None = None) -> tuple[tuple[int, int, int, int], np.ndarray, str]:
    """:func:`locate_fov` and the kind of field of view found (:class:`FieldOfView`'s: "strip" for a spectral
    Doppler or M-mode strip with no tissue image beside it).

    Detection runs on a copy halved until its long side is below ``2 * detect_side`` (``reduced``, when made
    already). The reduced mask is scaled back up over the crop only, bilinearly, so its edges are smooth rather
    than blocky.

    Args:
        gray: (H, W) uint8 view.
        threshold: background gray level.
        detect_side: half the long side under which detection's copy is no longer halved.
        reduced: ``gray``'s reduced copy, when made already.
        full: (H', W') uint8, the same view at the resolution ``gray`` was shrunk from (:func:`shrink_large`),
            when it was: lines one pixel thick are looked for on it (see :func:`strip_lines_copy`).

    Returns:
        (crop (x0, y0, x1, y1), mask over the crop (h, w) bool, kind).
    """
    reduced = reduced or reduce_for_detection(gray, threshold, detect_side)
    small, factor = reduced.small, reduced.factor
    fov = detect_fov(small, reduced.threshold, solid=reduced.solid, full=strip_lines_copy(gray, factor, small, full))
    h, w = gray.shape
    if fov.kind == "none":
        return (0, 0, w, h), np.ones((h, w), bool), fov.kind
    top, left, bottom, right = fov.bbox
    mask = fov.mask[top:bottom, left:right]
    # the reduced copy dropped odd last rows/columns: a box reaching its edge reaches the full image's edge
    bottom = h if bottom == small.shape[0] else bottom * factor
    right = w if right == small.shape[1] else right * factor
    top, left = top * factor, left * factor
    if factor > 1:
        mask = cv2.resize(mask.astype(np.uint8) * 255, (right - left, bottom - top),
                          interpolation=cv2.INTER_LINEAR) >= 128
    return (left, top, right, bottom), mask, fov.kind


def strip_lines_copy(gray: np.ndarray, factor: int, small: np.ndarray,
                     full: np.ndarray | None = None) -> np.ndarray | None:
    """The copy of (H, W) uint8 ``gray`` on which the strip test looks for lines drawn one pixel thick (a spectral
    Doppler baseline, an M-mode time axis): an integer multiple of ``small``, ``gray`` reduced ``factor`` times,
    as :func:`~monai_ext.transforms.strips.is_strip` maps one onto the other; None when ``small`` is ``gray``.

    That is ``gray`` itself, unless it was shrunk from ``full`` (H', W') by a factor that need not be an integer
    (:func:`shrink_large`): such a shrink smooths a one-pixel line into two rows of mixed levels, the strip test
    missed the baseline, and a duplex screen wider than 1024 px had its spectral strip cached as the view and its
    B-mode image lost. ``full`` is then resampled (nearest neighbour, so a line keeps its level; enlarged, so no row
    is skipped) to the smallest integer multiple of ``small`` at least its size: a row drawn on it is one or two
    rows thick there, still a line to the test.
    """
    if full is None:
        return gray if factor > 1 else None
    height, width = small.shape[0] * factor, small.shape[1] * factor  # the rows and columns of gray small holds
    enlarge = max(-(-full.shape[0] // gray.shape[0]), -(-full.shape[1] // gray.shape[1]), 1)
    # the part of full that holds those rows and columns (the reduction dropped gray's odd last ones)
    held = full[: round(height * full.shape[0] / gray.shape[0]), : round(width * full.shape[1] / gray.shape[1])]
    return cv2.resize(held, (width * enlarge, height * enlarge), interpolation=cv2.INTER_NEAREST)


def crop_to_view(gray: np.ndarray, region_box: Sequence[int] | None, threshold: int = 10,
                 detect_side: int = 160) -> np.ndarray:
    """Crop (H, W) uint8 to the DICOM region if given, then to the detected field of view (unchanged if none is
    found); pixels outside the view inside the crop are set to black."""
    if region_box is not None:
        x0, y0, x1, y1 = (int(v) for v in region_box)
        gray = gray[max(y0, 0) : y1, max(x0, 0) : x1]
    (x0, y0, x1, y1), mask = locate_fov(gray, threshold, detect_side)
    return np.where(mask, gray[y0:y1, x0:x1], 0).astype(np.uint8)


def view_boxes(gray: np.ndarray, region_box: Sequence[int] | None,
               options: ViewOptions) -> tuple[list[tuple[int, int, int, int]], ReducedCopy | None]:
    """(x0, y0, x1, y1) of each view on a frame: the detected views of a screen (side by side, or a 2 x 2 quad
    grid: :func:`detect_view_boxes`), inside the DICOM region if given; and the frame's reduced copy when the single
    view is the whole frame (its field-of-view detection reuses it).

    A region is one view as declared unless the views found in it are parted by empty columns (a region spanning a
    whole two-view screen): taken as one view, it gave the largest field of view and dropped the others unsaid. A
    view the detection cuts into pieces without a gap between them (a spectral trace, thin in places) stays whole.

    Gaps between views are looked for on the frame itself (:func:`view_gaps`): halved, a gap of a few pixels is
    blended with the views around it and bridged by the detection's closing, so the views were taken for one.
    """
    h, w = gray.shape
    if region_box is not None:
        x0, y0, x1, y1 = (int(v) for v in region_box)
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
        if not (options.crop_fov and options.split_views) or x1 <= x0 or y1 <= y0:
            return [(x0, y0, x1, y1)], None
        inside = gray[y0:y1, x0:x1]
        boxes, reduced, gaps = _screen_views(inside, options)
        # gaps wide enough for the closing to leave the views apart too (view_gaps looks inside joined ones only)
        gaps = [*gaps, *empty_column_runs(inside, options.fov_threshold, (0, 0, x1 - x0, y1 - y0))]
        edges = {left for left, _, _, _ in boxes if left > 0}
        # views side by side only: views stacked in rows (every left edge 0) have no column gap checked, and all()
        # of nothing would have split the region where no empty gap parts them
        parted = bool(edges) and all(any(start - reduced.factor <= edge <= end + reduced.factor
                                         for start, end in gaps) for edge in edges)
        if len(boxes) < 2 or not parted:
            return [(x0, y0, x1, y1)], None
        return [(x0 + a, y0 + b, x0 + c, y0 + d) for a, b, c, d in boxes], None
    if not (options.crop_fov and options.split_views):
        return [(0, 0, w, h)], None
    boxes, reduced, _ = _screen_views(gray, options)
    return boxes, reduced if len(boxes) == 1 else None


def _screen_views(gray: np.ndarray, options: ViewOptions) -> tuple[list[tuple[int, int, int, int]], ReducedCopy,
                                                                    list[tuple[int, int]]]:
    """The views :func:`detect_view_boxes` finds on (H, W) uint8 ``gray``, at full resolution; the reduced copy they
    were found on; and the gaps between views found on ``gray`` (:func:`view_gaps`)."""
    h, w = gray.shape
    reduced = reduce_for_detection(gray, options.fov_threshold)
    small, factor = reduced.small, reduced.factor
    gaps = view_gaps(gray, options.fov_threshold, reduced.solid[1], factor)
    boxes = detect_view_boxes(small, reduced.threshold, reduced.solid, gap_columns(gaps, factor, small.shape[1]),
                              full=gray)
    # the reduced copy dropped odd last rows/columns: a box reaching its edge reaches the full frame's edge
    boxes = [(x0 * factor, y0 * factor, w if x1 == small.shape[1] else x1 * factor,
              h if y1 == small.shape[0] else y1 * factor) for x0, y0, x1, y1 in boxes]
    spans = separated_gaps(gaps)
    boxes = [(snap_to_gap(x0, spans, factor, w, "left"), y0, snap_to_gap(x1, spans, factor, w, "right"), y1)
             for x0, y0, x1, y1 in boxes]
    if len(boxes) > 1:  # a grid's columns: views stacked in one closer than the closing bridges are looked for too
        boxes = [part for box in boxes for part in _stacked_views(gray, box, options)]
    return boxes, reduced, gaps


def _stacked_views(gray: np.ndarray, box: tuple[int, int, int, int],
                   options: ViewOptions) -> list[tuple[int, int, int, int]]:
    """The views stacked in the full-height column ``box`` (x0, y0, x1, y1) of a grid on (H, W) uint8 ``gray``, found
    as :func:`_screen_views` finds side-by-side ones, on the column turned on its side; ``[box]`` when there are none.

    Only column gaps were looked for at the screen's resolution: the rows between the views of a quad screen that
    fills the screen, under some 30 pixels on a 1280 x 960 one, were bridged on the reduced copy, and each column
    was cached as one view of two scans stacked. A column whose stacked parts include a band wider than
    ``MAX_STACKED_VIEW_ASPECT`` times its height stays whole, as in :func:`~monai_ext.transforms.fov.detect_view_boxes`
    (a duplex screen's spectral strip under its image is not a view).
    """
    x0, y0, x1, y1 = box
    if y0 > 0 or y1 < gray.shape[0] or x1 - x0 < 4:
        return [box]  # split into stacked views already, or too thin to hold any
    if not _parted_by_empty_rows(gray[:, x0:x1], options.fov_threshold):
        return [box]  # nothing to split, and no second detection to pay for (most columns of dual screens)
    side = np.ascontiguousarray(gray[:, x0:x1].T)
    parts, reduced, _ = _screen_views(side, options)
    # on its side, a part spans the column's whole width (its height there) unless it is split again: taken whole
    if len(parts) < 2 or any(top > 0 or bottom < side.shape[0] for _, top, _, bottom in parts):
        return [box]
    # the shape of each part's solid regions (text and labels opened away), turned back upright
    solid, factor = reduced.solid[0] > 0, reduced.factor
    if any(_content_aspect(solid[:, first // factor : -(-last // factor)].T) > MAX_STACKED_VIEW_ASPECT
           for first, _, last, _ in parts):
        return [box]
    return [(x0, first, x1, last) for first, _, last, _ in parts]


def _parted_by_empty_rows(column: np.ndarray, threshold: int) -> bool:
    """Whether a run of at least ``MIN_GAP_WIDTH`` rows of (H, W) uint8 ``column`` without tissue (above ``threshold``
    and ``GAP_TISSUE_LEVEL`` in at most ``MAX_GAP_SIGNAL`` of the columns) parts rows with tissue of comparable
    extent (the fewer at least ``MIN_VIEW_AREA`` of the more): two stacked views may be there. A cheap test, on
    counts only: a label row above a view, which most screens have, parts nothing of a view's size."""
    tissue = np.count_nonzero(column > max(threshold, GAP_TISSUE_LEVEL), axis=1) > MAX_GAP_SIGNAL * column.shape[1]
    edges = np.flatnonzero(np.diff(np.concatenate([[True], tissue, [True]]).astype(np.int8)))
    above = np.cumsum(tissue)
    for start, end in zip(edges[::2], edges[1::2]):  # runs of rows without tissue
        if end - start < MIN_GAP_WIDTH or start == 0 or end == len(tissue):
            continue
        before, after = int(above[start - 1]), int(above[-1] - above[end - 1])
        if min(before, after) >= MIN_VIEW_AREA * max(before, after):
            return True
    return False


def _content_aspect(content: np.ndarray) -> float:
    """Width over height of the rows and columns of (H, W) bool ``content`` holding any of it (0 for none)."""
    rows, columns = np.flatnonzero(content.any(1)), np.flatnonzero(content.any(0))
    if rows.size == 0:
        return 0.0
    return (columns[-1] - columns[0] + 1) / (rows[-1] - rows[0] + 1)


#: A separator line some scanners draw down the middle of the gap between views is at most this many columns wide.
MAX_SEPARATOR_WIDTH = 3


def separated_gaps(gaps: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """Gaps (start, end), left to right, with those apart by a separator line (at most ``MAX_SEPARATOR_WIDTH``
    columns) joined into one gap holding the line."""
    joined: list[tuple[int, int]] = []
    for start, end in sorted(gaps):
        if joined and start - joined[-1][1] <= MAX_SEPARATOR_WIDTH:
            joined[-1] = (joined[-1][0], max(end, joined[-1][1]))
        else:
            joined.append((start, end))
    return joined


def snap_to_gap(x: int, gaps: Sequence[tuple[int, int]], factor: int, width: int, side: str = "middle") -> int:
    """A box edge ``x`` inside a frame ``width`` wide, found on a copy reduced by ``factor`` -> the nearest
    full-resolution gap (start, end) within ``factor`` columns of it, else ``x`` (the frame's own edges stay): its
    middle, or for ``side`` "left" (a box's left edge) its end and for "right" its start, so that the box holds
    none of the gap, nor a separator line drawn in it (:func:`separated_gaps`).

    The reduced copy places an edge up to ``factor - 1`` columns off: beside a gap narrower than that, inside a view,
    whose edge columns then went to its neighbour's box. A separator line at the middle of the gap went to the box
    beside it, and into its view's crop: the field of view took it in.
    """
    near = [(start, end) for start, end in gaps if start - factor <= x <= end + factor]
    if not 0 < x < width or not near:
        return x
    start, end = min(near, key=lambda gap: abs((gap[0] + gap[1]) // 2 - x))
    return {"left": end, "right": start}.get(side, (start + end) // 2)


# ---------------------------------------------------------------------------------------------------------- a view
def prepare_view(pixels: np.ndarray, gray: np.ndarray, box: tuple[int, int, int, int], index: int,
                 options: ViewOptions, reduced: ReducedCopy | None = None, declared: bool = False,
                 full: np.ndarray | None = None) -> PreparedView:
    """One view of a frame: crop, de-annotate, gray, check the signal, fit the square.

    Args:
        pixels: (H, W) gray or (H, W, 3) RGB uint8 frame.
        gray: (H, W) its luma.
        box: (x0, y0, x1, y1) of the view on the frame.
        index: view number.
        options: how views are prepared.
        reduced: the view's reduced copy for detection, when made already.
        declared: ``box`` is a DICOM region, which names 2-D tissue (or flow) images only: a strip found inside it
            is kept (on a screen, a spectral Doppler or M-mode strip with no image beside it is left out).
        full: the box's luma at the resolution the frame was shrunk from (:func:`shrink_large`), when it was (see
            :func:`find_fov`).
    """
    x0, y0, x1, y1 = box
    region_gray = gray[y0:y1, x0:x1]
    kind = "given"
    if options.crop_fov:
        (cx0, cy0, cx1, cy1), mask, kind = find_fov(region_gray, options.fov_threshold, reduced=reduced, full=full)
    else:
        (cx0, cy0, cx1, cy1) = (0, 0, region_gray.shape[1], region_gray.shape[0])
        mask = np.ones(region_gray.shape, bool)
    crop = (x0 + cx0, y0 + cy0, x0 + cx1, y0 + cy1)
    view_pixels = pixels[crop[1] : crop[3], crop[0] : crop[2]]
    view_gray = gray[crop[1] : crop[3], crop[0] : crop[2]]
    plain = np.where(mask, view_gray, 0).astype(np.uint8)
    fov_pixels = max(int(np.count_nonzero(mask)), 1)
    annotation_fraction = flow_fraction = 0.0
    if options.deannotate:
        fov = FieldOfView(mask, (0, 0, mask.shape[0], mask.shape[1]), "given", 1.0)
        doppler = "keep" if options.doppler == "keep" else "inpaint"
        result = deannotate(view_pixels, fov=fov, doppler=doppler, fill="mean")
        # the margin deannotate() keeps around the field of view is for masks it detected itself; this one is final
        cleaned = np.where(mask, result.image, 0).astype(np.uint8)
        annotation_fraction = np.count_nonzero(result.annotations & mask) / fov_pixels
        flow_fraction = np.count_nonzero(result.flow & mask) / fov_pixels
    else:  # colour flow is still measured, and inpainted unless kept: --doppler does not depend on de-annotation
        flow = mask & colour_flow(colour_mask(view_pixels)) if view_pixels.ndim == 3 else np.zeros_like(mask)
        flow_fraction = np.count_nonzero(flow) / fov_pixels
        if options.doppler != "keep" and flow.any():
            plain = np.where(mask, fill_with_local_mean(view_gray, flow), 0).astype(np.uint8)
        cleaned = plain
    drop = ""
    if options.doppler == "drop" and flow_fraction > options.doppler_threshold:
        drop = "doppler_flow"
    if options.doppler == "inpaint" and flow_fraction > MAX_INPAINT_FLOW:
        drop = "colour_overlay"
    if kind == "strip" and not declared:
        drop = "spectral"
    if is_text_page(plain, mask):  # as shown: de-annotation leaves ghosts of thin letters, still legible
        drop = "text_page"
    if max(cleaned.shape) > MAX_VIEW_ASPECT * min(cleaned.shape):
        drop = "extreme_aspect"
    if has_no_signal(cleaned, mask, options):
        drop = "no_signal"
    return PreparedView(_cached_pixels(fit_square(cleaned, options.size), drop), index, crop,
                        round(annotation_fraction, 5), round(flow_fraction, 5), drop)


def _cached_pixels(square: np.ndarray, drop: str) -> np.ndarray:
    """The (S, S) uint8 pixels a view leaves in the cache: black for a page of text.

    The chunks hold every view, the ones left out too (the manifest's rows index them); a page dropped as
    ``text_page`` still had its letters, a patient's name, ID and birth date, legible in ``chunks/*.npy``, though
    the drop is there to keep them out of the cache. Nothing reads a dropped view's pixels back (its reason is
    recorded, not found again), so the page is kept as black.
    """
    return np.zeros_like(square) if drop == "text_page" else square


def has_no_signal(gray: np.ndarray, mask: np.ndarray, options: ViewOptions) -> bool:
    """True when the field of view ``mask`` ((H, W), non-zero inside) of the (H, W) uint8 ``gray`` is black or near
    constant (standard deviation below ``min_signal_std``)."""
    if gray.size == 0 or int(gray.max(initial=0)) <= options.fov_threshold:
        return True
    _, std = cv2.meanStdDev(gray, mask=mask.astype(np.uint8))
    return float(std[0, 0]) < options.min_signal_std


#: Colour over more than this fraction of the field of view is an overlay, not flow to fill in: an elastography or
#: tissue-Doppler box tints the whole area under it (0.34 of the field in the reviewer's screen), and filling a
#: quarter of the image from the B-mode around it leaves a smooth patch, not tissue. A colour-Doppler box's flow
#: covers far less (vessels: 0.04-0.08 of the field in the reviewer's colour and power Doppler screens), and
#: "--doppler drop" leaves those out at its own, lower ``doppler_threshold``.
MAX_INPAINT_FLOW = 0.25
#: Views longer than this many times their width (or the reverse) are left out: fitted to the square they would be
#: a line or two of pixels in an empty frame (a 40 x 12000 strip became one row). An M-mode strip (9:1) is kept.
MAX_VIEW_ASPECT = 16
#: A text page is a plain background (its level give or take ``_BACKGROUND_SPREAD``) over most of the view ...
TEXT_PAGE_MIN_BACKGROUND = 0.6
_BACKGROUND_SPREAD = 16
#: ... ink this many gray levels away from the background (letters: white on black or blue, black on white) ...
TEXT_PAGE_INK_CONTRAST = 96
#: ... little in between (the anti-aliased edges of the letters; a scan's speckle spreads over every level) ...
TEXT_PAGE_MAX_MIDTONES = 0.1
#: ... and the ink is letters: at least this many letter-sized marks; beside the letters and their edges, at most
#: this share of the view is neither background nor letter (a spectral trace, a vessel wall, a sliver of a fan's
#: tissue is, however few labels surround it; a worksheet's rules are a few lines).
TEXT_PAGE_MIN_LETTERS = 8
TEXT_PAGE_MAX_OTHER = 0.01


def is_text_page(gray: np.ndarray, mask: np.ndarray) -> bool:
    """True for a page of text (a patient-data screen, a measurement worksheet), not a scan.

    Such pages pass the signal check and de-annotation (their letters are wider than the marks it removes), so they
    would reach the training cache whole, with the patient's name, ID and birth date legible.

    Args:
        gray: (H, W) uint8 view as shown (before de-annotation).
        mask: (H, W) bool field of view.

    Returns:
        Whether the view is a plain background (of any level) with letters on it and next to nothing else.
    """
    inside = mask.astype(bool)
    values = gray[inside]
    if values.size == 0:
        return False
    # the background: the most common level, counted with its neighbours (a gradient or JPEG noise spreads it)
    counts = np.convolve(np.bincount(values, minlength=256), np.ones(2 * _BACKGROUND_SPREAD + 1), mode="same")
    distance = np.abs(gray.astype(np.int16) - int(np.argmax(counts)))
    background = (distance <= _BACKGROUND_SPREAD) & inside
    ink = (distance >= TEXT_PAGE_INK_CONTRAST) & inside
    midtones = 1.0 - (np.count_nonzero(background) + np.count_nonzero(ink)) / values.size
    if np.count_nonzero(background) < TEXT_PAGE_MIN_BACKGROUND * values.size or midtones > TEXT_PAGE_MAX_MIDTONES:
        return False
    letters = _letters(ink)
    if letters is None:
        return False
    # what is left once the letters and their anti-aliased edges are taken out: a scan's tissue, not a page's
    edges = cv2.dilate(letters.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    other = inside & ~background & ~edges
    return np.count_nonzero(other) <= TEXT_PAGE_MAX_OTHER * values.size


def _letters(ink: np.ndarray) -> np.ndarray | None:
    """(H, W) bool: the marks of (H, W) bool ``ink`` of a letter's size, when there are enough of them to be text;
    None otherwise."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(ink.astype(np.uint8), connectivity=8)
    widths, heights, areas = stats[:, cv2.CC_STAT_WIDTH], stats[:, cv2.CC_STAT_HEIGHT], stats[:, cv2.CC_STAT_AREA]
    tallest = max(12, ink.shape[0] // 8)  # a glyph of a line of text, on pages of any resolution
    letter = (heights >= 5) & (heights <= tallest) & (widths <= 3 * tallest) & (areas >= 8)
    letter[0] = False  # label 0 is what is not ink
    if int(letter.sum()) < TEXT_PAGE_MIN_LETTERS:
        return None
    return letter[labels]


def prepare_views(pixels: np.ndarray, region_box: Sequence[int] | None, options: ViewOptions) -> list[PreparedView]:
    """Every view of one frame.

    Args:
        pixels: (H, W) gray or (H, W, 3) RGB uint8 frame as displayed.
        region_box: (x0, y0, x1, y1) of a DICOM ultrasound region holding the view, or None.
        options: how views are prepared.

    Returns:
        One :class:`PreparedView` per view, left to right; crops in the frame's own pixels; a raised black level
        brought to 0 (:func:`restore_black`) recorded on each.
    """
    small, scale = shrink_large(pixels, options.size)
    if region_box is not None and scale != 1.0:
        region_box = tuple(int(round(v * scale)) for v in region_box)
    # a raised black (a frame grabber's video range) is brought to 0 first: detection takes pixels above
    # fov_threshold for image, and the cached view has black 0 like every other source's
    small, gray, level, video_range = restore_black(small, to_gray(small))
    boxes, reduced = view_boxes(gray, region_box, options)
    views = [prepare_view(small, gray, box, i, options, reduced, region_box is not None,
                          full_luma(pixels, box, scale, level, video_range) if options.crop_fov else None)
             for i, box in enumerate(boxes)]
    for view in views:
        view.black_level, view.video_range = level, video_range
    if scale != 1.0:
        height, width = pixels.shape[:2]
        for view in views:  # rounding back up may pass the frame's edge by a pixel: clipped to the frame
            x0, y0, x1, y1 = (int(round(v / scale)) for v in view.crop)
            view.crop = (min(x0, width), min(y0, height), min(x1, width), min(y1, height))
    return views


def full_luma(pixels: np.ndarray, box: tuple[int, int, int, int], scale: float, level: int,
              video_range: bool) -> np.ndarray | None:
    """The luma of ``box`` (x0, y0, x1, y1) of a frame shrunk by ``scale`` (:func:`shrink_large`) at the frame's own
    resolution, its raised black brought to 0 as the shrunk frame's was (:func:`restore_black`); None when the frame
    was not shrunk. Only the box is converted, not the whole frame."""
    if scale == 1.0:
        return None
    height, width = pixels.shape[:2]
    x0, y0, x1, y1 = (int(round(v / scale)) for v in box)
    luma = to_gray(np.ascontiguousarray(pixels[y0 : min(y1, height), x0 : min(x1, width)]))
    return cv2.LUT(luma, black_lut(level, video_range)) if level else luma
