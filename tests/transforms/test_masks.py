"""LoadMask(d) on awkward mask files: 16-bit index masks, foreground classes outside num_classes."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageFilter

from monai_ext.io.errors import UnreadableImageError
from monai_ext.transforms.masks import LoadMask, LoadMaskd


def write16(path: Path, value: int) -> str:
    pixels = np.zeros((8, 10), np.uint16)
    pixels[2:5, 3:7] = value
    Image.fromarray(pixels).save(path)
    return str(path)


@pytest.mark.parametrize("value", [256, 300, 65535])
def test_16bit_index_mask_beyond_uint8_is_reported_not_wrapped(tmp_path: Path, value: int) -> None:
    """Before, 256 became class 0 and 65535 class 255 without a word (uint8 wrap-around)."""
    path = write16(tmp_path / "m16.png", value)
    with pytest.raises(UnreadableImageError, match=f"m16.png: mask value {value} is not a class index below 256"):
        LoadMask("index")(path)


@pytest.mark.parametrize("values, hinted", [((0, 255), True), ((0, 3, 255), False)])
def test_a_binary_mask_read_as_class_indices_says_what_it_is(tmp_path: Path, values, hinted: bool) -> None:
    pixels = np.zeros((8, 10), np.uint8)
    for i, v in enumerate(values):
        pixels[i] = v
    Image.fromarray(pixels).save(tmp_path / "m.png")
    with pytest.raises(UnreadableImageError, match="mask value 255 is not a class index below 3") as caught:
        LoadMask("index", num_classes=3)(str(tmp_path / "m.png"))
    assert ("--mask_encoding binary reads those" in str(caught.value)) == hinted


def test_16bit_index_mask_with_small_values_loads(tmp_path: Path) -> None:
    mask = LoadMask("index", num_classes=4)(write16(tmp_path / "m16.png", 3))
    assert mask.dtype == np.uint8 and mask.shape == (1, 8, 10) and set(np.unique(mask)) == {0, 3}


@pytest.mark.parametrize("kwargs,message", [
    ({"num_classes": 0}, "num_classes must be in 2..256, got 0"),
    ({"num_classes": 300}, "num_classes must be in 2..256, got 300"),
    ({"foreground": 3, "num_classes": 3}, "foreground 3 is not a class index below num_classes 3"),
])
def test_bad_arguments(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        LoadMask(**kwargs)
    with pytest.raises(ValueError, match=message):
        LoadMaskd("label", **kwargs)


def test_item_foreground_outside_num_classes_names_the_file(tmp_path: Path) -> None:
    path = write16(tmp_path / "m16.png", 1)
    loader = LoadMaskd("label", num_classes=3, foreground_key="foreground", image_key=None)
    assert loader({"label": path, "foreground": 2})["label"].max() == 2
    with pytest.raises(UnreadableImageError, match="m16.png: foreground 5 is not a class index below num_classes 3"):
        loader({"label": path, "foreground": 5})


@pytest.mark.parametrize("encoding", ["binary", "index"])
def test_every_item_leaves_with_its_foreground_so_mixed_items_collate(tmp_path: Path, encoding: str) -> None:
    # an MMOTU-style item with its class beside one without: a batch of both once failed in MONAI's collate
    from monai.data import list_data_collate

    path = write16(tmp_path / "m.png", 1)
    loader = LoadMaskd("label", encoding=encoding, num_classes=3, foreground_key="foreground", image_key=None)
    batch = list_data_collate([loader({"label": path, "foreground": 2}), loader({"label": path})])
    assert batch["foreground"].tolist() == [2, 1]


@pytest.mark.parametrize("encoding, value, foreground, present", [
    ("binary", 255, None, [True, False]),
    ("binary", 255, 2, [False, True]),     # an MMOTU item's class
    ("index", 2, None, [False, True]),
    ("binary", 0, None, [False, False]),   # a lesion-free image
])
def test_the_classes_a_mask_holds_are_recorded_at_its_own_size(tmp_path: Path, encoding: str, value: int,
                                                                foreground: int | None, present: list[bool]) -> None:
    """A 6 px lesion on a 600 x 800 mask is gone after the resize to 64 px: the report told it from a lesion-free
    image only by what the mask held when it was loaded."""
    from monai.data import list_data_collate
    from monai.transforms import Resized

    pixels = np.zeros((600, 800), np.uint8)
    pixels[306:312, 407:413] = value  # between the rows and columns that nearest-exact samples at 64 px
    Image.fromarray(pixels).save(tmp_path / "m.png")
    loader = LoadMaskd("label", encoding=encoding, num_classes=3, foreground_key="foreground", image_key=None,
                       record_presence=True)
    item = loader({"label": str(tmp_path / "m.png"), **({"foreground": foreground} if foreground else {})})
    assert item["label_present"].tolist() == present
    resized = Resized("label", (64, 64), mode="nearest-exact")(item)
    assert not np.asarray(resized["label"]).any() and resized["label_present"].tolist() == present
    assert list_data_collate([item, item])["label_present"].shape == (2, 2)  # collates, as in the bundles' batches


def test_recording_presence_needs_the_number_of_classes() -> None:
    with pytest.raises(ValueError, match="record_presence needs num_classes, got num_classes=None"):
        LoadMaskd("label", record_presence=True)


def _disc(value: int) -> np.ndarray:
    rows, cols = np.ogrid[:48, :64]
    return (((rows - 24) ** 2 + (cols - 30) ** 2) <= 15**2).astype(np.uint8) * np.uint8(value)


@pytest.mark.parametrize("quality", [75, 95])
@pytest.mark.parametrize("mode", ["L", "RGB"])
def test_jpeg_mask_halo_is_not_foreground(tmp_path: Path, quality: int, mode: str) -> None:
    """A 0/255 mask saved as JPEG rings: values 1..254 around the edge and specks further out. 'Any non-zero pixel'
    made them lesion (an enlarged, noisy mask); the decoded mask matches the drawn disc up to the edge pixels."""
    truth = _disc(255)
    path = tmp_path / "mask.jpg"
    Image.fromarray(truth).convert(mode).save(path, quality=quality)
    mask = LoadMask("binary")(str(path))[0]
    assert int((mask != (truth > 0)).sum()) <= 4  # ringing right at the edge may still flip a pixel or two


def _label_bands(values: tuple[int, ...]) -> np.ndarray:
    """A label-valued mask: vertical bands of ``values`` over a 48 x 64 image."""
    return np.asarray(values, np.uint8)[np.arange(64) * len(values) // 64][None].repeat(48, 0)


@pytest.mark.parametrize("name, pixels", [
    ("0/1", _disc(1)),
    ("0/1 with a stray 1", np.maximum(_disc(1), np.eye(48, 64, dtype=np.uint8))),
    ("0/50, drawn faint", _disc(50)),
    ("0/50 with a fainter 1", np.maximum(_disc(50), np.eye(48, 64, dtype=np.uint8))),
    ("labels 0/1/2", _label_bands((0, 1, 2))),
    ("labels 0/85/170/255", _label_bands((0, 85, 170, 255))),
])
def test_png_binary_mask_keeps_any_non_zero_pixel(tmp_path: Path, name: str, pixels: np.ndarray) -> None:
    """Lossless 0/1, faint 0/k and label-valued masks keep their documented rule: every non-zero pixel is
    foreground, however faint, and a label map's middle classes (85 and 170 of 0/85/170/255: flat areas of their
    value, not edges) are not taken for the interpolated rim of a 0/255 mask."""
    Image.fromarray(pixels).save(tmp_path / "mask.png")
    np.testing.assert_array_equal(LoadMask("binary")(str(tmp_path / "mask.png"))[0], pixels > 0)


def _ellipse_255(height: int, width: int) -> np.ndarray:
    rows, cols = np.ogrid[:height, :width]
    inside = ((rows - height / 2) / (height * 0.3)) ** 2 + ((cols - width / 2) / (width * 0.2)) ** 2 <= 1
    return inside.astype(np.uint8) * np.uint8(255)


@pytest.mark.parametrize("how", ["bilinear", "bicubic", "blurred"])
def test_a_0_255_png_mask_with_interpolated_edges_is_not_dilated(tmp_path: Path, how: str) -> None:
    """A 0/255 mask resized with bilinear or bicubic interpolation (or drawn anti-aliased) holds 1..254 along its
    edge: 'any non-zero' made the whole blurred rim lesion (a bilinear 80 x 100 -> 91 x 137 resize grew the lesion by
    8%, silently). Read from half the peak up, it matches the nearest-neighbour resize up to the edge pixels."""
    truth = _ellipse_255(80, 100)
    if how == "blurred":
        stored, expected = np.asarray(Image.fromarray(truth).filter(ImageFilter.GaussianBlur(1.5))), truth > 0
    else:
        resample = Image.Resampling.BILINEAR if how == "bilinear" else Image.Resampling.BICUBIC
        stored = np.asarray(Image.fromarray(truth).resize((137, 91), resample))
        expected = np.asarray(Image.fromarray(truth).resize((137, 91), Image.Resampling.NEAREST)) > 0
    assert 0 < int(((stored > 0) & (stored < 255)).sum())  # the awkward case: in-between values on the edge
    Image.fromarray(stored).save(tmp_path / "mask.png")
    mask = LoadMask("binary")(str(tmp_path / "mask.png"))[0].astype(bool)
    rim = int((stored > 0).sum()) - int(expected.sum())
    assert int((mask != expected).sum()) <= rim // 4  # before: every rim pixel was lesion


@pytest.mark.parametrize("suffix", ["tif", "gif"])
def test_a_multi_page_mask_is_refused_not_read_from_its_first_page(tmp_path: Path, suffix: str) -> None:
    """A two-page mask with the lesion drawn on page 2 read as its first page: "no lesion", silently."""
    pages = [Image.fromarray(np.zeros((48, 64), np.uint8)), Image.fromarray(_disc(255))]
    path = tmp_path / f"mask.{suffix}"
    pages[0].save(path, save_all=True, append_images=pages[1:])
    for encoding in ("binary", "index"):
        with pytest.raises(UnreadableImageError, match=rf"mask\.{suffix}: mask has 2 pages; save one page per mask"):
            LoadMask(encoding, num_classes=256)(str(path))


def test_a_tiff_mask_with_a_thumbnail_page_reads_its_one_page(tmp_path: Path) -> None:
    """A reduced-resolution copy (TIFF NewSubfileType 1: a thumbnail) is not a second page of the mask."""
    truth = _disc(255)
    thumbnail = Image.fromarray(truth).resize((16, 12))
    thumbnail.encoderinfo = {"tiffinfo": {254: 1}}
    path = tmp_path / "mask.tif"
    Image.fromarray(truth).save(path, save_all=True, append_images=[thumbnail])
    with Image.open(path) as saved:
        assert saved.n_frames == 2
    np.testing.assert_array_equal(LoadMask("binary")(str(path))[0], truth > 0)


@pytest.mark.parametrize("black, lesion", [(1, 0), (2, 0), (5, 0), (127, 0), (0, 50)],
                         ids=["black 1", "black 2", "black 5", "black 127", "0/50 mask"])
def test_a_jpeg_mask_neither_0_255_nor_0_1_on_black_is_refused(tmp_path: Path, black: int, lesion: int) -> None:
    """An empty JPEG mask whose black is not 0 (1 or 2 after a viewer's export): half its peak is 1, and the whole
    image became lesion, silently. Reading it as empty could drop a lesion, so it is refused, named, with its peak
    and its share of black; so is a 0/k mask, whose ringing cannot be told from its lesion."""
    stored = _disc(lesion) if lesion else np.full((48, 64), black, np.uint8)
    Image.fromarray(stored).save(tmp_path / "mask.jpg", quality=90)
    peak = int(np.asarray(Image.open(tmp_path / "mask.jpg")).max())
    with pytest.raises(UnreadableImageError, match=f"mask.jpg: a JPEG mask whose brightest pixel is {peak}, with "
                                                   r"[0-9.]+% of its pixels 0, is neither.*save masks losslessly"):
        LoadMask("binary")(str(tmp_path / "mask.jpg"))


@pytest.mark.parametrize("quality", [60, 95])
@pytest.mark.parametrize("cover", [0.68, 0.95])
def test_a_0_1_jpeg_mask_whose_lesion_covers_most_of_the_image_reads(tmp_path: Path, quality: int,
                                                                      cover: float) -> None:
    """Judged by its most common value, a 0/1 mask mostly lesion looked like an empty mask with a raised black."""
    yy, xx = np.mgrid[:250, :250]
    radius = 250 * np.sqrt(cover / np.pi)
    truth = ((yy - 125) ** 2 + (xx - 125) ** 2 <= radius ** 2) if cover < 0.7 else ~(
        (yy < 250 * (1 - cover) ** 0.5) & (xx < 250 * (1 - cover) ** 0.5))
    Image.fromarray(truth.astype(np.uint8)).save(tmp_path / "mask.jpg", quality=quality)
    mask = LoadMask("binary")(str(tmp_path / "mask.jpg"))[0]
    assert abs(int(mask.sum()) - int(truth.sum())) <= truth.sum() // 50


@pytest.mark.parametrize("interpolation", [cv2.INTER_CUBIC, cv2.INTER_LANCZOS4], ids=["cubic", "lanczos"])
def test_a_cubic_resize_leaves_one_lesion_not_a_ring_of_specks(tmp_path: Path, interpolation: int) -> None:
    """A cubic or Lanczos resize rings 1-3 px beyond the edge, parted from the lesion by undershoot clipped to 0:
    cut at half its own peak, each lobe became a lesion of its own (64 specks around one disc)."""
    yy, xx = np.mgrid[:400, :400]
    disc = (((yy - 200) ** 2 + (xx - 190) ** 2) <= 110 ** 2).astype(np.uint8) * np.uint8(255)
    stored = cv2.resize(disc, (600, 600), interpolation=interpolation)
    Image.fromarray(stored).save(tmp_path / "mask.png")
    mask = LoadMask("binary")(str(tmp_path / "mask.png"))[0]
    count, _ = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    assert count - 1 == 1  # one lesion, as a nearest resize keeps it
    nearest = cv2.resize(disc, (600, 600), interpolation=cv2.INTER_NEAREST_EXACT) > 0
    assert int((mask.astype(bool) != nearest).sum()) <= 4 * 2 * np.pi * 165  # edge pixels only


@pytest.mark.parametrize("size", [(48, 64), (240, 320)])
@pytest.mark.parametrize("quality", [75, 95])
@pytest.mark.parametrize("value", [0, 1])
def test_an_empty_or_0_1_jpeg_mask_reads(tmp_path: Path, value: int, quality: int, size: tuple[int, int]) -> None:
    """An empty JPEG mask (black 0) and a 0/1 one read, at the sizes and qualities users save: ringing lifts a 0/1
    lesion's peak to 2 at 240 x 320, which a rule by peak alone refused."""
    height, width = size
    yy, xx = np.mgrid[:height, :width]
    truth = (((yy - height / 2) / (height / 4)) ** 2 + ((xx - width / 2) / (width / 4)) ** 2 <= 1).astype(np.uint8)
    Image.fromarray(truth * np.uint8(value)).save(tmp_path / "mask.jpg", quality=quality)
    mask = LoadMask("binary")(str(tmp_path / "mask.jpg"))[0]
    expected = int(truth.sum()) * value
    assert abs(int(mask.sum()) - expected) <= truth.sum() // 20  # a 0/1 JPEG's ringing moves its edge a little


@pytest.mark.parametrize("gap", [None, 12, 16], ids=["far", "1 px apart after the resize", "2 px apart"])
def test_a_small_lesion_dimmed_by_a_resize_is_kept(tmp_path: Path, gap: int | None) -> None:
    """A 4-px lesion beside a large one, shrunk 4x with bilinear interpolation, peaks at 120 of 255: half the whole
    mask's peak dropped it, where a nearest resize keeps a pixel of it; so did half the peak of a region widened to
    take in ringing, when the lesion lay within 4 px of the large one after the resize."""
    big = np.zeros((400, 400), np.uint8)
    yy, xx = np.mgrid[:400, :400]
    big[(yy - 200) ** 2 + (xx - 150) ** 2 <= 80 ** 2] = 255
    if gap is None:
        big[301:305, 331:335] = 255
    else:  # beside the disc's right edge (x = 230), gap px of the original apart
        big[197:201, 231 + gap:235 + gap] = 255
    stored = np.asarray(Image.fromarray(big).resize((100, 100), Image.Resampling.BILINEAR))
    count, regions = cv2.connectedComponents((stored > 0).astype(np.uint8), connectivity=8)
    assert count - 1 == 2 and min(int(stored[regions == r].max()) for r in (1, 2)) < 128  # dimmed below half
    Image.fromarray(stored).save(tmp_path / "mask.png")
    mask = LoadMask("binary")(str(tmp_path / "mask.png"))[0].astype(bool)
    assert cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)[0] - 1 == 2  # both lesions, apart
    nearest = np.asarray(Image.fromarray(big).resize((100, 100), Image.Resampling.NEAREST)) > 0
    assert abs(int(mask.sum()) - int(nearest.sum())) <= 24  # the large lesion as a nearest resize keeps it


@pytest.mark.parametrize("transparent", [(255, 255, 255, 0), (0, 0, 0, 0), (255, 0, 0, 0)])
@pytest.mark.parametrize("drawn", [(255, 255, 255, 255), (255, 0, 0, 255), (0, 0, 0, 255)])
def test_rgba_mask_transparent_pixels_are_background(tmp_path: Path, transparent: tuple, drawn: tuple) -> None:
    """A mask painted on a transparent layer (an image editor's export): transparent pixels are background whatever
    colour they store (white before made the whole image lesion), and a lesion drawn in black, visible only through
    its alpha, is still the lesion (before: an empty mask)."""
    truth = _disc(1).astype(bool)
    rgba = np.where(truth[..., None], np.array(drawn, np.uint8), np.array(transparent, np.uint8))
    Image.fromarray(rgba, "RGBA").save(tmp_path / "mask.png")
    np.testing.assert_array_equal(LoadMask("binary")(str(tmp_path / "mask.png"))[0], truth)


def _palette_mask(truth: np.ndarray, how: str) -> Image.Image:
    """A 0/255 mask saved as an indexed image, in the ways users' tools write one."""
    rgb = Image.fromarray(truth).convert("RGB")
    if how == "adaptive":  # PIL's RGB -> P: white comes first in the palette, so the lesion is index 0
        return rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=2)
    if how == "quantize":  # PNG optimisers and editors' "indexed colour"
        return rgb.quantize(2)
    if how == "gray":  # L -> P: the identity palette
        return Image.fromarray(truth).convert("P")
    transparent = Image.fromarray((truth > 0).astype(np.uint8), "P")  # index 0 background, transparent
    transparent.putpalette([255, 255, 255, 0, 200, 0])  # it stores white, as editors do
    transparent.info["transparency"] = 0
    return transparent


@pytest.mark.parametrize("how", ["adaptive", "quantize", "gray", "transparent"])
@pytest.mark.parametrize("suffix", ["png", "gif"])
def test_a_palette_mask_is_read_by_the_colours_it_shows(tmp_path: Path, how: str, suffix: str) -> None:
    """A black-and-white mask saved as an indexed image: its palette indices were taken as the mask, and where white
    is index 0 (PIL's conversion of an RGB mask, quantize) the lesion came out as background and the background as
    lesion, silently, in training and in evaluation."""
    truth = _disc(255)
    path = tmp_path / f"mask.{suffix}"
    image = _palette_mask(truth, how)
    image.save(path, **({"transparency": 0} if how == "transparent" else {}))
    with Image.open(path) as saved:
        assert saved.mode == "P"
        if how in ("adaptive", "quantize"):
            assert saved.getpalette()[:3] == [255, 255, 255]  # the awkward case: white is index 0
    np.testing.assert_array_equal(LoadMask("binary")(str(path))[0], truth > 0)


@pytest.mark.parametrize("palette", [None, [0, 0, 0], [0, 0, 0, 0, 0, 0]])
def test_a_palette_mask_whose_palette_cannot_tell_its_indices_apart_is_read_by_index(tmp_path: Path, palette) -> None:
    """``Image.fromarray(mask, "P")`` saved without a palette (Pillow writes one black entry), or a palette whose
    entries look alike: by colour the lesion was black, and every such mask read as empty."""
    truth = _disc(1)
    image = Image.fromarray(truth, "P")
    if palette is not None:
        image.putpalette(palette)
    image.save(tmp_path / "mask.png")
    np.testing.assert_array_equal(LoadMask("binary")(str(tmp_path / "mask.png"))[0], truth > 0)


def test_an_index_mask_with_a_palette_keeps_its_indices(tmp_path: Path) -> None:
    """VOC-style class maps are palette PNGs whose indices are the classes: read as stored, not as colours."""
    classes = (_disc(1) * 2).astype(np.uint8)  # class 2 inside, 0 outside
    image = Image.fromarray(classes, "P")
    image.putpalette([0, 0, 0, 128, 0, 0, 0, 128, 0])
    image.save(tmp_path / "classes.png")
    np.testing.assert_array_equal(LoadMask("index", num_classes=3)(str(tmp_path / "classes.png"))[0], classes)
    np.testing.assert_array_equal(LoadMask("binary")(str(tmp_path / "classes.png"))[0], classes > 0)


def test_gray_alpha_and_opaque_rgba_masks_read_their_values(tmp_path: Path) -> None:
    truth = _disc(255)
    Image.fromarray(np.stack([truth, np.full_like(truth, 255)], -1), "LA").save(tmp_path / "la.png")
    Image.fromarray(np.stack([truth] * 3 + [np.full_like(truth, 255)], -1), "RGBA").save(tmp_path / "rgba.png")
    for name in ("la.png", "rgba.png"):
        np.testing.assert_array_equal(LoadMask("binary")(str(tmp_path / name))[0], truth > 0)


def test_a_mask_with_an_exif_orientation_stays_on_its_image(tmp_path: Path) -> None:
    """Image and mask saved sideways with EXIF orientation 6 (as a phone stores a photograph): both are read
    upright, so the lesion's mask still covers the lesion."""
    from monai_ext.transforms.loading import LoadUltrasoundImage

    image = np.zeros((8, 12), np.uint8)
    image[1:3, 2:5] = 200  # the "lesion"
    exif = Image.new("L", (1, 1)).getexif()
    exif[0x0112] = 6
    Image.fromarray(image).save(tmp_path / "image.png", exif=exif.tobytes())
    Image.fromarray((image > 0).astype(np.uint8) * 255).save(tmp_path / "mask.png", exif=exif.tobytes())
    loaded = np.asarray(LoadUltrasoundImage()(str(tmp_path / "image.png")))[0]
    mask = np.asarray(LoadMask("binary")(str(tmp_path / "mask.png")))[0]
    assert loaded.shape == mask.shape == (12, 8)  # upright: 90 degrees clockwise
    np.testing.assert_array_equal(mask.astype(bool), loaded > 0.5)
    np.testing.assert_array_equal(mask.astype(bool), np.rot90(image > 0, -1))


def _exif(orientation: int) -> bytes:
    exif = Image.new("L", (1, 1)).getexif()
    exif[0x0112] = orientation
    return exif.tobytes()


def _sideways_case(folder: Path, shape: tuple[int, int], orientation: int, suffix: str = "jpg",
                   mask_orientation: int | None = None) -> dict[str, str]:
    """A picture stored with EXIF ``orientation`` (a dark lesion in one corner of its stored pixels) and its mask
    drawn on those stored pixels, as 3D Slicer shows the file (a PNG, with ``mask_orientation`` if given)."""
    image = np.full(shape, 200, np.uint8)
    image[2:12, 3:20] = 20
    Image.fromarray(image).save(folder / f"scan.{suffix}", exif=_exif(orientation),
                                **({"quality": 95} if suffix == "jpg" else {}))
    mask = Image.fromarray((image < 100).astype(np.uint8) * 255)
    mask.save(folder / "scan_mask.png", **({"exif": _exif(mask_orientation)} if mask_orientation else {}))
    return {"image": str(folder / f"scan.{suffix}"), "label": str(folder / "scan_mask.png")}


@pytest.mark.parametrize("shape", [(64, 64), (40, 60)], ids=["square", "non-square"])
@pytest.mark.parametrize("orientation", [2, 3, 5, 6, 7, 8])
@pytest.mark.parametrize("suffix, mask_orientation", [("jpg", None), ("png", None), ("jpg", "same")])
def test_a_mask_on_its_images_stored_grid_lies_on_the_upright_image(tmp_path: Path, shape, orientation: int,
                                                                    suffix: str, mask_orientation) -> None:
    """The image is read upright (EXIF applied), a mask drawn in 3D Slicer or OHIF (a PNG, no EXIF) is on the
    stored grid: a non-square one was dropped for its size, a square one trained on the lesion's mirror or quarter
    turn (mean intensity under the mask 0.78, the lesion's 0.08). A mask carrying its image's orientation turns once."""
    from monai_ext.transforms.loading import LoadUltrasoundImaged

    item = _sideways_case(tmp_path, shape, orientation, suffix, orientation if mask_orientation else None)
    loaded = LoadMaskd("label")(LoadUltrasoundImaged("image")(item))
    image, mask = np.asarray(loaded["image"])[0], np.asarray(loaded["label"])[0].astype(bool)
    assert mask.shape == image.shape and mask.sum() == 10 * 17
    assert image[mask].mean() < 0.2 and image[~mask].mean() > 0.7


def test_a_mask_turned_otherwise_than_its_image_is_refused(tmp_path: Path) -> None:
    """Which grid a mask carrying an orientation of its own was drawn on cannot be told: refused, not guessed."""
    from monai_ext.transforms.loading import LoadUltrasoundImaged

    item = _sideways_case(tmp_path, (64, 64), 6, mask_orientation=3)
    with pytest.raises(UnreadableImageError, match="scan_mask.png: the mask carries EXIF orientation 3, its image 6"):
        LoadMaskd("label")(LoadUltrasoundImaged("image")(item))
    for bad in (0, 9):
        with pytest.raises(ValueError, match=f"EXIF Orientation 1-8, got {bad}"):
            LoadMask("binary").read_one(item["label"], bad)


def test_a_mask_drawn_on_the_upright_picture_is_named_with_the_stored_sizes(tmp_path: Path) -> None:
    """A mask drawn on the upright picture (by an editor that applies EXIF) of a square image cannot be told from
    one on the stored grid; of a non-square one it is refused, not taken as the exception, with both sizes as the
    files store them and the rule (the upright sizes contradicted the image's header)."""
    from monai_ext.transforms.loading import LoadUltrasoundImaged

    item = _sideways_case(tmp_path, (40, 60), 6)
    Image.fromarray(np.zeros((60, 40), np.uint8)).save(item["label"])  # drawn on the upright picture
    with pytest.raises(UnreadableImageError, match=re.escape(
            "mask size (60, 40) differs from the image's (40, 60) (as stored: masks are drawn on the image file's "
            "stored pixel grid, as 3D Slicer shows it, and take its EXIF orientation 6 with it)")):
        LoadMaskd("label")(LoadUltrasoundImaged("image")(item))


@pytest.mark.parametrize("shape, orientation, warned", [
    ((40, 60), 3, True),    # upside down: both grids have one size, whatever the shape
    ((40, 60), 2, True),
    ((64, 64), 6, True),    # a quarter turn of a square picture
    ((40, 60), 6, False),   # a quarter turn of another shape: the other grid's size is refused instead
    ((40, 60), 1, False),
])
def test_a_mask_whose_grid_cannot_be_told_is_warned_of_once(tmp_path: Path, shape, orientation: int, warned: bool,
                                                           monkeypatch, caplog) -> None:
    """A mask drawn on the upright picture of such an image is turned as a stored-grid one, with no size to refuse it
    by: it trained flipped without a word."""
    import monai_ext.transforms.masks as masks
    from monai_ext.transforms.loading import LoadUltrasoundImaged

    monkeypatch.setattr(masks, "_WARNED_OF_GRIDS", set())
    item = _sideways_case(tmp_path, shape, orientation)
    with caplog.at_level(logging.WARNING, logger="monai_ext.transforms.masks"):
        for _ in range(3):  # three epochs: one warning
            LoadMaskd("label", image_key="image")(LoadUltrasoundImaged("image")(item))
    assert caplog.text.count("cannot be told apart here") == (1 if warned else 0)


@pytest.mark.parametrize("orientation", [1, 3, 6, 8])
@pytest.mark.parametrize("suffix", ["jpg", "png", "tif"])
def test_the_loader_records_the_orientation_it_applied_and_the_mask_is_turned_by_it(tmp_path: Path, monkeypatch,
                                                                                      orientation: int,
                                                                                      suffix: str) -> None:
    """LoadMaskd asked the image file for its EXIF orientation although the loader had just applied it (for a PNG,
    its bytes read a second time): the loader now records it, equal to what the file says, and the mask is turned
    by the record, the file not asked again (here it is gone once loaded)."""
    from monai_ext.io import images
    from monai_ext.transforms import masks
    from monai_ext.transforms.loading import LoadUltrasoundImaged

    item = _sideways_case(tmp_path, (40, 60), orientation, suffix)
    assert images.picture_orientation(item["image"]) == orientation
    loaded = LoadUltrasoundImaged("image", orientation_key="image_orientation")(item)
    assert loaded["image_orientation"] == orientation
    Path(item["image"]).unlink()
    monkeypatch.setattr(masks, "picture_orientation", lambda path: pytest.fail(f"{path} read again"))
    out = LoadMaskd("label", orientation_key="image_orientation")(loaded)
    image, mask = np.asarray(out["image"])[0], np.asarray(out["label"])[0].astype(bool)
    assert mask.shape == image.shape and image[mask].mean() < 0.2 and image[~mask].mean() > 0.7


@pytest.mark.parametrize("suffix", ["png", "bmp", "tif"])
@pytest.mark.parametrize("background, lesion", [(1, 255), (128, 255), (2, 2)],
                         ids=["raised-black", "128-255", "empty-raised-black"])
def test_a_lossless_binary_mask_without_a_zero_is_refused(tmp_path: Path, suffix: str, background: int,
                                                          lesion: int) -> None:
    """Read as "any non-zero", a mask exported with a raised black (or a 128/255 one) was a lesion covering the
    whole image, trained and scored without a word (as JPEG masks already were refused)."""
    pixels = np.full((20, 30), background, np.uint8)
    pixels[5:10, 5:15] = lesion
    path = tmp_path / f"mask.{suffix}"
    Image.fromarray(pixels).save(path)
    with pytest.raises(UnreadableImageError, match=rf"mask.{suffix}: no pixel of this binary mask is 0 \(its "
                                                   rf"lowest value is {background}, its highest {lesion}\)"):
        LoadMask("binary")(str(path))
    assert LoadMask("index", num_classes=256)(str(path)).max() == lesion  # label values: any class may fill it


def test_an_inverted_binary_mask_is_warned_of_once(tmp_path: Path, caplog) -> None:
    """White background, black lesion: 97 % lesion, trained as the target and scored as excellent for a model
    predicting lesion everywhere. Warned once per file, not at every epoch."""
    pixels = np.full((20, 30), 255, np.uint8)
    pixels[5:10, 5:9] = 0
    Image.fromarray(pixels).save(tmp_path / "inverted.png")
    Image.fromarray(255 - pixels).save(tmp_path / "upright.png")
    with caplog.at_level(logging.WARNING, logger="monai_ext.transforms.masks"):
        for _ in range(3):
            LoadMask("binary")(str(tmp_path / "inverted.png"))
        LoadMask("binary")(str(tmp_path / "upright.png"))
    warned = [r.getMessage() for r in caplog.records if "is it inverted" in r.getMessage()]
    assert len(warned) == 1 and "inverted.png: 96.7% of this binary mask is lesion" in warned[0]


@pytest.mark.parametrize("name, what", [("mask.nii.gz", "a NIfTI"), ("mask.nrrd", r"an ITK volume \(NRRD")])
def test_a_volume_label_map_given_as_a_mask_is_named_as_such(tmp_path: Path, name: str, what: str) -> None:
    """A 3D Slicer label map in a datalist was "cannot identify image file": the message now says masks are pictures."""
    import nibabel as nib

    (tmp_path / name).write_bytes(b"not a picture" * 30)
    if name.endswith(".nii.gz"):
        nib.save(nib.Nifti1Image(np.zeros((8, 8, 1), np.uint8), np.eye(4)), tmp_path / name)
    with pytest.raises(UnreadableImageError, match=rf"{name}: {what}.* file, not a picture: masks are read as 2-D "
                                                   "pictures"):
        LoadMask("binary")(str(tmp_path / name))


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_a_layer_transparent_everywhere_is_an_empty_mask(tmp_path: Path, mode: str) -> None:
    """An empty painted layer stores white under alpha 0 everywhere: read as a lesion covering the image (then
    refused as having no 0), it holds no lesion."""
    colour = (255, 255, 255, 0) if mode == "RGBA" else (255, 0)
    Image.new(mode, (30, 20), colour).save(tmp_path / "empty.png")
    assert not LoadMask("binary")(str(tmp_path / "empty.png")).any()


@pytest.mark.parametrize("ratio, repeat_axis", [([2, 1], 0), ([1, 2], 1)])
def test_a_mask_on_a_dicoms_stored_grid_is_resampled_with_its_non_square_pixels(tmp_path, ratio, repeat_axis) -> None:
    """A DICOM of non-square pixels is read resampled to square ones; its mask, drawn on the stored grid (as 3D
    Slicer and OHIF save it), was refused for its size. It is resampled with the image (nearest neighbour: each
    stored row or column twice for a 2:1 aspect); a mask of neither size is refused, naming both grids."""
    import warnings

    import pydicom

    from monai_ext.io.writers import write_dicom_frames
    from monai_ext.transforms.loading import LoadUltrasoundImaged

    frames = np.random.default_rng(0).integers(0, 200, (1, 40, 60)).astype(np.uint8)
    image = write_dicom_frames(frames, tmp_path / "scan.dcm")
    ds = pydicom.dcmread(image)
    ds.PixelAspectRatio = ratio
    ds.save_as(image)
    stored = np.zeros((40, 60), np.uint8)
    stored[10:20, 5:25] = 255
    stored[33, 50] = 255  # one stored pixel: two on the square grid
    cv2.imwrite(str(tmp_path / "scan_mask.png"), stored)
    cv2.imwrite(str(tmp_path / "other_mask.png"), np.zeros((40, 61), np.uint8))
    load = LoadUltrasoundImaged("image")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the image's own note that it is resampled
        item = load({"image": str(image), "mask": str(tmp_path / "scan_mask.png")})
        wrong = load({"image": str(image), "mask": str(tmp_path / "other_mask.png")})
    mask = LoadMaskd("mask")(item)["mask"]
    expected = np.repeat(stored // 255, 2, axis=repeat_axis)[None]
    assert item["image"].shape == expected.shape
    np.testing.assert_array_equal(mask, expected)
    with pytest.raises(UnreadableImageError, match=re.escape("mask size (40, 61) differs from the image's (40, 60) "
                                                             "(its pixels are resampled to")):
        LoadMaskd("mask")(wrong)
