"""LoadMask(d) on awkward mask files: 16-bit index masks, foreground classes outside num_classes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

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
