"""One decoder for every ultrasound file a user brings, used by every path (corpus, training, inference, MONAI Label).

Pictures (PNG/JPG/BMP/TIFF, PIL; 8-bit PNGs through OpenCV, faster with the same pixels), DICOM
(:mod:`monai_ext.io.dicom`), NIfTI / NRRD / MHA / MHD (:mod:`monai_ext.io.volumes`) and cine loops
(:mod:`monai_ext.io.video`) all come out as *display-ready* pixels (:mod:`monai_ext.io.display`); the corpus takes
every frame, single-image loaders the first, and both convert with the same function, so a file gives the same
pixels wherever it is read.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from monai_ext.io.dicom import DICOM_SUFFIXES, first_dicom_frame, read_dicom, ultrasound_region_box
from monai_ext.io.errors import SkippedSource, UnreadableImageError
from monai_ext.io.video import VIDEO_SUFFIXES, iter_video_frames
from monai_ext.io.volumes import ITK_SUFFIXES, NIFTI_SUFFIXES, first_volume_frame

__all__ = [
    "ALL_SUFFIXES",
    "DICOM_SUFFIXES",
    "IMAGE_SUFFIXES",
    "ITK_SUFFIXES",
    "NIFTI_SUFFIXES",
    "SINGLE_IMAGE_SUFFIXES",
    "VIDEO_SUFFIXES",
    "DisplayImage",
    "image_stem",
    "is_single_image",
    "pil_display_pixels",
    "read_image",
    "read_picture",
    "source_kind",
    "unique_output_stems",
]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
#: Everything the single-image loader reads (training datalists of the folder protocols, bundle inference); cine loops
#: only enter the corpus. The MONAI Label datastore lists the picture formats and DICOM, what its 2-D viewers show.
SINGLE_IMAGE_SUFFIXES = IMAGE_SUFFIXES + DICOM_SUFFIXES + NIFTI_SUFFIXES + ITK_SUFFIXES
ALL_SUFFIXES = SINGLE_IMAGE_SUFFIXES + VIDEO_SUFFIXES
_LONGEST_SUFFIX_FIRST = tuple(sorted(ALL_SUFFIXES, key=len, reverse=True))  # ".nii.gz" before ".gz"-like tails
#: PIL modes whose arrays are display-ready as they are (see monai_ext.io.display).
_DISPLAY_READY_MODES = ("1", "L", "LA", "RGB", "RGBA", "F")


@dataclass(frozen=True)
class DisplayImage:
    """One image as displayed.

    Attributes:
        pixels: (H, W) or (H, W, C) display-ready pixels (:mod:`monai_ext.io.display`).
        region_box: (x0, y0, x1, y1) of the DICOM B-mode region, exclusive ends, when the file gives one.
    """

    pixels: np.ndarray
    region_box: tuple[int, int, int, int] | None = None


def is_single_image(path: str | os.PathLike) -> bool:
    """Whether the single-image loader reads ``path`` (whole-name, case-insensitive suffix match: ``.nii.gz`` too)."""
    return Path(path).name.lower().endswith(SINGLE_IMAGE_SUFFIXES)


def image_stem(path: str | os.PathLike) -> str:
    """The file name without its image suffix, double ones included: ``case.nii.gz`` -> ``case`` (``Path.stem``
    would give ``case.nii`` and miss the mask ``case.png``)."""
    name = Path(path).name
    for suffix in _LONGEST_SUFFIX_FIRST:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return Path(name).stem


def unique_output_stems(paths: Sequence[str | os.PathLike]) -> list[str]:
    """One distinct base name per input for the files written about it (masks, overlays, heat maps).

    The image stem where it is unique; inputs that share a stem (``a/scan.dcm`` and ``b/scan.dcm`` of a recursive
    folder, or ``case.png`` beside ``case.nrrd``) get their path relative to the inputs' common folder, suffix
    included, flattened into one name (``a__scan_dcm``); a name still taken gets ``_2``, ``_3``, ... so that no
    output overwrites another.
    """
    stems = [image_stem(p) for p in paths]
    shared = {stem for stem, n in Counter(stems).items() if n > 1}
    if shared:
        absolute = [os.path.abspath(p) for p in paths]
        common = os.path.commonpath([os.path.dirname(p) for p in absolute])
        stems = [re.sub(r"[^\w-]", "_", os.path.relpath(p, common).replace(os.sep, "__")) if stem in shared else stem
                 for p, stem in zip(absolute, stems)]
    seen: Counter[str] = Counter()
    names = []
    for stem in stems:
        seen[stem] += 1
        names.append(stem if seen[stem] == 1 else f"{stem}_{seen[stem]}")
    return names


def source_kind(path: str | os.PathLike) -> str | None:
    """"image", "dicom", "nifti", "itk", "video", or None for an unsupported suffix."""
    name = Path(path).name.lower()
    for kind, suffixes in (("nifti", NIFTI_SUFFIXES), ("image", IMAGE_SUFFIXES), ("dicom", DICOM_SUFFIXES),
                           ("itk", ITK_SUFFIXES), ("video", VIDEO_SUFFIXES)):
        if name.endswith(suffixes):
            return kind
    return None


def _png_gray(path: Path) -> np.ndarray | None:
    """8-bit PNGs through OpenCV: its decoder and colour conversion run about 15% faster than PIL's, the largest
    single cost of ingestion, with the same luma. None for other depths (PIL's path reads them) or when OpenCV
    cannot decode the file (a truncated PNG is then reported by PIL with its reason)."""
    pixels = cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_UNCHANGED)
    if pixels is None or pixels.dtype != np.uint8:
        return None
    if pixels.ndim == 3:
        pixels = cv2.cvtColor(pixels, cv2.COLOR_BGRA2GRAY if pixels.shape[2] == 4 else cv2.COLOR_BGR2GRAY)
    return pixels


def _png_rgb(path: Path) -> np.ndarray | None:
    """8-bit PNGs through OpenCV with their colour: (H, W) gray or (H, W, 3) RGB (alpha dropped); None as
    :func:`_png_gray`."""
    pixels = cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_UNCHANGED)
    if pixels is None or pixels.dtype != np.uint8:
        return None
    if pixels.ndim == 3:
        pixels = cv2.cvtColor(pixels, cv2.COLOR_BGRA2RGB if pixels.shape[2] == 4 else cv2.COLOR_BGR2RGB)
    return pixels


def pil_display_pixels(img: Image.Image) -> np.ndarray:
    """A PIL image as display-ready pixels: 16/32-bit integers as uint16, palettes and other colour modes as RGB."""
    if img.mode in ("I;16", "I;16B", "I;16L"):
        return np.asarray(img, dtype=np.uint16)
    if img.mode == "I":  # 32-bit signed container of (usually 16-bit) values
        return np.clip(np.asarray(img), 0, 65535).astype(np.uint16)
    if img.mode in ("P", "PA"):
        img = img.convert("RGBA" if "transparency" in img.info or img.mode == "PA" else "RGB")
    elif img.mode not in _DISPLAY_READY_MODES:  # CMYK, YCbCr, LAB, HSV, ...
        img = img.convert("RGB")
    return np.asarray(img)


def read_picture(path: str | os.PathLike, colour: bool = False) -> np.ndarray:
    """Display-ready pixels of a PNG/JPG/BMP/TIFF (first page) or any other format PIL opens.

    Args:
        path: the file.
        colour: keep 8-bit PNG colour as (H, W, 3) RGB instead of taking OpenCV's luma at decoding (the corpus
            de-annotates on colour); other formats keep their colour either way.
    """
    path = Path(path)
    if path.suffix.lower() == ".png":
        pixels = _png_rgb(path) if colour else _png_gray(path)
        if pixels is not None:
            return pixels
    with Image.open(path) as img:
        return pil_display_pixels(img)


def _decode_first(path: Path) -> DisplayImage:
    kind = source_kind(path)
    if kind == "dicom":
        ds = read_dicom(path)
        return DisplayImage(first_dicom_frame(ds, str(path)), ultrasound_region_box(ds))
    if kind in ("nifti", "itk"):
        return DisplayImage(first_volume_frame(path))
    if kind == "video":
        return DisplayImage(next(iter_video_frames(path))[1])
    return DisplayImage(read_picture(path))  # pictures, and any other suffix PIL can open


def read_image(path: str | os.PathLike) -> DisplayImage:
    """The first frame of any supported file, as displayed (what the corpus's first frame of it holds).

    Raises:
        UnreadableImageError: naming the file and the reason (not decodable, no pixel data, an empty volume).
    """
    path = Path(path)
    try:
        image = _decode_first(path)
    except UnreadableImageError:
        raise
    except SkippedSource as e:  # a file the corpus leaves out (a constant volume) is no image to a loader either
        raise UnreadableImageError(str(e)) from e
    except Exception as e:  # decoders raise many types; all mean the same thing to the caller
        raise UnreadableImageError(f"{path}: cannot decode ({type(e).__name__}: {e})") from e
    if image.pixels.size == 0 or min(image.pixels.shape[:2]) < 1:
        raise UnreadableImageError(f"{path}: empty image")
    return image
