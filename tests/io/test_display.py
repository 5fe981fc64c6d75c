"""The shared conversion of display-ready pixels to gray: one answer in float and in uint8, BT.601 luma."""

from __future__ import annotations

import numpy as np
import pytest

from monai_ext.io.display import to_gray_uint8, to_gray_unit
from monai_ext.io.errors import UnreadableImageError

RNG = np.random.default_rng(0)
CASES = {
    "uint8 gray": RNG.integers(0, 256, (9, 11), np.uint8),
    "uint8 rgb": RNG.integers(0, 256, (9, 11, 3), np.uint8),
    "uint8 rgba": RNG.integers(0, 256, (9, 11, 4), np.uint8),
    "uint8 gray+alpha": RNG.integers(0, 256, (9, 11, 2), np.uint8),
    "uint16 gray": RNG.integers(0, 65536, (9, 11), np.uint16),
    "uint16 rgb": RNG.integers(0, 65536, (9, 11, 3), np.uint16),
    "bool": RNG.random((9, 11)) > 0.5,
    "float gray": RNG.random((9, 11)).astype(np.float32),
    "float rgb": RNG.random((9, 11, 3)).astype(np.float32),
}


def bt601(rgb_unit: np.ndarray) -> np.ndarray:
    """ITU-R BT.601 luma written out (Y = 0.299 R + 0.587 G + 0.114 B), in float64."""
    return 0.299 * rgb_unit[..., 0] + 0.587 * rgb_unit[..., 1] + 0.114 * rgb_unit[..., 2]


@pytest.mark.parametrize("name", CASES)
def test_uint8_output_is_the_rounded_float_output(name) -> None:
    pixels = CASES[name]
    unit, eight = to_gray_unit(pixels, name), to_gray_uint8(pixels, name)
    assert unit.shape == eight.shape == (9, 11) and unit.dtype == np.float32 and eight.dtype == np.uint8
    assert 0.0 <= unit.min() and unit.max() <= 1.0
    np.testing.assert_array_equal(eight, np.rint(unit * np.float32(255)).astype(np.uint8))


@pytest.mark.parametrize("name, white", [("uint8 rgb", 255), ("uint8 rgba", 255), ("uint16 rgb", 65535),
                                         ("float rgb", 1)])
def test_colour_becomes_bt601_luma(name, white) -> None:
    pixels = CASES[name]
    expected = bt601(pixels[..., :3].astype(np.float64) / white)
    # 8-bit colour keeps 8-bit luma (OpenCV's 14-bit fixed-point weights, rounded): within a level of the exact value
    tolerance = 1 / 255 if pixels.dtype == np.uint8 else 1e-6
    np.testing.assert_allclose(to_gray_unit(pixels, name), expected, atol=tolerance)


@pytest.mark.parametrize("name, expected", [
    ("uint8 gray", CASES["uint8 gray"] / 255), ("uint16 gray", CASES["uint16 gray"] / 65535),
    ("bool", CASES["bool"].astype(float)), ("uint8 gray+alpha", CASES["uint8 gray+alpha"][..., 0] / 255),
])
def test_gray_scales_by_its_white_level_and_drops_alpha(name, expected) -> None:
    np.testing.assert_allclose(to_gray_unit(CASES[name], name), expected, rtol=1e-6)


def test_float_outside_the_unit_range_is_clipped() -> None:
    np.testing.assert_array_equal(to_gray_unit(np.array([[-0.5, 0.25, 1.5]], np.float32), "x"), [[0.0, 0.25, 1.0]])


@pytest.mark.parametrize("pixels, match", [
    (np.zeros((4, 4), np.int16), "display pixels must be unsigned, boolean or float, got int16"),
    (np.zeros((2, 4, 4, 3), np.uint8), r"expected a 2-D image, got shape \(2, 4, 4, 3\)"),
    (np.zeros((4, 4, 5), np.uint8), r"expected a 2-D image, got shape \(4, 4, 5\)"),
])
def test_pixels_that_are_not_display_ready_are_refused_naming_the_source(pixels, match) -> None:
    with pytest.raises(UnreadableImageError, match=f"scan.dcm: {match}"):
        to_gray_unit(pixels, "scan.dcm")


def few_bits_warnings(path) -> list[str]:
    """The warnings of 12-bit data in a 16-bit picture that reading ``path`` (as the loaders do) gives."""
    import warnings

    from monai_ext.io.images import read_image

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        read_image(path)
    return [str(w.message) for w in caught if "16-bit picture" in str(w.message)]


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_twelve_bit_data_in_a_sixteen_bit_picture_is_warned_of_once(tmp_path, suffix) -> None:
    """Some exporters write 12-bit data (0..4095) unscaled into a 16-bit PNG: read by the 16-bit range (as viewers
    show it, and right for a standard file) it is nearly black, and the network predicted as for a black image
    without a word. Said once per file in a process, not at every read."""
    from PIL import Image

    path = tmp_path / f"scan{suffix}"
    Image.fromarray(np.arange(0, 4096, 4, dtype=np.uint16).reshape(32, 32)).save(path)
    said = few_bits_warnings(path)
    assert len(said) == 1 and said[0].startswith(f"{path}: a 16-bit picture whose values reach only 4092 of 65535")
    assert "scale the files (values x 16) or export 8-bit pictures" in said[0]
    assert few_bits_warnings(path) == []  # the next epoch


def test_sixteen_bit_pictures_that_use_their_range_eight_bit_ones_and_dicom_are_not_warned_of(tmp_path) -> None:
    """A standard 16-bit picture, a dark 8-bit one (which uses its range as displayed) and a 12-bit DICOM (read by
    its BitsStored) are as they should be; a black 16-bit picture is a blank image (said elsewhere), not 12-bit."""
    from PIL import Image

    from monai_ext.io.writers import write_dicom_values

    Image.fromarray(np.arange(0, 65536, 64, dtype=np.uint16).reshape(32, 32)).save(tmp_path / "full.png")
    Image.fromarray(np.arange(0, 16, dtype=np.uint8).reshape(4, 4)).save(tmp_path / "dark8.png")
    Image.fromarray(np.zeros((4, 4), np.uint16)).save(tmp_path / "black.png")
    write_dicom_values(np.arange(0, 4096, 4, dtype=np.uint16).reshape(32, 32), tmp_path / "twelve.dcm", 12)
    for name in ("full.png", "dark8.png", "black.png", "twelve.dcm"):
        assert few_bits_warnings(tmp_path / name) == [], name
