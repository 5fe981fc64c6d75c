"""Normalisation options: ImageNet statistics on the 3-channel replica, per-image z-score, or corpus statistics."""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Mapping
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, Transform
from monai.utils import TransformBackends, convert_to_dst_type, convert_to_tensor

from monai_ext.networks.input_stats import IMAGENET_MEAN, IMAGENET_STD, input_stats  # noqa: F401 (transforms API)
from monai_ext.transforms.intensity import as_numpy, full_scale, is_float_dtype

NORMALIZATION_MODES = ("imagenet", "zscore", "corpus")


def normalization_stats(in_channels: int) -> tuple[list[float], list[float]]:
    """(mean, std) per channel: ImageNet's for 3 channels, their averages for 1 channel (the statistics the
    networks' first layer is trained for, :func:`monai_ext.networks.input_stats.input_stats`)."""
    return input_stats(in_channels)


def corpus_statistics(images: Iterable[Any]) -> tuple[float, float]:
    """Mean and standard deviation of all finite pixels of ``images``, accumulated in float64, on the [0, 1] scale
    that :class:`NormalizeUltrasound` applies them to: each frame is divided by its :func:`full_scale` first (the
    corpus cache's uint8 by 255, a float frame in [0, 255] by 255, one in [0, 1] kept). NaN and inf pixels are left
    out, as :func:`full_scale` and the z-score leave them out: one such pixel made both statistics NaN, and every
    image normalised with them all NaN."""
    count, total, squares = 0, 0.0, 0.0
    for img in images:
        arr = as_numpy(img)
        floats = is_float_dtype(arr.dtype)
        arr = arr.astype(np.float64) / full_scale(arr)
        if floats:  # integer frames are finite: no mask, no copy
            arr = arr[np.isfinite(arr)]
        count += arr.size
        total += float(arr.sum())
        squares += float(np.square(arr).sum())
    if count == 0:
        raise ValueError("corpus_statistics got no images (or no finite pixels)")
    mean = total / count
    return mean, float(np.sqrt(max(squares / count - mean * mean, 0.0)))


class NormalizeUltrasound(Transform):
    """Gray image (1, H, W), integer, or float in [0, 1] or [0, 255] (scaled by :func:`full_scale`) -> normalised
    (channels, H, W) float32, same array type and device.

    Args:
        mode: "imagenet" (the published recipe: replicate gray to 3 channels, ImageNet mean/std per channel),
            "zscore" (per image: zero mean, unit population variance over its finite pixels; NaN pixels and
            constant images become 0), or "corpus" (``mean`` and ``std`` of the
            training corpus, e.g. from :func:`corpus_statistics`).
        channels: output channels (1 or 3); the gray channel is replicated.
        mean, std: corpus statistics, required by "corpus".
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(self, mode: str = "imagenet", channels: int = 3, mean: float | None = None,
                 std: float | None = None) -> None:
        if mode not in NORMALIZATION_MODES:
            raise ValueError(f"mode must be one of {NORMALIZATION_MODES}, got {mode!r}")
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {channels!r}")
        # and both finite: a NaN mean or std (statistics of a corpus with a NaN pixel) made every output NaN, an
        # infinite std every output 0, with no error
        if mode == "corpus" and (mean is None or std is None or not math.isfinite(mean) or not math.isfinite(std)
                                 or std <= 0):
            raise ValueError(f"mode 'corpus' needs mean and a positive std, got mean={mean!r}, std={std!r}")
        self.mode, self.channels, self.mean, self.std = mode, channels, mean, std

    def __call__(self, img: Any) -> Any:
        shape = tuple(img.shape)  # read once: a MetaTensor answers it through __torch_function__
        if len(shape) != 3 or shape[0] != 1:
            raise ValueError(f"expected a gray image (1, H, W), got shape {shape!r}: convert colour "
                             f"frames with ToGrayscale first")
        # statistics are of [0, 1] images: integer frames (and floats in [0, 255]) are scaled there first; a frame
        # already there is not divided by 1 (a pass over every pixel, per sample, for nothing)
        t = convert_to_tensor(img, track_meta=False, dtype=torch.float32)
        peak = full_scale(img)
        if peak != 1.0:
            t = t / peak
        out = normalize_batch(t[None], self.mode, self.channels, self.mean, self.std)[0]
        return convert_to_dst_type(out, img, dtype=torch.float32 if isinstance(img, torch.Tensor) else np.float32)[0]


def normalize_batch(batch: torch.Tensor, mode: str, channels: int, mean: float | None = None,
                    std: float | None = None) -> torch.Tensor:
    """(N, 1, H, W) gray in [0, 1] -> (N, channels, H, W) normalised as :class:`NormalizeUltrasound` describes."""
    if batch.ndim != 4 or batch.shape[1] != 1:
        raise ValueError(f"expected gray images (N, 1, H, W), got shape {tuple(batch.shape)!r}")
    x = batch.float().expand(-1, channels, -1, -1)
    if mode == "imagenet":
        m, s = (torch.tensor(v, device=x.device).view(1, -1, 1, 1) for v in normalization_stats(channels))
    elif mode == "zscore":
        return _zscore(batch.float()).expand(-1, channels, -1, -1).contiguous()  # no channels sharing memory
    elif mode == "corpus":
        m, s = torch.tensor(mean, device=x.device), torch.tensor(std, device=x.device)
    else:
        raise ValueError(f"mode must be one of {NORMALIZATION_MODES}, got {mode!r}")
    return (x - m) / s


def _zscore(gray: torch.Tensor) -> torch.Tensor:
    """(N, 1, H, W) -> per image zero mean and unit (population) variance over its finite pixels; NaN pixels
    become 0 (the mean), and a constant image all 0.

    The statistics are taken in float64 on the gray channel (so the channel count does not change them): in float32
    a constant frame's mean is off by rounding, and that error divided by a tiny std came out as visible values.
    """
    x = gray.double()
    finite = torch.isfinite(x)
    count = finite.sum(dim=(1, 2, 3), keepdim=True).clamp_min(1)
    values = torch.where(finite, x, torch.zeros_like(x))
    mean = values.sum(dim=(1, 2, 3), keepdim=True) / count
    centred = torch.where(finite, x - mean, torch.zeros_like(x))
    std = (centred.square().sum(dim=(1, 2, 3), keepdim=True) / count).sqrt()
    # a constant image (std at rounding level of its values) is all zero, not rounding noise blown up
    flat = std <= 1e-6 * mean.abs().clamp_min(1.0)
    return torch.where(flat, torch.zeros_like(centred), centred / std.clamp_min(1e-12)).float()


class NormalizeUltrasoundd(MapTransform):
    """Dictionary version of :class:`NormalizeUltrasound`."""

    backend = NormalizeUltrasound.backend

    def __init__(self, keys: KeysCollection, mode: str = "imagenet", channels: int = 3, mean: float | None = None,
                 std: float | None = None, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.normalizer = NormalizeUltrasound(mode, channels, mean, std)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.normalizer(d[key])
        return d
