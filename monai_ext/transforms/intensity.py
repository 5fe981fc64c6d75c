"""Intensity transforms: grayscale conversion of whatever the scanner exported."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, Transform
from monai.utils import TransformBackends

from monai_ext.io.display import LUMA

#: Full scale of int32 images: PIL, and so MONAI's ``PILReader``, stores 16-bit PNGs and TIFFs as int32.
INT32_IMAGE_PEAK = 65535.0


def is_float_dtype(dtype: np.dtype | torch.dtype) -> bool:
    """Whether an image type (numpy or torch) is floating point: values in [0, 1], not scaled by a full scale."""
    return dtype.is_floating_point if isinstance(dtype, torch.dtype) else bool(np.issubdtype(dtype, np.floating))


def integer_peak(dtype: np.dtype | torch.dtype) -> float:
    """Full-scale value of an integer image type (numpy or torch): the type's maximum, except int32, which holds
    16-bit images (see ``INT32_IMAGE_PEAK``)."""
    info = torch.iinfo(dtype) if isinstance(dtype, torch.dtype) else np.iinfo(dtype)
    return INT32_IMAGE_PEAK if info.bits == 32 and info.min < 0 else float(info.max)


class ToGrayscale(Transform):
    """Channel-first image with 1 (gray), 2 (gray + alpha), 3 (RGB) or 4 (RGBA) channels -> (1, H, W) luma.

    Alpha is dropped (ultrasound exports carry no meaningful transparency). Works on numpy arrays and tensors,
    returning the same type; integer images stay in their type (luma rounded to the nearest level; OpenCV's
    fixed-point ``cvtColor`` may differ by one level), so a scaling by type after this treats RGB and gray files
    alike; float images come back as float32.
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __call__(self, img: Any) -> Any:
        channels = img.shape[0]
        if channels in (1, 2):
            return img[:1]
        if channels not in (3, 4):
            raise ValueError(f"expected 1 to 4 channels (channel-first), got shape {tuple(img.shape)!r}")
        rgb = img[:3]
        if isinstance(rgb, torch.Tensor):
            weights = torch.tensor(LUMA, dtype=torch.float32, device=rgb.device).view(3, 1, 1)
            luma = (rgb.float() * weights).sum(0, keepdim=True)
            return luma if rgb.dtype.is_floating_point else luma.round().to(rgb.dtype)
        luma = (rgb.astype(np.float32) * np.asarray(LUMA, np.float32).reshape(3, 1, 1)).sum(0, keepdims=True)
        return luma if np.issubdtype(rgb.dtype, np.floating) else np.rint(luma).astype(rgb.dtype)


class ToGrayscaled(MapTransform):
    """Dictionary version of :class:`ToGrayscale`."""

    backend = ToGrayscale.backend

    def __init__(self, keys: KeysCollection, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.converter = ToGrayscale()

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.converter(d[key])
        return d


class ScaleIntensityByDtype(Transform):
    """Scale integer images to [0, 1] by their type's full scale (:func:`integer_peak`: uint8 / 255, uint16 and
    int32 / 65535), numpy arrays and tensors alike, as ``ToTensor`` does.

    Float inputs are assumed to be in [0, 1] already and are returned as float32. Per-image min-max scaling is
    avoided on purpose: it would change the brightness of dark ultrasound frames.
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __call__(self, img: Any) -> Any:
        if isinstance(img, torch.Tensor):
            return img.float() if img.dtype.is_floating_point else img.float() / integer_peak(img.dtype)
        if np.issubdtype(img.dtype, np.integer):
            return img.astype(np.float32) / integer_peak(img.dtype)
        return img.astype(np.float32)


class ScaleIntensityByDtyped(MapTransform):
    """Dictionary version of :class:`ScaleIntensityByDtype`."""

    backend = ScaleIntensityByDtype.backend

    def __init__(self, keys: KeysCollection, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.scaler = ScaleIntensityByDtype()

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.scaler(d[key])
        return d
