"""Overlays (visualize/overlays.py): to_uint8_gray's stretch (NaN and infinities included), mask_overlay's tint at
alpha and outline (outer edge only) only on the mask, a colour per class, its display values kept unstretched for
inference, comparison_overlay's two outlines of every foreground class beside the plain image (drawn in the image's
own aspect where given a size), and masks of another shape than the image refused naming both."""

from __future__ import annotations

import numpy as np
import pytest

from monai_ext.visualize.overlays import (
    AGREEMENT_RGB,
    CLASS_RGB,
    GROUND_TRUTH_RGB,
    PREDICTION_RGB,
    aspect_size,
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


@pytest.mark.parametrize("fill", [False, True], ids=["empty", "with_a_lesion"])
def test_mask_overlay_refuses_a_mask_of_another_shape(fill: bool) -> None:
    """An empty mask of another size came back as the plain picture, without a word."""
    mask = np.zeros((12, 16), np.uint8)
    if fill:
        mask[2:6, 2:6] = 1
    with pytest.raises(ValueError, match=r"mask shape \(12, 16\) differs from the image's \(24, 32\)"):
        mask_overlay(ramp(), mask)


@pytest.mark.parametrize("which", ["prediction", "ground truth"])
def test_comparison_overlay_refuses_a_mask_of_another_shape(which: str) -> None:
    """A (12, 16) truth on a (24, 32) image gave a (24, 64) picture with an outline at the wrong scale."""
    small, full = np.zeros((12, 16), np.int64), np.zeros((24, 32), np.int64)
    small[2:6, 2:6] = 1
    prediction, truth = (small, full) if which == "prediction" else (full, small)
    with pytest.raises(ValueError, match=rf"{which} shape \(12, 16\) differs from the image's \(24, 32\)"):
        comparison_overlay(ramp(), prediction, truth)


def test_the_tint_blends_the_class_colour_at_alpha() -> None:
    image, mask = np.full((9, 9), 0.5, np.float32), np.zeros((9, 9), np.int64)
    image[0, 0] = 1.0  # the stretch: 0.5 -> 127
    mask[2:7, 2:7] = 1
    out = mask_overlay(image, mask)
    expected = (0.65 * 127 + 0.35 * np.array(CLASS_RGB[0], np.float32)).astype(np.uint8)  # default alpha 0.35
    np.testing.assert_array_equal(out[4, 4], expected)  # inside, off the outline
    blended = mask_overlay(image, mask, alpha=0.5)[4, 4]
    np.testing.assert_array_equal(blended, (0.5 * 127 + 0.5 * np.array(CLASS_RGB[0], np.float32)).astype(np.uint8))


def test_a_third_class_takes_the_third_colour() -> None:
    mask = np.zeros((24, 32), np.int64)
    mask[4:10, 4:10] = 3
    out = mask_overlay(ramp(), mask)
    assert (out[4, 4:10] == np.array(CLASS_RGB[2], np.uint8)).all()  # its outline


def test_a_region_is_outlined_along_its_outer_edge_only() -> None:
    """RETR_EXTERNAL: a lesion with a hole (a ring) is outlined once, around it; the hole's edge is no second
    outline (the hole stays tinted as background, i.e. gray)."""
    mask = np.zeros((24, 32), np.int64)
    mask[4:20, 4:20] = 1
    mask[9:15, 9:15] = 0
    out = mask_overlay(np.zeros((24, 32), np.float32), mask)
    colour = np.array(CLASS_RGB[0], np.uint8)
    assert (out[4, 4:20] == colour).all()  # the outer edge
    assert not (out[8, 9:15] == colour).all(axis=-1).any()  # the ring's inner edge: tinted, not outlined
    assert not (out[9:15, 9:15]).any()  # the hole: the black image


def test_a_truth_of_class_two_is_outlined() -> None:
    truth = np.zeros((24, 32), np.int64)
    truth[4:12, 4:12] = 2
    out = comparison_overlay(np.zeros((24, 32), np.float32), np.zeros((24, 32), np.int64), truth)
    assert (out[4, 4:12] == np.array(GROUND_TRUTH_RGB, np.uint8)).all()


def test_infinities_show_as_the_ends_and_zero_is_the_low_end() -> None:
    np.testing.assert_array_equal(to_uint8_gray(np.array([[0, 1], [np.inf, 0.5]])), [[0, 255], [255, 127]])
    np.testing.assert_array_equal(to_uint8_gray(np.array([[0, 0.5]])), [[0, 255]])  # stretched to its own max


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


@pytest.mark.parametrize("image", [np.full((24, 32), 0.1, np.float32), np.linspace(0.0, 0.3, 24 * 32).reshape(24, 32),
                                   np.full((24, 32), 40, np.uint8)], ids=["uniform", "dim-ramp", "uint8"])
def test_an_unstretched_mask_overlay_keeps_the_display_values(image: np.ndarray) -> None:
    """Inference overlays (``stretch=False``) show the file as it is: stretched, a dim scan came out bright and a
    uniform one white."""
    mask = np.zeros((24, 32), np.int64)
    mask[6:14, 8:20] = 1
    out = mask_overlay(image, mask, stretch=False)
    shown = image if image.dtype == np.uint8 else np.rint(image * 255).astype(np.uint8)
    np.testing.assert_array_equal(out[mask == 0], np.repeat(shown[mask == 0][:, None], 3, axis=1))


@pytest.mark.parametrize("original, expected", [((64, 64), (192, 192)), ((96, 128), (192, 256)),
                                                ((128, 96), (256, 192)), ((40, 600), (51, 768))])
def test_aspect_size_keeps_the_images_aspect_with_its_shorter_side_at_the_square_side(original, expected) -> None:
    """A 40 x 600 strip: its longer side at most 4 x 192, not 2,880 pixels."""
    assert aspect_size(original, 192) == expected


def test_comparison_overlay_at_another_size_draws_the_resized_masks_in_that_aspect() -> None:
    """An image scored at the square training size is drawn in its own aspect: a lesion twice as wide as high in the
    file (a square on the squeezed 32 x 32 grid of a 32 x 64 image) is drawn twice as wide as high."""
    truth = np.zeros((32, 32), np.int64)
    truth[8:24, 8:24] = 1
    out = comparison_overlay(ramp(32, 32), truth, truth, size=(64, 128), thickness=2)
    assert out.shape == (64, 256, 3)
    rows, cols = np.nonzero(~is_gray(out[:, :128]))
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (15, 48, 31, 96)  # 2-px outline around 16:48, 32:96
    assert (out[rows, cols] == np.array(AGREEMENT_RGB, np.uint8)).all()  # a perfect prediction: all agreement


def test_aspect_size_refuses_an_empty_size() -> None:
    with pytest.raises(ValueError, match=r"sizes must be positive, got original \(0, 5\) and side 192"):
        aspect_size((0, 5), 192)
