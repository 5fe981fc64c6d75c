"""Segmentation overlays: a mask, or a prediction against its ground truth, drawn on the gray image."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from monai_ext.io.display import to_gray_uint8

#: Contour colours (RGB): ground truth green, prediction red, both on the same pixel yellow; further classes cycle
#: through the rest.
GROUND_TRUTH_RGB = (0, 220, 0)
PREDICTION_RGB = (255, 40, 40)
AGREEMENT_RGB = (255, 230, 0)
CLASS_RGB = ((255, 40, 40), (40, 120, 255), (255, 200, 0), (200, 0, 255), (0, 220, 220), (255, 120, 0),
             (160, 255, 60), (255, 0, 140))


def to_uint8_gray(image: np.ndarray) -> np.ndarray:
    """(H, W) float or integer image -> (H, W) uint8 stretched to its own min-max, 0 included (normalised inputs
    included), over its finite values: NaN shows as the low end, infinities as the ends (one NaN made the whole
    picture black)."""
    image = np.asarray(image, dtype=np.float32)
    finite = image[np.isfinite(image)]
    low, high = float(finite.min(initial=0.0)), float(finite.max(initial=0.0))
    if high <= low:
        return np.zeros(image.shape, np.uint8)
    image = np.nan_to_num(image, nan=low, posinf=high, neginf=low)
    return ((image - low) / (high - low) * 255).astype(np.uint8)


def _check_shape(image: np.ndarray, mask: np.ndarray, name: str) -> None:
    """A mask of another size than its image was drawn scaled wrongly, or (an empty one) not at all, without a word."""
    if np.shape(mask) != np.shape(image):
        raise ValueError(f"{name} shape {tuple(np.shape(mask))} differs from the image's {tuple(np.shape(image))}")


def _draw_contours(canvas: np.ndarray, mask: np.ndarray, colour: tuple[int, int, int] | int,
                   thickness: int = 1) -> None:
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(canvas, contours, -1, colour, thickness)


def _contour_pixels(mask: np.ndarray, thickness: int = 1) -> np.ndarray:
    """(H, W) bool: the pixels of the outline of ``mask``'s foreground, as ``_draw_contours`` draws it."""
    outline = np.zeros(mask.shape, np.uint8)
    _draw_contours(outline, mask, 1, thickness)
    return outline > 0


def aspect_size(original: Sequence[int], side: int, max_ratio: float = 4.0) -> tuple[int, int]:
    """The (rows, cols) to draw an image of ``original`` (H, W) at, in its own aspect: its shorter side at ``side``
    pixels (the size a square image is drawn at), its longer side at most ``max_ratio`` times that (a 40 x 600 strip
    would be 2,880 pixels wide), the shorter then smaller.

    Raises:
        ValueError: ``original`` is not two positive sizes, or ``side`` is not positive.
    """
    rows, cols = (int(s) for s in original)
    if rows < 1 or cols < 1 or side < 1:
        raise ValueError(f"sizes must be positive, got original {tuple(original)!r} and side {side!r}")
    scale = min(side / min(rows, cols), max_ratio * side / max(rows, cols))
    return max(1, round(rows * scale)), max(1, round(cols * scale))


def _resized(array: np.ndarray, size: tuple[int, int], nearest: bool) -> np.ndarray:
    """(H, W) -> ``size`` (rows, cols): class indices by nearest neighbour (no label invented between two), the
    image by area averaging when it shrinks and bilinearly when it grows."""
    rows, cols = size
    if nearest:
        return cv2.resize(np.asarray(array, np.int32), (cols, rows), interpolation=cv2.INTER_NEAREST_EXACT)
    shrinks = rows * cols < array.shape[0] * array.shape[1]
    return cv2.resize(np.asarray(array, np.float32), (cols, rows),
                      interpolation=cv2.INTER_AREA if shrinks else cv2.INTER_LINEAR)


def mask_overlay(image: np.ndarray, mask: np.ndarray, alpha: float = 0.35, *, stretch: bool = True) -> np.ndarray:
    """A class-index mask (H, W) tinted and outlined on the gray image (H, W). Returns (H, W, 3) uint8 RGB.

    Args:
        image: (H, W) gray.
        mask: (H, W) class indices, 0 background.
        alpha: the tint's weight on the mask's pixels.
        stretch: True: ``image`` is in any range (normalised), stretched to its own 0..max (:func:`to_uint8_gray`).
            False: ``image`` holds display values (float in [0, 1], or uint8), drawn as they are, so that an
            inference overlay shows the file as a viewer does (stretched, a dim scan came out brighter and a
            uniform one white).

    Raises:
        ValueError: the mask's shape is not the image's.
    """
    _check_shape(image, mask, "mask")
    gray = to_uint8_gray(image) if stretch else to_gray_uint8(np.asarray(image), "the overlay's image")
    canvas = np.repeat(gray[..., None], 3, axis=2)
    for k in range(1, int(mask.max(initial=0)) + 1):
        region = mask == k
        if not region.any():
            continue
        colour = np.array(CLASS_RGB[(k - 1) % len(CLASS_RGB)], np.float32)
        canvas[region] = ((1 - alpha) * canvas[region] + alpha * colour).astype(np.uint8)
        _draw_contours(canvas, region, tuple(int(c) for c in colour))
    return canvas


def comparison_overlay(image: np.ndarray, prediction: np.ndarray, ground_truth: np.ndarray,
                       size: Sequence[int] | None = None, thickness: int = 1) -> np.ndarray:
    """Prediction (red) and ground-truth (green) outlines of every foreground class on the gray image, yellow where
    the two outlines share a pixel.

    Args:
        image: (H, W) any range.
        prediction: (H, W) class indices.
        ground_truth: (H, W) class indices.
        size: (rows, cols) to draw at, or None for (H, W): an image scored at the square training size is drawn in
            its own aspect (:func:`aspect_size`), the masks resized by nearest neighbour before their outlines are
            drawn, so that the outlines are not squeezed with the picture.
        thickness: of the outlines, in pixels of the drawing.

    Returns:
        (rows, 2 cols, 3) uint8 RGB: the image with both outlines, then the image alone for comparison.

    Raises:
        ValueError: the prediction's or the ground truth's shape is not the image's.
    """
    _check_shape(image, prediction, "prediction")
    _check_shape(image, ground_truth, "ground truth")
    if size is not None:
        size = (int(size[0]), int(size[1]))
        image, prediction, ground_truth = (_resized(image, size, nearest=False), _resized(prediction, size, True),
                                           _resized(ground_truth, size, True))
    gray = np.repeat(to_uint8_gray(image)[..., None], 3, axis=2)
    canvas = gray.copy()
    truth, predicted = _contour_pixels(ground_truth > 0, thickness), _contour_pixels(prediction > 0, thickness)
    # one colour per pixel, not one outline over the other: the red outline once hid the green where they agreed,
    # so a perfect prediction looked like a false positive without any truth
    canvas[truth & ~predicted] = GROUND_TRUTH_RGB
    canvas[predicted & ~truth] = PREDICTION_RGB
    canvas[truth & predicted] = AGREEMENT_RGB
    return np.concatenate([canvas, gray], axis=1)
