"""ToGrayscale(d) against OpenCV's conversion; ScaleIntensityByDtype(d) by dtype range."""

from __future__ import annotations

import re

import cv2
import numpy as np
import pytest
import torch

from monai_ext.transforms import (
    NormalizeUltrasound,
    RandGammaGain,
    ScaleIntensityByDtype,
    ScaleIntensityByDtyped,
    ToGrayscale,
    ToGrayscaled,
)

RGB = np.random.default_rng(0).integers(0, 256, (32, 40, 3), dtype=np.uint8)


@pytest.mark.parametrize("as_tensor", [False, True])
def test_rgb_matches_opencv(as_tensor: bool) -> None:
    chw = RGB.transpose(2, 0, 1)
    img = torch.as_tensor(chw) if as_tensor else chw
    gray = np.asarray(ToGrayscale()(img))
    ref = cv2.cvtColor(RGB, cv2.COLOR_RGB2GRAY).astype(np.float32)
    assert gray.shape == (1, 32, 40)
    assert np.abs(gray[0] - ref).max() <= 1.0


@pytest.mark.parametrize("channels", [1, 2, 4])
def test_gray_alpha_and_rgba(channels: int) -> None:
    img = np.concatenate([RGB.transpose(2, 0, 1), np.full((1, 32, 40), 255, np.uint8)])[:channels]
    if channels < 3:
        img = np.concatenate([RGB.transpose(2, 0, 1)[:1], img[1:]])
    out = ToGrayscale()(img)
    assert out.shape == (1, 32, 40)
    if channels == 4:
        np.testing.assert_allclose(out, ToGrayscale()(img[:3]))


def test_too_many_channels() -> None:
    with pytest.raises(ValueError, match=r"\(5, 4, 4\)"):
        ToGrayscale()(np.zeros((5, 4, 4)))


def test_dict_version() -> None:
    out = ToGrayscaled("image")({"image": RGB.transpose(2, 0, 1), "other": 1})
    assert out["image"].shape == (1, 32, 40) and out["other"] == 1


@pytest.mark.parametrize("dtype, peak", [(np.uint8, 255), (np.uint16, 65535)])
def test_scale_by_dtype(dtype, peak: int) -> None:
    img = np.array([[[0, peak // 2, peak]]], dtype=dtype)
    np.testing.assert_allclose(ScaleIntensityByDtype()(img), img.astype(np.float32) / peak)
    t = ScaleIntensityByDtyped("image")({"image": torch.as_tensor(img.astype(np.int32) if dtype == np.uint16 else img)})
    assert float(t["image"].max()) == pytest.approx(1.0)


@pytest.mark.parametrize("dtype, peak", [(np.uint8, 255), (np.uint16, 65535), (np.int16, 32767), (np.int32, 65535)])
@pytest.mark.parametrize("as_tensor", [False, True])
def test_numpy_and_tensor_scale_alike(dtype, peak: int, as_tensor: bool) -> None:
    """int32 holds 16-bit images (PIL's mode "I", MONAI's PILReader): full scale 65535 for numpy and tensors alike."""
    img = np.array([[[0, peak // 2, peak]]], dtype=dtype)
    out = ScaleIntensityByDtype()(torch.as_tensor(img) if as_tensor else img)
    np.testing.assert_allclose(np.asarray(out), img.astype(np.float32) / peak, rtol=1e-6)


def test_16bit_png_read_by_pil_as_numpy_reaches_one(tmp_path) -> None:
    from PIL import Image

    Image.fromarray(np.array([[0, 65535]], np.uint16)).save(tmp_path / "frame16.png")
    with Image.open(tmp_path / "frame16.png") as frame:
        pixels = np.array(frame.convert("I"))  # mode "I": the int32 array PIL gives for 16-bit images
    assert pixels.dtype == np.int32
    np.testing.assert_allclose(ScaleIntensityByDtype()(pixels[None]), [[[0.0, 1.0]]])


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
@pytest.mark.parametrize("as_tensor", [False, True])
def test_gray_keeps_the_type_so_scaling_after_it_treats_rgb_and_gray_alike(dtype, as_tensor: bool) -> None:
    """ToGrayscale before ScaleIntensityByDtype: an RGB frame and a gray frame of the same scene land in the same
    range (before, RGB luma came out as float in [0, 255] and was then taken as already in [0, 1])."""
    peak = 1.0 if dtype == np.float32 else float(np.iinfo(dtype).max)
    rgb = (RGB.transpose(2, 0, 1).astype(np.float64) / 255 * peak).astype(dtype)
    gray = (cv2.cvtColor(RGB, cv2.COLOR_RGB2GRAY)[None].astype(np.float64) / 255 * peak).astype(dtype)
    convert = torch.as_tensor if as_tensor else np.asarray
    from_rgb = ToGrayscale()(convert(rgb))
    assert from_rgb.dtype == convert(rgb).dtype
    scaled_rgb = np.asarray(ScaleIntensityByDtype()(from_rgb))
    scaled_gray = np.asarray(ScaleIntensityByDtype()(ToGrayscale()(convert(gray))))
    assert np.abs(scaled_rgb - scaled_gray).max() <= 1.5 / 255


@pytest.mark.parametrize("as_tensor", [False, True])
@pytest.mark.parametrize("values, peak", [([0.0, 128.0, 255.0], 255.0), ([0.0, 0.5, 1.0], 1.0),
                                          ([0.0, 0.5, 1.3], 1.0),      # a [0, 1] frame overshooting after resizing
                                          ([np.nan, 0.5, 200.0], 255.0), ([np.inf, 0.2, 0.4], 1.0)])
def test_float_frames_in_0_255_are_scaled_as_the_rest_of_the_package_reads_them(values, peak, as_tensor) -> None:
    """MONAI's ``LoadImage`` with its default float32 keeps a PNG's 0-255: it passed through as if in [0, 1], and
    the speckle after it clipped 99 % of the pixels to 1."""
    frame = np.asarray(values, np.float32).reshape(1, 1, 3)
    out = ScaleIntensityByDtype()(torch.as_tensor(frame) if as_tensor else frame)
    np.testing.assert_allclose(np.asarray(out), frame / peak, rtol=1e-6)


@pytest.mark.parametrize("dtype", [np.int64, np.uint32, np.uint64, torch.int64])
def test_integer_types_of_no_known_full_scale_are_refused_naming_the_type(dtype) -> None:
    """``torch.tensor([[0, 128, 255]])`` (int64) was divided by 2**63 - 1: every pixel came out black."""
    frame = torch.tensor([[[0, 128, 255]]], dtype=dtype) if isinstance(dtype, torch.dtype) else \
        np.array([[[0, 128, 255]]], dtype)
    with pytest.raises(ValueError, match=f"an image of type {re.escape(str(frame.dtype))} has no known full scale"):
        ScaleIntensityByDtype()(frame)


@pytest.mark.parametrize("transform", [ScaleIntensityByDtype(), NormalizeUltrasound("imagenet"),
                                       RandGammaGain(1.0, gamma=(1.0, 1.0), gain=(1.0, 1.0))])
@pytest.mark.parametrize("as_tensor", [False, True])
def test_16_bit_pixels_read_as_float_are_refused(transform, as_tensor) -> None:
    """``LoadImage``'s default float32 keeps a 16-bit PNG at 0-65535: taken as [0, 255], an identity gamma still
    saturated 63 of 64 pixels to white, with no error."""
    frame = np.linspace(0, 60000, 64, dtype=np.float32).reshape(1, 8, 8)
    with pytest.raises(ValueError, match=r"values up to 60000 is neither in \[0, 1\] nor in \[0, 255\]: 16-bit"):
        transform(torch.as_tensor(frame) if as_tensor else frame)
    transform(np.clip(frame, 0, 382.0))  # a [0, 255] frame overshooting after resizing is still read


@pytest.mark.parametrize("as_tensor", [False, True])
def test_a_boolean_image_is_0_and_1(as_tensor) -> None:
    frame = np.array([[[False, True]]])
    out = ScaleIntensityByDtype()(torch.as_tensor(frame) if as_tensor else frame)
    np.testing.assert_array_equal(np.asarray(out), [[[0.0, 1.0]]])


@pytest.mark.parametrize("kind", ["numpy", "tensor", "metatensor"])
@pytest.mark.parametrize("values, peak", [([0.0, 0.5, 200.0], 255.0), ([np.nan, 0.5, 200.0], 255.0),
                                          ([np.inf, 0.2, 0.4], 1.0), ([-np.inf, 0.2, 300.0], 255.0),
                                          ([np.nan, np.inf, -np.inf], 1.0), ([-5.0, -1.0, np.nan], 1.0),
                                          ([], 1.0), ([np.nan, 1e5, 0.0], None), ([np.inf, 1e5, 0.0], None)])
def test_float_peak_ignores_non_finite_pixels_for_every_array_type(values, peak, kind) -> None:
    """The largest finite value decides (one plain max, masking only when that max is NaN or inf): NaN or inf never
    does, and a finite value above 382.5 is refused whatever non-finite pixels sit beside it."""
    from monai.data import MetaTensor

    from monai_ext.transforms.intensity import float_peak

    frame = np.asarray(values, np.float32)
    img = frame if kind == "numpy" else torch.as_tensor(frame) if kind == "tensor" else MetaTensor(frame)
    if peak is None:
        with pytest.raises(ValueError, match="values up to 100000 is neither"):
            float_peak(img)
    else:
        assert float_peak(img) == peak
