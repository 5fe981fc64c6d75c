"""Loading one ultrasound image file as a (1, H, W) float32 gray image in [0, 1], as a MONAI transform pair."""

from __future__ import annotations

import os
from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np
from monai.config import KeysCollection
from monai.transforms import MapTransform, Transform

from monai_ext.io.errors import UnreadableImageError
from monai_ext.io.images import _to_gray_unit, read_image_pixels


class LoadUltrasoundImage(Transform):
    """Path -> (1, H, W) float32 gray image in [0, 1]."""

    def __call__(self, path: str | os.PathLike) -> np.ndarray:
        pixels = read_image_pixels(path)
        if pixels.size == 0 or min(pixels.shape[:2]) < 1:
            raise UnreadableImageError(f"{path}: empty image")
        return _to_gray_unit(pixels, str(path))[None]


class LoadUltrasoundImaged(MapTransform):
    """Dictionary version of :class:`LoadUltrasoundImage` (keeps the path under ``<key>_path``)."""

    def __init__(self, keys: KeysCollection, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.loader = LoadUltrasoundImage()

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[f"{key}_path"] = str(d[key])
            d[key] = self.loader(d[key])
        return d
