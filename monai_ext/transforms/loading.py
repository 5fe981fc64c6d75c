"""Loading one ultrasound file as a (1, H, W) float32 gray image in [0, 1], as a MONAI transform pair.

MONAI's ``LoadImage`` picks a reader by suffix and the readers disagree on axis order and on what a DICOM shows
(none applies the photometric interpretation, LUTs or windows of the display pipeline); this pair reads every format
through :func:`monai_ext.io.images.read_image`, the decoder the corpus uses too, and converts with the shared
:func:`monai_ext.io.display.to_gray_unit`. The classification bundle, its inference and MONAI Label load with it.
:class:`LoadDisplayPixelsd` reads through the same decoders but keeps colour and type, for the pretraining bundle,
which de-annotates on colour before converting to gray.
"""

from __future__ import annotations

import os
from collections.abc import Hashable, Mapping
from typing import Any, ClassVar

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, Transform
from monai.utils import TransformBackends

from monai_ext.io.display import to_gray_unit
from monai_ext.io.images import read_image

__all__ = ["LoadDisplayPixelsd", "LoadUltrasoundImage", "LoadUltrasoundImaged", "read_display_pixels"]


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
        frames_key: if given, the number of frames the file holds (a cine loop's, a volume's planes) is stored
            under this key, and the index of the one the image is (0, the first, but for a volume: its first slice
            with content) under ``<frames_key>_index``, for every file. Inference uses them to say that a
            prediction is of one frame of several, and which.
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
                d[f"{self.frames_key}_index"] = image.frame_index
            if self.orientation_key is not None:
                d[self.orientation_key] = image.orientation
        return d


def read_display_pixels(path: str | os.PathLike) -> np.ndarray:
    """The display-ready (H, W) or (H, W, C) pixels of the first frame of any supported file, colour kept.

    Read by :func:`~monai_ext.io.images.read_image` with ``colour=True``: pictures keep their colour and their type,
    so that de-annotation can find coloured marks before the gray conversion; DICOM (a DICOM file under a picture's
    name too), volumes and cine loops come as displayed. Bilevel pictures
    come as 0 / 255 (uint8), as MONAI's ``PILReader`` with :func:`~monai_ext.io.images.pil_display_image` gave them.

    Raises:
        UnreadableImageError: (a ``ValueError``) naming the file and the reason: missing, empty, not decodable.
    """
    pixels = read_image(path, colour=True).pixels
    return pixels.astype(np.uint8) * np.uint8(255) if pixels.dtype == np.bool_ else pixels


class LoadDisplayPixelsd(MapTransform):
    """Paths -> channel-first (C, H, W) display-ready pixels in the file's own type and colour (C = 1 gray, 2 gray
    + alpha, 3 RGB, 4 RGBA), through :func:`read_display_pixels`, as a tensor.

    For the pretraining bundle, which de-annotates on colour before its gray conversion: the pixels of a picture
    are those MONAI's ``LoadImaged(reader=PILReader, converter=pil_display_image, reverse_indexing=False,
    dtype=None)`` and ``EnsureChannelFirstd`` gave, but a file that cannot be read is named with the reason (empty,
    truncated, not a picture) in one error, where ``LoadImage`` tried seven readers, logged a line for each and said
    only that no reader suited; and a DICOM file under a picture's name is read as DICOM.

    Args:
        keys: keys holding file paths.
        allow_missing_keys: skip keys that are absent.
    """

    backend: ClassVar[list[TransformBackends]] = [TransformBackends.TORCH]

    def __init__(self, keys: KeysCollection, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            pixels = read_display_pixels(d[key])
            channel_first = pixels[None] if pixels.ndim == 2 else np.moveaxis(pixels, -1, 0)
            # a decoder's buffer may be read-only, which torch warns of: copied only then (or where not contiguous)
            d[key] = torch.from_numpy(np.require(channel_first, requirements=["C", "W"]))
        return d
