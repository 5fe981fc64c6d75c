"""A folder of small PNGs with the awkward unreadable cases among them, for tests of evaluation with bad files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged, RandFlipd
from PIL import Image

#: The awkward real cases: an empty file, a file that is not there, a file that is not an image.
BAD = {"empty.png": b"", "missing.png": None, "corrupt.png": b"this is not a PNG"}


def image_folder(folder: Path, good: int = 8) -> list[dict[str, object]]:
    """``good`` readable 16 x 16 PNGs whose pixels all hold the item's index, with the BAD files among them."""
    items: list[dict[str, object]] = []
    for i in range(good):
        path = folder / f"case{i}.png"
        Image.fromarray(np.full((16, 16), i, np.uint8)).save(path)
        items.append({"image": str(path), "label": i % 2, "id": f"case{i}"})
    for position, (name, content) in zip((1, 4, good + 2), BAD.items()):  # the start, the middle and the end
        if content is not None:
            (folder / name).write_bytes(content)
        items.insert(position, {"image": str(folder / name), "label": 0, "id": name})
    return items


def square_mask(index: int, size: int = 16) -> np.ndarray:
    """(size, size) two-class mask of case ``index``: a square of side 4 + index at (2, 2)."""
    mask = np.zeros((size, size), np.uint8)
    mask[2 : 6 + index, 2 : 6 + index] = 1
    return mask


def with_masks(items: list[dict[str, object]], folder: Path) -> list[dict[str, object]]:
    """The items with a readable mask file under "label": :func:`square_mask` of the case's index for the good
    images, of 0 for the bad ones (only the images are unreadable)."""
    out = []
    for position, item in enumerate(items):
        name = str(item["id"])
        path = folder / f"mask{position}.png"
        Image.fromarray(square_mask(int(name[4:]) if name.startswith("case") else 0)).save(path)
        out.append({**item, "label": str(path)})
    return out


def load(random: bool = False, keys: tuple[str, ...] = ("image",)) -> Compose:
    """Raw pixel values (1, 16, 16) of ``keys``, with a random flip when ``random`` (what makes a training chain)."""
    steps = [LoadImaged(list(keys), reader="PILReader", image_only=True), EnsureChannelFirstd(list(keys))]
    return Compose(steps + [RandFlipd(list(keys), prob=0.5, spatial_axis=0)] if random else steps)
