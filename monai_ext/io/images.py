"""One decoder for every ultrasound file a user brings, used by every path (corpus, training, inference, MONAI Label).

Pictures (PNG/JPG/BMP/TIFF, every page of a multi-page TIFF; PIL, 8-bit PNGs through OpenCV, faster with the same
pixels), DICOM
(:mod:`monai_ext.io.dicom`), NIfTI / NRRD / MHA / MHD (:mod:`monai_ext.io.volumes`) and cine loops
(:mod:`monai_ext.io.video`) all come out as *display-ready* pixels (:mod:`monai_ext.io.display`); the corpus takes
every frame, single-image loaders the first, and both convert with the same function, so a file gives the same
pixels wherever it is read.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import re
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps

from monai_ext.io.dicom import (
    DICOM_SUFFIXES,
    first_dicom_frame,
    has_dicom_preamble,
    has_dicom_signature,
    read_dicom,
    read_dicom_header,
    square_pixel_shape,
    ultrasound_region_box,
)
from monai_ext.io.dicom_frames import frame_count
from monai_ext.io.display import warn_if_few_bits_used, window_to_unit
from monai_ext.io.errors import SkippedSource, UnreadableImageError
from monai_ext.io.once import warn_once
from monai_ext.io.video import VIDEO_SUFFIXES, iter_video_frames, video_frame_count
from monai_ext.io.volumes import ITK_SUFFIXES, NIFTI_SUFFIXES, read_first_volume_frame, volume_plane_count

__all__ = [
    "ALL_SUFFIXES",
    "DICOM_SUFFIXES",
    "IMAGE_SUFFIXES",
    "ITK_SUFFIXES",
    "NIFTI_SUFFIXES",
    "SINGLE_IMAGE_SUFFIXES",
    "VIDEO_SUFFIXES",
    "DisplayImage",
    "apply_orientation",
    "check_file",
    "checked_orientation",
    "frames_held",
    "image_stem",
    "is_dicom_by_content",
    "is_single_image",
    "iter_picture_frames",
    "kind_by_content",
    "matches_suffixes",
    "picture_frame_count",
    "picture_orientation",
    "read_picture_and_orientation",
    "pil_display_pixels",
    "pil_orientation",
    "read_image",
    "read_picture",
    "resample_labels",
    "resampled_grid",
    "source_kind",
    "stored_shape",
    "to_stored_grid",
    "undo_orientation",
    "unique_output_stems",
]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".webp")
#: Everything the single-image loader reads (training datalists of the folder protocols, bundle inference); cine loops
#: only enter the corpus. The MONAI Label datastore lists the picture formats and DICOM, what its 2-D viewers show.
SINGLE_IMAGE_SUFFIXES = IMAGE_SUFFIXES + DICOM_SUFFIXES + NIFTI_SUFFIXES + ITK_SUFFIXES
ALL_SUFFIXES = SINGLE_IMAGE_SUFFIXES + VIDEO_SUFFIXES
_LONGEST_SUFFIX_FIRST = tuple(sorted(ALL_SUFFIXES, key=len, reverse=True))  # ".nii.gz" before ".gz"-like tails
#: PIL modes whose arrays are display-ready as they are (see monai_ext.io.display).
_DISPLAY_READY_MODES = ("1", "L", "LA", "RGB", "RGBA", "F")
#: Longest output stem, in bytes: file names are limited to 255 bytes (ext4, XFS, APFS, NTFS in UTF-16 units), and
#: the writers append ``_gradcam.png`` / ``_overlay.png``; 200 leaves room for those and for a ``_N`` counter.
MAX_OUTPUT_STEM_BYTES = 200
#: TIFF tag whose bit 0 marks a reduced-resolution copy of a page (a thumbnail).
_NEW_SUBFILE_TYPE = 254
#: Pictures that can hold several frames (pages of a TIFF, frames of an animated GIF or WebP).
_MULTI_FRAME_PICTURES = (".tif", ".tiff", ".gif", ".webp")
#: EXIF (and TIFF) Orientation tag: 1 is upright; 2-8 are the flips and rotations viewers undo.
_EXIF_ORIENTATION = 0x0112


@dataclass(frozen=True)
class DisplayImage:
    """One image as displayed.

    Attributes:
        pixels: (H, W) or (H, W, C) display-ready pixels (:mod:`monai_ext.io.display`).
        region_box: (x0, y0, x1, y1) of the DICOM B-mode region, exclusive ends, when the file gives one.
        frame_count: the frames the file holds (a cine loop's, a volume's planes, a multi-page TIFF's pages);
            ``pixels`` is the first. None where they were not counted: a video or a multi-frame picture format read
            without ``read_image(..., count_frames=True)``.
        orientation: the EXIF Orientation (1-8) applied to the file's stored pixels to give ``pixels``
            (:func:`upright`); 1 for every file shown as stored (:func:`picture_orientation` gives the same without
            decoding). Masks are turned by it between the stored grid and ``pixels``.
        frame_index: the index of the frame ``pixels`` is among the ``frame_count``: 0 but for a volume, whose
            first slice with content it is (:func:`~monai_ext.io.volumes.read_first_volume_frame`).
    """

    pixels: np.ndarray
    region_box: tuple[int, int, int, int] | None = None
    frame_count: int | None = 1
    orientation: int = 1
    frame_index: int = 0


def _lacks_suffix(name: str) -> bool:
    """No file-type suffix: none at all (``IM0001``) or a number (``1.2.840.113619.2.55.3``, a UID as PACS dumps
    name files), the names DICOM exports give their files."""
    suffix = Path(name).suffix
    return suffix == "" or suffix[1:].isdigit()


def is_dicom_by_content(path: str | os.PathLike) -> bool:
    """A DICOM file named without a suffix this package reads by name: none (DICOMDIR / CD exports:
    ``DICOM/IM0001``), a number (a UID) or another one (Siemens' ``US0001.IMA``, ``.dic``, ``.dc3``), recognised by
    its b"DICM" magic or, without File Meta Information, by its first element
    (:func:`monai_ext.io.dicom.has_dicom_signature`); the file is opened (132 bytes read) only then, so listing a
    folder of pictures reads nothing.

    The first-element test (ACR-NEMA-style exports, which carry no magic) is made of names without a suffix or with
    a number for one, as those exports name their files; a name with another suffix must carry the magic: binary
    data (an MHD's ``.raw`` voxels) starts with ``08 00 xx 00`` often enough.
    """
    name = Path(path).name
    if name.lower().endswith(_LONGEST_SUFFIX_FIRST):
        return False
    return has_dicom_signature(path) if _lacks_suffix(name) else has_dicom_preamble(path)


def matches_suffixes(path: str | os.PathLike, suffixes: Sequence[str]) -> bool:
    """Whether ``path`` is of one of ``suffixes`` (whole-name, case-insensitive: ``.nii.gz`` too); a DICOM file
    without a suffix this package knows (:func:`is_dicom_by_content`) counts as ``.dcm`` where a DICOM suffix is
    among ``suffixes``."""
    wanted = tuple(s.lower() for s in suffixes)
    if Path(path).name.lower().endswith(wanted):
        return True
    return any(s in DICOM_SUFFIXES for s in wanted) and is_dicom_by_content(path)


def is_single_image(path: str | os.PathLike) -> bool:
    """Whether the single-image loader reads ``path``: by its suffix, or a DICOM file by its content."""
    return matches_suffixes(path, SINGLE_IMAGE_SUFFIXES)


def image_stem(path: str | os.PathLike) -> str:
    """The file name without its image suffix, double ones included: ``case.nii.gz`` -> ``case`` (``Path.stem``
    would give ``case.nii`` and miss the mask ``case.png``); a name without a suffix (``IM0001``, a UID) whole."""
    name = Path(path).name
    for suffix in _LONGEST_SUFFIX_FIRST:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name if _lacks_suffix(name) else Path(name).stem


def _shorten_stem(stem: str, max_bytes: int = MAX_OUTPUT_STEM_BYTES) -> str:
    """``stem`` if it fits in ``max_bytes`` (UTF-8), else its longest whole-character prefix that leaves room for
    ``~`` and 8 hex digits of the full stem's SHA-1, so that two long stems sharing a prefix stay apart."""
    encoded = stem.encode("utf-8", "surrogateescape")
    if len(encoded) <= max_bytes:
        return stem
    digest = hashlib.sha1(encoded).hexdigest()[:8]
    return f"{encoded[: max_bytes - 9].decode('utf-8', 'ignore')}~{digest}"


def unique_output_stems(paths: Sequence[str | os.PathLike]) -> list[str]:
    """One distinct base name per input for the files written about it (masks, overlays, heat maps).

    The image stem where it is unique; inputs that share a stem (``a/scan.dcm`` and ``b/scan.dcm`` of a recursive
    folder, or ``case.png`` beside ``case.nrrd``) get their path relative to the inputs' common folder, suffix
    included, flattened into one name (``a__scan_dcm``); a name longer than ``MAX_OUTPUT_STEM_BYTES`` is cut and
    ends in ``~`` and a hash of the whole name (an output file name must fit the filesystem's 255 bytes); a name
    still taken gets the first of ``_2``, ``_3``, ... that is free (neither given before nor another input's own
    name) so that no output overwrites another. Names that differ only in case count as the same (``IMG1.png`` and
    ``img1.png`` give ``IMG1_png`` and ``img1_png_2``): on macOS and Windows they are one file.
    """
    stems = [image_stem(p) for p in paths]
    # names are compared case-folded: on the case-insensitive filesystems of macOS and Windows ``Scan`` is ``scan``
    shared = {stem for stem, n in Counter(stem.casefold() for stem in stems).items() if n > 1}
    if shared:
        absolute = [os.path.abspath(p) for p in paths]
        common = os.path.commonpath([os.path.dirname(p) for p in absolute])
        stems = [re.sub(r"[^\w-]", "_", os.path.relpath(p, common).replace(os.sep, "__"))
                 if stem.casefold() in shared else stem for p, stem in zip(absolute, stems)]
    stems = [_shorten_stem(stem) for stem in stems]
    # every input's own name is reserved from the start, so a suffixed name never takes the plain name of a later
    # input (``a_b``, ``a_b``, ``a_b_2`` give ``a_b``, ``a_b_3``, ``a_b_2``: ``a_b_2`` twice overwrote one output)
    taken = {stem.casefold() for stem in stems}
    given: set[str] = set()
    names = []
    for stem in stems:
        name, count = stem, 1
        while name.casefold() in given or (count > 1 and name.casefold() in taken):
            count += 1
            name = f"{stem}_{count}"
        given.add(name.casefold())
        names.append(name)
    return names


def source_kind(path: str | os.PathLike) -> str | None:
    """"image", "dicom", "nifti", "itk", "video" by the suffix; "dicom" for a DICOM file named without a suffix
    this package knows (by its content, :func:`is_dicom_by_content`: ``IM0001``, ``US0001.IMA``); None otherwise."""
    name = Path(path).name.lower()
    for kind, suffixes in (("nifti", NIFTI_SUFFIXES), ("image", IMAGE_SUFFIXES), ("dicom", DICOM_SUFFIXES),
                           ("itk", ITK_SUFFIXES), ("video", VIDEO_SUFFIXES)):
        if name.endswith(suffixes):
            return kind
    return "dicom" if is_dicom_by_content(path) else None


def _png_8bit(path: Path) -> np.ndarray | None:
    """OpenCV's decoding of a PNG as stored (BGR order), or None where PIL should read it instead: other depths, a
    file OpenCV cannot decode (PIL then gives the reason), or an empty one (``cv2.imdecode`` asserts on no bytes)."""
    data = path.read_bytes()
    # only a real PNG (a JPEG named .png carries its EXIF orientation, which OpenCV ignores here), not one carrying
    # an orientation, and not one larger than PIL's decompression-bomb limit, which PIL enforces (OpenCV would
    # decode a 219 KB file of 15000 x 15000 pixels into gigabytes)
    if not data.startswith(_PNG_SIGNATURE) or _may_carry_orientation(data) or _png_pixels(data) > _pixel_limit():
        return None
    pixels = _quiet_imdecode(data)
    return pixels if pixels is not None and pixels.dtype == np.uint8 else None


def _quiet_imdecode(data: bytes) -> np.ndarray | None:
    """``cv2.imdecode`` without OpenCV's own stderr warning for a damaged file ("PNG input buffer is incomplete"),
    which broke through progress bars: PIL then reads the file and gives the reason, which the caller reports."""
    logging_ = cv2.utils.logging
    level = logging_.getLogLevel()
    logging_.setLogLevel(logging_.LOG_LEVEL_ERROR)
    try:
        return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    finally:
        logging_.setLogLevel(level)


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _png_pixels(png: bytes) -> int:
    """Width x height from a PNG's IHDR chunk (bytes 16-24); 0 where the header is too short to say."""
    if len(png) < 24:
        return 0
    return int.from_bytes(png[16:20], "big") * int.from_bytes(png[20:24], "big")


def _pixel_limit() -> float:
    """PIL's decompression-bomb limit as set now (``Image.MAX_IMAGE_PIXELS``; None turns it off)."""
    return Image.MAX_IMAGE_PIXELS if Image.MAX_IMAGE_PIXELS is not None else float("inf")


def _may_carry_orientation(png: bytes) -> bool:
    """Whether a PNG may carry an orientation, in any of the places PIL's ``getexif`` reads it: an ``eXIf`` chunk
    (before or after the image data), ImageMagick's "Raw profile type exif" text, or XMP's ``tiff:Orientation``.
    A false alarm only sends the file to PIL's decoder."""
    return any(marker in png for marker in (b"eXIf", b"Raw profile type exif", b"tiff:Orientation"))


def _png_gray(path: Path) -> np.ndarray | None:
    """8-bit PNGs through OpenCV: its decoder and colour conversion run about 15% faster than PIL's, the largest
    single cost of ingestion, with the same luma. None as :func:`_png_8bit`."""
    pixels = _png_8bit(path)
    if pixels is None:
        return None
    if pixels.ndim == 3:
        pixels = cv2.cvtColor(pixels, cv2.COLOR_BGRA2GRAY if pixels.shape[2] == 4 else cv2.COLOR_BGR2GRAY)
    return pixels


def _png_rgb(path: Path) -> np.ndarray | None:
    """8-bit PNGs through OpenCV with their colour: (H, W) gray or (H, W, 3) RGB (alpha dropped); None as
    :func:`_png_8bit`."""
    pixels = _png_8bit(path)
    if pixels is None:
        return None
    if pixels.ndim == 3:
        pixels = cv2.cvtColor(pixels, cv2.COLOR_BGRA2RGB if pixels.shape[2] == 4 else cv2.COLOR_BGR2RGB)
    return pixels


#: What PIL's ``exif_transpose`` does to a picture's stored (H, W[, C]) pixels for each EXIF Orientation but 1.
_SHOWN_FROM_STORED: dict[int, Callable[[np.ndarray], np.ndarray]] = {
    2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1], 5: lambda a: np.swapaxes(a, 0, 1),
    6: lambda a: np.rot90(a, -1), 7: lambda a: np.swapaxes(np.rot90(a, 2), 0, 1), 8: lambda a: np.rot90(a, 1)}
#: The orientation that undoes each one: the quarter turns undo each other, the flips and 180 degrees themselves.
_INVERSE_ORIENTATION = {2: 2, 3: 3, 4: 4, 5: 5, 6: 8, 7: 7, 8: 6}
#: Orientations that swap width and height.
_QUARTER_TURNS = (5, 6, 7, 8)


def pil_orientation(img: Image.Image) -> int:
    """The EXIF Orientation that :func:`upright` applies to an open picture: 2-8, or 1 where the picture is shown
    as stored (no tag, 1, or a value outside 1-8, which ``exif_transpose`` ignores too)."""
    orientation = img.getexif().get(_EXIF_ORIENTATION, 1)
    return orientation if isinstance(orientation, int) and orientation in _SHOWN_FROM_STORED else 1


def picture_orientation(path: str | os.PathLike) -> int:
    """The EXIF Orientation :func:`read_image` applies to the stored pixels of ``path`` (2-8), else 1.

    1 for every file shown as stored: a picture without an orientation, DICOM (a DICOM file under a picture's name
    too), volumes, videos, and a file that cannot be opened (its reader names the reason). Masks are exchanged with
    viewers on the stored grid (ITK, and so 3D Slicer, reads pictures without applying EXIF), while the network
    sees the image upright: this is the turn between the two. Only the header is read (a PNG's bytes are searched
    for an orientation first: PIL decodes a whole PNG to look for a trailing ``eXIf`` chunk).
    """
    path = Path(path)
    try:
        kind = source_kind(path)
        if kind not in ("image", None) and not _picture_under_dicom_name(path) or has_dicom_preamble(path):
            return 1
        with path.open("rb") as f:
            head = f.read(len(_PNG_SIGNATURE))
        if head == _PNG_SIGNATURE and not _may_carry_orientation(path.read_bytes()):
            return 1
        with Image.open(path) as img:
            return pil_orientation(img)
    except Exception:  # noqa: BLE001 - informative: the image's reader names the reason when it reads the file
        return 1


def checked_orientation(orientation: int) -> int:
    """``orientation`` if it is an EXIF Orientation (1-8).

    Raises:
        ValueError: quoting any other value.
    """
    if isinstance(orientation, bool) or not isinstance(orientation, (int, np.integer)) or not 1 <= orientation <= 8:
        raise ValueError(f"orientation must be an EXIF Orientation 1-8, got {orientation!r}")
    return int(orientation)


def apply_orientation(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """Stored (H, W[, C]) pixels as a viewer shows them under EXIF ``orientation``, as :func:`upright` turns a
    picture: how a mask on its image's stored grid comes onto the upright image the network sees.

    Raises:
        ValueError: ``orientation`` is not 1-8.
    """
    orientation = checked_orientation(orientation)
    if orientation == 1:
        return pixels
    return np.ascontiguousarray(_SHOWN_FROM_STORED[orientation](pixels))  # torch and OpenCV refuse negative strides


def undo_orientation(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """(H, W[, C]) pixels of an upright image brought back to its file's stored grid: the inverse of
    :func:`apply_orientation`, for a mask computed on the upright image and saved for viewers.

    Raises:
        ValueError: ``orientation`` is not 1-8.
    """
    orientation = checked_orientation(orientation)
    return pixels if orientation == 1 else apply_orientation(pixels, _INVERSE_ORIENTATION[orientation])


def resampled_grid(path: str | os.PathLike) -> tuple[int, int] | None:
    """(rows, columns) of the stored pixel grid of a file whose pixels :func:`read_image` gives resampled from it:
    a DICOM of non-square pixels (:func:`~monai_ext.io.dicom.square_pixel_shape`); None for every other file, and
    for one no longer there (removed since it was read: no grid to lay a mask on).

    Masks lie on the stored grid (what 3D Slicer and OHIF save): read for such an image, they are resampled to its
    pixels (:func:`resample_labels`), and masks predicted on its pixels are resampled back before they are saved.
    A header read, quiet (reading the image said how it was resampled).

    Raises:
        UnreadableImageError: a DICOM file whose header cannot be read, naming it.
    """
    path = Path(path)
    kind = source_kind(path)
    if not path.is_file() or kind != "dicom" and not (kind in ("image", None) and has_dicom_preamble(path)):
        return None
    if _picture_under_dicom_name(path):  # read as the picture it is (read_image)
        return None
    ds = read_dicom_header(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        shape = square_pixel_shape(ds, str(path))
    return None if shape is None else (int(ds.Rows), int(ds.Columns))


def resample_labels(labels: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """(..., H, W) labels (class indices, a boolean mask) resampled to (..., rows, columns) ``shape`` by nearest
    neighbour, pixel centres at half-pixel offsets as the frames of :func:`resampled_grid` are (linear there: a
    label between two classes would be a third). Written here: OpenCV's ``INTER_NEAREST`` takes the pixel left of the
    centre (a half-pixel shift), and it has no bool or many-channel arrays."""
    height, width = labels.shape[-2:]
    rows = np.minimum(((np.arange(shape[0]) + 0.5) * height / shape[0]).astype(np.intp), height - 1)
    columns = np.minimum(((np.arange(shape[1]) + 0.5) * width / shape[1]).astype(np.intp), width - 1)
    return labels[..., rows[:, None], columns[None, :]]


def to_stored_grid(pixels: np.ndarray, path: str | os.PathLike, orientation: int) -> np.ndarray:
    """(H, W) or (H, W, C) pixels computed on the image :func:`read_image` gives of ``path`` (a mask, an overlay),
    brought back to the file's stored pixel grid, where 3D Slicer and OHIF draw over it: its EXIF ``orientation``
    undone (:func:`undo_orientation`), and a DICOM of non-square pixels resampled back (:func:`resampled_grid`;
    nearest neighbour, so a mask keeps its classes).

    Raises:
        ValueError: ``orientation`` is not 1-8.
    """
    pixels = undo_orientation(pixels, orientation)
    grid = resampled_grid(path)
    if grid is None:
        return pixels
    if pixels.ndim == 2:
        return resample_labels(pixels, grid)
    return np.ascontiguousarray(np.moveaxis(resample_labels(np.moveaxis(pixels, -1, 0), grid), 0, -1))


def stored_shape(shape: Sequence[int], orientation: int) -> tuple[int, int]:
    """(H, W) on the stored grid of an upright image of (H, W[, ...]) ``shape`` under EXIF ``orientation``.

    Raises:
        ValueError: ``orientation`` is not 1-8.
    """
    height, width = (int(s) for s in shape[:2])
    return (width, height) if checked_orientation(orientation) in _QUARTER_TURNS else (height, width)


def upright(img: Image.Image) -> Image.Image:
    """The picture the way photo viewers show it: an EXIF Orientation other than 1 (phone photographs of a
    scanner's screen, some exporters) applied by PIL's ``exif_transpose``, so that the network sees it upright.
    Masks stay on the stored grid, where 3D Slicer (ITK) shows the file, and are turned to match
    (:func:`apply_orientation`, :func:`undo_orientation`)."""
    orientation = pil_orientation(img)
    if orientation == 1:
        return img
    if orientation in _QUARTER_TURNS and img.format == "TIFF" and img.filename:
        # Pillow 11+ gives such a TIFF its upright size when it opens it, then memory-maps an uncompressed
        # single-strip page (gray, 16-bit, palette, RGBA) with that size: scrambled pixels, no error. Without a file
        # name it decodes the strip from the open file at its stored size instead.
        img.filename = ""
    return ImageOps.exif_transpose(img)


def pil_display_pixels(img: Image.Image) -> np.ndarray:
    """A PIL image as display-ready (H, W) or (H, W, C) pixels, upright (:func:`upright`): 16/32-bit integers as
    uint16, palettes and other colour modes as RGB; intensities outside their type's display range (float beyond
    [0, 1], signed below 0, 32-bit beyond 65535) windowed to [0, 1] as volumes of such types are
    (:func:`monai_ext.io.display.window_to_unit`)."""
    inverted = _is_16_bit_min_is_white(img)  # asked before upright(), whose copy has no TIFF tags
    pixels = _display_pixels(upright(img))
    return np.uint16(65535) - pixels if inverted else pixels


_SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L")


def _is_16_bit_min_is_white(img: Image.Image) -> bool:
    """A 16-bit gray TIFF whose PhotometricInterpretation (tag 262) is 0, WhiteIsZero: Pillow inverts 8-bit ones
    itself but hands on 16-bit values as stored, so the picture would come out as its negative."""
    return img.format == "TIFF" and img.mode in _SIXTEEN_BIT_MODES and getattr(img, "tag_v2", {}).get(262) == 0


def _display_pixels(img: Image.Image) -> np.ndarray:
    """:func:`pil_display_pixels` of an image already upright."""
    if img.mode in _SIXTEEN_BIT_MODES:
        return np.asarray(img, dtype=np.uint16)
    if img.mode in ("I", "F"):
        return _intensities_for_display(np.asarray(img))
    if img.mode in ("P", "PA"):
        img = img.convert("RGBA" if "transparency" in img.info or img.mode == "PA" else "RGB")
    elif img.mode not in _DISPLAY_READY_MODES:  # CMYK, YCbCr, LAB, HSV, ...
        img = img.convert("RGB")
    return np.asarray(img)


def pil_display_image(img: Image.Image) -> Image.Image:
    """:func:`pil_display_pixels` as a PIL image, for MONAI's ``PILReader(converter=...)`` in the pretraining bundle.

    ``PILReader`` hands on PIL's raw values: a palette PNG's indices (a nearly black frame), CMYK ink, floats in
    any range. Converted here, such files reach a bundle as they reach every other reader of this project. Modes
    that are display-ready already (8-bit gray or colour, 16-bit gray) are returned as they are.
    """
    if _is_16_bit_min_is_white(img):
        return Image.fromarray(np.uint16(65535) - np.asarray(upright(img), dtype=np.uint16))
    img = upright(img)
    if img.mode == "1":  # bilevel: PIL gives bools, which no intensity transform takes; shown as 0 / 255
        return img.convert("L")
    if img.mode in ("L", "LA", "RGB", "RGBA", "I;16", "I;16B", "I;16L"):
        return img
    pixels = _display_pixels(img)
    return Image.fromarray(pixels.astype(np.float32) if pixels.dtype.kind == "f" else pixels)


def _intensities_for_display(values: np.ndarray) -> np.ndarray:
    """PIL's 32-bit "I" and "F" modes -> display-ready (H, W) pixels.

    "I" holds 16-bit PNGs (older Pillow) and signed or 32-bit TIFFs; "F" floats from ImageJ or MATLAB. Values that
    fit the display range (0..65535 as uint16, [0, 1] as float) are display values; others (decibels, signed or raw
    intensities) were clipped to black or white, so they are windowed like a volume of that type.
    """
    if values.dtype.kind in "iu":
        if values.size == 0 or (0 <= values.min() and values.max() <= 65535):
            return values.astype(np.uint16)
        return window_to_unit(values)
    finite = values[np.isfinite(values)]
    if finite.size == 0 or (0.0 <= finite.min() and finite.max() <= 1.0):
        return np.nan_to_num(values, nan=0.0, posinf=1.0, neginf=0.0)  # NaN black, as in a windowed volume
    return window_to_unit(values)


def read_picture(path: str | os.PathLike, colour: bool = False) -> np.ndarray:
    """Display-ready pixels of a PNG/JPG/BMP/TIFF (first page) or any other format PIL opens.

    Args:
        path: the file.
        colour: keep 8-bit PNG colour as (H, W, 3) RGB instead of taking OpenCV's luma at decoding (the corpus
            de-annotates on colour); other formats keep their colour either way.
    """
    return read_picture_and_orientation(path, colour)[0]


def read_picture_and_orientation(path: str | os.PathLike, colour: bool = False) -> tuple[np.ndarray, int]:
    """:func:`read_picture`'s pixels and the EXIF Orientation applied to give them (1 where none), from one read.

    The segmentation loaders turn a mask by the orientation its image was read with: asked of the file again
    (:func:`picture_orientation`), a PNG's bytes were read twice per sample.
    """
    path = Path(path)
    if path.suffix.lower() == ".png":
        pixels = _png_rgb(path) if colour else _png_gray(path)
        if pixels is not None:  # OpenCV reads only PNGs that carry no orientation (_png_8bit)
            return pixels, 1
    with Image.open(path) as img:
        orientation = pil_orientation(img)  # before upright(), which may clear a TIFF's file name
        pixels = pil_display_pixels(img)
    warn_if_few_bits_used(pixels, str(path))  # 12-bit data in a 16-bit file reads nearly black
    return pixels, orientation


def iter_picture_frames(path: str | os.PathLike, frame_stride: int = 1,
                        colour: bool = False) -> Iterator[tuple[int, np.ndarray]]:
    """(page, display-ready pixels) of every ``frame_stride``-th page of a multi-page TIFF (a cine loop or a stack
    exported page by page) or frame of an animated GIF or WebP (loops shared that way), or (0,
    :func:`read_picture`) of any other picture; the first page is what :func:`read_picture` reads.

    Reduced-resolution pages after the first (TIFF NewSubfileType bit 0: thumbnails, pyramid levels) are smaller
    copies of a page, not frames, and are left out. Animated frames are PIL's, each composed over the ones before
    as a viewer shows it.
    """
    if frame_stride < 1:
        raise ValueError(f"frame_stride must be at least 1, got {frame_stride!r}")
    if Path(path).suffix.lower() not in _MULTI_FRAME_PICTURES:
        yield 0, read_picture(path, colour)
        return
    with Image.open(path) as img:
        for page in _frame_pages(img, frame_stride):
            pixels = pil_display_pixels(img)
            warn_if_few_bits_used(pixels, str(path))
            yield page, pixels


def picture_frame_count(path: str | os.PathLike) -> int:
    """The frames :func:`iter_picture_frames` gives of a picture: 1 for a single-frame format, a GIF's or WebP's
    frame count, a TIFF's pages but its reduced-resolution copies (each page's tags read).

    Best effort, since the count only informs: a file damaged after its first frame counts the frames found before
    the damage (at least 1), with a warning naming the file, where reading its pages would fail.
    """
    if Path(path).suffix.lower() not in _MULTI_FRAME_PICTURES:
        return 1
    counted = 0
    try:
        with Image.open(path) as img:
            if img.format in ("GIF", "WEBP"):  # no seeking: PIL decodes every GIF frame it seeks through
                return max(1, int(getattr(img, "n_frames", 1)))
            for _ in _frame_pages(img, 1):
                counted += 1
    except Exception as e:  # noqa: BLE001 - PIL raises many types for damaged pages; the count is informative
        warnings.warn(f"{path}: its frames counted up to a damaged page ({max(1, counted)}): "
                      f"{type(e).__name__}: {e}", UserWarning, stacklevel=2)
    return max(1, counted)


def pil_frame_count(img: Image.Image) -> int:
    """The frames an open picture holds, by its format (not its name): a TIFF's pages less its reduced-resolution
    copies (as :func:`iter_picture_frames` counts them), an animated GIF's, WebP's or PNG's (APNG) frames; 1 for any
    other format (an MPO's extra images are previews of its one picture). ``img`` is left at its first frame.
    """
    if img.format == "TIFF":
        count = sum(1 for _ in _frame_pages(img, 1))
        img.seek(0)
        return max(1, count)
    if img.format in ("GIF", "WEBP", "PNG"):
        return max(1, int(getattr(img, "n_frames", 1)))
    return 1


def frames_held(path: str | os.PathLike) -> int:
    """The frames a file the single-image loader reads holds, read as cheaply as its format allows: a DICOM
    header's ``NumberOfFrames`` (no pixel data read), a multi-frame picture's pages (:func:`picture_frame_count`), a
    volume's planes (from its header); 1 for a single-frame picture format, without opening the file.

    Informative only, for saying that a loader took the first of several frames: a file that cannot be read counts
    1 here, and the loader names it with the reason when it comes to read it.
    """
    kind = source_kind(path)
    try:
        if kind == "dicom":
            return frame_count(read_dicom_header(path))
        if kind in ("nifti", "itk"):
            return volume_plane_count(path)
        if kind == "video":
            return video_frame_count(path)
        return picture_frame_count(path)
    except Exception:  # noqa: BLE001 - informative only: the loader names the reason when it reads the file
        return 1


def _frame_pages(img: Image.Image, frame_stride: int) -> Iterator[int]:
    """Seek ``img`` to every ``frame_stride``-th page that is a frame, yielding its index: TIFF pages that are
    reduced-resolution copies (NewSubfileType bit 0) are skipped."""
    # the format, not the name, says whether there are pages: a JPEG named .tif has one. A TIFF's pages are found by
    # seeking until the end (n_frames walks every page first, so one damaged last page would lose the good ones);
    # GIF and WebP give their count from the container.
    if img.format == "TIFF":
        pages: Iterable[int] = itertools.count(0, frame_stride)
    else:
        pages = range(0, getattr(img, "n_frames", 1) if img.format in ("GIF", "WEBP") else 1, frame_stride)
    for page in pages:
        try:
            img.seek(page)
        except EOFError:  # past a TIFF's last page
            return
        if page > 0 and img.format == "TIFF" and int(img.tag_v2.get(_NEW_SUBFILE_TYPE, 0)) & 1:
            continue
        yield page


#: The first bytes of the picture formats a file under a DICOM name is told by (:func:`_picture_under_dicom_name`);
#: a BMP's two (b"BM") are told by the file size that follows them too.
_PICTURE_SIGNATURES = {_PNG_SIGNATURE: "PNG", b"\xff\xd8\xff": "JPEG", b"II*\x00": "TIFF", b"MM\x00*": "TIFF",
                       b"GIF87a": "GIF", b"GIF89a": "GIF"}


def _picture_under_dicom_name(path: Path) -> str | None:
    """The format of a picture named as DICOM (``.dcm``, ``.dicom``) by its first bytes, as a DICOM file under a
    picture's name is told by its b"DICM"; None for any other file, and for one with b"DICM" at byte 128 (a file
    both TIFF and DICOM is read as DICOM)."""
    if not path.name.lower().endswith(DICOM_SUFFIXES):
        return None
    try:
        with path.open("rb") as f:
            head = f.read(12)
        size = path.stat().st_size
    except OSError:
        return None
    picture = next((name for magic, name in _PICTURE_SIGNATURES.items() if head.startswith(magic)), None)
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        picture = "WebP"
    elif head[:2] == b"BM" and int.from_bytes(head[2:6], "little") == size:
        picture = "BMP"
    return picture if picture is not None and not has_dicom_preamble(path) else None


def kind_by_content(path: str | os.PathLike) -> str | None:
    """:func:`source_kind` of ``path``, corrected by its content with a warning naming the file: a DICOM file under a
    picture's name (b"DICM" at byte 128: a DICOM export named .png or .jpg, where PIL's "cannot identify image file"
    said nothing of it) is "dicom", and a picture under a DICOM name (its first bytes a PNG's, a JPEG's...: pydicom's
    "no pixel data" said nothing of what it is) is "image". The single-image loader and the corpus read by it."""
    path = Path(path)
    kind = source_kind(path)
    if kind in ("image", None) and has_dicom_preamble(path):
        warn_once(f"{path}: a DICOM file (b'DICM' at byte 128) under a picture's name; read as DICOM", stacklevel=3)
        return "dicom"
    if kind == "dicom" and (picture := _picture_under_dicom_name(path)):
        warn_once(f"{path}: a {picture} picture under a DICOM name (no b'DICM' at byte 128); read as a picture",
                  stacklevel=3)  # the caller of kind_by_content's caller
        return "image"
    return kind


def _decode_first(path: Path, count_frames: bool, colour: bool = False) -> DisplayImage:
    kind = kind_by_content(path)
    if kind == "dicom":
        ds = read_dicom(path)  # NumberOfFrames made to say what the pixel data holds
        return DisplayImage(first_dicom_frame(ds, str(path)), ultrasound_region_box(ds), frame_count(ds))
    if kind in ("nifti", "itk"):
        first = read_first_volume_frame(path)
        return DisplayImage(first.pixels, frame_count=first.count, frame_index=first.index)
    if kind == "video":
        return DisplayImage(next(iter_video_frames(path))[1],
                            frame_count=video_frame_count(path) if count_frames else None)
    pixels, orientation = read_picture_and_orientation(path, colour)  # pictures, and any other file PIL opens
    if Path(path).suffix.lower() not in _MULTI_FRAME_PICTURES:
        return DisplayImage(pixels, orientation=orientation)
    return DisplayImage(pixels, frame_count=picture_frame_count(path) if count_frames else None,
                        orientation=orientation)


def check_file(path: Path) -> None:
    """Raise :class:`UnreadableImageError` for a path that is no readable file or holds no bytes, before any
    decoder gives its own less telling error (OpenCV's is an internal assertion, PIL's "cannot identify")."""
    if not path.is_file():
        raise UnreadableImageError(f"{path}: cannot open (missing, a broken link or not a file)")
    if path.stat().st_size == 0:
        raise UnreadableImageError(f"{path}: empty file (0 bytes)")


def read_image(path: str | os.PathLike, count_frames: bool = False, colour: bool = False) -> DisplayImage:
    """The first frame of any supported file, as displayed (what the corpus's first frame of it holds).

    Args:
        path: the file.
        count_frames: also count the frames of a video or of a multi-frame picture format (TIFF, GIF, WebP), a
            second, best-effort reading of the file (:func:`picture_frame_count`; a video's container count, 1
            where it gives none). DICOM files and volumes give their count as they are read.
        colour: keep an 8-bit PNG's colour (:func:`read_picture`'s ``colour``); other formats keep theirs either way.

    Raises:
        UnreadableImageError: naming the file and the reason (missing, empty, not decodable, no pixel data, an
            empty volume).
    """
    path = Path(path)
    check_file(path)
    try:
        image = _decode_first(path, count_frames, colour)
    except UnreadableImageError:
        raise
    except SkippedSource as e:  # a file the corpus leaves out (a constant volume) is no image to a loader either
        raise UnreadableImageError(str(e)) from e
    except Exception as e:  # decoders raise many types; all mean the same thing to the caller
        raise UnreadableImageError(f"{path}: cannot decode ({type(e).__name__}: {e})") from e
    if image.pixels.size == 0 or min(image.pixels.shape[:2]) < 1:
        raise UnreadableImageError(f"{path}: empty image")
    return image
