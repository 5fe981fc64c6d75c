"""Loading segmentation masks as (1, H, W) class-index maps, as a MONAI transform pair.

Public datasets encode masks in several ways: 8-bit 0/255 PNGs (BUSI, BUS-BRA), 0/1 PNGs (many ``masks/`` folders,
MONAI Label's saved labels), class indices, and several masks of one image to be merged (BUSI's ``_mask_1``). One
loader turns them all into the same class-index map, so every layout feeds the same training pipeline.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from monai.config import KeysCollection
from monai.transforms import MapTransform, Transform
from monai.utils import TransformBackends
from PIL import Image

from monai_ext.io.errors import UnreadableImageError
from monai_ext.io.images import (
    apply_orientation,
    check_file,
    checked_orientation,
    picture_orientation,
    pil_frame_count,
    pil_orientation,
    resample_labels,
    resampled_grid,
    source_kind,
    stored_shape,
    upright,
)

logger = logging.getLogger(__name__)
MASK_ENCODINGS = ("binary", "index")
#: A binary mask whose lesion covers more than this share of it is warned of as perhaps inverted.
MOST_LESION_SHARE = 0.9
_WARNED_OF_COVER: set[str] = set()  # files warned of as mostly lesion: once each, not at every epoch
#: A JPEG mask with a low peak and fewer pixels of exact 0 than this has a raised black: an empty mask exported so
#: decodes with no 0 at all, while a 0/1 mask whose lesion covers 95 % of the image keeps some 5 % of zeros.
MIN_JPEG_BLACK_SHARE = 0.01
#: Side of the square by which a resized mask's lesions are widened before its regions are found: a cubic or
#: Lanczos resize leaves ringing lobes 1-3 px beyond the edge, parted from the lesion by undershoot clipped to 0.
RINGING_REACH = 5
#: A region of a resized mask whose peak is under 1/8 of the brightest within that reach is ringing, not a lesion.
FAINT_REGION_RATIO = 8


def read_mask_file(path: str | os.PathLike, palette_as_colours: bool = False,
                   orientation: int | None = None) -> tuple[np.ndarray, bool]:
    """The stored values of a mask file, (H, W) or (H, W, C), and whether it is a JPEG (by content, any suffix).

    Read with PIL directly rather than through the image reader: a mask needs its stored values, not the display
    conversion that images get.

    Args:
        palette_as_colours: a palette (indexed) PNG or GIF as the (H, W, 4) RGBA colours its viewers show, not its
            palette indices. Indices are class numbers in an index-encoded mask (VOC-style palettes), but in a
            black-and-white mask they say nothing: PIL's conversion of an RGB mask, ``quantize`` and image editors
            often put white first, so index 0 is the lesion.
        orientation: the EXIF Orientation of the mask's image (:func:`~monai_ext.io.images.picture_orientation`).
            The mask is on its image file's stored pixel grid, as ITK-based viewers (3D Slicer) and OHIF show the
            image and save masks (a PNG mask carries no orientation), and is turned by it, as the image is, to lie
            on the upright image that is trained on. A mask that carries the same orientation itself is turned
            once; one that carries another is refused, as which grid it was drawn on cannot be told. None (no image
            known): the mask's own orientation is applied, as :func:`~monai_ext.io.images.upright` applies an
            image's.

    Raises:
        UnreadableImageError: the file cannot be decoded, holds several pages (a multi-page TIFF, an animated GIF):
            only the first would be read, and a lesion drawn on another page would silently become "no lesion"; or
            carries an orientation other than ``orientation``.
        ValueError: ``orientation`` is not an EXIF Orientation (1-8).
    """
    check_file(Path(path))  # a missing or empty mask is named as such, not as PIL's "cannot identify image file"
    if orientation is not None:
        checked_orientation(orientation)  # a bad value is the caller's error, not the file's
    try:
        with Image.open(path) as img:
            pages = pil_frame_count(img)
            if pages > 1:
                raise UnreadableImageError(f"{path}: mask has {pages} pages; save one page per mask")
            own = pil_orientation(img)
            if orientation is not None and own not in (1, orientation):
                raise UnreadableImageError(
                    f"{path}: the mask carries EXIF orientation {own}, its image {orientation}: save the mask "
                    "without an orientation, on the image file's stored pixel grid (as 3D Slicer shows it)")
            upright_img = upright(img)
            if palette_as_colours and upright_img.mode in ("P", "PA") and _palette_tells_indices_apart(upright_img):
                upright_img = upright_img.convert("RGBA")  # the palette's transparency becomes alpha
            pixels = np.asarray(upright_img)
            if orientation is not None and own == 1:  # on the image's stored grid: turned as the image is
                pixels = apply_orientation(pixels, orientation)
            return pixels, img.format in ("JPEG", "MPO")
    except UnreadableImageError:  # the page count's or orientation's refusal, already naming the file
        raise
    except Exception as e:  # decoders raise many types; all mean the same thing to the caller
        kind = source_kind(Path(path))
        if kind not in ("image", None):  # a volume or DICOM label map, as 3D Slicer saves them: PIL's words say nothing
            what = {"nifti": "a NIfTI", "itk": "an ITK volume (NRRD, MetaImage)", "dicom": "a DICOM"}.get(kind, "a video")
            raise UnreadableImageError(f"{path}: {what} file, not a picture: masks are read as 2-D pictures on "
                                       "their image's pixel grid (PNG label maps: 0 background, 1 or 255 lesion); "
                                       "convert it to PNG") from e
        raise UnreadableImageError(f"{path}: cannot decode mask ({type(e).__name__}: {e})") from e


def _palette_tells_indices_apart(img: Image.Image) -> bool:
    """Whether every index a palette image uses has a colour of its own (and transparency) in its palette.

    ``Image.fromarray(mask, "P")`` saved without ``putpalette`` writes a palette of one black entry: the index 1 of
    the lesion has no colour and converts to black. Such a file only makes sense by its indices, as it was read
    before palettes were read by colour."""
    indices = np.asarray(img.getchannel(0) if img.mode == "PA" else img)
    used = np.unique(indices)
    palette = np.asarray(img.getpalette() or [], np.int64).reshape(-1, 3)
    if used.max(initial=0) >= len(palette):
        return False
    alpha = np.asarray(img.convert("RGBA").getchannel("A"))
    # the look of each used index: its colour and the transparency it is shown with
    looks = {(*palette[i], int(alpha[indices == i][0])) for i in used}
    return len(looks) == len(used)


def _single_channel(pixels: np.ndarray, source: str) -> np.ndarray:
    """(H, W) from a gray, gray + alpha, or RGB(A) mask; colour masks count a pixel as set when any channel is.

    Where the alpha channel varies, the mask was painted on a transparent layer: a transparent pixel is background
    whatever colour it stores (editors often store white), and a mask drawn in black shows only in its alpha. A
    layer transparent everywhere is an empty mask (its stored white was a lesion covering the image).
    """
    if pixels.ndim == 3 and pixels.shape[2] in (2, 4) and not pixels[..., -1].any():
        return np.zeros(pixels.shape[:2], pixels.dtype)  # a layer painted on nowhere: no lesion, whatever colour it stores
    if pixels.ndim == 3 and pixels.shape[2] in (2, 4) and pixels[..., -1].min() < pixels[..., -1].max():
        alpha, colour = pixels[..., -1], pixels[..., :-1].max(axis=2)
        painted = alpha > 0
        return np.where(painted, colour, 0).astype(pixels.dtype) if colour[painted].any() else alpha
    if pixels.ndim == 3:
        pixels = pixels[..., :3].max(axis=2) if pixels.shape[2] >= 3 else pixels[..., 0]
    if pixels.ndim != 2:
        raise UnreadableImageError(f"{source}: expected a 2-D mask, got shape {pixels.shape!r}")
    return pixels


def _binary_foreground(pixels: np.ndarray, jpeg: bool, source: str) -> np.ndarray:
    """(H, W) bool: the set pixels of a binary mask, by how the mask was stored.

    JPEG masks ring: a 0/255 mask's edges decode to values 1..254 around the lesion and specks further out, a 0/1
    mask's lesion to 1s and 2s, and an exported mask's black may not be 0. By the brightest pixel (the peak) and the
    share of pixels that are 0:

    - peak 128 and up: a 0/255 mask; a pixel is set from half the peak up.
    - almost no pixel 0 (under 1 %): refused. Half a low peak would make the raised black of an empty mask (1 or 2
      after a viewer's export, with no 0 left) a lesion covering the image, and reading it as empty could drop a
      lesion: no rule reads both right.
    - peak 1 to 3: a 0/1 mask, whose ringing lifts its lesion to 2 or 3; any non-zero pixel is set.
    - peak 4 to 127: refused (a 0/k mask's ringing cannot be told from its lesion).

    Lossless masks (PNG, BMP, TIFF, ...): any non-zero pixel (0/1, 0/k and label-valued masks alike), except a
    0/255-style mask (peak 128 and up) with values strictly between 0 and its peak that lie on its edges: a mask
    resized with bilinear or bicubic interpolation, or drawn anti-aliased. Its edge pixels are part lesion, and any
    non-zero would grow the lesion by its whole blurred rim (8% of its area for a bilinear resize), so a pixel is set
    from half the peak of its own region up, as a nearest-neighbour resize would have kept it; a small lesion that
    the resize dimmed below half the mask's peak keeps its brightest pixels. Where most in-between pixels sit in
    flat areas of their own value (a 0/85/170/255 label map), they are classes, not edges, and any non-zero stays.

    A lossless mask without a single 0 is refused (a raised black, a 128/255 mask: every pixel would be lesion), and
    a mask read as lesion over more than :data:`MOST_LESION_SHARE` of it is warned of (inverted?).

    Raises:
        UnreadableImageError: a JPEG mask refused by the rules above, naming ``source``, its peak and its share of
            black pixels, or a lossless mask with no pixel 0, naming its lowest and highest values.
    """
    peak = int(pixels.max(initial=0))
    if jpeg and peak < 128:
        black = float(np.mean(pixels == 0))
        if black < MIN_JPEG_BLACK_SHARE or peak > 3:
            raise UnreadableImageError(
                f"{source}: a JPEG mask whose brightest pixel is {peak}, with {black:.1%} of its pixels 0, is neither "
                "0/255 nor 0/1 on black (an empty mask exported with a raised black, or a 0/k mask?): save masks "
                "losslessly (PNG)")
        return pixels > 0
    if jpeg:
        return _warn_if_mostly_lesion(pixels >= peak / 2, source)
    lowest = int(pixels.min()) if pixels.size else 0
    if lowest > 0:  # read by "any non-zero", every pixel would be lesion
        raise UnreadableImageError(
            f"{source}: no pixel of this binary mask is 0 (its lowest value is {lowest}, its highest {peak}): a "
            "binary mask needs a background of 0 (an empty mask exported with a raised black, or a "
            f"{lowest}/{peak} mask?); save the background as 0")
    if peak >= 128 and _edges_only_in_between(pixels, peak):
        return _warn_if_mostly_lesion(_from_half_of_each_regions_peak(pixels), source)
    return _warn_if_mostly_lesion(pixels > 0, source)


def _warn_if_mostly_lesion(foreground: np.ndarray, source: str) -> np.ndarray:
    """``foreground``, with a warning (once per file) where it covers more than :data:`MOST_LESION_SHARE` of the
    mask: an inverted mask (white background, black lesion) reads as a lesion covering the image, which trains the
    wrong target and scores a model predicting lesion everywhere as excellent. A warning, not a refusal: a crop
    around a large lesion can be mostly lesion."""
    share = float(foreground.mean()) if foreground.size else 0.0
    if share > MOST_LESION_SHARE and source not in _WARNED_OF_COVER:
        _WARNED_OF_COVER.add(source)
        logger.warning("%s: %.1f%% of this binary mask is lesion (every pixel that is not 0): is it inverted (a white "
                       "background)? Lesion pixels must be non-zero and the background 0", source, 100 * share)
    return foreground


def _from_half_of_each_regions_peak(pixels: np.ndarray) -> np.ndarray:
    """(H, W) bool: the non-zero pixels at or above half the peak of their own 8-connected region; a faint region
    (its peak under ``1 / FAINT_REGION_RATIO`` of the brightest within ``RINGING_REACH // 2`` px) is cut at that
    brighter peak instead.

    Per region rather than the whole mask's: a 4-px lesion beside a large one, shrunk 4x with bilinear
    interpolation, peaks at 120 of 255 and vanished under a global cut at 128, where a nearest resize keeps a pixel.
    A cubic or Lanczos resize leaves ringing lobes (9 of 255 at most) 1-3 px beyond the edge, parted from the lesion
    by undershoot clipped to 0: on their own each was a region above half its own peak (64 specks around one disc),
    so a faint region is judged with its neighbourhood; a dimmed lesion (56 of 255 and up) keeps its own peak even a
    pixel away from a large one.
    """
    set_pixels = pixels > 0
    values = pixels.astype(np.int64)
    own_count, own = cv2.connectedComponents(set_pixels.astype(np.uint8), connectivity=8)
    reach = np.ones((RINGING_REACH, RINGING_REACH), np.uint8)
    near_count, near = cv2.connectedComponents(cv2.dilate(set_pixels.astype(np.uint8), reach), connectivity=8)
    own_peak, near_peak = np.zeros(own_count, np.int64), np.zeros(near_count, np.int64)
    np.maximum.at(own_peak, own.ravel(), values.ravel())
    np.maximum.at(near_peak, near.ravel(), values.ravel())
    peak = np.where(own_peak[own] * FAINT_REGION_RATIO < near_peak[near], near_peak[near], own_peak[own])
    return set_pixels & (values * 2 >= peak)


def _edges_only_in_between(pixels: np.ndarray, peak: int) -> bool:
    """Whether ``pixels`` holds values strictly between 0 and ``peak``, and they are edges, not areas: fewer than a
    quarter of them have eight neighbours of their own value.

    Interpolation leaves ramps across a mask's edges, where neighbours differ; a flat patch of an in-between value
    is a class of a label map (or, in a few pixels, the slow tail of a bicubic or wide blur, well under a quarter).
    """
    between = (pixels > 0) & (pixels < peak)
    count = int(between.sum())
    if count == 0:
        return False
    height, width = pixels.shape
    inner = pixels[1:-1, 1:-1]
    flat = between[1:-1, 1:-1].copy()
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            flat &= pixels[1 + dy:height - 1 + dy, 1 + dx:width - 1 + dx] == inner
    return int(flat.sum()) * 4 < count


def orientation_note(orientation: int) -> str:
    """For a message on a mask's size: that sizes are on the stored grid of an image with EXIF ``orientation``
    (2-8), which a user who drew the mask on the upright picture needs to know; "" for 1."""
    if orientation == 1:
        return ""
    return (f" (as stored: masks are drawn on the image file's stored pixel grid, as 3D Slicer shows it, and take "
            f"its EXIF orientation {orientation} with it)")


#: Images already warned of by :func:`warn_if_grids_look_alike` in this process (once each, not every epoch).
_WARNED_OF_GRIDS: set[str] = set()


def warn_if_grids_look_alike(image: str | os.PathLike | None, orientation: int | None, shape: Sequence[int]) -> None:
    """Warn once per image where a mask drawn on the upright picture would read as one on the stored grid: an EXIF
    orientation that flips or turns by 180 degrees (2, 3, 4: a phone held upside down), or a quarter turn of a square
    image. Such a mask is turned by the orientation with no size to refuse it by, and lies flipped on its image; a
    tool that applies EXIF (labelme, CVAT) draws masks upright.

    Args:
        image: the mask's image file (for the message), or None.
        orientation: its EXIF orientation (1-8), or None where unknown.
        shape: the mask's (H, W) after the turn.
    """
    if image is None or orientation in (None, 1) or str(image) in _WARNED_OF_GRIDS:
        return
    if orientation in (5, 6, 7, 8) and shape[0] != shape[1]:
        return  # a mask of the other grid has the other size, which is refused naming the rule
    _WARNED_OF_GRIDS.add(str(image))
    logger.warning("%s: the picture has EXIF orientation %d, so its mask is read on the file's stored pixel grid (as "
                   "3D Slicer shows it) and turned with it; a mask drawn on the upright picture (labelme, CVAT) "
                   "cannot be told apart here and would lie flipped: turn such masks to the stored grid", image,
                   orientation)


def stored_mask_values(path: str | os.PathLike) -> np.ndarray:
    """The distinct values of a mask file as ``encoding="index"`` reads them (one channel, a palette's indices).

    Raises:
        UnreadableImageError: as :func:`read_mask_file`.
    """
    stored, _ = read_mask_file(path)
    return np.unique(_single_channel(stored, str(path)))


class LoadMask(Transform):
    """Mask file(s) -> (1, H, W) uint8 class indices.

    Args:
        encoding: ``"binary"``: any non-zero pixel is class ``foreground`` (0/1 and 0/255 alike; a palette image
            by the colours it shows), but from half the brightest value up in a JPEG mask and in a 0/255 mask with
            interpolated edges (:func:`_binary_foreground`); ``"index"``: pixel values (a palette image's indices)
            are class indices already.
        foreground: the class a binary mask's set pixels get (e.g. the tumour class of an MMOTU image).
        num_classes: with ``"index"``, values must be below it (a mask with 255s is then reported, not trained on).

    Several files (a list) are merged: for binary masks their union, for index masks the largest index per pixel.
    """

    backend = [TransformBackends.NUMPY]

    def __init__(self, encoding: str = "binary", foreground: int = 1, num_classes: int | None = None) -> None:
        if encoding not in MASK_ENCODINGS:
            raise ValueError(f"encoding must be one of {MASK_ENCODINGS}, got {encoding!r}")
        if not 0 < foreground < 256:
            raise ValueError(f"foreground must be a class index in [1, 255], got {foreground!r}")
        if num_classes is not None and not 2 <= num_classes <= 256:  # background + at least one, uint8 indices
            raise ValueError(f"num_classes must be in 2..256, got {num_classes!r}")
        if num_classes is not None and foreground >= num_classes:
            raise ValueError(f"foreground {foreground!r} is not a class index below num_classes {num_classes!r}")
        self.encoding, self.foreground, self.num_classes = encoding, int(foreground), num_classes

    def read_one(self, path: str | os.PathLike, orientation: int | None = None) -> np.ndarray:
        """One mask file as (H, W) uint8 class indices, turned by its image's EXIF ``orientation`` where given
        (:func:`read_mask_file`)."""
        # one open: the JPEG rule needs the format, read with the pixels
        stored, jpeg = read_mask_file(path, palette_as_colours=self.encoding == "binary", orientation=orientation)
        pixels = _single_channel(stored, str(path))
        if self.encoding == "binary":
            return _binary_foreground(pixels, jpeg, str(path)).astype(np.uint8) * np.uint8(self.foreground)
        # without num_classes, still refuse what uint8 cannot hold (a 16-bit mask's 256 would wrap to class 0)
        limit = self.num_classes if self.num_classes is not None else 256
        if int(pixels.max(initial=0)) >= limit:
            # a 0/255 mask among index masks: say what it is, as a datalist mixing both loses every such mask
            binary = set(np.unique(pixels).tolist()) <= {0, int(pixels.max())}
            hint = " (it holds 0 and one other value: a binary mask; --mask_encoding binary reads those)" if binary else ""
            raise UnreadableImageError(f"{path}: mask value {int(pixels.max())} is not a class index below {limit}"
                                       + hint)
        return pixels.astype(np.uint8)

    def __call__(self, paths: str | os.PathLike | Sequence[str | os.PathLike],
                 orientation: int | None = None) -> np.ndarray:
        """The mask file(s) of one image, merged; ``orientation`` is the image's (:func:`read_mask_file`)."""
        files = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
        if not files:
            raise ValueError("no mask file given")
        masks = [self.read_one(f, orientation) for f in files]
        shapes = {m.shape for m in masks}
        if len(shapes) != 1:
            raise UnreadableImageError(f"{files[0]}: the masks of one image differ in size: {sorted(shapes)!r}")
        return np.maximum.reduce(masks)[None]


class LoadMaskd(MapTransform):
    """Dictionary version of :class:`LoadMask`; ``foreground_key`` names an item field holding the foreground class.

    Keeps the file name(s) under ``<key>_path`` (several joined by ``;``). Checks that the mask and ``image_key``'s already loaded image have the same size, naming the file otherwise.

    Masks are on their image file's stored pixel grid (what 3D Slicer and OHIF show and save; PNG masks carry no
    EXIF): where the image loader applied an EXIF orientation, the mask is turned by it too (:func:`read_mask_file`),
    or it would lie rotated or flipped on its image. The orientation is the one the loader recorded under
    ``orientation_key`` (``LoadUltrasoundImaged(orientation_key=...)``); where the item has none, it is read from
    the file ``<image_key>_path`` names (:func:`~monai_ext.io.images.picture_orientation`, a second read). A DICOM
    of non-square pixels is read resampled to square ones: its mask, on the stored grid, is resampled with it
    (nearest neighbour, :func:`~monai_ext.io.images.resample_labels`).

    With ``record_presence`` (and ``num_classes``), also keeps under ``<key>_present`` a (K - 1,) bool array: which
    foreground classes the mask holds at its own size. A resize to the training size can remove a small lesion
    (6 px on a 600 px image at 64 px); the evaluation report tells such images from lesion-free ones by this.
    """

    backend = LoadMask.backend

    def __init__(
        self,
        keys: KeysCollection,
        encoding: str = "binary",
        foreground: int = 1,
        num_classes: int | None = None,
        foreground_key: str | None = None,
        image_key: str | None = "image",
        allow_missing_keys: bool = False,
        record_presence: bool = False,
        orientation_key: str | None = None,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.orientation_key = orientation_key
        if record_presence and num_classes is None:  # the array has one entry per foreground class, for collation
            raise ValueError("record_presence needs num_classes, got num_classes=None")
        self.record_presence = record_presence
        self.encoding, self.default_foreground, self.num_classes = encoding, foreground, num_classes
        self.loader = LoadMask(encoding, foreground, num_classes)
        self.foreground_key, self.image_key = foreground_key, image_key

    def _orientation_of(self, d: Mapping[Hashable, Any], image_path: str | None) -> int | None:
        """The EXIF Orientation the image was read with: the loader's record, else asked of the image file, else
        None (no image)."""
        if self.orientation_key is not None and self.orientation_key in d:
            return int(d[self.orientation_key])
        return picture_orientation(image_path) if image_path is not None else None

    @staticmethod
    def _on_the_image(mask: np.ndarray, image_shape: tuple[int, int], image_path: str | None, turn: int,
                      mask_path: str) -> np.ndarray:
        """A (1, H, W) mask of another size than its image's (H', W'): resampled to it where the image's pixels were
        resampled from the file's stored grid and the mask lies on that grid (a DICOM of non-square pixels,
        :func:`~monai_ext.io.images.resampled_grid`); else refused.

        Raises:
            UnreadableImageError: naming the mask file and both sizes on the image file's stored grid.
        """
        grid = resampled_grid(image_path) if image_path is not None else None
        if grid is not None and tuple(mask.shape[-2:]) == grid:
            return resample_labels(mask, image_shape)
        shown = f"{grid!r} (its pixels are resampled to {image_shape!r} to be square)" if grid is not None \
            else f"{stored_shape(image_shape, turn)!r}{orientation_note(turn)}"
        raise UnreadableImageError(f"{mask_path}: mask size {stored_shape(mask.shape[-2:], turn)!r} differs from the "
                                   f"image's {shown}")

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            loader = self.loader
            # one string per item whatever the number of masks, so batches of items collate
            d[f"{key}_path"] = str(d[key]) if isinstance(d[key], (str, os.PathLike)) else ";".join(map(str, d[key]))
            if self.foreground_key is not None and self.foreground_key in d:
                try:
                    loader = LoadMask(self.encoding, int(d[self.foreground_key]), self.num_classes)
                except ValueError as e:  # a bad class in the datalist: name the item's file, as for bad files
                    raise UnreadableImageError(f"{d[f'{key}_path']}: {e}") from e
            if self.foreground_key is not None:  # every item then has it: a batch mixing items with and without collates
                d[self.foreground_key] = loader.foreground
            image_path = d.get(f"{self.image_key}_path") if self.image_key else None
            orientation = self._orientation_of(d, image_path)
            mask = loader(d[key], orientation)
            warn_if_grids_look_alike(image_path, orientation, mask.shape[-2:])
            image = d.get(self.image_key) if self.image_key else None
            if image is not None and tuple(image.shape[-2:]) != tuple(mask.shape[-2:]):
                mask = self._on_the_image(mask, tuple(image.shape[-2:]), image_path, orientation or 1, d[f"{key}_path"])
            d[key] = mask
            if self.record_presence:
                d[f"{key}_present"] = np.isin(np.arange(1, self.num_classes), mask)
        return d
