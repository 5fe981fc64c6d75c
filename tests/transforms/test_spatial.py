"""RandResizedCrop(d): MONAI conventions, torchvision-style sampling, keep_top, one draw for image and mask."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from monai.transforms import Compose, Invertd, RandFlipd

from monai_ext.transforms import RandResizedCrop, RandResizedCropd


def row_index_image(h: int = 60, w: int = 80) -> np.ndarray:
    return np.repeat(np.arange(h, dtype=np.float32)[:, None], w, axis=1)[None]  # value = row


@pytest.mark.parametrize("as_tensor", [False, True])
def test_deterministic_after_set_random_state(as_tensor: bool) -> None:
    img = np.random.default_rng(0).random((1, 60, 80)).astype(np.float32)
    img = torch.as_tensor(img) if as_tensor else img
    a = RandResizedCrop(32).set_random_state(5)(img)
    b = RandResizedCrop(32).set_random_state(5)(img)
    c = RandResizedCrop(32).set_random_state(6)(img)
    assert tuple(a.shape) == (1, 32, 32)
    torch.testing.assert_close(torch.as_tensor(a), torch.as_tensor(b))
    assert not torch.allclose(torch.as_tensor(a), torch.as_tensor(c))


def test_keep_top_always_starts_at_the_first_row() -> None:
    crop = RandResizedCrop(16, scale=(0.2, 0.6), keep_top=True, mode="nearest").set_random_state(0)
    for _ in range(20):
        out = crop(row_index_image())
        assert float(out[0, 0].min()) == 0.0  # the top row of the output is image row 0
    free = RandResizedCrop(16, scale=(0.2, 0.6), mode="nearest").set_random_state(0)
    assert any(float(free(row_index_image())[0, 0].min()) > 0 for _ in range(20))


def test_crop_area_and_ratio_within_ranges() -> None:
    crop = RandResizedCrop(16, scale=(0.3, 0.5), ratio=(0.8, 1.25)).set_random_state(1)
    for _ in range(50):
        crop.randomize((100, 100))
        _, _, h, w = crop._box
        assert 0.27 <= h * w / 1e4 <= 0.53 and 0.75 <= w / h <= 1.33


def coordinate_image(h: int, w: int) -> np.ndarray:
    rows, cols = np.mgrid[:h, :w].astype(np.float32)
    return (rows * 1000 + cols)[None]  # value = 1000 * row + column


@pytest.mark.parametrize("shape, keep_top, box", [
    ((25, 100), False, (0, 33, 25, 33)),   # 4:1, wider than 4/3: the full height, 25 * 4/3 wide, centred
    ((100, 25), False, (33, 0, 33, 25)),   # 1:4, taller than 3/4: the full width, 25 / (3/4) tall, centred
    ((100, 25), True, (0, 0, 33, 25)),     # the same at the top
])
def test_when_no_draw_fits_the_crop_is_the_image_clipped_to_the_ratio_range(shape, keep_top, box) -> None:
    """95-100% of a 4:1 image at an aspect ratio of at most 4/3 never fits, so after ten draws the crop falls back
    as torchvision's does: width and height swapped there gave a box outside the image, or of the wrong shape."""
    crop = RandResizedCrop(16, scale=(0.95, 1.0), keep_top=keep_top, mode="nearest").set_random_state(0)
    img = coordinate_image(*shape)
    for _ in range(5):
        out = torch.as_tensor(crop(img))
        assert crop._box == box
        top, left, h, w = box
        rows, cols = out // 1000, out % 1000  # every output pixel comes from inside the box
        assert top <= rows.min() and rows.max() < top + h and left <= cols.min() and cols.max() < left + w


@pytest.mark.parametrize("shape", [(100, 100), (60, 200), (200, 60)])
def test_the_ratio_is_width_over_height(shape) -> None:
    """``ratio`` is width / height (torchvision's): read the other way round, a wide (1.5-2) range gave tall crops."""
    crop = RandResizedCrop(16, scale=(0.1, 0.3), ratio=(1.5, 2.0)).set_random_state(2)
    for _ in range(30):
        crop.randomize(shape)
        top, left, h, w = crop._box
        assert 1.5 * 0.9 <= w / h <= 2.0 * 1.1, crop._box  # rounding to whole pixels
        assert top + h <= shape[0] and left + w <= shape[1]


def test_dict_version_applies_one_draw_to_image_and_mask() -> None:
    img = row_index_image()
    data = {"image": img, "mask": img.copy()}
    out = RandResizedCropd(["image", "mask"], 24, mode=["nearest", "nearest"]).set_random_state(3)(data)
    torch.testing.assert_close(torch.as_tensor(out["image"]), torch.as_tensor(out["mask"]))
    single = RandResizedCrop(24, mode="nearest").set_random_state(3)(img)
    torch.testing.assert_close(torch.as_tensor(out["image"]), torch.as_tensor(single))


def crop_then_flip(seed: int) -> Compose:
    keys = ["image", "label"]
    # output larger than any box: nearest resizing up and back loses nothing, so the label must come back exactly
    crop = RandResizedCropd(keys, 48, scale=(0.3, 0.6), mode=["bilinear", "nearest-exact"])
    return Compose([crop, RandFlipd(keys, prob=1.0, spatial_axis=1)]).set_random_state(seed)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_inverse_puts_the_crop_back_where_it_was_cut(seed: int) -> None:
    """Its crop and resize left their own trace entries: ``Compose.inverse`` stopped silently at the crop's size
    with those entries left over, and ``Invertd`` raised on the transform after it."""
    label = np.zeros((1, 32, 40), np.uint8)
    label[:, 8:24, 10:30] = 1
    pipeline = crop_then_flip(seed)
    out = pipeline({"image": row_index_image(32, 40), "label": label})
    assert [op["class"] for op in out["label"].applied_operations] == ["RandResizedCrop", "RandFlipd"]
    top, left, h, w = pipeline.transforms[0].cropper._box
    out["pred"] = out["label"].clone()
    pred = Invertd("pred", pipeline, orig_keys="label", nearest_interp=False)(out)["pred"]  # as it was resized
    assert pred.shape == (1, 32, 40) and pred.applied_operations == []
    np.testing.assert_array_equal(pred[0, top:top + h, left:left + w].numpy(), label[0, top:top + h, left:left + w])
    assert float(pred.sum()) == float(label[0, top:top + h, left:left + w].sum())  # zero outside the box
    image = pipeline.inverse(out)["image"]
    rows = image[0, top:top + h, left:left + w].numpy()
    np.testing.assert_allclose(rows.mean(axis=1), np.arange(top, top + h), atol=0.8)  # rows back at their depth


@pytest.mark.parametrize("kwargs", [dict(scale=(0.0, 1.0)), dict(scale=(0.9, 0.5)), dict(ratio=(2.0, 1.0))])
def test_bad_arguments(kwargs: dict) -> None:
    with pytest.raises(ValueError, match="got"):
        RandResizedCrop(16, **kwargs)


@pytest.mark.parametrize("make,message", [
    (lambda: RandResizedCrop(0), r"size must be positive, got \(0, 0\)"),
    (lambda: RandResizedCrop((32, -1)), r"size must be positive, got \(32, -1\)"),
    (lambda: RandResizedCropd("image", size=(0, 16)), r"size must be positive, got \(0, 16\)"),
])
def test_bad_size_is_refused_at_construction(make, message) -> None:
    with pytest.raises(ValueError, match=message):
        make()


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int32])
@pytest.mark.parametrize("as_tensor", [False, True])
def test_an_integer_image_keeps_its_type_so_scaling_after_the_crop_still_works(dtype, as_tensor) -> None:
    """``Resize`` gave float32 holding 0-255 for a uint8 frame: the transforms after the crop, which scale by type,
    took it for [0, 1] (a gamma after it set every pixel to 1)."""
    from monai_ext.transforms import ScaleIntensityByDtype

    peak = 255 if dtype == np.uint8 else 65535
    img = np.random.default_rng(0).integers(0, peak + 1, (1, 40, 50)).astype(dtype)
    crop = RandResizedCrop(32, scale=(0.5, 1.0))
    crop.set_random_state(0)
    out = crop(torch.as_tensor(img) if as_tensor else img)
    assert np.dtype(str(out.dtype).removeprefix("torch.")) == np.dtype(dtype)
    values = np.asarray(out)
    assert values.min() >= 0 and values.max() <= peak and values.max() > peak * 0.8
    float_crop = RandResizedCrop(32, scale=(0.5, 1.0))
    float_crop.set_random_state(0)
    reference = np.asarray(float_crop(img.astype(np.float32)))  # the same box on the float image
    np.testing.assert_array_equal(values, np.clip(np.rint(reference), 0, peak))
    assert float(ScaleIntensityByDtype()(out).max()) <= 1.0


def test_a_numpy_bool_mask_is_cropped_as_a_torch_one() -> None:
    """The integer-type restore failed on numpy bool ('Invalid integer data type'); torch bool came back as float."""
    mask = np.zeros((1, 32, 32), bool)
    mask[0, 8:24, 8:24] = True
    outs = []
    for given in (mask, torch.as_tensor(mask)):
        crop = RandResizedCrop(16, scale=(0.5, 1.0))
        crop.set_random_state(0)
        outs.append(crop(given, mode="nearest"))
    assert all(out.dtype == torch.float32 for out in outs)
    assert torch.equal(torch.as_tensor(outs[0]), torch.as_tensor(outs[1]))


@pytest.mark.parametrize("kwargs, message", [
    ({"scale": 0.5}, "scale must be a (low, high) pair of numbers, got 0.5"),
    ({"ratio": (0.75, 1.0, 1.33)}, "ratio must be a (low, high) pair of numbers, got (0.75, 1.0, 1.33)"),
])
def test_a_crop_range_that_is_not_a_pair_is_named_in_the_message(kwargs, message: str) -> None:
    """A single number failed with "'float' object is not subscriptable", naming no setting."""
    with pytest.raises(ValueError, match=re.escape(message)):
        RandResizedCrop(32, **kwargs)
