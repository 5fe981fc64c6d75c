"""Intensity transforms: grayscale conversion of whatever the scanner exported."""

from __future__ import annotations

import math
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



def as_pair(name: str, value: Any) -> tuple[float, float]:
    """``value`` as a (low, high) pair of floats, not yet ordered.

    Raises:
        ValueError: ``value`` is not two numbers (a single number, as many MONAI transforms take for a range, or
            three), quoting it and naming the setting.
    """
    try:  # a string iterates as characters: "12" would read as (1, 2)
        pair = () if isinstance(value, (str, bytes)) else tuple(float(v) for v in value)
    except (TypeError, ValueError):
        pair = ()
    if len(pair) != 2:
        raise ValueError(f"{name} must be a (low, high) pair of numbers, got {value!r}")
    return pair[0], pair[1]


def as_numpy(img: Any) -> np.ndarray:
    """``img`` (numpy array, tensor on any device, or anything ``np.asarray`` takes) as a numpy array; a bfloat16
    tensor comes as float32, which holds its values exactly (numpy has no bfloat16: ``Tensor.numpy`` raised
    "Got unsupported ScalarType BFloat16", naming no transform and no fix)."""
    if isinstance(img, torch.Tensor):
        t = img.detach().cpu()
        return (t.float() if t.dtype == torch.bfloat16 else t).numpy()
    return np.asarray(img)


def is_float_dtype(dtype: np.dtype | torch.dtype) -> bool:
    """Whether an image type (numpy or torch) is floating point: values in [0, 1], not scaled by a full scale."""
    return dtype.is_floating_point if isinstance(dtype, torch.dtype) else bool(np.issubdtype(dtype, np.floating))


#: A float image whose largest finite value is above this is taken as [0, 255], else as [0, 1]: above 1 and not
#: above 1.5 is a [0, 1] frame overshooting after bicubic resizing or noise (a [0, 255] frame that dark is black).
FLOAT_UNIT_RANGE_LIMIT = 1.5
#: ... and one above this is neither: most often 16-bit pixels that ``LoadImage``'s default float32 kept at 0-65535.
FLOAT_BYTE_RANGE_LIMIT = 255.0 * FLOAT_UNIT_RANGE_LIMIT


def integer_peak(dtype: np.dtype | torch.dtype) -> float:
    """Full-scale value of an integer image type (numpy or torch): the type's maximum, except int32, which holds
    16-bit images (see ``INT32_IMAGE_PEAK``); a boolean image is 0 / 1.

    Raises:
        ValueError: a 64-bit or unsigned 32-bit type. No reader stores pictures so (``torch.tensor`` of Python ints
            makes int64), and divided by the type's maximum every pixel came out black.
    """
    if dtype in (torch.bool, np.bool_):  # a numpy dtype('bool') compares equal to np.bool_
        return 1.0
    info = torch.iinfo(dtype) if isinstance(dtype, torch.dtype) else np.iinfo(dtype)
    if info.bits > 32 or (info.bits == 32 and info.min == 0):
        raise ValueError(f"an image of type {dtype} has no known full scale: give 8- or 16-bit integers (uint8, "
                         f"uint16, or int32 holding 16-bit values) or floats in [0, 1] or [0, 255]")
    return INT32_IMAGE_PEAK if info.bits == 32 else float(info.max)


def float_peak(img: np.ndarray | torch.Tensor) -> float:
    """Full-scale value of a float image: 255 when its largest finite value exceeds ``FLOAT_UNIT_RANGE_LIMIT``
    (MONAI's ``LoadImage`` with its default float32 keeps a PNG's 0-255), else 1 (NaN and inf are ignored: one bad
    pixel must not decide it).

    Raises:
        ValueError: the largest finite value exceeds ``FLOAT_BYTE_RANGE_LIMIT``. Taken as [0, 255], a 16-bit frame
            read as float saturated to white with no error.
    """
    # Every range-scaling transform asks this per image, so it is one reduction: a plain max is the largest finite
    # value unless it came out NaN or inf (NaN propagates, -inf never wins over a finite value); only then are the
    # non-finite pixels masked. A boolean-index copy, through MetaTensor's __torch_function__, cost more than the
    # augmentation it served.
    if isinstance(img, torch.Tensor):
        t = img.as_subclass(torch.Tensor)  # a MetaTensor's metadata tracking is not needed for one number
        top = float(t.amax()) if t.numel() else 0.0
        if not math.isfinite(top):
            top = float(torch.where(torch.isfinite(t), t, torch.zeros((), dtype=t.dtype, device=t.device)).amax())
    else:
        top = float(np.max(img, initial=0))
        if not math.isfinite(top):
            top = float(np.max(img, initial=0, where=np.isfinite(img)))
    if top > FLOAT_BYTE_RANGE_LIMIT:
        raise ValueError(f"a float image with values up to {top:g} is neither in [0, 1] nor in [0, 255]: 16-bit "
                         f"pixels read as float (LoadImage's default dtype float32)? Load with dtype=None to keep "
                         f"their integer type, or scale them to [0, 1]")
    return 255.0 if top > FLOAT_UNIT_RANGE_LIMIT else 1.0


def full_scale(img: np.ndarray | torch.Tensor) -> float:
    """The value that stands for full white in ``img``: its integer type's (:func:`integer_peak`), or for floats
    1 or 255 (:func:`float_peak`). Every transform that scales by range asks this, so that a float frame in [0, 255]
    (MONAI ``LoadImage``'s default float32) is read the same way everywhere."""
    if isinstance(img, torch.Tensor):  # a MetaTensor answers even its dtype through __torch_function__: per image
        img = img.as_subclass(torch.Tensor)
    return float_peak(img) if is_float_dtype(img.dtype) else integer_peak(img.dtype)


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
    """Scale images to [0, 1] float32 by their full scale, numpy arrays and tensors alike, as ``ToTensor`` does:
    integers by their type's (:func:`integer_peak`: uint8 / 255, uint16 and int32 / 65535), floats by
    :func:`float_peak` (a float image already in [0, 1] is kept; one in [0, 255], as MONAI's ``LoadImage`` gives
    by default, is divided by 255).

    Per-image min-max scaling is avoided on purpose: it would change the brightness of dark ultrasound frames.
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __call__(self, img: Any) -> Any:
        peak = full_scale(img)
        if isinstance(img, torch.Tensor):
            return img.float() / peak if peak != 1.0 else img.float()
        return img.astype(np.float32) / np.float32(peak) if peak != 1.0 else img.astype(np.float32)


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
