"""NormalizeUltrasound(d) against MONAI's RepeatChannel + NormalizeIntensity (what the bundles configure)."""

from __future__ import annotations

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
    # zscore: MONAI divides by the population std, this by torch's sample std (N - 1); same to 1e-4 here
    np.testing.assert_allclose(np.asarray(out), reference(unit, mode), atol=2e-3 if mode == "zscore" else 1e-5)


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
