"""The segmentation bundle's own transforms (built by MONAI's ``ConfigParser`` from ``train.yaml``) keep a mask on
its image when they resize a wide scan: the label is resized centre-aligned, as the image is."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser

from tests.bundles.helpers import REPO

SIZE = 64
ROWS, COLS = 540, 1920  # a wide screen capture, squeezed 3.6:1 into the square
BOX = (101, 333, 300, 1000)  # top, left, bottom, right (inclusive) at odd offsets


def _parser() -> ConfigParser:
    parser = ConfigParser()
    parser.read_config(str(REPO / "bundles" / "usf_mae_segment" / "configs" / "train.yaml"))
    parser["image_size"] = SIZE
    parser["num_classes"] = 2  # not from the split: that would write the synthetic default into the bundle folder
    return parser


@pytest.fixture(scope="module")
def item(tmp_path_factory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("wide")
    top, left, bottom, right = BOX
    image, mask = np.zeros((ROWS, COLS), np.uint8), np.zeros((ROWS, COLS), np.uint8)
    image[top : bottom + 1, left : right + 1] = 200
    mask[top : bottom + 1, left : right + 1] = 255
    cv2.imwrite(str(folder / "scan.png"), image)
    cv2.imwrite(str(folder / "scan_mask.png"), mask)
    return {"image": str(folder / "scan.png"), "label": str(folder / "scan_mask.png")}


@pytest.mark.parametrize("seed", [None, 0, 1, 2])  # None: the loading transforms; a seed: then a random crop
def test_a_resized_mask_stays_centred_on_its_image(item, seed) -> None:
    """Torch's ``nearest`` takes each output pixel from the top-left of its source block while the image's area and
    bilinear resizing are centre-aligned: the label sat about half a training pixel up and left of its image
    (about 4 original pixels of a 1920-wide scan at 224), shifting every mask the model learnt and was scored on."""
    parser = _parser()
    data = parser.get_parsed_content("load_transforms", instantiate=True)  # read, then resized to the square
    out = dict(item)
    for transform in data:
        out = transform(out)
    if seed is not None:
        crop = parser.get_parsed_content("augment", instantiate=True)[0]  # RandResizedCropd of image and label
        crop.set_random_state(seed)
        out = crop(out)
    image, label = torch.as_tensor(out["image"]), torch.as_tensor(out["label"])
    assert image.shape[-2:] == label.shape[-2:] == (SIZE, SIZE)
    # the lesion's share of each training pixel, read off the image (0/200 box, area or bilinear resizing): the
    # label must hold every pixel clearly inside and none clearly outside; pixels the edge halves may go either way
    fraction = (image[0] - image.min()) / (image.max() - image.min())
    clear = (fraction < 0.25) | (fraction > 0.75)
    wrong = (label[0].bool() != (fraction > 0.5)) & clear
    assert int(wrong.sum()) == 0, f"{int(wrong.sum())} pixel(s) off their image"  # nearest: 24 to 98


def test_the_bundles_loading_turns_an_exif_mask_by_the_loaders_record(tmp_path, monkeypatch) -> None:
    """train.yaml's loader records the EXIF turn it applied and LoadMaskd uses it: the image file is read once."""
    from PIL import Image

    from monai_ext.transforms import masks

    image = np.full((40, 60), 200, np.uint8)
    image[2:12, 3:20] = 20
    exif = Image.new("L", (1, 1)).getexif()
    exif[0x0112] = 6
    Image.fromarray(image).save(tmp_path / "scan.jpg", exif=exif.tobytes(), quality=95)
    cv2.imwrite(str(tmp_path / "scan_mask.png"), (image < 100).astype(np.uint8) * 255)
    monkeypatch.setattr(masks, "picture_orientation", lambda path: pytest.fail(f"{path} read again"))
    out = {"image": str(tmp_path / "scan.jpg"), "label": str(tmp_path / "scan_mask.png")}
    for transform in _parser().get_parsed_content("load_transforms", instantiate=True)[:2]:  # the two loaders
        out = transform(out)
    assert out["image_orientation"] == 6
    picture, mask = np.asarray(out["image"])[0], np.asarray(out["label"])[0].astype(bool)
    assert picture.shape == mask.shape == (60, 40) and picture[mask].mean() < 0.2
