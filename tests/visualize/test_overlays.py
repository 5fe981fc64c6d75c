"""Overlays (visualize/overlays.py): to_uint8_gray's stretch (NaN included), mask_overlay's tint and outline only
on the mask, comparison_overlay's two outlines beside the plain image."""

from __future__ import annotations

import numpy as np
import pytest

from monai_ext.visualize.overlays import (
    CLASS_RGB,
    GROUND_TRUTH_RGB,
    PREDICTION_RGB,
    comparison_overlay,
    mask_overlay,
    to_uint8_gray,
)


def ramp(h: int = 24, w: int = 32) -> np.ndarray:
    return np.linspace(-1.0, 1.0, h * w, dtype=np.float32).reshape(h, w)


def is_gray(rgb: np.ndarray) -> np.ndarray:
    """Per pixel: the three channels are equal."""
    return (rgb[..., 0] == rgb[..., 1]) & (rgb[..., 1] == rgb[..., 2])


def test_a_nan_pixel_does_not_blacken_the_picture() -> None:
    """to_uint8_gray took the min and max with the NaN: the whole picture came out 0."""
    image = np.linspace(-1.0, 1.0, 12, dtype=np.float32).reshape(3, 4)
    expected = ((image + 1) / 2 * 255).astype(np.uint8)
    image[1, 1] = np.nan
    gray = to_uint8_gray(image)
    expected[1, 1] = 0  # the NaN, at the low end
    np.testing.assert_array_equal(gray, expected)


def test_to_uint8_gray_stretches_to_the_full_range_with_zero_included() -> None:
    gray = to_uint8_gray(ramp())
    assert gray.dtype == np.uint8 and gray.min() == 0 and gray.max() == 255
    assert (to_uint8_gray(np.full((4, 4), 7.0)) == 255).all()  # 0 is the low end of the stretch
    assert not to_uint8_gray(np.zeros((4, 4))).any()


def test_mask_overlay_colours_only_the_mask() -> None:
    image, mask = ramp(), np.zeros((24, 32), np.int64)
    mask[6:14, 8:20] = 1
    mask[16:22, 24:30] = 2
    out = mask_overlay(image, mask)
    assert out.shape == (24, 32, 3) and out.dtype == np.uint8
    gray = to_uint8_gray(image)
    outside = mask == 0
    np.testing.assert_array_equal(out[outside], np.repeat(gray[outside][:, None], 3, axis=1))  # left gray
    assert not is_gray(out)[mask > 0].any()  # every mask pixel tinted
    border = out[6, 8:20]  # the outline of class 1 in its own colour
    assert (border == np.array(CLASS_RGB[0], np.uint8)).all()
    assert (out[16, 24:30] == np.array(CLASS_RGB[1], np.uint8)).all()


def test_mask_overlay_of_an_empty_mask_is_the_gray_image() -> None:
    image = ramp()
    out = mask_overlay(image, np.zeros((24, 32), np.uint8))
    np.testing.assert_array_equal(out, np.repeat(to_uint8_gray(image)[..., None], 3, axis=2))


def test_mask_overlay_refuses_a_mask_of_another_shape() -> None:
    mask = np.zeros((12, 16), np.uint8)
    mask[2:6, 2:6] = 1
    with pytest.raises(IndexError):
        mask_overlay(ramp(), mask)


def test_comparison_overlay_outlines_beside_the_plain_image() -> None:
    image = ramp()
    truth, prediction = np.zeros((24, 32), np.int64), np.zeros((24, 32), np.int64)
    truth[4:12, 4:12] = 1
    prediction[14:20, 18:28] = 2
    out = comparison_overlay(image, prediction, truth)
    assert out.shape == (24, 64, 3) and out.dtype == np.uint8
    plain = np.repeat(to_uint8_gray(image)[..., None], 3, axis=2)
    np.testing.assert_array_equal(out[:, 32:], plain)  # the image alone on the right
    left = out[:, :32]
    coloured = ~is_gray(left)
    outline_truth = np.zeros((24, 32), bool)
    outline_truth[4:12, 4:12] = True
    outline_truth[5:11, 5:11] = False
    outline_prediction = np.zeros((24, 32), bool)
    outline_prediction[14:20, 18:28] = True
    outline_prediction[15:19, 19:27] = False
    np.testing.assert_array_equal(coloured, outline_truth | outline_prediction)  # colour only on the outlines
    assert (left[outline_truth] == np.array(GROUND_TRUTH_RGB, np.uint8)).all()
    assert (left[outline_prediction] == np.array(PREDICTION_RGB, np.uint8)).all()
