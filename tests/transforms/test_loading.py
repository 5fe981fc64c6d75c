"""LoadUltrasoundImage(d) (transforms/loading.py): a path becomes a (1, H, W) float32 gray image in [0, 1] as
displayed; the dictionary version keeps the path, and on request the DICOM region and the frame count; unreadable
files are refused naming them. The decoding of each container is tested in tests/io/test_images.py."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from monai_ext.io.errors import UnreadableImageError
from monai_ext.io.writers import write_dicom_frames
from monai_ext.transforms.loading import LoadUltrasoundImage, LoadUltrasoundImaged

GRAY = np.random.default_rng(0).integers(0, 256, (20, 30), np.uint8)


def test_a_picture_becomes_one_float_channel_in_unit_range(tmp_path) -> None:
    Image.fromarray(GRAY).save(tmp_path / "a.png")
    out = LoadUltrasoundImage()(tmp_path / "a.png")  # a PathLike as well as a str
    assert isinstance(out, np.ndarray) and out.shape == (1, 20, 30) and out.dtype == np.float32
    np.testing.assert_allclose(out[0], GRAY / 255.0, atol=1e-6)
    np.testing.assert_array_equal(LoadUltrasoundImage()(str(tmp_path / "a.png")), out)


def test_the_array_and_dict_versions_agree(tmp_path) -> None:
    rgb = np.random.default_rng(1).integers(0, 256, (12, 16, 3), np.uint8)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    alone = LoadUltrasoundImage()(tmp_path / "rgb.png")
    assert alone.shape == (1, 12, 16) and 0.0 <= alone.min() and alone.max() <= 1.0
    np.testing.assert_array_equal(LoadUltrasoundImaged("image")({"image": tmp_path / "rgb.png"})["image"], alone)


def test_dict_version_keeps_the_path_and_optionally_the_region(tmp_path) -> None:
    Image.fromarray(GRAY).save(tmp_path / "a.png")
    out = LoadUltrasoundImaged("image")({"image": str(tmp_path / "a.png"), "label": 1})
    assert out["image"].shape == (1, 20, 30) and out["image_path"].endswith("a.png") and out["label"] == 1
    path = write_dicom_frames(GRAY[None], tmp_path / "region.dcm", region_box=(2, 3, 25, 18))
    assert "us_region" not in LoadUltrasoundImaged("image")({"image": str(path)})
    assert LoadUltrasoundImaged("image", region_key="us_region")({"image": str(path)})["us_region"] == (2, 3, 25, 18)
    assert "us_region" not in LoadUltrasoundImaged("image", region_key="us_region")({"image": str(tmp_path / "a.png")})


def test_the_frame_count_is_one_for_a_single_picture_and_only_when_asked(tmp_path) -> None:
    Image.fromarray(GRAY).save(tmp_path / "a.png")
    assert LoadUltrasoundImaged("image", frames_key="frames")({"image": str(tmp_path / "a.png")})["frames"] == 1
    assert "frames" not in LoadUltrasoundImaged("image")({"image": str(tmp_path / "a.png")})


def test_several_keys_and_missing_keys(tmp_path) -> None:
    Image.fromarray(GRAY).save(tmp_path / "a.png")
    both = LoadUltrasoundImaged(["image", "other"])({"image": str(tmp_path / "a.png"),
                                                     "other": str(tmp_path / "a.png")})
    assert both["image"].shape == both["other"].shape == (1, 20, 30) and both["other_path"].endswith("a.png")
    with pytest.raises(KeyError):
        LoadUltrasoundImaged(["image", "other"])({"image": str(tmp_path / "a.png")})
    only = LoadUltrasoundImaged(["image", "other"], allow_missing_keys=True)({"image": str(tmp_path / "a.png")})
    assert "other" not in only and "other_path" not in only


@pytest.mark.parametrize("content", [b"", b"not a picture"])
def test_an_unreadable_file_is_refused_naming_it(tmp_path, content: bytes) -> None:
    (tmp_path / "bad.png").write_bytes(content)
    for load in (lambda: LoadUltrasoundImage()(tmp_path / "bad.png"),
                 lambda: LoadUltrasoundImaged("image")({"image": str(tmp_path / "bad.png")})):
        with pytest.raises(UnreadableImageError, match="bad.png") as refused:
            load()
        assert isinstance(refused.value, ValueError)
