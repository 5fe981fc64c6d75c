"""NormalizeUltrasound(d) against MONAI's RepeatChannel + NormalizeIntensity (what the bundles configure)."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from monai.transforms import NormalizeIntensity, RepeatChannel

from monai_ext.transforms import IMAGENET_MEAN, IMAGENET_STD, NormalizeUltrasound, NormalizeUltrasoundd

FRAME = np.random.default_rng(0).integers(0, 256, (1, 24, 20)).astype(np.uint8)


def reference(unit: np.ndarray, mode: str) -> np.ndarray:
    """MONAI's transforms on a [0, 1] frame: ImageNet statistics per channel, or the image's own statistics."""
    three = np.asarray(RepeatChannel(3)(unit))
    if mode == "imagenet":
        return np.asarray(NormalizeIntensity(IMAGENET_MEAN, IMAGENET_STD, channel_wise=True)(three))
    return np.asarray(NormalizeIntensity()(three))


@pytest.mark.parametrize("mode", ["imagenet", "zscore"])
@pytest.mark.parametrize("dtype,peak", [(np.float32, 1.0), (np.uint8, 255), (np.uint16, 65535), (np.int32, 65535)])
@pytest.mark.parametrize("as_tensor", [False, True])
def test_matches_monai_for_every_pixel_type(mode, dtype, peak, as_tensor):
    """Integer frames are taken over their type's full scale (int32: 16-bit, as PIL holds it); before, uint8 was
    normalised as if 0-255 were 0-1 (ImageNet mode gave values near 1000)."""
    unit = FRAME.astype(np.float32) / 255
    frame = unit if dtype == np.float32 else np.rint(unit * peak).astype(dtype)
    out = NormalizeUltrasound(mode, 3)(torch.as_tensor(frame) if as_tensor else frame)
    assert isinstance(out, torch.Tensor) == as_tensor and out.dtype in (torch.float32, np.float32)
    np.testing.assert_allclose(np.asarray(out), reference(unit, mode), atol=1e-5)


@pytest.mark.parametrize("shape", [(1, 512, 512), (1, 64, 64), (1, 1, 1)])
@pytest.mark.parametrize("value", [0.7, 0.3, 0.0])
@pytest.mark.parametrize("channels", [1, 3])
def test_zscore_of_a_constant_frame_is_zero(shape, value, channels):
    """A constant 0.7 frame of 512 x 512 came out with values up to 0.12 (float32 rounding of the mean divided by
    a 1e-6 floor), and a 1 x 1 image as NaN with one channel. (MONAI's ``NormalizeIntensity`` is no reference here:
    its float32 statistics give such frames values of +-1.)"""
    frame = np.full(shape, value, np.float32)
    out = np.asarray(NormalizeUltrasound("zscore", channels)(frame))
    assert out.shape == (channels, *shape[1:])
    np.testing.assert_array_equal(out, np.zeros_like(out))


def test_zscore_does_not_depend_on_the_channel_count():
    """The statistics were the sample std over the replicated channels: a 2 x 2 image gave 1.377 with one channel
    and 1.522 with three."""
    frame = np.array([[[0.1, 0.5], [0.2, 0.9]]], np.float32)
    one, three = (np.asarray(NormalizeUltrasound("zscore", c)(frame)) for c in (1, 3))
    np.testing.assert_allclose(three, np.repeat(one, 3, axis=0), atol=1e-7)
    np.testing.assert_allclose(one, (frame - frame.mean()) / frame.std(), atol=1e-6)  # numpy: population std


def test_zscore_of_a_frame_with_nan_pixels_keeps_its_finite_pixels():
    """One NaN pixel made the whole frame NaN. Now the statistics are of the finite pixels, and a NaN pixel is 0."""
    unit = FRAME.astype(np.float32) / 255
    frame = unit.copy()
    frame[0, 3, 4] = np.nan
    out = np.asarray(NormalizeUltrasound("zscore", 1)(frame))
    finite = np.isfinite(frame)
    expected = (frame[finite] - frame[finite].mean()) / frame[finite].std()
    np.testing.assert_allclose(out[finite], expected, atol=1e-5)
    assert out[0, 3, 4] == 0.0


def test_corpus_statistics_of_uint8_frames_are_on_the_scale_they_are_applied_to():
    """Statistics of the corpus cache's uint8 frames came out in 0-255 (mean 128) and were applied to frames
    scaled to [0, 1], giving a mean of -1.7 and a std of 0.004."""
    from monai_ext.transforms import corpus_statistics

    frames = [FRAME, np.rint(FRAME * 0.5).astype(np.uint8)]
    units = [f.astype(np.float64) / 255 for f in frames]
    all_units = np.concatenate([u.ravel() for u in units])
    for given in (frames, units, [torch.as_tensor(f) for f in frames]):
        mean, std = corpus_statistics(given)
        assert mean == pytest.approx(all_units.mean(), rel=1e-9) and std == pytest.approx(all_units.std(), rel=1e-9)
    out = NormalizeUltrasound("corpus", 1, mean=mean, std=std)(frames[0])
    assert abs(float(out.mean())) < 1.0 and 0.5 < float(out.std()) < 2.0


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("as_tensor", [False, True])
def test_zscore_of_an_all_nan_frame_is_zero(channels, as_tensor):
    """The docstring's promise for a frame with no finite pixel (a dropped frame of a cine loop): its statistics had
    no pixel to count, and 0 / 0 made every output pixel NaN."""
    frame = np.full((1, 6, 5), np.nan, np.float32)
    out = np.asarray(NormalizeUltrasound("zscore", channels)(torch.as_tensor(frame) if as_tensor else frame))
    np.testing.assert_array_equal(out, np.zeros((channels, 6, 5), np.float32))


@pytest.mark.parametrize("value", [7, 11, 44])
def test_corpus_statistics_of_constant_frames_have_a_zero_std_not_nan(value):
    """E[x^2] - E[x]^2 of a constant corpus comes out a little below 0 by rounding for these values: its square root
    was NaN, which NormalizeUltrasound's check (std <= 0) lets through, and every normalised frame was NaN."""
    from monai_ext.transforms import corpus_statistics

    mean, std = corpus_statistics([np.full((1, 10, 10), value, np.uint8)] * 2)
    assert mean == pytest.approx(value / 255, rel=1e-12)
    assert std == 0.0
    with pytest.raises(ValueError, match="needs mean and a positive std"):  # said, instead of NaN frames
        NormalizeUltrasound("corpus", 1, mean=mean, std=std)


@pytest.mark.parametrize("images", [[], iter(()), (f for f in [])])
def test_corpus_statistics_of_no_images_is_a_named_error(images):
    """An empty training list (a filter that kept nothing) is said, not a ZeroDivisionError."""
    from monai_ext.transforms import corpus_statistics

    with pytest.raises(ValueError, match="corpus_statistics got no images"):
        corpus_statistics(images)


def test_dict_version_and_corpus_mode():
    unit = FRAME.astype(np.float32) / 255
    out = NormalizeUltrasoundd("image", mode="corpus", channels=1, mean=0.3, std=0.2)({"image": unit})["image"]
    np.testing.assert_allclose(out, (unit - 0.3) / 0.2, rtol=1e-6)


@pytest.mark.parametrize("kwargs,message", [
    ({"mode": "minmax"}, "mode must be one of .*, got 'minmax'"),
    ({"channels": 2}, "channels must be 1 or 3, got 2"),
    ({"mode": "corpus", "mean": 0.3, "std": 0.0}, "got mean=0.3, std=0.0"),
])
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        NormalizeUltrasound(**kwargs)


@pytest.mark.parametrize("shape", [(3, 4, 4), (4, 4), (1, 1, 4, 4)])
def test_anything_but_one_gray_image_is_refused_with_its_own_shape(shape):
    """A (3, H, W) frame was reported as a batch of shape (1, 3, 4, 4): an axis the caller never passed."""
    with pytest.raises(ValueError, match=rf"expected a gray image \(1, H, W\), got shape {re.escape(repr(shape))}"):
        NormalizeUltrasound("imagenet")(np.zeros(shape, np.float32))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("as_tensor", [False, True])
def test_corpus_statistics_leave_non_finite_pixels_out(bad, as_tensor):
    """One NaN or inf pixel in a corpus made its mean and std NaN, which mode "corpus" took: every normalised frame
    came out NaN, with no error. The finite pixels' statistics are those of the corpus without the bad pixel."""
    from monai_ext.transforms import corpus_statistics

    frame = FRAME.astype(np.float32) / 255
    spoilt = frame.copy()
    spoilt[0, 3, 4] = bad
    kept = np.delete(frame.ravel(), 3 * frame.shape[2] + 4).astype(np.float64)
    images = [torch.as_tensor(spoilt) if as_tensor else spoilt, FRAME]
    mean, std = corpus_statistics(images)
    everything = np.concatenate([kept, FRAME.ravel() / 255.0])
    assert mean == pytest.approx(everything.mean(), rel=1e-9) and std == pytest.approx(everything.std(), rel=1e-9)


@pytest.mark.parametrize("mean,std", [(float("nan"), 0.2), (0.5, float("nan")), (0.5, float("inf")),
                                      (float("inf"), 0.2)])
def test_corpus_mode_refuses_statistics_that_are_not_finite(mean, std):
    """A NaN std passed the check ``std <= 0`` (every output NaN), an infinite one gave all zeros."""
    with pytest.raises(ValueError, match=re.escape(f"got mean={mean!r}, std={std!r}")):
        NormalizeUltrasound("corpus", 1, mean=mean, std=std)
