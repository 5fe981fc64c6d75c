"""Spatial transforms for ultrasound: random resized crops that can keep the probe at the top of the image."""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import BorderPad, InvertibleTransform, MapTransform, Randomizable, Resize, SpatialCrop
from monai.utils import TraceKeys, convert_to_dst_type, ensure_tuple_rep

from monai_ext.transforms.intensity import as_pair, is_float_dtype


def check_crop_ranges(scale: Sequence[float], ratio: Sequence[float]) -> None:
    """Validate random-resized-crop ranges: area fraction 0 < low <= high <= 1, aspect ratio 0 < low <= high
    (each a pair: :func:`~monai_ext.transforms.intensity.as_pair`)."""
    scale, ratio = as_pair("scale", scale), as_pair("ratio", ratio)
    if not 0 < scale[0] <= scale[1] <= 1:
        raise ValueError(f"scale must satisfy 0 < low <= high <= 1, got {tuple(scale)!r}")
    if not 0 < ratio[0] <= ratio[1]:
        raise ValueError(f"ratio must satisfy 0 < low <= high, got {tuple(ratio)!r}")


class RandResizedCrop(Randomizable, InvertibleTransform):
    """Crop a random area and aspect ratio, then resize to ``size`` (torchvision's ``RandomResizedCrop`` sampling).

    With ``keep_top`` the crop window starts at the first row, so the transducer face (the top of an ultrasound
    image) stays at the top and depth keeps its direction; only lateral position and scale vary.

    Args:
        size: output (H, W) or one int.
        scale: range of the crop area as a fraction of the image area.
        ratio: range of the crop aspect ratio (width / height), sampled log-uniformly.
        keep_top: anchor the crop at the top edge.
        mode: interpolation of ``Resize`` ("bilinear" for images, "nearest-exact" for masks: centre-aligned as
            bilinear is, where "nearest" takes each block's top-left).

    Input (C, H, W) numpy array or tensor; output (C, size_h, size_w) MetaTensor. Invertible as MONAI's spatial
    transforms are (``inverse``, ``Invertd``, ``Compose.inverse``): back to (C, H, W) float, zero outside the crop.
    """

    backend = Resize.backend

    def __init__(
        self,
        size: int | Sequence[int],
        scale: Sequence[float] = (0.08, 1.0),
        ratio: Sequence[float] = (3 / 4, 4 / 3),
        keep_top: bool = False,
        mode: str = "bilinear",
    ) -> None:
        check_crop_ranges(scale, ratio)
        self.size = ensure_tuple_rep(size, 2)
        if min(self.size) < 1:
            raise ValueError(f"size must be positive, got {tuple(self.size)!r}")
        self.scale, self.ratio = tuple(scale), tuple(ratio)
        self.keep_top = keep_top
        self.mode = mode
        self._box: tuple[int, int, int, int] | None = None

    def randomize(self, spatial_shape: Sequence[int]) -> None:
        """Draw the crop box (top, left, height, width) for an image of ``spatial_shape`` = (H, W)."""
        height, width = int(spatial_shape[0]), int(spatial_shape[1])
        area = height * width
        log_ratio = (math.log(self.ratio[0]), math.log(self.ratio[1]))
        for _ in range(10):
            target = area * self.R.uniform(*self.scale)
            aspect = math.exp(self.R.uniform(*log_ratio))
            w, h = int(round(math.sqrt(target * aspect))), int(round(math.sqrt(target / aspect)))
            if 0 < w <= width and 0 < h <= height:
                top = 0 if self.keep_top else int(self.R.randint(0, height - h + 1))
                self._box = (top, int(self.R.randint(0, width - w + 1)), h, w)
                return
        # Fallback, as torchvision: the whole image clipped to the ratio range, centred (or at the top).
        aspect = width / height
        w, h = (width, height)
        if aspect < self.ratio[0]:
            h = int(round(width / self.ratio[0]))
        elif aspect > self.ratio[1]:
            w = int(round(height * self.ratio[1]))
        self._box = (0 if self.keep_top else (height - h) // 2, (width - w) // 2, h, w)

    def __call__(self, img: Any, randomize: bool = True, mode: str | None = None) -> Any:
        if randomize:
            self.randomize(img.shape[1:])
        if self._box is None:
            raise RuntimeError("call randomize() before applying the transform with randomize=False")
        top, left, h, w = self._box
        cropped = SpatialCrop(roi_start=(top, left), roi_end=(top + h, left + w))(img)
        resized = Resize(self.size, mode=mode or self.mode, anti_aliasing=False)(cropped)
        return _like_input_dtype(self._traced_as_one(resized), img)

    def _traced_as_one(self, resized: Any) -> Any:
        """Replace the crop's and the resize's trace entries with one of this transform's, as MONAI's
        ``ResizeWithPadOrCrop`` joins its parts: left as they were, ``inverse`` of the transforms after this one
        met entries of objects that no longer exist, and ``Compose.inverse`` stopped silently at the crop's size."""
        operations = resized.applied_operations if isinstance(resized, MetaTensor) else []
        if not self.tracing or len(operations) < 2 or operations[-1].get(TraceKeys.CLASS_NAME) != "Resize":
            return resized  # tracing is off (MONAI_TRACE_TRANSFORM=0 or get_track_meta() False)
        resize_info, crop_info = operations.pop(), operations.pop()
        return self.push_transform(resized, orig_size=crop_info.get(TraceKeys.ORIG_SIZE),
                                   extra_info={"crop_info": crop_info, "resize_info": resize_info})

    def inverse(self, data: Any) -> Any:
        """(C, size_h, size_w) -> (C, H, W) float: resized back to the crop box, zero-padded to the image."""
        extra = self.pop_transform(data)[TraceKeys.EXTRA_INFO]
        resized_back = Resize(self.size).inverse_transform(data, extra["resize_info"])
        pad = BorderPad(extra["crop_info"][TraceKeys.EXTRA_INFO]["cropped"])
        with pad.trace_transform(False):
            return pad(resized_back)


def _like_input_dtype(resized: Any, img: Any) -> Any:
    """``Resize`` returns float32 for integer input; an integer image is rounded back to its type, so that the
    transforms after the crop, which scale by type, still read uint8 as 0-255 (float32 0-255 read as [0, 1]). A
    float or boolean image stays as ``Resize`` gives it (a bool mask comes back float, numpy or torch alike)."""
    dtype = img.dtype
    if is_float_dtype(dtype) or dtype in (torch.bool, np.bool_):
        return resized
    info = torch.iinfo(dtype) if isinstance(dtype, torch.dtype) else np.iinfo(dtype)
    rounded = torch.as_tensor(resized).round().clamp(info.min, info.max)  # Resize always returns a tensor
    return convert_to_dst_type(rounded, resized, dtype=dtype)[0]


class RandResizedCropd(Randomizable, MapTransform, InvertibleTransform):
    """Dictionary version of :class:`RandResizedCrop`: one draw per sample applied to every key.

    Args:
        keys: keys to crop (image and masks alike).
        size, scale, ratio, keep_top: as :class:`RandResizedCrop`.
        mode: interpolation per key (e.g. ``["bilinear", "nearest-exact"]`` for image and mask).
        allow_missing_keys: skip absent keys.
    """

    backend = RandResizedCrop.backend

    def __init__(
        self,
        keys: KeysCollection,
        size: int | Sequence[int],
        scale: Sequence[float] = (0.08, 1.0),
        ratio: Sequence[float] = (3 / 4, 4 / 3),
        keep_top: bool = False,
        mode: str | Sequence[str] = "bilinear",
        allow_missing_keys: bool = False,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        self.cropper = RandResizedCrop(size, scale, ratio, keep_top)
        self.mode = ensure_tuple_rep(mode, len(self.keys))

    def set_random_state(self, seed: int | None = None, state: np.random.RandomState | None = None) -> RandResizedCropd:
        super().set_random_state(seed, state)
        self.cropper.set_random_state(seed, state)
        return self

    def randomize(self, spatial_shape: Sequence[int]) -> None:
        self.cropper.randomize(spatial_shape)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        first = self.first_key(d)
        if first == ():
            return d
        self.randomize(d[first].shape[1:])
        for key, mode in self.key_iterator(d, self.mode):
            d[key] = self.cropper(d[key], randomize=False, mode=mode)
        return d

    def inverse(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        """Undo the crop on every key, as :meth:`RandResizedCrop.inverse`."""
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.cropper.inverse(d[key])
        return d
