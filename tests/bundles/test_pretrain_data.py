"""The pretraining bundle's reading of picture folders, checked on its parsed configs (no training, seconds): the
pixels the network sees, the reasons given for unreadable files, the monitor's de-annotation, the lazy inference
grid and the message for a validation part that cannot be read."""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser
from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged
from PIL import Image

from monai_ext.data.datasets import SkipCorruptDataset
from monai_ext.io.images import pil_display_image
from tests.bundles.helpers import PRETRAIN

CONFIGS = PRETRAIN / "configs"


def parser_for(tmp_path: Path, files: tuple[str, ...] = ("train.yaml",), **overrides: object) -> ConfigParser:
    parser = ConfigParser()
    parser.read_config([str(CONFIGS / f) for f in files])
    parser.update({"bundle_root": str(PRETRAIN), "ckpt_dir": str(tmp_path / "models"),
                   "output_dir": str(tmp_path / "out"), "cache_dir": str(tmp_path / "cache"),
                   "arch": "mae_vit_tiny_patch16_dec128d2b", "image_size": 32, **overrides})
    return parser


def _pictures(folder: Path) -> list[Path]:
    """A colour PNG, a gray PNG, a colour and a gray JPEG, an RGBA PNG, a 16-bit PNG: the normal cases."""
    folder.mkdir(parents=True, exist_ok=True)
    rgb = np.random.default_rng(0).integers(0, 256, (37, 53, 3), np.uint8)
    cv2.imwrite(str(folder / "rgb.png"), rgb)
    cv2.imwrite(str(folder / "gray.png"), rgb[..., 0])
    Image.fromarray(rgb).save(folder / "rgb.jpg", quality=90)
    Image.fromarray(rgb[..., 1]).save(folder / "gray.jpg")
    Image.fromarray(np.dstack([rgb, rgb[..., 2]])).save(folder / "rgba.png")
    cv2.imwrite(str(folder / "16bit.png"), rgb[..., 0].astype(np.uint16) * 257)
    return sorted(folder.iterdir())


@pytest.mark.parametrize("deannotate", [False, True])
def test_the_network_sees_the_pixels_monais_pil_reader_gave(tmp_path, deannotate) -> None:
    """The project's decoders replaced MONAI's LoadImaged(PILReader) for the reasons they give; the tensors of
    normal pictures are the same, bit for bit, with de-annotation (on colour) and without."""
    parser = parser_for(tmp_path, deannotate=deannotate)
    before = Compose([LoadImaged("image", reader="PILReader", converter=pil_display_image, reverse_indexing=False,
                                 dtype=None, image_only=True), EnsureChannelFirstd("image")]
                     + parser.get_parsed_content("deannotate_transforms") + parser.get_parsed_content("gray_transforms")
                     + parser.get_parsed_content("normalize_transforms"))
    now = parser.get_parsed_content("validate#preprocessing")
    for path in _pictures(tmp_path / "data"):
        expected = torch.as_tensor(before({"image": str(path)})["image"]).as_subclass(torch.Tensor)
        actual = torch.as_tensor(now({"image": str(path)})["image"]).as_subclass(torch.Tensor)
        assert actual.shape == expected.shape == (3, 32, 32), path.name
        assert torch.equal(actual, expected), path.name


def test_an_unreadable_file_is_skipped_naming_its_cause(tmp_path, caplog) -> None:
    """MONAI's LoadImage tried 7 readers, logged a line for each, and said only that no reader suited."""
    paths = _pictures(tmp_path / "data")
    good = (tmp_path / "data" / "rgb.png").read_bytes()
    (tmp_path / "data" / "truncated.png").write_bytes(good[: len(good) // 2])
    (tmp_path / "data" / "empty.png").write_bytes(b"")
    items = [{"image": str(p)} for p in [*paths, tmp_path / "data" / "truncated.png", tmp_path / "data" / "empty.png"]]
    with caplog.at_level(logging.INFO):
        dataset = SkipCorruptDataset(items, parser_for(tmp_path).get_parsed_content("validate#preprocessing"),
                                     evaluation=True)
    reasons = {Path(s["image"]).name: s["reason"] for s in dataset.skipped}
    assert set(reasons) == {"truncated.png", "empty.png"} and len(dataset) == len(paths)
    assert "empty file (0 bytes)" in reasons["empty.png"]
    assert "truncated" in reasons["truncated.png"], reasons["truncated.png"]
    assert "cannot find a suitable reader" not in caplog.text


def test_a_dicom_file_under_a_pictures_name_is_read(tmp_path) -> None:
    from monai_ext.io.writers import write_dicom

    gray = np.random.default_rng(1).integers(0, 256, (20, 24), np.uint8)
    write_dicom(gray, tmp_path / "export.png")
    read = parser_for(tmp_path).get_parsed_content("file_read_transforms")[0]
    out = read({"image": str(tmp_path / "export.png")})
    assert tuple(out["image"].shape) == (1, 20, 24)
    np.testing.assert_array_equal(np.asarray(out["image"][0]), gray)


def test_the_monitor_scores_the_images_de_annotated_as_pretraining_sees_them(tmp_path) -> None:
    """With --deannotate true pretraining saw cleaned screens while the monitor scored raw ones."""
    for deannotate, expected in ((True, 1), (False, 0)):
        transform = parser_for(tmp_path, deannotate=deannotate).get_parsed_content("validate#monitor#transform")
        names = [type(t).__name__ for t in transform.transforms]
        assert names.count("Deannotated") == expected, names
    train = parser_for(tmp_path, deannotate=True).get_parsed_content("validate#preprocessing")
    monitor = parser_for(tmp_path, deannotate=True).get_parsed_content("validate#monitor#transform")
    path = _pictures(tmp_path / "data")[-1]  # rgba.png, a colour picture
    torch.testing.assert_close(torch.as_tensor(monitor({"image": str(path)})["image"]).as_subclass(torch.Tensor),
                               torch.as_tensor(train({"image": str(path)})["image"]).as_subclass(torch.Tensor),
                               atol=0, rtol=0)


def test_a_validation_part_that_cannot_be_read_is_named_with_what_to_do(tmp_path) -> None:
    good = tmp_path / "data" / "good.png"
    good.parent.mkdir()
    (tmp_path / "data" / "truncated.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    parser = parser_for(tmp_path, dataset_dir=str(tmp_path / "data"), val_fraction=0.25)
    parser["validate#dataset#data"] = [{"image": str(tmp_path / "data" / "truncated.png"), "position": 0}]
    with pytest.raises(Exception) as raised:
        parser.get_parsed_content("validate#dataset")
    error = raised.value
    while error.__cause__ is not None:
        error = error.__cause__
    message = str(error)
    assert "none of the 1 items of the validation part (0.25 of " in message and "truncated.png" in message
    assert "--data_seed" in message and "repair or remove" in message


def test_inference_reads_only_the_pictures_its_grid_needs(tmp_path, caplog) -> None:
    """Every file of --input_dir was decoded (a dataset screens its whole list) to draw --grid_images pictures."""
    folder = tmp_path / "input"
    _pictures(folder)
    (folder / "zz_truncated.png").write_bytes((folder / "rgb.png").read_bytes()[:200])  # last in file order
    (folder / "a_empty.png").write_bytes(b"")  # first: skipped, naming the reason, and the next one read
    parser = parser_for(tmp_path, ("inference.yaml",), input_dir=str(folder), grid_images=2)
    parser.update({"trained": {}, "image_size": 32})  # no checkpoint's record: the defaults
    with caplog.at_level(logging.WARNING):
        images = parser.get_parsed_content("grid#images")
    assert "zz_truncated.png" not in caplog.text  # never read
    assert tuple(images.shape) == (2, 3, 32, 32)
    assert "a_empty.png" in caplog.text and "empty file (0 bytes)" in caplog.text
