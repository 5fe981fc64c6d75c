"""LoadUltrasoundImage(d) (transforms/loading.py): a path becomes a (1, H, W) float32 gray image in [0, 1] as
displayed; the dictionary version keeps the path, and on request the DICOM region and the frame count; unreadable
files are refused naming them. The decoding of each container is tested in tests/io/test_images.py."""

from __future__ import annotations

from types import SimpleNamespace

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


def test_the_frame_count_of_a_cine_loop_or_a_multi_page_picture_is_its_number_of_frames(tmp_path) -> None:
    path = write_dicom_frames(np.stack([GRAY, GRAY // 2, GRAY // 3]), tmp_path / "cine.dcm")
    out = LoadUltrasoundImaged("image", frames_key="frames")({"image": str(path)})
    assert out["frames"] == 3 and out["image"].shape == (1, 20, 30)  # the first frame, and how many there are
    np.testing.assert_allclose(out["image"][0], GRAY / 255.0, atol=1e-6)
    # a multi-page picture: its pages are counted only when asked (the decoder skips the count otherwise)
    pages = [Image.fromarray(GRAY), Image.fromarray(GRAY // 2), Image.fromarray(GRAY // 3)]
    pages[0].save(tmp_path / "pages.tif", save_all=True, append_images=pages[1:])
    assert LoadUltrasoundImaged("image", frames_key="frames")({"image": str(tmp_path / "pages.tif")})["frames"] == 3


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


def test_pixels_the_display_conversion_refuses_are_refused_naming_the_file(tmp_path, monkeypatch) -> None:
    """Decoded pixels that are no 2-D image (here a stand-in decoder's 4-D array) name the file, not 'image'."""
    import monai_ext.transforms.loading as loading

    decoded = SimpleNamespace(pixels=np.zeros((2, 3, 4, 5), np.uint8), region_box=None, frame_count=1)
    monkeypatch.setattr(loading, "read_image", lambda path, **kwargs: decoded)
    path = tmp_path / "odd_volume.png"
    for load in (lambda: LoadUltrasoundImage()(path), lambda: LoadUltrasoundImaged("image")({"image": str(path)})):
        with pytest.raises(UnreadableImageError, match="odd_volume.png: expected a 2-D image"):
            load()
