"""NIfTI, NRRD, MHA and MHD files as display-ready 2-D slices, read by MONAI's ``NibabelReader`` and ``ITKReader``.

Both readers return arrays in (x, y, z) order (``ITKReader`` with its default ``reverse_indexing=False``), a
vector-pixel ITK image with its components last. A slice is shown with rows = y (second axis) and columns = x, as
the files' viewers show it. Intensities: 8-bit volumes are display values already (ultrasound sequences, e.g. the
PLUS toolkit's MHA recordings) and stay as stored; any other type (CT or MR units, float) is windowed to the
volume's 0.5-99.5 percentiles, one window for every slice so that slices of a volume stay comparable.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from monai_ext.io.errors import SkippedSource, UnreadableImageError

__all__ = ["ITK_SUFFIXES", "NIFTI_SUFFIXES", "first_volume_frame", "iter_volume_frames", "read_volume"]

NIFTI_SUFFIXES = (".nii", ".nii.gz")
ITK_SUFFIXES = (".nrrd", ".mha", ".mhd")
#: Percentiles of the window for volumes that are not 8-bit.
WINDOW_PERCENTILES = (0.5, 99.5)


def read_volume(path: str | os.PathLike) -> tuple[np.ndarray, bool]:
    """(array, has_channels): (x, y, z) or (x, y) voxels, plus a last component axis when ``has_channels``."""
    from monai.data import ITKReader, NibabelReader

    name = Path(path).name.lower()
    reader = NibabelReader() if name.endswith(NIFTI_SUFFIXES) else ITKReader()
    array, meta = reader.get_data(reader.read(str(path)))
    channel_dim = meta.get("original_channel_dim", float("nan"))
    has_channels = isinstance(channel_dim, (int, np.integer)) and not isinstance(channel_dim, bool)
    return np.asarray(array), has_channels


def _as_xyz(volume: np.ndarray, has_channels: bool, source: str) -> np.ndarray:
    """(x, y, z[, c]): a 2-D image gains a z axis, singleton axes after z are dropped."""
    spatial = volume.ndim - int(has_channels)
    while spatial > 3 and volume.shape[3] == 1:
        volume, spatial = np.squeeze(volume, axis=3), spatial - 1
    if spatial == 2:
        volume, spatial = np.expand_dims(volume, 2), 3
    if spatial != 3:
        raise UnreadableImageError(f"{source}: expected a 2-D or 3-D volume, got shape {volume.shape!r}")
    return volume


def _display_volume(volume: np.ndarray) -> np.ndarray:
    """8-bit as stored; anything else windowed to its percentiles as float32 in [0, 1] (NaN shown as black)."""
    if volume.dtype == np.uint8:
        return volume
    values = volume.astype(np.float32)
    finite = values[np.isfinite(values)]  # not empty: the caller checked that the volume has content
    low, high = (float(v) for v in np.percentile(finite, WINDOW_PERCENTILES))
    high = high if high > low else float(finite.max())
    return np.clip((np.nan_to_num(values, nan=low, posinf=high, neginf=low) - low) / (high - low), 0.0, 1.0)


def _has_content(plane: np.ndarray) -> bool:
    finite = plane[np.isfinite(plane)] if np.issubdtype(plane.dtype, np.floating) else plane
    return finite.size > 0 and float(finite.max()) != float(finite.min())


def iter_volume_frames(path: str | os.PathLike, slice_axis: int = 2,
                       slice_stride: int = 1) -> Iterator[tuple[int, np.ndarray]]:
    """(slice index, display-ready (rows, cols[, c]) slice) for every ``slice_stride``-th slice with content.

    Args:
        path: a NIfTI, NRRD, MHA or MHD file.
        slice_axis: axis to slice along, in (x, y, z) order (2: axial slices; a 2-D image is one slice).
        slice_stride: keep every n-th slice.

    Raises:
        SkippedSource: a constant volume, or no slice with content.
        UnreadableImageError: a shape that is not a 2-D or 3-D image.
    """
    if slice_axis not in (0, 1, 2) or slice_stride < 1:
        raise ValueError(f"slice_axis must be 0, 1 or 2 and slice_stride at least 1, got {slice_axis!r}, "
                         f"{slice_stride!r}")
    source = str(path)
    raw, has_channels = read_volume(path)
    volume = _as_xyz(raw, has_channels, source)
    if not _has_content(volume):
        raise SkippedSource(f"{source}: volume is constant (no content)")
    display = _display_volume(volume)
    emitted = 0
    for k in range(0, volume.shape[slice_axis], slice_stride):
        if not _has_content(np.take(volume, k, axis=slice_axis)):
            continue  # an empty slice: padding, or outside the scanned region
        emitted += 1
        yield k, np.ascontiguousarray(np.swapaxes(np.take(display, k, axis=slice_axis), 0, 1))
    if emitted == 0:
        raise SkippedSource(f"{source}: every slice along axis {slice_axis} is empty")


def first_volume_frame(path: str | os.PathLike) -> np.ndarray:
    """The first slice with content along z: what single-image loaders use (a 2-D file's only slice)."""
    return next(iter_volume_frames(path))[1]
