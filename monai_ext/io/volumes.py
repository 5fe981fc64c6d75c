"""NIfTI, NRRD, MHA and MHD files as display-ready 2-D slices, read by MONAI's ``NibabelReader`` and ``ITKReader``.

Both readers return arrays in (x, y, z) order as stored (``ITKReader`` with its default ``reverse_indexing=False``),
a vector-pixel ITK image with its components last. A 4-D file is a time series (x, y, z, t): NIfTI-1 keeps time on its
4th axis and colour or vector components on its 5th (an RGB24 NIfTI, as ITK and 3D Slicer write colour, is read as
three components). Slices are taken along the stored axes (the acquired slices), and each is shown as ITK-SNAP and
3D Slicer show a plane of that kind, by where the NIfTI affine (qform or sform) or the ITK direction says its two
axes point (nearest patient axes, nibabel's orientation functions): the patient's left to the right and anterior
(axial) or superior (coronal, sagittal) on top, sagittal planes with anterior on the left. A dcm2niix conversion,
whose rows are stored flipped with an affine that says so, thus shows as its DICOM did. Without orientation (a NIfTI
with neither qform nor sform, or a one-plane NIfTI with the RAS identity that writers give when they know none) a
slice shows as stored: rows = y, columns = x.
Intensities: 8-bit volumes are display values already (ultrasound sequences, e.g. the
PLUS toolkit's MHA recordings) and stay as stored; any other type (CT or MR units, float) is windowed to the
volume's 0.5-99.5 percentiles, one window for every slice so that slices of a volume stay comparable.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from monai_ext.io.display import window_to_unit
from monai_ext.io.errors import SkippedSource, UnreadableImageError

__all__ = ["ITK_SUFFIXES", "NIFTI_SUFFIXES", "FirstVolumeFrame", "first_volume_frame", "first_volume_frame_and_count",
           "is_metaimage_data_file", "iter_volume_frames", "metaimage_data_file", "read_first_volume_frame",
           "read_volume", "without_metaimage_data_files"]

NIFTI_SUFFIXES = (".nii", ".nii.gz")
ITK_SUFFIXES = (".nrrd", ".mha", ".mhd")


def is_metaimage_data_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` is the voxel file of a MetaImage header beside it by name (``sweep.raw`` or ``sweep.zraw``
    next to ``sweep.mhd``, as ITK writes them). A header renamed since names its voxel file only inside:
    :func:`without_metaimage_data_files` reads that too."""
    path = Path(path)
    return path.suffix.lower() in (".raw", ".zraw") and any(
        path.with_suffix(suffix).is_file() for suffix in (".mhd", ".MHD"))


def metaimage_data_file(header: str | os.PathLike) -> Path | None:
    """The voxel file that a MetaImage header names in its ``ElementDataFile`` line, beside the header; None for
    voxels inside the header (``LOCAL``), a list or a numbered pattern of slice files, or a header not readable."""
    header = Path(header)
    try:
        with open(header, "rb") as f:
            text = f.read(1 << 16)  # the header's key = value lines; voxels may follow LOCAL
    except OSError:
        return None
    for line in text.split(b"\n"):
        key, equals, value = line.partition(b"=")
        if equals and key.strip() == b"ElementDataFile":
            name = os.fsdecode(value.strip())
            if not name or name.upper() == "LOCAL" or name.upper().startswith("LIST") or "%" in name:
                return None
            return header.parent / name
    return None


def without_metaimage_data_files(others: list[Path], headers: Iterable[str | os.PathLike]) -> list[Path]:
    """``others`` less the voxel files of MetaImage headers: read through their header, so a folder listing neither
    reads them on their own nor reports them as files passed over.

    Args:
        others: files that no reader takes by suffix or content.
        headers: files among which the ``.mhd`` headers are (others are ignored).
    """
    named = {os.path.abspath(data) for header in headers if str(header).lower().endswith(".mhd")
             if (data := metaimage_data_file(header)) is not None}
    return [path for path in others if not is_metaimage_data_file(path) and os.path.abspath(path) not in named]


def read_volume(path: str | os.PathLike) -> tuple[np.ndarray, bool]:
    """(array, has_channels): (x, y[, z[, t]]) voxels as stored, plus a last component axis when ``has_channels``."""
    from monai.data import ITKReader, NibabelReader

    source = str(path)
    if Path(path).name.lower().endswith(NIFTI_SUFFIXES):
        reader = NibabelReader()
        array = np.asarray(reader.get_data(reader.read(source))[0])
        if array.dtype.names:  # RGB24 / RGBA32: one structured voxel of named components
            return np.stack([array[name] for name in array.dtype.names], axis=-1), True
        # MONAI's NibabelReader calls every axis after the third a channel; NIfTI-1 puts time on the 4th (dim[4])
        # and components on the 5th (dim[5]), so 3 or 4 time points would be shown as one RGB(A) picture.
        return array, array.ndim >= 5
    io = _itk_header(path)
    # MONAI's ITKReader takes a 4-D scalar file's time axis for channels: the header's component count decides
    components = int(io.GetNumberOfComponents())
    # ITK's Python wrapping reads vector pixels (colour MetaImage, vector NRRD) only as a vector pixel type
    reader = ITKReader(pixel_type=_itk_vector_pixel_type(io)) if components > 1 else ITKReader()
    return np.asarray(reader.get_data(reader.read(source))[0]), components > 1


def _itk_header(path: str | os.PathLike) -> Any:
    """ITK's ImageIO for ``path`` with its header read (dimensions, components, directions; no voxels).

    Raises:
        UnreadableImageError: no ITK reader takes the file.
    """
    import itk

    source = str(path)
    io = itk.ImageIOFactory.CreateImageIO(source, itk.CommonEnums.IOFileMode_ReadMode)
    if io is None:
        raise UnreadableImageError(f"{source}: no ITK reader takes this file")
    io.SetFileName(source)
    io.ReadImageInformation()
    return io


#: The vector component type ITK's Python wrapping reads each stored component type as (it converts on reading):
#: signed char, int and unsigned int vectors are not wrapped, so they are read as float or double.
_ITK_VECTOR_COMPONENTS = {"unsigned_char": "UC", "char": "F", "unsigned_short": "US", "short": "SS",
                          "unsigned_int": "D", "int": "D", "float": "F", "double": "D"}


def _itk_vector_pixel_type(io: Any) -> Any:
    """``itk.VariableLengthVector`` of a component type ITK's wrapping reads: any number of components."""
    import itk

    name = io.GetComponentTypeAsString(io.GetComponentType())
    return itk.VariableLengthVector[getattr(itk, _ITK_VECTOR_COMPONENTS.get(name, "D"))]


def stored_axes_orientation(path: str | os.PathLike) -> np.ndarray | None:
    """Where the stored spatial axes point: (k, 2) rows (patient axis 0 L, 1 P, 2 S; sign +1 when the index runs
    toward L, P or S), as nibabel's orientation arrays; None where nothing tells (see the module's notes).

    A NIfTI sform that cannot be used (singular, NaN) gives way to the qform, as in ITK; ITK directions with two
    axes nearest the same patient axis (strongly oblique) tell nothing either.
    """
    if Path(path).name.lower().endswith(NIFTI_SUFFIXES):
        return _nifti_orientation(path)
    io = _itk_header(path)
    k = min(int(io.GetNumberOfDimensions()), 3)
    # ITK's physical space is LPS; column i of the direction matrix is stored axis i's direction there
    directions = np.array([list(io.GetDirection(i))[:k] for i in range(k)]).T
    axes = [int(np.argmax(np.abs(directions[:, i]))) for i in range(k)]
    if len(set(axes)) < k:
        return None
    return np.array([[axis, 1.0 if directions[axis, i] >= 0 else -1.0] for i, axis in enumerate(axes)])


def _nifti_orientation(path: str | os.PathLike) -> np.ndarray | None:
    """:func:`stored_axes_orientation` of a NIfTI file (nibabel's RAS turned to LPS)."""
    import nibabel as nib
    from nibabel.orientations import io_orientation

    image = nib.load(str(path))
    header = image.header
    candidates = []
    if int(header["sform_code"]) > 0:
        candidates.append(header.get_sform())
    if int(header["qform_code"]) > 0:
        candidates.append(header.get_qform())
    for affine in candidates:
        if not _usable_affine(affine, last=affine is candidates[-1]):
            continue
        ras = io_orientation(affine)
        if np.isnan(ras).any():
            continue
        if len(image.shape) < 3 or 1 in image.shape[:3]:  # one plane: a RAS identity is a writer's default, no claim
            if np.array_equal(ras, [[0, 1], [1, 1], [2, 1]]) and np.allclose(affine[:3, :3], np.diag(
                    np.diag(affine[:3, :3]))):
                return None
        lps = ras.copy()
        lps[:, 1] = np.where(lps[:, 0] < 2, -lps[:, 1], lps[:, 1])  # R -> L and A -> P flip; S stays
        return lps
    if candidates:
        warnings.warn(f"{path}: its sform and qform cannot be used (singular or not finite); slices are shown as "
                      "stored", UserWarning, stacklevel=3)
    return None


def _usable_affine(affine: np.ndarray, last: bool) -> bool:
    """Whether an sform or qform can place the axes: finite and not singular; a sheared one (columns not at right
    angles) only where no other form follows, as ITK's NIfTI reader then prefers the qform."""
    if not np.isfinite(affine).all() or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        return False
    columns = affine[:3, :3] / np.linalg.norm(affine[:3, :3], axis=0)
    return last or bool(np.abs(columns.T @ columns - np.eye(3)).max() <= 1e-3)


def _display_plane(plane: np.ndarray, in_plane: tuple[int, int], orientation: np.ndarray | None) -> np.ndarray:
    """A stored plane, (a, b[, c]) over stored axes ``in_plane`` = (a, b), as viewers show it (rows, cols[, c]).

    Columns run along the plane's first patient axis in L, P, S order (the patient's left to the right; in a
    sagittal plane posterior to the right), rows along the other: posterior down in an axial plane, superior up
    otherwise. Without orientation: rows = b, columns = a, as stored.
    """
    if orientation is None or max(in_plane) >= len(orientation):
        return np.swapaxes(plane, 0, 1)
    (axis_a, sign_a), (axis_b, sign_b) = orientation[in_plane[0]], orientation[in_plane[1]]
    if axis_a < axis_b:  # a across, b down
        shown, (col_sign, row_axis, row_sign) = np.swapaxes(plane, 0, 1), (sign_a, axis_b, sign_b)
    else:
        shown, (col_sign, row_axis, row_sign) = plane, (sign_b, axis_a, sign_a)
    if col_sign < 0:
        shown = shown[:, ::-1]
    if (row_axis == 2) == (row_sign > 0):  # rows must run toward P (axial) or away from S (superior on top)
        shown = shown[::-1]
    return shown


def _as_xyzt(volume: np.ndarray, has_channels: bool, source: str) -> np.ndarray:
    """(x, y, z, t[, c]): a 2-D image gains z, a 3-D one a single time point; singleton axes after t are dropped."""
    spatial = volume.ndim - int(has_channels)
    while spatial > 4 and volume.shape[4] == 1:
        volume, spatial = np.squeeze(volume, axis=4), spatial - 1
    if not 2 <= spatial <= 4:
        raise UnreadableImageError(f"{source}: expected a 2-D, 3-D or 4-D (3-D + time) volume, got shape "
                                   f"{volume.shape!r}")
    for axis in range(spatial, 4):
        volume = np.expand_dims(volume, axis)
    return volume


def _display_volume(volume: np.ndarray) -> np.ndarray:
    """8-bit as stored; anything else windowed to its percentiles as float32 in [0, 1] (NaN shown as black)."""
    return volume if volume.dtype == np.uint8 else window_to_unit(volume)


def _has_content(plane: np.ndarray) -> bool:
    finite = plane[np.isfinite(plane)] if np.issubdtype(plane.dtype, np.floating) else plane
    return finite.size > 0 and float(finite.max()) != float(finite.min())


def iter_volume_frames(path: str | os.PathLike, slice_axis: int = 2, slice_stride: int = 1,
                       frame_stride: int = 1) -> Iterator[tuple[int, np.ndarray]]:
    """(frame index, display-ready (rows, cols[, c]) slice) for every ``slice_stride``-th slice with content of
    every ``frame_stride``-th time point.

    Args:
        path: a NIfTI, NRRD, MHA or MHD file.
        slice_axis: stored axis to slice along, in (x, y, z) order (2: the acquired slices); a 2-D image, or a volume one plane
            thick along any axis, is one slice.
        slice_stride: keep every n-th slice.
        frame_stride: keep every n-th time point of a 4-D (x, y, z, t) file.

    Yields:
        (t * slices + k, slice k of time point t): the slice index itself for a 3-D file, the time point for a 2-D
        cine (x, y, 1, t).

    Raises:
        SkippedSource: a constant volume, or no slice with content.
        UnreadableImageError: no voxels, or a shape that is not a 2-D, 3-D or 4-D image.
    """
    if slice_axis not in (0, 1, 2) or slice_stride < 1 or frame_stride < 1:
        raise ValueError(f"slice_axis must be 0, 1 or 2 and slice_stride and frame_stride at least 1, got "
                         f"{slice_axis!r}, {slice_stride!r}, {frame_stride!r}")
    volume, display = _volume_and_display(path)
    yield from _planes(volume, display, _plane_axis(volume.shape[:3], slice_axis), slice_stride, frame_stride,
                       str(path), stored_axes_orientation(path))


def _volume_and_display(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """(x, y, z, t) voxels as stored and as displayed, one window for every slice and time point.

    Raises:
        SkippedSource: a constant volume.
        UnreadableImageError: no voxels, or a shape that is not a 2-D, 3-D or 4-D image.
    """
    source = str(path)
    raw, has_channels = read_volume(path)
    if raw.size == 0:  # said before the shape check: MONAI gives any such file as shape (0,)
        raise UnreadableImageError(f"{source}: empty volume (no voxels)")
    volume = _as_xyzt(raw, has_channels, source)
    if not _has_content(volume):
        raise SkippedSource(f"{source}: volume is constant (no content)")
    return volume, _display_volume(volume)


def _planes(volume: np.ndarray, display: np.ndarray, axis: int, slice_stride: int, frame_stride: int,
            source: str, orientation: np.ndarray | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """:func:`iter_volume_frames` over a volume already read: slices along stored ``axis`` of every time point,
    each shown as viewers show it (:func:`_display_plane`)."""
    slices, emitted = volume.shape[axis], 0
    in_plane = tuple(a for a in range(3) if a != axis)
    for t in range(0, volume.shape[3], frame_stride):
        for k in range(0, slices, slice_stride):
            if not _has_content(np.take(volume[:, :, :, t], k, axis=axis)):
                continue  # an empty slice: padding, or outside the scanned region
            emitted += 1
            plane = np.take(display[:, :, :, t], k, axis=axis)
            yield t * slices + k, np.ascontiguousarray(_display_plane(plane, in_plane, orientation))
    if emitted == 0:
        raise SkippedSource(f"{source}: every slice along axis {axis} is empty")


def _plane_axis(shape_xyz: tuple[int, ...], slice_axis: int) -> int:
    """The axis to slice along: ``slice_axis``, or the singleton axis of a volume one plane thick ((x, y, 1), or
    (1, H, W) as a channel-first 2-D array is saved), whose one plane is the image: slicing across it would give
    one-pixel-wide lines, which a loader resizes without a word."""
    if shape_xyz[slice_axis] == 1 or 1 not in shape_xyz:
        return slice_axis
    return shape_xyz.index(1)


def first_volume_frame(path: str | os.PathLike) -> np.ndarray:
    """The first slice with content along z, display-ready (rows, cols[, c]) as :func:`iter_volume_frames` gives
    it: what single-image loaders use (a 2-D file's only slice)."""
    return first_volume_frame_and_count(path)[0]


def volume_plane_count(path: str | os.PathLike) -> int:
    """The planes :func:`first_volume_frame_and_count` counts (slices along z times time points; 1 for a 2-D image),
    from the header alone: a listing of many volumes is counted in milliseconds, not by reading every voxel.

    Raises:
        UnreadableImageError: the header cannot be read.
    """
    source = str(path)
    try:
        if Path(path).name.lower().endswith(NIFTI_SUFFIXES):
            import nibabel as nib

            shape = tuple(int(n) for n in nib.load(source).shape[:4])  # components, if any, come after time
        else:
            io = _itk_header(path)
            shape = tuple(int(io.GetDimensions(i)) for i in range(min(io.GetNumberOfDimensions(), 4)))
    except UnreadableImageError:
        raise
    except Exception as e:  # noqa: BLE001 - nibabel and ITK raise many types for a damaged header
        raise UnreadableImageError(f"{source}: cannot read the volume's header ({e})") from e
    xyzt = (*shape, 1, 1, 1)[:4]
    axis = _plane_axis(xyzt[:3], 2)
    return xyzt[axis] * xyzt[3]


def first_volume_frame_and_count(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """(:func:`first_volume_frame`, the number of planes the file holds: its slices along z times its time points;
    1 for a 2-D image), from one reading of the file."""
    first = read_first_volume_frame(path)
    return first.pixels, first.count


class FirstVolumeFrame(NamedTuple):
    """The frame single-image loaders take of a volume (:func:`read_first_volume_frame`)."""

    #: display-ready (rows, cols[, c]) pixels of the first slice with content, as :func:`iter_volume_frames` gives
    pixels: np.ndarray
    #: its index among the planes, as :func:`iter_volume_frames` numbers them (``t * slices + k``; the slice index
    #: of a 3-D file): 0 only where slice 0 has content, so a mask made of the frame is laid on this slice
    index: int
    #: the planes the file holds: its slices along z times its time points (1 for a 2-D image)
    count: int


def read_first_volume_frame(path: str | os.PathLike) -> FirstVolumeFrame:
    """The first slice with content along z, its index and the file's number of planes, from one reading of the
    file.

    Raises:
        SkippedSource: a constant volume, or no slice with content.
        UnreadableImageError: no voxels, or a shape that is not a 2-D, 3-D or 4-D image.
    """
    volume, display = _volume_and_display(path)
    axis = _plane_axis(volume.shape[:3], 2)
    index, pixels = next(_planes(volume, display, axis, 1, 1, str(path), stored_axes_orientation(path)))
    return FirstVolumeFrame(pixels, index, volume.shape[axis] * volume.shape[3])
