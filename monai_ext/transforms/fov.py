"""Field-of-view detection: where the image is in an ultrasound screen capture.

A screen capture is the scan-converted image (a rectangle for linear probes, an annular sector for curvilinear and
phased-array probes) on a black background, with text, scales and colour bars around it. Detection takes the
largest solid region with speckle (:func:`choose_region`: not a vendor's side panel, not the spectral Doppler or
M-mode strip of a duplex or M-mode screen, however large, and a region either model fits before a larger one neither
fits), fits both geometric models to it and keeps the better fit, so acoustic shadows and anechoic cysts (black inside
the field) do not bite holes or notches into the mask. Where neither model fits, the region itself is returned
("freeform"); where only a strip is found, the strip ("strip").

Written by hand: neither MONAI nor OpenCV ships a field-of-view detector for ultrasound; the building blocks
(morphology, connected components, flood fill) are OpenCV's.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, Transform
from monai.utils import TransformBackends, convert_to_dst_type

from monai_ext.transforms.intensity import as_numpy, full_scale
from monai_ext.transforms.strips import is_strip, speckle_texture

#: A fitted model must agree with the detected region at least this well (IoU) to replace it.
MIN_MODEL_IOU = 0.9
#: Side-by-side views: each must have at least this fraction of the largest view's area ...
MIN_VIEW_AREA = 0.4
#: ... and share at least this fraction of the shorter one's rows with it.
MIN_VIEW_ROW_OVERLAP = 0.5
#: Views stacked in a column of a grid are no wider than this many times their height: a spectral Doppler strip
#: under a duplex B-mode view is (a band some 3-4 times as wide as tall), the views of a quad screen are not.
MAX_STACKED_VIEW_ASPECT = 2.0
#: Side-by-side views closer than the closing of :func:`solid_components` bridges are still apart where a run of at
#: least this many columns of the screen, at its own resolution, ...
MIN_GAP_WIDTH = 2
#: ... is black (its median at most ``MAX_GAP_LEVEL``) and holds tissue in at most this fraction of the views' rows
#: (a tick or a label in the gap; a dark stripe inside one view, an acoustic shadow or a cyst, has tissue above or
#: below it) ...
MAX_GAP_SIGNAL = 0.02
#: ... where black is this level or below: the screen's own black between views is black, while a dark column inside
#: one view (an acoustic shadow, a dead element, lost contact) keeps the noise of its gain (3 and up). The median,
#: not every pixel: JPEG ringing beside the views lifts single pixels of a narrow gap to 4-21 (q95 to q60) ...
MAX_GAP_LEVEL = 2
#: ... and tissue is anything above this level (the corpus's default background threshold, ``fov_threshold``): JPEG
#: ringing stays below it in all but a few of the gap's rows, a stripe of tissue does not.
GAP_TISSUE_LEVEL = 10
#: Solid regions of at least this fraction of the largest one's area are candidates for the field of view: a duplex
#: or M-mode screen's B-mode image may be a third of its strip's area or less (0.32 on a 1024 x 768 duplex screen, a
#: small sector over a full-width strip less); a side bar's thumbnails (0.06) and icons are smaller, and text the
#: opening of :func:`solid_components` removes.
MIN_CANDIDATE_AREA = 0.1
#: A candidate either model fits wins over a larger one that neither fits when it has at least this fraction of its
#: area (the share side-by-side views have, :data:`MIN_VIEW_AREA`): a freeform region much larger is the image, a
#: picture-in-picture or thumbnail beside it is not.
MIN_FITTED_SHARE = 0.4
#: A solid region under ``MIN_VIEW_AREA`` of the largest's area is a view all the same (a 300 x 240 view beside a
#: 540 x 400 one: 0.33, and was dropped unsaid) when it has at least this fraction of it (a side bar's thumbnails:
#: 0.06), speckle (``MIN_TEXTURE_SHARE`` of the most textured view's: colour bars, logos and panels are flat), and a
#: run of empty columns between it and the view level with it at the screen's own resolution (a bar or box that the
#: opening of :func:`solid_components` cut off the image touches it): see :func:`smaller_views` ...
MIN_SMALL_VIEW_AREA = 0.1
#: ... and when its tissue is no strokes (:data:`MAX_TISSUE_STROKES`) ...
#: ... and when it is at most this many times as tall as wide or the reverse: a colour or gray bar is a band 6-18
#: times as tall as wide, whose dithering or JPEG noise can pass for faint speckle (0.17 of a view's texture).
MAX_SMALL_VIEW_ASPECT = 4.0
#: At most this many of the largest candidates are looked at (each costs a fit of both models).
MAX_CANDIDATES = 4
#: A candidate, and an extra side-by-side view, is tissue only when its speckle texture (absolute Laplacian
#: inside it, :func:`speckle_texture`) is at least this fraction of the most textured candidate's: speckle gives
#: 20-50 gray levels at any gain the views of one screen share (10 dB less gain: 0.3 of it); a vendor's side panel,
#: a flat fill or a smooth gradient with button icons gives 0-1 (0.02), the noise floor of a spectral strip 0.18.
MIN_TEXTURE_SHARE = 0.2
#: A region is strokes of text, not tissue, when more than this share of its pixels above ``GAP_TISSUE_LEVEL`` touch
#: one at or below it (3 x 3), at the screen's resolution (:func:`stroke_share`). A block of text (a report panel, a
#: measurements table), whose letters the closing joins into one region and whose strokes have some five times a
#: scan's texture, has 0.36-0.6 (bold to thin letters, JPEG or not); speckle 0.015-0.035, 0.15 at a sixth of its gain
#: (dark speckle between the tissue). Such a region is neither a candidate nor the reference of
#: ``MIN_TEXTURE_SHARE`` where another region is no strokes (:func:`choose_region`, :func:`textured_regions`), nor a
#: smaller view (:func:`smaller_views`).
MAX_TISSUE_STROKES = 0.25
#: A fitted sector's inner arc is where the opening of :func:`solid_components` cut a narrow sector's tip off (see
#: :func:`is_eaten_tip`) when its chord is at most this many times the opening's disk: a 30-degree phased-array
#: sector lost its top 37 rows of a 600-row screen (1.2% of its tissue, the near field); a curvilinear footprint is
#: 2.4 times the disk or more (the simulator's, whose detection this leaves as it was).
TIP_CHORD_RATIO = 1.5


@dataclass
class FieldOfView:
    """A detected field of view.

    Attributes:
        mask: bool (H, W).
        bbox: (top, left, bottom, right), bottom/right exclusive; all zeros when nothing was found.
        kind: "linear", "sector", "freeform", "views" (several views of one screen, see :func:`detect_screen_fov`),
            "strip" (only a spectral Doppler or M-mode strip was found, no tissue image: see :func:`choose_region`)
            or "none".
        fit_iou: agreement of the chosen model with the detected region (1.0 for freeform).
    """

    mask: np.ndarray
    bbox: tuple[int, int, int, int]
    kind: str
    fit_iou: float


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.count_nonzero(a | b)
    return np.count_nonzero(a & b) / union if union else 0.0


def display_scale(img: np.ndarray) -> float:
    """The factor that takes ``img``'s values to [0, 255]: integer types by their full scale (uint16 / 257, and
    int32, PIL's container of 16-bit PNGs, as 16-bit: see :func:`integer_peak`); floats by :func:`float_peak`
    ([0, 1], or [0, 255] when their largest finite value exceeds ``FLOAT_UNIT_RANGE_LIMIT``)."""
    return 255.0 / full_scale(img)


def to_hwc_uint8(image: Any) -> np.ndarray:
    """(H, W), (H, W, C) or channel-first (C, H, W) image (numpy or tensor), C of 1 to 4 -> (H, W, 1 or 3) uint8.

    Values are scaled by :func:`display_scale`; NaN and inf pixels become 0 (background); alpha is dropped (gray +
    alpha keeps its gray channel).
    """
    img = as_numpy(image)
    if img.ndim == 2:
        img = img[..., None]
    elif img.shape[0] in (1, 2, 3, 4) and img.shape[-1] not in (1, 2, 3, 4):
        img = np.moveaxis(img, 0, -1)
    if img.dtype != np.uint8:
        values = np.nan_to_num(img.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
        img = np.clip(np.rint(values * display_scale(img)), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(img[..., :3] if img.shape[-1] >= 3 else img[..., :1])


def channel_last(image: Any) -> np.ndarray:
    """(C, H, W) image, C of 1 to 4, or (H, W, C) or (H, W) (numpy or tensor) -> (H, W, C) numpy view.

    Channel-first wins whenever the first axis can be channels: the transforms documented as channel-first hand
    their input over this way, so that :func:`to_hwc_uint8`'s guess never reads a narrow (C, H, W) image (a width
    of 1 to 4) as (H, W, C).
    """
    img = as_numpy(image)
    if img.ndim == 2:
        return img[..., None]
    if img.ndim == 3 and img.shape[0] in (1, 2, 3, 4):
        return np.moveaxis(img, 0, -1)
    if img.ndim == 3 and img.shape[-1] in (1, 2, 3, 4):
        return img
    raise ValueError(f"expected an image (C, H, W) or (H, W, C) with 1 to 4 channels, or (H, W), got shape "
                     f"{tuple(img.shape)!r}")


def to_gray_uint8(image: Any) -> np.ndarray:
    """Any image :func:`to_hwc_uint8` accepts -> (H, W) uint8 BT.601 luma (OpenCV's, the weights of ``LUMA``)."""
    img = to_hwc_uint8(image)
    return img[..., 0] if img.shape[-1] == 1 else cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)


def solid_components(gray: np.ndarray, threshold: int = 0, kernel: int | None = None,
                     cuts: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Connected solid bright regions: (H, W) uint8 gray -> (labels (H, W) int32, OpenCV stats (n, 5)), label 0 the
    background.

    Closing with a ``kernel`` disk bridges dark speckle; opening with a disk twice that size removes strokes (text,
    ticks, calipers) and cuts off bars and boxes that touch the image. ``cuts``, (W,) bool, are columns set to
    background after the closing: gaps between views (:func:`view_gaps`) that it would bridge.
    """
    if gray.size == 0:  # OpenCV's morphology crashes the process (no Python error) on an empty image
        raise ValueError(f"cannot find the field of view of an empty image of shape {gray.shape!r}")
    size = kernel or max(5, (min(gray.shape) // 50) | 1)
    close = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
    opened = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * size + 1, 2 * size + 1))
    # Pad with background: OpenCV's default border never erodes, so a closing would glue the region to a near edge.
    pad = 2 * size + 1
    signal = cv2.copyMakeBorder((gray > threshold).astype(np.uint8), pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=0)
    closed = cv2.morphologyEx(signal, cv2.MORPH_CLOSE, close)
    if cuts is not None:
        closed[:, pad : pad + gray.shape[1]][:, cuts] = 0
    solid = cv2.morphologyEx(closed, cv2.MORPH_OPEN, opened)
    solid = np.ascontiguousarray(solid[pad:-pad, pad:-pad])
    _, labels, stats, _ = cv2.connectedComponentsWithStats(solid, connectivity=8)
    return labels, stats


@dataclass
class RegionFit:
    """A candidate region for the field of view with the better of both models fitted to it.

    Attributes:
        mask: (H, W) bool region, holes filled.
        kind: "linear", "sector" or "freeform" (neither model agrees with it at ``MIN_MODEL_IOU``); "strip" when
            it is a spectral Doppler or M-mode strip; "none" when there is no region.
        model: (H, W) bool mask of the better model (the region itself for "freeform").
        fit_iou: agreement of ``model`` with the region.
        sector: the sector fitted, when ``kind`` is "sector".
    """

    mask: np.ndarray
    kind: str
    model: np.ndarray
    fit_iou: float
    sector: SectorFit | None = None


def fit_models(region: np.ndarray) -> RegionFit:
    """(H, W) bool region -> :class:`RegionFit`: the rectangle or sector that agrees best with it when it agrees at
    ``MIN_MODEL_IOU`` or better, else the region itself ("freeform")."""
    sector = sector_fit(region)
    models = [("linear", fit_rectangle(region), None)]
    if sector is not None:
        models.append(("sector", render_sector(region.shape, sector), sector))
    score, name, model, fitted = max(((_iou(m, region), n, m, f) for n, m, f in models), key=lambda item: item[0])
    if score < MIN_MODEL_IOU:
        return RegionFit(region, "freeform", region, 1.0)
    return RegionFit(region, name, model, score, fitted)


def choose_region(gray: np.ndarray, labels: np.ndarray, stats: np.ndarray,
                  full: np.ndarray | None = None) -> RegionFit:
    """The field of view among the solid regions of a screen: (H, W) uint8 gray, its :func:`solid_components`
    (labels (H, W), OpenCV stats (n, 5)) -> :class:`RegionFit`.

    The ``MAX_CANDIDATES`` largest regions of at least ``MIN_CANDIDATE_AREA`` of the largest's area are looked at.
    Strips (:func:`is_strip`: a duplex screen's spectral Doppler, an M-mode trace, either of which may be larger
    than the B-mode image above it) and regions without speckle (``MIN_TEXTURE_SHARE`` of the most textured one's:
    side panels, flat fills, gradients) are not tissue. Of the rest, the largest that fits a model wins over larger
    freeform ones (of at most ``1 / MIN_FITTED_SHARE`` times its area); else the largest. When only strips are left,
    the largest comes back as kind "strip"
    (data/views.py leaves it out of training); with no region at all, kind "none".

    Args:
        gray: (H, W) uint8 screen or its reduced copy.
        labels: (H, W) int32 solid regions of ``gray``.
        stats: (n, 5) their OpenCV stats, row 0 the background.
        full: (H', W') uint8 screen ``gray`` was reduced from, when it was (see :func:`is_strip`).
    """
    empty = np.zeros(gray.shape, bool)
    if len(stats) < 2:
        return RegionFit(empty, "none", empty, 0.0)
    areas = stats[1:, cv2.CC_STAT_AREA]
    order = [int(i) + 1 for i in np.argsort(-areas, kind="stable")[:MAX_CANDIDATES]
             if areas[i] >= MIN_CANDIDATE_AREA * areas.max()]
    fits = [fit_models(fill_holes(labels == label)) for label in order]
    tissue = [fit for fit in fits if not is_strip(gray, fit.mask, fit.kind == "freeform", full)]
    if not tissue:
        fits[0].kind = "strip"
        return fits[0]
    if len(tissue) > 1:
        # a block of text beside the image has some five times its texture: as the reference, it left the image out
        tissue = [fit for fit, text in zip(tissue, text_regions(gray, [fit.mask for fit in tissue], full))
                  if not text]
    if len(tissue) > 1:
        textures = [speckle_texture(gray, fit.mask) for fit in tissue]
        tissue = [fit for fit, texture in zip(tissue, textures) if texture >= MIN_TEXTURE_SHARE * max(textures)]
    fitted = [fit for fit in tissue if fit.kind != "freeform"
              and fit.mask.sum() >= MIN_FITTED_SHARE * tissue[0].mask.sum()]
    return fitted[0] if fitted else tissue[0]


def text_regions(gray: np.ndarray, masks: Sequence[np.ndarray], full: np.ndarray | None = None) -> list[bool]:
    """Which of the regions ``masks`` of (H, W) uint8 ``gray`` to leave out as text: strokes of text
    (:func:`region_strokes`) where another region is none and holds speckle (at least a fifth of
    ``MIN_TEXTURE_SHARE`` of the most textured region's :func:`speckle_texture`). None where all or none are strokes,
    or where what is left is flat: a scan full of fluid near the noise floor (a bladder, amniotic fluid) or a dim scan
    measures as strokes too, and beside a flat side panel it was left out and the panel became the field of view."""
    strokes = region_strokes(gray, masks, full)
    if all(strokes) or not any(strokes):
        return [False] * len(strokes)
    textures = [speckle_texture(gray, mask) for mask in masks]
    left = max(texture for texture, stroke in zip(textures, strokes) if not stroke)
    if left < MIN_TEXTURE_SHARE / 5 * max(textures):
        return [False] * len(strokes)
    return strokes


def textured_regions(gray: np.ndarray, labels: np.ndarray, stats: np.ndarray,
                     full: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """:func:`solid_components` (labels (H, W), stats (n, 5)) of (H, W) uint8 ``gray`` without the regions that could
    be views (``MIN_VIEW_AREA`` of the largest's area) but lack speckle (``MIN_TEXTURE_SHARE`` of the most textured
    such region's :func:`speckle_texture`): a vendor's side panel is not a second view. Nor are, or set the
    reference, regions of strokes of text (:func:`region_strokes` on ``full``, the screen ``gray`` was reduced
    from, or ``gray``) while another is none. Their labels become background and their areas 0, so label numbers
    still index the stats."""
    areas = stats[1:, cv2.CC_STAT_AREA]
    large = [int(i) + 1 for i in np.flatnonzero(areas >= MIN_VIEW_AREA * areas.max())] if len(areas) else []
    if len(large) < 2:
        return labels, stats
    # a block of text beside a view has some five times its texture: as the reference, it left the view out
    text = [label for label, is_text in zip(large, text_regions(gray, [labels == label for label in large], full))
            if is_text]
    rest = [label for label in large if label not in text]
    textures = [speckle_texture(gray, labels == label) for label in rest]
    flat = text + [label for label, texture in zip(rest, textures) if texture < MIN_TEXTURE_SHARE * max(textures)]
    if not flat:
        return labels, stats
    labels = np.where(np.isin(labels, flat), 0, labels).astype(labels.dtype)
    stats = stats.copy()
    stats[flat, cv2.CC_STAT_AREA] = 0
    return labels, stats


def detect_views(image: Any, threshold: int = 0, solid: tuple[np.ndarray, np.ndarray] | None = None,
                 full: np.ndarray | None = None) -> list[tuple[int, int, int, int]]:
    """Side-by-side views of a screen capture (dual-view screens): one (x0, y0, x1, y1) box per view, left to right,
    exclusive ends; a single box covering the image when the screen holds one view.

    Views are solid regions of at least ``MIN_VIEW_AREA`` of the largest one's area, or smaller ones that
    :func:`smaller_views` finds parted from a view by an empty gap on ``full``, side by side (no column in common)
    and level with each other (sharing at least ``MIN_VIEW_ROW_OVERLAP`` of the shorter one's rows). The screen is
    cut at the middle of the gaps between them and keeps its full height, so each box still holds its view's whole
    field of view for :func:`detect_fov`.

    Args:
        image: (H, W) gray or any image :func:`to_gray_uint8` accepts.
        threshold: background gray level (see :func:`detect_fov`).
        solid: :func:`solid_components` of the image computed already with this threshold.
        full: (H', W') uint8 screen ``image`` was halved from (:func:`~monai_ext.data.views.halve_until`), or
            ``image`` itself: gaps parting smaller views are looked for on it. None: no view under ``MIN_VIEW_AREA``.
    """
    gray = to_gray_uint8(image)
    height, width = gray.shape
    labels, stats = solid if solid is not None else solid_components(gray, threshold)
    areas = stats[1:, cv2.CC_STAT_AREA]
    if len(areas) < 2:
        return [(0, 0, width, height)]
    chosen = areas >= MIN_VIEW_AREA * areas.max()
    if full is not None:
        chosen[[label - 1 for label in smaller_views(gray, threshold, labels, stats, full)]] = True
    large = stats[1:][chosen]
    large = large[np.argsort(large[:, cv2.CC_STAT_LEFT])]
    views = [large[0]]
    for candidate in large[1:]:
        previous = views[-1]
        previous_right = previous[cv2.CC_STAT_LEFT] + previous[cv2.CC_STAT_WIDTH]
        if candidate[cv2.CC_STAT_LEFT] >= previous_right and _level(previous, candidate):
            views.append(candidate)
    if len(views) < 2:
        return [(0, 0, width, height)]
    cuts = [0]
    for left_view, right_view in zip(views[:-1], views[1:]):
        gap_start = left_view[cv2.CC_STAT_LEFT] + left_view[cv2.CC_STAT_WIDTH]
        cuts.append(int((gap_start + right_view[cv2.CC_STAT_LEFT]) // 2))
    cuts.append(width)
    return [(x0, 0, x1, height) for x0, x1 in zip(cuts[:-1], cuts[1:])]


def _level(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two regions (OpenCV stats rows) share at least ``MIN_VIEW_ROW_OVERLAP`` of the shorter one's rows."""
    top = max(a[cv2.CC_STAT_TOP], b[cv2.CC_STAT_TOP])
    bottom = min(a[cv2.CC_STAT_TOP] + a[cv2.CC_STAT_HEIGHT], b[cv2.CC_STAT_TOP] + b[cv2.CC_STAT_HEIGHT])
    return bool(bottom - top >= MIN_VIEW_ROW_OVERLAP * min(a[cv2.CC_STAT_HEIGHT], b[cv2.CC_STAT_HEIGHT]))


def smaller_views(gray: np.ndarray, threshold: int, labels: np.ndarray, stats: np.ndarray,
                  full: np.ndarray) -> list[int]:
    """Labels of the solid regions of (H, W) uint8 ``gray`` smaller than ``MIN_VIEW_AREA`` of the largest's area (of
    ``MIN_SMALL_VIEW_AREA`` or more) that are views all the same: no band (``MAX_SMALL_VIEW_ASPECT``), with speckle
    (``MIN_TEXTURE_SHARE`` of the most textured larger region's :func:`speckle_texture`) that is no strokes of text
    (:func:`stroke_share`, ``MAX_TISSUE_STROKES``), and parted from the nearest larger region level with them
    (:func:`_level`, no column in common) by a run of empty columns (:func:`empty_column_runs`) over the rows of
    both. Gaps and strokes are looked for on ``full``, the screen ``gray`` was halved from (or ``gray``), where a gap
    of two pixels is still black and a stroke still thin.

    Args:
        gray: (H, W) uint8 screen, or its halved copy.
        threshold: background gray level of ``gray`` (the halved copy's is at most the screen's: a gap found with
            it is empty at the screen's too).
        labels: (H, W) int32 :func:`solid_components` of ``gray``.
        stats: (n, 5) their OpenCV stats, row 0 the background.
        full: (H', W') uint8 screen ``gray`` was halved from, or ``gray``.
    """
    areas = stats[1:, cv2.CC_STAT_AREA]
    large = np.flatnonzero(areas >= MIN_VIEW_AREA * areas.max()) + 1
    small = np.flatnonzero((areas >= MIN_SMALL_VIEW_AREA * areas.max()) & (areas < MIN_VIEW_AREA * areas.max())) + 1
    if small.size == 0:
        return []
    factor = max(1, min(full.shape[0] // gray.shape[0], full.shape[1] // gray.shape[1]))
    reference = max(speckle_texture(gray, labels == label) for label in large)
    found = []
    for label in small.tolist():
        region = stats[label]
        beside = [other for other in large.tolist() if _level(stats[other], region) and _apart(stats[other], region)]
        sides = sorted((int(region[cv2.CC_STAT_WIDTH]), int(region[cv2.CC_STAT_HEIGHT])))
        if not beside or sides[1] > MAX_SMALL_VIEW_ASPECT * sides[0] or \
                speckle_texture(gray, labels == label) < MIN_TEXTURE_SHARE * reference:
            continue
        nearest = stats[min(beside, key=lambda other: _column_distance(stats[other], region))]
        if _parted_by_gap(full, threshold, nearest, region, factor) and \
                stroke_share(full, labels == label, factor) <= MAX_TISSUE_STROKES:
            found.append(label)
    return found


def stroke_share(full: np.ndarray, region: np.ndarray, factor: int = 1) -> float:
    """The share of the pixels above ``GAP_TISSUE_LEVEL`` of (H', W') uint8 ``full`` inside the (H, W) bool
    ``region`` of its copy ``factor`` times smaller that touch a pixel at or below it (3 x 3): most of a text block's
    (letters are strokes a few pixels wide), few of a scan's (0 for a region without any)."""
    rows, columns = np.flatnonzero(region.any(1)), np.flatnonzero(region.any(0))
    if rows.size == 0:
        return 0.0
    top, left = int(rows[0]) * factor, int(columns[0]) * factor
    crop = full[top : (int(rows[-1]) + 1) * factor, left : (int(columns[-1]) + 1) * factor]
    inside = cv2.resize(region[rows[0] : rows[-1] + 1, columns[0] : columns[-1] + 1].astype(np.uint8),
                        (crop.shape[1], crop.shape[0]), interpolation=cv2.INTER_NEAREST) > 0
    lit = (crop > GAP_TISSUE_LEVEL).astype(np.uint8)
    counted = int(np.count_nonzero(lit & inside))
    touching = (lit > cv2.erode(lit, np.ones((3, 3), np.uint8))) & inside  # OpenCV pads the border as lit
    return int(np.count_nonzero(touching)) / counted if counted else 0.0


def region_strokes(gray: np.ndarray, regions: Sequence[np.ndarray], full: np.ndarray | None = None) -> list[bool]:
    """Whether each (H, W) bool region of (H, W) uint8 ``gray`` is strokes of text, not tissue (:func:`stroke_share`
    above ``MAX_TISSUE_STROKES``), looked at on ``full`` (H', W'), the screen ``gray`` was reduced from by an integer
    factor, where a stroke is still thin, or on ``gray`` itself when None."""
    full = gray if full is None else full
    factor = max(1, min(full.shape[0] // gray.shape[0], full.shape[1] // gray.shape[1]))
    return [stroke_share(full, region, factor) > MAX_TISSUE_STROKES for region in regions]


def _apart(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two regions (OpenCV stats rows) have no column in common."""
    return bool(a[cv2.CC_STAT_LEFT] + a[cv2.CC_STAT_WIDTH] <= b[cv2.CC_STAT_LEFT]
                or b[cv2.CC_STAT_LEFT] + b[cv2.CC_STAT_WIDTH] <= a[cv2.CC_STAT_LEFT])


def _column_distance(a: np.ndarray, b: np.ndarray) -> int:
    """Columns between two regions (OpenCV stats rows) with none in common."""
    return int(max(b[cv2.CC_STAT_LEFT] - a[cv2.CC_STAT_LEFT] - a[cv2.CC_STAT_WIDTH],
                   a[cv2.CC_STAT_LEFT] - b[cv2.CC_STAT_LEFT] - b[cv2.CC_STAT_WIDTH]))


def _parted_by_gap(full: np.ndarray, threshold: int, a: np.ndarray, b: np.ndarray, factor: int) -> bool:
    """Whether a run of empty columns of ``full`` (:func:`empty_column_runs`) lies between two regions side by side
    (OpenCV stats rows of a copy ``factor`` times smaller), over the rows of both: the reduced copy places their
    edges up to ``factor`` columns off."""
    (l0, t0, w0, h0, _), (l1, t1, w1, h1, _) = sorted((a.tolist(), b.tolist()))  # left to right, Python ints
    box = (l0 * factor, min(t0, t1) * factor, min((l1 + w1) * factor, full.shape[1]),
           min(max(t0 + h0, t1 + h1) * factor, full.shape[0]))
    return any(start >= (l0 + w0 - 1) * factor and end <= (l1 + 1) * factor
               for start, end in empty_column_runs(full, threshold, box))


def empty_column_runs(gray: np.ndarray, threshold: int, box: tuple[int, int, int, int],
                      min_width: int = MIN_GAP_WIDTH) -> list[tuple[int, int]]:
    """Runs (start, end) of at least ``min_width`` columns of (H, W) uint8 ``gray``, end exclusive, inside ``box``
    (x0, y0, x1, y1) that are black (median at most ``MAX_GAP_LEVEL`` over the box's rows) with at most
    ``MAX_GAP_SIGNAL`` of the box's rows above ``threshold`` and ``GAP_TISSUE_LEVEL`` (tissue), with signal columns
    on both sides of the run inside the box."""
    x0, y0, x1, y1 = box
    if x1 - x0 < min_width + 2 or y1 <= y0:
        return []
    block = gray[y0:y1, x0:x1]
    black = np.median(block, axis=0) <= MAX_GAP_LEVEL
    tissue = np.count_nonzero(block > max(threshold, GAP_TISSUE_LEVEL), axis=0)
    empty = np.concatenate([[False], black & (tissue <= MAX_GAP_SIGNAL * (y1 - y0)), [False]])
    edges = np.flatnonzero(np.diff(empty.astype(np.int8)))  # run starts and ends alternate
    return [(x0 + int(start), x0 + int(end)) for start, end in zip(edges[::2], edges[1::2])
            if end - start >= min_width and start > 0 and end < x1 - x0]


def view_gaps(gray: np.ndarray, threshold: int, stats: np.ndarray, factor: int = 1) -> list[tuple[int, int]]:
    """Gaps between side-by-side views, bridged or not by :func:`solid_components`: column runs (start, end) of the
    (H, W) uint8 screen ``gray`` (:func:`empty_column_runs`), left to right.

    They are searched inside the bounding box of each solid region of at least ``MIN_VIEW_AREA`` of the largest's
    area: two views the closing joined are one region whose box spans both views' rows, and a gap holds no signal
    over (almost) all of them. Detection may run on a copy reduced by ``factor`` (``stats`` are its
    :func:`solid_components`); the gaps are looked for at full resolution, where a gap of two pixels is still empty
    (a reduced copy blends it with the views around it).

    Views that touch, with no black column between them, only a separator line drawn (a column of one level), are
    not parted: a solid line drawn down one image (an M-mode cursor) is such a column too.

    Args:
        gray: (H, W) uint8 screen at full resolution.
        threshold: background gray level at full resolution.
        stats: OpenCV stats (n, 5) of the solid regions of ``gray`` reduced by ``factor``.
        factor: the reduction of the copy ``stats`` describe.
    """
    areas = stats[1:, cv2.CC_STAT_AREA]
    if len(areas) == 0:
        return []
    height, width = gray.shape
    gaps = set()
    for left, top, box_width, box_height, area in stats[1:].tolist():  # Python ints: the gaps become box edges
        if area >= MIN_VIEW_AREA * areas.max():
            box = (left * factor, top * factor, min((left + box_width) * factor, width),
                   min((top + box_height) * factor, height))
            gaps.update(empty_column_runs(gray, threshold, box))
    return sorted(gaps)


def gap_columns(gaps: Sequence[tuple[int, int]], factor: int, width: int) -> np.ndarray:
    """The columns of a copy reduced by ``factor`` (``width`` wide) that cut at ``gaps`` (full-resolution column
    runs): (width,) bool, the reduced columns inside each gap and the one holding its middle (a gap narrower than
    ``factor`` lies inside one reduced column, blended with the views around it)."""
    cuts = np.zeros(width, bool)
    for start, end in gaps:
        cuts[min((start + end) // 2 // factor, width - 1)] = True
        cuts[-(-start // factor) : end // factor] = True
    return cuts


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """(H, W) bool with every enclosed background hole filled: flood the background from a one-pixel frame around
    the image (OpenCV's flood fill, several times faster here than ``scipy.ndimage.binary_fill_holes``)."""
    framed = cv2.copyMakeBorder(mask.astype(np.uint8), 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0)
    flood = np.zeros((framed.shape[0] + 2, framed.shape[1] + 2), np.uint8)
    cv2.floodFill(framed, flood, (0, 0), 1)
    outside = flood[2:-2, 2:-2] > 0
    return ~outside | mask


def fit_rectangle(region: np.ndarray) -> np.ndarray:
    """Axis-aligned rectangle over the rows and columns that are at least half full: (H, W) bool -> (H, W) bool."""
    rows, cols = region.sum(1), region.sum(0)
    full_rows = np.flatnonzero(rows >= 0.5 * rows.max())
    full_cols = np.flatnonzero(cols >= 0.5 * cols.max())
    mask = np.zeros_like(region)
    mask[full_rows[0] : full_rows[-1] + 1, full_cols[0] : full_cols[-1] + 1] = True
    return mask


def _fit_edge(rows: np.ndarray, cols: np.ndarray, tolerance: float = 1.5, trials: int = 256) -> tuple[float, float] | None:
    """Line ``col = a * row + b`` through the straight part of one side of a sector, by RANSAC.

    The extreme pixel of each row lies on the side line from the inner corner down to the outer corner, then on
    the outer arc; boxes touching the fan (colour bars) add more outliers. The line through two sampled points with
    the most points within ``tolerance`` px wins and is refitted on those points. The sampling generator is
    seeded, so detection is deterministic.
    """
    if len(rows) < 8:
        return None
    rng = np.random.default_rng(0)
    i, j = rng.integers(0, len(rows), size=(2, trials))
    ok = rows[i] != rows[j]
    i, j = i[ok], j[ok]
    a = (cols[j] - cols[i]) / (rows[j] - rows[i])
    b = cols[i] - a * rows[i]
    residual = np.abs(a[:, None] * rows[None] + b[:, None] - cols[None])
    inliers = residual < tolerance
    best = inliers[int(np.argmax(inliers.sum(1)))] if len(a) else None
    if best is None or best.sum() < 8:
        return None
    a_fit, b_fit = np.polyfit(rows[best], cols[best], 1)
    return float(a_fit), float(b_fit)


def widen_to_dim_edges(gray: np.ndarray, apex: tuple[float, float], slopes: tuple[float, float],
                       radii: tuple[float, float], level: int) -> tuple[float, float]:
    """Move a sector's sides outwards over dim signal: (left, right) side slopes (columns per row from the apex).

    Scanners lose gain towards a sector's outer scan lines, so its edges can fall below the detection threshold and
    the fitted sides then cut them off. Outside each side, one-pixel-wide angular bands (at the outer radius) are
    taken while at least 60% of their pixels are above ``level`` (a band the side only grazes is not);
    the background beyond a sector is black.
    """
    # Only pixels that can lie in a band count: below the apex, within the outer radius of it, and not well inside
    # both sides (a column or more: far above the rounding of the angles below). The trigonometry runs on them alone,
    # in row-major order as over the whole frame, so the bands and the result are the same; over every pixel it
    # cost as much as the rest of the detection.
    height, width = gray.shape
    top, bottom = max(0, int(np.floor(apex[0]))), min(height, int(np.ceil(apex[0] + radii[1])) + 1)
    left, right = max(0, int(np.floor(apex[1] - radii[1]))), min(width, int(np.ceil(apex[1] + radii[1])) + 1)
    dr, dc = np.broadcast_arrays(np.arange(top, bottom)[:, None] - apex[0], np.arange(left, right)[None, :] - apex[1])
    candidate = (dr > 0) & ~((dc > slopes[0] * dr + 1.0) & (dc < slopes[1] * dr - 1.0))
    dr, dc = dr[candidate], dc[candidate]
    radius = np.hypot(dr, dc)
    inside_ring = (radius >= radii[0]) & (radius <= radii[1])
    angle = np.arctan2(dc[inside_ring], dr[inside_ring])  # 0 straight down, positive to the right
    bright = gray[top:bottom, left:right][candidate][inside_ring] > level
    step = 1.0 / max(radii[1], 1.0)
    widened = []
    for slope, sign in ((slopes[0], -1.0), (slopes[1], 1.0)):
        beyond = (angle - np.arctan(slope)) * sign  # > 0 outside this side
        band = np.floor(beyond[beyond > 0] / step).astype(np.int64)
        counts = np.bincount(band, minlength=1)
        hits = np.bincount(band, weights=bright[beyond > 0], minlength=1)
        full = (counts > 0) & (hits >= 0.6 * counts)
        extra = int(np.argmin(full)) if not full.all() else len(full)
        # the last band taken is only partly inside: the side runs through its middle
        widened.append(float(np.tan(np.arctan(slope) + sign * max(extra - 0.5, 0.0) * step)))
    return widened[0], widened[1]


def opening_diameter(shape: tuple[int, int]) -> int:
    """Side (pixels) of the disk :func:`solid_components` opens an (H, W) screen with by default: anything narrower
    is gone from the regions it finds."""
    return 2 * max(5, (min(shape) // 50) | 1) + 1


def is_eaten_tip(sector: SectorFit, diameter: int) -> bool:
    """Whether the inner arc of a fitted sector is where the opening of :func:`solid_components` (a disk
    ``diameter`` pixels across) cut a narrow sector's tip off, not where the image begins.

    A phased-array sector (or any sector whose sides meet at the top of the image) narrows to its apex; the opening
    removes it where it is narrower than the disk, so the region, and the inner radius fitted to it, began there:
    the chord at that radius is about the disk's width (up to ``TIP_CHORD_RATIO`` times). A curvilinear probe's
    footprint, where its image truly begins, is wider (the simulator's: 2.4 times the disk at least).
    """
    (slope_l, slope_r), inner = sector.slopes, sector.radii[0]
    chord = inner * (np.sin(np.arctan(slope_r)) - np.sin(np.arctan(slope_l)))
    return bool(chord <= TIP_CHORD_RATIO * diameter)


def reach_apex(gray: np.ndarray, sector: SectorFit, level: int) -> float:
    """The inner radius of ``sector`` moved towards its apex over the tissue of (H, W) uint8 ``gray``: one-pixel
    radial bands inside the inner arc, between the sides, are taken while at least 60% of their pixels are above
    ``level`` (as :func:`widen_to_dim_edges` takes angular bands); the black above a probe's footprint stops it.
    """
    (apex_row, apex_col), (slope_l, slope_r), (inner, _) = sector.apex, sector.slopes, sector.radii
    height, width = gray.shape
    top, bottom = max(0, int(np.floor(apex_row))), min(height, int(np.ceil(apex_row + inner)) + 1)
    if bottom <= top:
        return inner
    rows = np.arange(top, bottom, dtype=np.float64)[:, None] - apex_row
    cols = np.arange(width, dtype=np.float64)[None, :] - apex_col
    radius = np.hypot(rows, cols)
    between = (rows > 0) & (cols >= slope_l * rows) & (cols <= slope_r * rows) & (radius < inner)
    band = np.floor(inner - radius[between]).astype(np.int64)  # 0: the band just inside the inner arc
    if band.size == 0:
        return inner
    counts = np.bincount(band)
    hits = np.bincount(band, weights=gray[top:bottom][between] > level)
    full = (counts > 0) & (hits >= 0.6 * counts)
    taken = int(np.argmin(full)) if not full.all() else len(full)
    return float(max(inner - taken, 0.0))


@dataclass
class SectorFit:
    """An annular sector: apex (row, col), side slopes (columns per row from the apex, left and right), and inner
    and outer radii in pixels."""

    apex: tuple[float, float]
    slopes: tuple[float, float]
    radii: tuple[float, float]


def sector_fit(region: np.ndarray) -> SectorFit | None:
    """The sector (apex above the image, straight sides) of the (H, W) bool ``region``; None if the sides do not
    meet above it."""
    width = region.shape[1]
    present = np.flatnonzero(region.any(1))
    if len(present) < 8:
        return None
    left = region[present].argmax(1)
    right = width - 1 - region[present, ::-1].argmax(1)
    keep_left, keep_right = left > 0, right < width - 1  # rows clipped by the image border say nothing
    fit_l = _fit_edge(present[keep_left], left[keep_left])
    fit_r = _fit_edge(present[keep_right], right[keep_right])
    if fit_l is None or fit_r is None or fit_r[0] - fit_l[0] < 0.05:  # parallel sides: a rectangle
        return None
    apex_row = (fit_l[1] - fit_r[1]) / (fit_r[0] - fit_l[0])
    if apex_row > present[0]:
        return None
    apex_col = fit_l[0] * apex_row + fit_l[1]
    rr, cc = np.nonzero(region)
    radius_px = np.hypot(rr - apex_row, cc - apex_col)
    r_inner, r_outer = np.percentile(radius_px, [0.05, 99.95])
    return SectorFit((float(apex_row), float(apex_col)), (fit_l[0], fit_r[0]), (float(r_inner), float(r_outer)))


def render_sector(shape: tuple[int, int], fit: SectorFit) -> np.ndarray:
    """(H, W) bool mask of a :class:`SectorFit`, rendered only over the rows it can reach (float32 is exact enough
    at screen sizes and twice as fast)."""
    height, width = shape
    (apex_row, apex_col), (slope_l, slope_r), (r_inner, r_outer) = fit.apex, fit.slopes, fit.radii
    bottom = min(height, int(np.ceil(apex_row + r_outer)) + 1)
    top = max(0, int(np.floor(apex_row + r_inner * min(1.0, 1 / np.hypot(1, max(abs(slope_l), abs(slope_r))))) - 1))
    rows = np.arange(top, bottom, dtype=np.float32)[:, None] - np.float32(apex_row)
    cols = np.arange(width, dtype=np.float32)[None, :] - np.float32(apex_col)
    radius_sq = rows * rows + cols * cols
    left_ok, right_ok = cols >= np.float32(slope_l) * rows, cols <= np.float32(slope_r) * rows  # rows > 0 here
    inside = (radius_sq >= np.float32(r_inner) ** 2) & (radius_sq <= np.float32(r_outer) ** 2) & left_ok & right_ok
    mask = np.zeros(shape, bool)
    mask[top:bottom] = inside & (rows > 0)
    return mask


def detect_fov(image: Any, threshold: int = 0, region_box: Sequence[int] | None = None,
               dim_edges: bool = True, solid: tuple[np.ndarray, np.ndarray] | None = None,
               full: np.ndarray | None = None) -> FieldOfView:
    """Find the field of view of a screen capture.

    Args:
        image: (H, W) gray, (H, W, 3) or (C, H, W) image, numpy or tensor (see :func:`to_hwc_uint8`).
        threshold: gray level at or below which a pixel counts as background (raise it for noisy JPEG screens).
        region_box: (x0, y0, x1, y1) of the B-mode region from DICOM ``SequenceOfUltrasoundRegions``: detection
            runs inside it only (clipped to the image; ``ValueError`` when it does not overlap it).
        dim_edges: widen a fitted sector over dim edges above ``threshold // 2`` (low-gain outer scan lines).
        solid: :func:`solid_components` of the whole image computed already with this threshold (not with
            ``region_box``).
        full: (H', W') uint8 gray the image was reduced from by an integer factor, when it was: lines drawn at
            its resolution tell spectral strips from tissue (see :func:`choose_region`).

    Returns:
        :class:`FieldOfView` with an (H, W) mask.
    """
    gray = to_gray_uint8(image)
    if region_box is not None:
        # clipped to the image, as ingestion (data/views.py) clips it: some scanners write the region's inclusive
        # maximum coordinates as exclusive ones, one pixel past the image
        x0, y0 = max(int(region_box[0]), 0), max(int(region_box[1]), 0)
        x1, y1 = min(int(region_box[2]), gray.shape[1]), min(int(region_box[3]), gray.shape[0])
        if not (x0 < x1 and y0 < y1):
            raise ValueError(f"region_box {tuple(region_box)!r} does not overlap the image of shape {gray.shape!r}")
        inner = detect_fov(gray[y0:y1, x0:x1], threshold, dim_edges=dim_edges)
        mask = np.zeros(gray.shape, bool)
        mask[y0:y1, x0:x1] = inner.mask
        top, left, bottom, right = inner.bbox
        bbox = (top + y0, left + x0, bottom + y0, right + x0) if inner.kind != "none" else (0, 0, 0, 0)
        return FieldOfView(mask, bbox, inner.kind, inner.fit_iou)
    chosen = choose_region(gray, *(solid if solid is not None else solid_components(gray, threshold)), full=full)
    if chosen.kind == "none":
        return FieldOfView(chosen.mask, (0, 0, 0, 0), "none", 0.0)
    if chosen.kind in ("freeform", "strip"):
        return FieldOfView(chosen.mask, _bbox(chosen.mask), chosen.kind, 1.0)
    mask, sector = chosen.model, chosen.sector
    if sector is not None and is_eaten_tip(sector, opening_diameter(gray.shape)):
        # judged against the region as found; then taken up to the apex the opening cut off (a narrow sector)
        sector = SectorFit(sector.apex, sector.slopes, (reach_apex(gray, sector, threshold // 2), sector.radii[1]))
        mask = render_sector(mask.shape, sector)
    if sector is not None and dim_edges:
        # judged against the region as found; then widened over dim edges the threshold left out of the region
        slopes = widen_to_dim_edges(gray, sector.apex, sector.slopes, sector.radii, threshold // 2)
        mask = render_sector(mask.shape, SectorFit(sector.apex, slopes, sector.radii))
    return FieldOfView(mask, _bbox(mask), chosen.kind, chosen.fit_iou)


def detect_view_boxes(gray: np.ndarray, threshold: int = 0, solid: tuple[np.ndarray, np.ndarray] | None = None,
                      cuts: np.ndarray | None = None,
                      full: np.ndarray | None = None) -> list[tuple[int, int, int, int]]:
    """Views of a screen laid out in a grid (dual-view side by side, quad-view 2 x 2): (x0, y0, x1, y1) per view,
    exclusive ends, column by column and top to bottom in each; one box covering the screen for a single view.

    Columns are :func:`detect_views`; when there are several, views stacked inside each column are found by the same
    rule on the column's solid regions turned on their side (one connected-components pass over the regions found
    already, no new morphology). A single column is never split, and a column whose stacked regions include a band
    wider than :data:`MAX_STACKED_VIEW_ASPECT` times its height stays whole: on a duplex screen (one view, or two
    side by side) the spectral Doppler strip under each B-mode image is not tissue and must stay outside the field
    of view, which :func:`detect_fov` of the whole column keeps it.

    Solid regions without speckle (:func:`textured_regions`: a vendor's side panel, a flat or gradient fill with
    button icons) are no views. Views closer together than the closing bridges are one region; ``cuts``
    (:func:`gap_columns` of :func:`view_gaps`) part them. The layout found with the cuts is taken only when it has
    more views: a cut that
    leaves no second view of plausible size (``MIN_VIEW_AREA``, or a smaller one :func:`smaller_views` finds parted
    by an empty gap on ``full``, level with the first) changes nothing.

    Args:
        gray: (H, W) uint8 screen.
        threshold: background gray level (see :func:`detect_fov`).
        solid: :func:`solid_components` of ``gray`` with this threshold, when computed already.
        cuts: (W,) bool columns of ``gray`` at gaps between views, or None.
        full: (H', W') uint8 screen ``gray`` was halved from, or ``gray`` itself, for side-by-side views smaller
            than ``MIN_VIEW_AREA`` (see :func:`detect_views`); None: none.
    """
    labels, stats = textured_regions(gray, *(solid if solid is not None else solid_components(gray, threshold)), full)
    boxes = _grid_boxes(gray, threshold, labels, stats, full)
    if cuts is not None and cuts.any():
        split = _grid_boxes(gray, threshold,
                            *textured_regions(gray, *solid_components(gray, threshold, cuts=cuts), full), full)
        if len(split) > len(boxes):
            return split
    return boxes


def _grid_boxes(gray: np.ndarray, threshold: int, labels: np.ndarray, stats: np.ndarray,
                full: np.ndarray | None = None) -> list[tuple[int, int, int, int]]:
    """:func:`detect_view_boxes` on given solid regions (labels (H, W), OpenCV stats (n, 5)); smaller views (see
    :func:`detect_views`) side by side only."""
    columns = detect_views(gray, threshold, (labels, stats), full)
    if len(columns) == 1:
        return columns
    boxes = []
    for x0, _, x1, _ in columns:
        on_side = np.ascontiguousarray((labels[:, x0:x1] > 0).T).astype(np.uint8)
        _, side_labels, side_stats, _ = cv2.connectedComponentsWithStats(on_side, connectivity=8)
        stacked = [(x0, y0, x1, y1) for y0, _, y1, _ in detect_views(on_side, threshold, (side_labels, side_stats))]
        boxes += stacked if all(_content_aspect(labels, box) <= MAX_STACKED_VIEW_ASPECT for box in stacked) else \
            [(x0, 0, x1, gray.shape[0])]
    return boxes


def _content_aspect(labels: np.ndarray, box: tuple[int, int, int, int]) -> float:
    """Width over height of the solid regions inside ``box`` (x0, y0, x1, y1) of a labels map."""
    x0, y0, x1, y1 = box
    solid = labels[y0:y1, x0:x1] > 0
    rows, cols = np.flatnonzero(solid.any(1)), np.flatnonzero(solid.any(0))
    if rows.size == 0:
        return 0.0
    return (cols[-1] - cols[0] + 1) / (rows[-1] - rows[0] + 1)


def detect_screen_fov(image: Any, threshold: int = 0) -> FieldOfView:
    """The field of view of a whole screen capture: on a dual- or quad-view screen the union of every view's
    (:func:`detect_view_boxes`, parted at :func:`view_gaps` too narrow for its closing, then :func:`detect_fov` in
    each, kind "views"); on a single view, :func:`detect_fov`.

    Args:
        image: any image :func:`to_gray_uint8` accepts.
        threshold: background gray level (see :func:`detect_fov`).

    Returns:
        :class:`FieldOfView` with an (H, W) mask; ``fit_iou`` is the worst view's.
    """
    gray = to_gray_uint8(image)
    solid = solid_components(gray, threshold)
    cuts = gap_columns(view_gaps(gray, threshold, solid[1]), 1, gray.shape[1])
    boxes = detect_view_boxes(gray, threshold, solid, cuts, full=gray)
    if len(boxes) == 1:
        return detect_fov(gray, threshold, solid=solid)
    found = [fov for fov in (detect_fov(gray, threshold, region_box=box) for box in boxes) if fov.kind != "none"]
    if not found:
        return FieldOfView(np.zeros(gray.shape, bool), (0, 0, 0, 0), "none", 0.0)
    mask = np.logical_or.reduce([fov.mask for fov in found])
    return FieldOfView(mask, _bbox(mask), "views", min(fov.fit_iou for fov in found))


def _bbox(mask: np.ndarray) -> tuple[int, int, int, int]:
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    return int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1


def check_threshold(threshold: int) -> None:
    """A background level of 8-bit gray: in [0, 254] (at 255 nothing could be signal)."""
    if not 0 <= threshold <= 254:
        raise ValueError(f"threshold must be in [0, 254], got {threshold!r}")


def screen_or_region_fov(image: Any, threshold: int = 0, region_box: Sequence[int] | None = None) -> FieldOfView:
    """The DICOM B-mode region's field of view when there is one, else the whole screen's (every view's), above a
    raised black brought to 0 first (see :func:`~monai_ext.transforms.black_level.detection_gray`)."""
    # imported here: black_level.py imports this module (to_gray_uint8)
    from monai_ext.transforms.black_level import detection_gray

    gray, threshold = detection_gray(to_gray_uint8(image), threshold)
    if region_box is not None:
        return detect_fov(gray, threshold, region_box)
    return detect_screen_fov(gray, threshold)


def mask_like(mask: np.ndarray, img: Any) -> Any:
    """(H, W) bool -> (1, H, W) bool, as a tensor on ``img``'s device when ``img`` is one; a MetaTensor's metadata
    (affine, file name) carried over, as MONAI's ``ForegroundMask`` carries it: the mask was a plain tensor, and a
    saved or inverted mask lost the image's geometry."""
    out = mask[None]
    if not isinstance(img, torch.Tensor):
        return out
    return convert_to_dst_type(out, img, dtype=torch.bool)[0]


class FieldOfViewMask(Transform):
    """Channel-first image (C, H, W) -> its field-of-view mask (1, H, W) bool (same array type and device): every
    view's on a dual- or quad-view screen (see :func:`detect_screen_fov`).

    Args:
        threshold: background gray level (see :func:`detect_fov`).
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(self, threshold: int = 0) -> None:
        check_threshold(threshold)
        self.threshold = threshold

    def __call__(self, img: Any, region_box: Sequence[int] | None = None) -> Any:
        return mask_like(screen_or_region_fov(channel_last(img), self.threshold, region_box).mask, img)


class FieldOfViewMaskd(MapTransform):
    """Dictionary version of :class:`FieldOfViewMask`: writes ``mask_key`` and ``f"{mask_key}_bbox"``.

    The DICOM B-mode region is taken from ``data[region_key]`` when present (``LoadUltrasoundImaged`` puts it
    there as (x0, y0, x1, y1)).
    """

    backend = FieldOfViewMask.backend

    def __init__(self, keys: KeysCollection, mask_key: str = "fov", region_key: str = "us_region",
                 threshold: int = 0, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        check_threshold(threshold)
        self.mask_key = mask_key
        self.region_key = region_key
        self.threshold = threshold

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            fov = screen_or_region_fov(channel_last(d[key]), self.threshold, d.get(self.region_key))
            d[self.mask_key] = mask_like(fov.mask, d[key])
            d[f"{self.mask_key}_bbox"] = fov.bbox
        return d
