"""Loading one ultrasound file as a (1, H, W) float32 gray image in [0, 1], as a MONAI transform pair.

MONAI's ``LoadImage`` picks a reader by suffix and the readers disagree on axis order and on what a DICOM shows
(none applies the photometric interpretation, LUTs or windows of the display pipeline); this pair reads every format
through :func:`monai_ext.io.images.read_image`, the decoder the corpus uses too, and converts with the shared
:func:`monai_ext.io.display.to_gray_unit`. The classification bundle, its inference and MONAI Label load with it.
"""

from __future__ import annotations

import os
from collections.abc import Hashable, Mapping
from typing import Any, ClassVar

import numpy as np
from monai.config import KeysCollection
from monai.transforms import MapTransform, Transform
from monai.utils import TransformBackends

from monai_ext.io.display import to_gray_unit
from monai_ext.io.images import read_image

__all__ = ["LoadUltrasoundImage", "LoadUltrasoundImaged"]


class LoadUltrasoundImage(Transform):
    """Path -> (1, H, W) float32 gray image in [0, 1]: the first frame of any supported file, as displayed."""

    backend: ClassVar[list[TransformBackends]] = [TransformBackends.NUMPY]

    def __call__(self, path: str | os.PathLike) -> np.ndarray:
        """Raises ``UnreadableImageError`` (a ``ValueError``) naming the file and the reason."""
        return to_gray_unit(read_image(path).pixels, str(path))[None]


class LoadUltrasoundImaged(MapTransform):
    """Dictionary version of :class:`LoadUltrasoundImage` (keeps the path under ``<key>_path``).

    Args:
        keys: keys holding file paths.
        region_key: if given, the DICOM B-mode region (x0, y0, x1, y1) is stored under this key when the file has
            one (``FieldOfViewMaskd`` reads it from ``"us_region"``). Off by default: items with and without the key
            cannot be collated into one batch.
        frames_key: if given, the number of frames the file holds (a cine loop's, a volume's planes; the image is
            the first) is stored under this key, for every file. Inference uses it to say that a prediction is of
            one frame of several.
        orientation_key: if given, the EXIF Orientation (1-8) the loader applied to the file's stored pixels is
            stored under this key, for every file (1 where none): masks, kept on the stored grid, are turned by it
            (:class:`~monai_ext.transforms.masks.LoadMaskd`) without the file being read again.
        allow_missing_keys: skip keys that are absent.
    """

    backend = LoadUltrasoundImage.backend

    def __init__(self, keys: KeysCollection, region_key: str | None = None, frames_key: str | None = None,
                 orientation_key: str | None = None, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.region_key = region_key
        self.frames_key = frames_key
        self.orientation_key = orientation_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            path = str(d[key])
            image = read_image(path, count_frames=self.frames_key is not None)
            d[f"{key}_path"] = path
            d[key] = to_gray_unit(image.pixels, path)[None]
            if self.region_key is not None and image.region_box is not None:
                d[self.region_key] = image.region_box
            if self.frames_key is not None:
                d[self.frames_key] = image.frame_count or 1
            if self.orientation_key is not None:
                d[self.orientation_key] = image.orientation
        return d
