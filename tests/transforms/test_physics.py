"""Physics-grounded augmentations: MONAI conventions, physics checked against closed forms."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from monai_ext.transforms import (
    RandAxialLateralBlur,
    RandAxialLateralBlurd,
    RandDepthGain,
    RandDepthGaind,
    RandDynamicRange,
    RandDynamicRanged,
    RandGammaGain,
    RandGammaGaind,
    RandSpeckle,
    RandSpeckled,
)
from monai_ext.transforms.physics import apply_dynamic_range, depth_gain_curve, rayleigh_from_uniform

PAIRS = [
    (RandSpeckle, RandSpeckled, {"strength": (0.3, 0.6)}),
    (RandSpeckle, RandSpeckled, {"distribution": "gamma"}),
    (RandDepthGain, RandDepthGaind, {}),
    (RandDynamicRange, RandDynamicRanged, {}),
    (RandGammaGain, RandGammaGaind, {}),
    (RandAxialLateralBlur, RandAxialLateralBlurd, {"axial_sigma": (1.0, 2.0)}),
]


def image() -> np.ndarray:
    img = np.random.default_rng(0).uniform(0.2, 0.9, size=(1, 40, 32)).astype(np.float32)
    img[:, :, :4] = 0.0  # background outside the field of view
    return img


@pytest.mark.parametrize("array_cls,dict_cls,kwargs", PAIRS)
@pytest.mark.parametrize("as_tensor", [False, True])
def test_deterministic_typed_and_background_kept(array_cls, dict_cls, kwargs, as_tensor):
    img = torch.as_tensor(image()) if as_tensor else image()
    a = array_cls(prob=1.0, **kwargs).set_random_state(4)(img)
    b = array_cls(prob=1.0, **kwargs).set_random_state(4)(img)
    c = array_cls(prob=1.0, **kwargs).set_random_state(5)(img)
    assert isinstance(a, torch.Tensor) == as_tensor and a.shape == img.shape and a.dtype == img.dtype
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert not np.array_equal(np.asarray(a), np.asarray(c))
    assert not np.array_equal(np.asarray(a), np.asarray(img))
    assert float(np.abs(np.asarray(a)[:, :, :4]).max()) == 0.0
    assert 0.0 <= float(np.asarray(a).min()) and float(np.asarray(a).max()) <= 1.0
    assert array_cls(prob=0.0, **kwargs)(img) is img


@pytest.mark.parametrize("array_cls,dict_cls,kwargs", PAIRS)
def test_dict_version_one_draw_for_every_key_equals_array_version(array_cls, dict_cls, kwargs):
    img = image()
    out = dict_cls(["image", "other"], prob=1.0, **kwargs).set_random_state(9)({"image": img, "other": img.copy()})
    np.testing.assert_array_equal(out["image"], out["other"])
    np.testing.assert_array_equal(out["image"], array_cls(prob=1.0, **kwargs).set_random_state(9)(img))


@pytest.mark.parametrize("array_cls,dict_cls,kwargs", PAIRS)
def test_dict_version_reports_the_probability_it_applies(array_cls, dict_cls, kwargs):
    """It said 1.0 whatever it was given, as read by anything that logs a recipe's transforms."""
    assert dict_cls("image", prob=0.3, **kwargs).prob == array_cls(prob=0.3, **kwargs).prob == 0.3


def test_rayleigh_noise_has_unit_power_and_rayleigh_median():
    u = torch.rand(200_000, generator=torch.Generator().manual_seed(0))
    n = rayleigh_from_uniform(u)
    assert abs(float((n**2).mean()) - 1.0) < 0.01
    assert abs(float(n.median()) - np.sqrt(np.log(2))) < 0.01  # Rayleigh median with E[n^2] = 1


def test_speckle_adds_its_log_noise_in_db():
    """On the dB scale speckle is additive: img' - img = strength * 20 log10(n) / D where nothing clips."""
    t = RandSpeckle(prob=1.0, strength=(0.5, 0.5)).set_random_state(1)
    img = np.full((1, 16, 16), 0.5, np.float32)
    out = t(img)
    expected = 0.5 + 0.5 * 20 * np.log10(t._noise.numpy()[0]) / 60.0
    inside = (expected > 0) & (expected < 1)
    np.testing.assert_allclose(out[inside], expected[inside], atol=1e-5)


def test_dynamic_range_keeps_white_and_stretches_db():
    img = torch.tensor([1.0, 0.5, 0.25]).view(1, 1, 1, 3)
    out = apply_dynamic_range(img, 120.0, 60.0)  # twice the range: every dB value halves
    torch.testing.assert_close(out.flatten(), torch.tensor([1.0, 0.75, 0.625]))


def test_depth_gain_curve_interpolates_nodes_and_ramps_attenuation():
    curve = depth_gain_curve(torch.tensor([6.0]), torch.tensor([[0.0, 3.0, 0.0]]), 5)
    torch.testing.assert_close(curve, torch.tensor([[0.0, 1.5 + 1.5, 3.0 + 3.0, 1.5 + 4.5, 6.0]]))


@pytest.mark.parametrize("height", [1, 5, 64])
def test_one_time_gain_node_is_a_flat_gain_over_depth(height):
    """``nodes=1`` (documented as allowed) is one slider for the whole depth: the curve read past its only node."""
    curve = depth_gain_curve(torch.tensor([0.0, 6.0]), torch.tensor([[2.5], [-1.0]]), height)
    depth = torch.linspace(0.0, 1.0, height)
    torch.testing.assert_close(curve, torch.stack([torch.full((height,), 2.5), -1.0 + 6.0 * depth]))
    img = torch.full((1, height, 7), 0.5)
    out = RandDepthGain(prob=1.0, attenuation_db=(0.0, 0.0), nodes=1).set_random_state(0)(img)
    assert torch.all(out == out[0, 0, 0]) and out[0, 0, 0] != 0.5  # one gain, the same at every depth


def test_blur_is_axial_or_lateral():
    img = np.full((1, 21, 21), 0.1, np.float32)  # tissue everywhere (zeros would count as background)
    img[0, 10, 10] = 1.0
    axial = RandAxialLateralBlur(1.0, (1.5, 1.5), (0.0, 0.0))(img)
    lateral = RandAxialLateralBlur(1.0, (0.0, 0.0), (1.5, 1.5))(img)
    assert axial[0, 9, 10] > 0.15 and axial[0, 10, 9] == pytest.approx(0.1)  # spread along depth only
    assert lateral[0, 10, 9] > 0.15 and lateral[0, 9, 10] == pytest.approx(0.1)
    assert axial[0, :, 10].sum() == pytest.approx(img[0, :, 10].sum(), rel=1e-5)  # energy kept


@pytest.mark.parametrize("cls,kwargs,message", [
    (RandSpeckle, {"distribution": "uniform"}, "distribution must be one of"),
    (RandSpeckle, {"strength": (0.5, 0.1)}, r"strength must be an increasing pair >= 0.0, got \(0.5, 0.1\)"),
    (RandDepthGain, {"nodes": 0}, "nodes must be at least 1, got 0"),
    (RandDynamicRange, {"range_db": (0.0, 10.0)}, "range_db must be an increasing pair >= 1.0"),
    (RandGammaGain, {"gamma": (0.0, 1.0)}, "gamma must be an increasing pair"),
    (RandSpeckle, {"dynamic_range_db": 0.0}, "dynamic_range_db must be positive, got 0.0"),
    (RandDepthGain, {"dynamic_range_db": -60}, "dynamic_range_db must be positive, got -60"),
    (RandDynamicRange, {"dynamic_range_db": 0}, "dynamic_range_db must be positive, got 0"),
    (RandSpeckled, {"keys": "image", "dynamic_range_db": 0.0}, "dynamic_range_db must be positive, got 0.0"),
])
def test_bad_arguments(cls, kwargs, message):
    with pytest.raises(ValueError, match=message):
        cls(**kwargs)


@pytest.mark.parametrize("array_cls,dict_cls,kwargs", PAIRS)
@pytest.mark.parametrize("dtype,peak", [(np.uint8, 255), (np.uint16, 65535)])
def test_integer_images_are_augmented_in_their_own_range(array_cls, dict_cls, kwargs, dtype, peak):
    """An 8- or 16-bit frame is augmented as its [0, 1] version and comes back in its type; before, it was clamped
    to [0, 1] (every tissue pixel became 1)."""
    frame = np.rint(image() * peak).astype(dtype)
    out = array_cls(prob=1.0, **kwargs).set_random_state(4)(frame)
    reference = array_cls(prob=1.0, **kwargs).set_random_state(4)(frame.astype(np.float32) / peak)
    assert out.dtype == dtype
    assert np.abs(out.astype(np.float64) - np.rint(reference.astype(np.float64) * peak)).max() <= 1


@pytest.mark.parametrize("shape", [(1, 1, 20), (1, 20, 1), (1, 1, 1)])
def test_the_blur_takes_images_one_pixel_wide_or_tall(shape) -> None:
    """Reflect padding refused an axis one pixel long: a 1-row strip crashed where the other transforms passed."""
    img = torch.rand(shape) + 0.1
    out = RandAxialLateralBlur(prob=1.0, axial_sigma=(1.0, 1.0), lateral_sigma=(1.0, 1.0))(img)
    assert out.shape == img.shape and torch.isfinite(torch.as_tensor(out)).all()


def test_the_blur_does_not_spread_a_nan_pixel() -> None:
    img = torch.rand(1, 16, 16) + 0.1
    img[0, 8, 8] = float("nan")
    out = torch.as_tensor(RandAxialLateralBlur(prob=1.0, axial_sigma=(1.0, 1.0), lateral_sigma=(1.0, 1.0))(img))
    assert torch.isfinite(out).all()  # 63 NaN neighbours before


@pytest.mark.parametrize("prob, changed", [(0.0, False), (1.0, True)])
def test_a_dict_transforms_prob_set_later_is_the_one_applied(prob: float, changed: bool) -> None:
    """Turning an augmentation off by its prob (for validation, or on a schedule) left it on: the wrapper's prob was
    a copy the array transform never read (MONAI's own dict transforms obey theirs)."""
    image = np.full((1, 16, 16), 0.5, np.float32)
    transform = RandGammaGaind("image", prob=1.0 - prob)
    transform.prob = prob
    assert transform.transform.prob == prob
    for seed in range(5):
        out = transform.set_random_state(seed)({"image": image})["image"]
        assert (not np.array_equal(out, image)) is changed


def test_applying_without_a_draw_asks_for_randomize() -> None:
    with pytest.raises(RuntimeError, match=r"call randomize\(\) before applying the transform with randomize=False"):
        RandSpeckle(prob=1.0)(np.ones((1, 8, 8), np.float32), randomize=False)


@pytest.mark.parametrize("build, message", [
    (lambda: RandSpeckle(strength=0.3), "strength must be a (low, high) pair of numbers, got 0.3"),
    (lambda: RandSpeckle(strength=(0.1, 0.2, 0.3)), "strength must be a (low, high) pair of numbers, got (0.1, 0.2, 0.3)"),
    (lambda: RandSpeckle(strength=("a", 1)), "strength must be a (low, high) pair of numbers, got ('a', 1)"),
    (lambda: RandSpeckle(strength="01"), "strength must be a (low, high) pair of numbers, got '01'"),  # not (0, 1)
])
def test_a_range_that_is_not_a_pair_is_named_in_the_message(build, message: str) -> None:
    """A single number (as many MONAI transforms take for a range) failed with "'float' object is not iterable"."""
    with pytest.raises(ValueError, match=re.escape(message)):
        build()


@pytest.mark.parametrize("shape", [(1, 64, 5), (1, 5, 64), (1, 9, 12)])
def test_the_blur_of_a_narrow_image_is_a_gaussian_along_its_long_axis(shape) -> None:
    """One kernel radius for both axes, cut to the shorter side's, cut the long axis' Gaussian to a few taps: on a
    5-pixel-wide image an axial sigma of 1.5 blurred depth with 5 taps (0.07 off on values in [0, 1]). The reference
    is scipy's Gaussian (reflect is scipy's "mirror"); it mirrors again past the short side, which torch's padding
    cannot: the one place the two may part, by less than 2e-3 (the 3-sigma kernel's tail cut at 2.7 sigma)."""
    from scipy.ndimage import gaussian_filter

    img = np.random.default_rng(1).uniform(0.1, 0.9, size=shape).astype(np.float32)
    out = RandAxialLateralBlur(prob=1.0, axial_sigma=(1.5, 1.5), lateral_sigma=(1.5, 1.5))(img)
    expected = gaussian_filter(img[0].astype(np.float64), 1.5, mode="mirror", truncate=3.0)
    np.testing.assert_allclose(out[0], expected, atol=2e-3, rtol=0)


@pytest.mark.parametrize("array_cls,dict_cls,kwargs", PAIRS)
@pytest.mark.parametrize("shape", [(40, 32), (2, 1, 40, 32), (1, 1, 40, 32)], ids=["no channel", "batch", "batch of 1"])
@pytest.mark.parametrize("as_tensor", [False, True])
def test_an_image_without_its_channel_or_a_batch_is_refused_naming_its_shape(array_cls, dict_cls, kwargs, shape,
                                                                              as_tensor) -> None:
    """The draws are shaped from ``img.shape[1:]``: an (H, W) frame got one speckle row repeated down the image and
    came back (1, H, W); a batch got its depth-gain curve over the channel axis (a flat gain), or a torch error."""
    img = np.full(shape, 0.5, np.float32)
    img = torch.as_tensor(img) if as_tensor else img
    message = re.escape(f"must be one channel-first 2-D image (C, H, W), got shape {shape!r}")
    with pytest.raises(ValueError, match=f"the image {message}"):
        array_cls(prob=1.0, **kwargs).set_random_state(0)(img)
    with pytest.raises(ValueError, match=f"key 'image' {message}"):
        dict_cls("image", prob=1.0, **kwargs).set_random_state(0)({"image": img})


@pytest.mark.parametrize("dict_cls,kwargs,other", [
    (RandSpeckled, {}, (1, 1, 32)),  # broadcast silently: came back (1, 40, 32)
    (RandSpeckled, {}, (1, 40, 1)),
    (RandSpeckled, {"distribution": "gamma"}, (1, 20, 16)),
    (RandDepthGaind, {}, (1, 1, 32)),
    (RandDepthGaind, {}, (1, 20, 32)),
])
def test_a_dict_key_the_shaped_draw_does_not_fit_is_refused(dict_cls, kwargs, other) -> None:
    """One draw from the first key: a speckle field (H, W) or a gain curve over H cannot serve a key of another
    size; torch broadcast a one-row key to the first key's size, or failed naming neither key nor cause."""
    data = {"image": np.full((1, 40, 32), 0.5, np.float32), "other": np.full(other, 0.5, np.float32)}
    with pytest.raises(ValueError, match=re.escape(f"spatial shape (40, 32), got an image of shape {other!r}")):
        dict_cls(["image", "other"], prob=1.0, **kwargs).set_random_state(0)(data)


@pytest.mark.parametrize("dict_cls,kwargs,other", [
    (RandDepthGaind, {}, (1, 40, 7)),  # one gain per row: any width
    (RandDynamicRanged, {}, (3, 9, 5)),
    (RandGammaGaind, {}, (1, 9, 5)),
    (RandAxialLateralBlurd, {}, (1, 9, 5)),
])
def test_draws_that_are_not_shaped_serve_keys_of_any_size(dict_cls, kwargs, other) -> None:
    data = {"image": np.full((1, 40, 32), 0.5, np.float32), "other": np.full(other, 0.5, np.float32)}
    out = dict_cls(["image", "other"], prob=1.0, **kwargs).set_random_state(0)(data)
    assert out["other"].shape == other
