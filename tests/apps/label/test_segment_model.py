"""What the MONAI Label app serves for segmentation: the bundle's inference mask, loaded from the bundle's own
standalone inference config; and the datastore's masks as the bundle's datalist (main environment, no server)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from monai_ext.apps.label.segment_model import (
    BundleSegmenter,
    _mask_lesion_share,
    load_bundle_segmenter,
    mask_datalist,
    segmenter_overrides,
)
from monai_ext.engines.inference import FRAMES_KEY
from monai_ext.io.errors import UnreadableImageError
from monai_ext.io.writers import write_dicom_frames
from monai_ext.transforms.loading import LoadUltrasoundImaged
from tests.bundles.helpers import SEGMENT, run_bundle, tiny_segment_overrides

SEG_TRAIN = "bundles/usf_mae_segment/configs/train.yaml"
SEG_INFERENCE = "bundles/usf_mae_segment/configs/inference.yaml"


@pytest.fixture(scope="session")
def segmenter_run(tmp_path_factory) -> Path:
    """Folder whose ``models/model.pt`` is a segmentation-bundle checkpoint (ViT-Tiny, 64 px, two epochs)."""
    out = tmp_path_factory.mktemp("label_segmenter")
    run_bundle([SEG_TRAIN], tiny_segment_overrides(out, out / "cache", base_lr=0.05))
    return out


@pytest.mark.slow
def test_served_mask_equals_the_bundle_inference_mask(segmenter_run, tmp_path) -> None:
    rng = np.random.default_rng(2)
    files = []
    for index, shape in enumerate([(80, 120), (64, 64), (150, 100)]):
        files.append(tmp_path / f"case{index}.png")
        cv2.imwrite(str(files[-1]), cv2.GaussianBlur(rng.integers(0, 256, shape, np.uint8), (0, 0), 2))
    files.append(tmp_path / "blank.png")  # an all-black export: segmented, and flagged
    cv2.imwrite(str(files[-1]), np.zeros((50, 70), np.uint8))
    files.append(tmp_path / "loop.dcm")  # a cine loop: its first frame segmented, its frames counted
    write_dicom_frames(np.stack([rng.integers(0, 256, (60, 90), np.uint8) for _ in range(3)]), files[-1])
    files.append(tmp_path / "exif6.jpg")  # stored sideways: both masks on its stored grid
    write_sideways(files[-1], (77, 123), 6)
    run_bundle([SEG_INFERENCE], {"ckpt_dir": str(segmenter_run / "models"), "output_dir": str(tmp_path / "bundle"),
                                 "input_files": [str(f) for f in files]})
    expected = json.loads((tmp_path / "bundle" / "masks.json").read_text())["masks"]
    model = load_bundle_segmenter(SEGMENT, segmenter_run / "models" / "model.pt", "cpu")
    for path in files:
        mask, summary = model.segment(path)
        np.testing.assert_array_equal(mask, cv2.imread(expected[str(path)]["mask"], cv2.IMREAD_UNCHANGED))
        assert summary["pixels"] == expected[str(path)]["pixels"]
        assert summary.get("warning") == expected[str(path)].get("warning")
        assert ("warning" in summary) is (path.name == "blank.png")
        assert summary.get("frames") == expected[str(path)].get("frames") == (3 if path.suffix == ".dcm" else None)
        assert summary.get("frame") == expected[str(path)].get("frame") == (0 if path.suffix == ".dcm" else None)
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(UnreadableImageError, match="notes.png"):
        model.segment(tmp_path / "notes.png")
    overrides = segmenter_overrides(segmenter_run / "models" / "model.pt")
    assert overrides["arch"] == "mae_vit_tiny_patch16_dec128d2b" and overrides["image_size"] == 64
    assert overrides["feature_size"] == 8


def write_case(folder: Path, name: str, image_shape: tuple[int, int], mask_shape: tuple[int, int] | None = None,
               lesion: bool = True) -> dict[str, str]:
    """An image and its mask (a disc, or empty for a normal scan) as the datastore lists them."""
    folder.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(folder / f"{name}.png"), np.full(image_shape, 90, np.uint8))
    mask = np.zeros(mask_shape or image_shape, np.uint8)
    if lesion:
        cv2.circle(mask, (mask.shape[1] // 2, mask.shape[0] // 2), 5, 255, -1)
    cv2.imwrite(str(folder / f"{name}_mask.png"), mask)
    return {"image": str(folder / f"{name}.png"), "label": str(folder / f"{name}_mask.png")}


def test_mask_datalist_keeps_mask_labels_and_skips_class_labels(tmp_path) -> None:
    items = [write_case(tmp_path, f"case{i}", (40, 60)) for i in range(5)]
    (tmp_path / "case9.json").write_text('{"class": "benign"}')
    items.append({"image": items[0]["image"], "label": str(tmp_path / "case9.json")})
    path, skipped, _ = mask_datalist(items, ["background", "lesion"], tmp_path / "datalist.json", 0.2, 0)
    data = json.loads(path.read_text())
    assert data["class_names"] == ["background", "lesion"]
    assert sorted(it["id"] for it in data["train"] + data["validation"]) == [f"case{i}" for i in range(5)]
    assert len(data["validation"]) == 1 and list(skipped) == [str(tmp_path / "case9.json")]
    with pytest.raises(ValueError, match="at least 2 images whose saved mask shows a lesion"):
        mask_datalist(items[:1], ["background", "lesion"], tmp_path / "d.json", 0.2, 0)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_empty_masks_train_but_never_make_up_the_validation_part(tmp_path, seed) -> None:
    # a normal scan's mask is empty: Dice is undefined on it, so a validation part of it alone chooses no model
    items = [write_case(tmp_path, f"normal{i}", (40, 60), lesion=False) for i in range(2)]
    items += [write_case(tmp_path, f"lesion{i}", (40, 60)) for i in range(3)]
    data = json.loads(mask_datalist(items, ["background", "lesion"], tmp_path / "d.json", 0.2, seed)[0].read_text())
    assert {it["id"] for it in data["validation"]} <= {"lesion0", "lesion1", "lesion2"} and data["validation"]
    assert {"normal0", "normal1"} <= {it["id"] for it in data["train"]}
    with pytest.raises(ValueError, match=r"found 1 \(2 saved mask\(s\) have no lesion pixel\)"):
        mask_datalist(items[:3], ["background", "lesion"], tmp_path / "d.json", 0.2, seed)


def test_a_mask_of_another_size_or_unreadable_is_skipped_with_its_reason(tmp_path) -> None:
    # a mask drawn on a rotated copy (EXIF) or on another image: the bundle would drop it with a log line only
    items = [write_case(tmp_path, f"case{i}", (40, 60)) for i in range(3)]
    items.append(write_case(tmp_path, "turned", (40, 60), mask_shape=(60, 40)))
    (tmp_path / "broken_mask.png").write_bytes(b"\x89PNG not really")
    items.append({"image": items[0]["image"], "label": str(tmp_path / "broken_mask.png")})
    (tmp_path / "slicer.nii.gz").write_bytes(b"\x1f\x8b")  # as 3D Slicer's MONAI Label module uploads masks
    items.append({"image": items[1]["image"], "label": str(tmp_path / "slicer.nii.gz")})
    path, skipped, _ = mask_datalist(items, ["background", "lesion"], tmp_path / "d.json", 0.2, 0)
    data = json.loads(path.read_text())
    assert len(data["train"]) + len(data["validation"]) == 3
    assert "mask size 40x60 (width x height) differs from its image's 60x40" in skipped[items[3]["label"]]
    assert "broken_mask.png" in skipped[str(tmp_path / "broken_mask.png")]
    assert "a label map (slicer.nii.gz), as 3D Slicer saves them, is not read: save 2-D masks as PNG" in \
        skipped[str(tmp_path / "slicer.nii.gz")]
    with pytest.raises(ValueError, match=r"found 0; 3 label\(s\) skipped: .*turned_mask.png: mask size"):
        mask_datalist(items[3:], ["background", "lesion"], tmp_path / "d.json", 0.2, 0)


@pytest.mark.parametrize("share, encoding, suspect", [
    (0.96, "binary", True),    # inverted: a white background around a small black lesion
    (0.91, "binary", True),
    (0.5, "binary", False),    # a large lesion
    (0.96, "index", False),    # class indices: no inverted background to suspect, as the bundle's reader
], ids=["inverted", "just-over", "half", "index"])
def test_a_mostly_lesion_mask_trains_and_is_named_as_suspect(tmp_path, share, encoding, suspect) -> None:
    """A mask inverted by its export (90 % lesion and more) was trained on with a warning in the training process's
    log alone: the summary annotators read (``suspect_labels``) now names it, with the reason; it is not refused."""
    items = [write_case(tmp_path, f"case{i}", (40, 60)) for i in range(3)]
    if encoding == "index":
        for item in items:
            cv2.imwrite(item["label"], (cv2.imread(item["label"], cv2.IMREAD_UNCHANGED) > 0).astype(np.uint8))
    mask = np.zeros((40, 60), np.uint8)
    mask.flat[:round(share * mask.size)] = 255 if encoding == "binary" else 1
    cv2.imwrite(str(tmp_path / "white_mask.png"), mask)
    items.append({"image": items[0]["image"], "label": str(tmp_path / "white_mask.png")})
    path, skipped, suspects = mask_datalist(items, ["background", "lesion"], tmp_path / "d.json", 0.2, 0, encoding)
    data = json.loads(path.read_text())
    assert skipped == {} and len(data["train"]) + len(data["validation"]) == 4  # trained on, not refused
    assert list(suspects) == ([str(tmp_path / "white_mask.png")] if suspect else [])
    if suspect:
        assert suspects[str(tmp_path / "white_mask.png")].startswith(f"{share:.1%} of this binary mask is lesion: is "
                                                                     "it inverted")


def test_masks_are_checked_in_the_encoding_the_served_model_trains_with(tmp_path) -> None:
    """A multi-class (class-index) segmenter: a 0/255 mask passed the binary pre-check and was counted, then the
    bundle refused it ("255 is not a class index")."""
    items = [write_case(tmp_path, f"case{i}", (40, 60)) for i in range(2)]  # 0/255 masks
    for i in range(2, 5):
        mask = np.zeros((40, 60), np.uint8)
        mask[10:20, 10:20] = 1 + i % 2                                       # class indices 1 and 2
        cv2.imwrite(str(tmp_path / f"index{i}_mask.png"), mask)
        cv2.imwrite(str(tmp_path / f"index{i}.png"), np.full((40, 60), 90, np.uint8))
        items.append({"image": str(tmp_path / f"index{i}.png"), "label": str(tmp_path / f"index{i}_mask.png")})
    names = ["background", "solid", "cystic"]
    path, skipped, _ = mask_datalist(items, names, tmp_path / "d.json", 0.2, 0, encoding="index")
    data = json.loads(path.read_text())
    assert sorted(it["id"] for it in data["train"] + data["validation"]) == ["index2", "index3", "index4"]
    assert sorted(Path(label).name for label in skipped) == ["case0_mask.png", "case1_mask.png"]


@pytest.mark.parametrize("names, recorded, expected", [
    (["background", "solid", "cystic"], "binary", "index"),  # an MMOTU-style model: the app saves index masks
    (["background", "solid", "cystic"], "index", "index"),
    (["background", "lesion"], "index", "index"),
    (["background", "lesion"], "binary", "binary"),
    (["background", "lesion"], None, "binary"),
])
def test_the_apps_fine_tuning_reads_masks_as_the_app_saves_them(tmp_path, names, recorded, expected) -> None:
    """A served multi-class model recorded as binary once had the app's masks read as one class (now the bundle
    refuses that before training, which the app's user could not act on)."""
    from monai_ext.apps.label.segment_model import app_mask_encoding
    from monai_ext.networks.checkpoints import save_model_checkpoint
    from monai_ext.networks.segmentation import build_segmenter

    tiny = "mae_vit_tiny_patch16_dec128d2b"
    config = {"arch": tiny, "image_size": 64, "class_names": names,
              **({"mask_encoding": recorded} if recorded else {})}
    save_model_checkpoint(tmp_path / "m.pt", build_segmenter(tiny, len(names), img_size=64, feature_size=8),
                          "segmenter", config)
    assert app_mask_encoding(tmp_path / "m.pt", names) == expected


def write_sideways(path: Path, shape: tuple[int, int], orientation: int) -> np.ndarray:
    """A JPEG stored as ``shape`` (H, W) with EXIF ``orientation`` (a phone's photograph of the scanner's screen):
    bright, with a dark lesion in one corner of its stored pixels. Returns the lesion's mask on the stored grid."""
    stored = np.full(shape, 200, np.uint8)
    stored[5:25, 5:30] = 20
    exif = Image.new("L", (1, 1)).getexif()
    exif[0x0112] = orientation
    Image.fromarray(stored).save(path, exif=exif.tobytes(), quality=100)
    return (stored < 100).astype(np.uint8)


class DarkIsLesion(torch.nn.Module):
    """The segmenter's stand-in: two-class logits, the lesion where the pixel is dark. (N, 1, H, W) -> (N, 2, H, W)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x - 0.5, 0.5 - x], dim=1)


@pytest.mark.parametrize("shape", [(77, 123), (64, 64)], ids=["non-square", "square"])
@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_the_served_mask_lies_on_the_files_stored_grid_as_viewers_show_it(tmp_path, shape, orientation) -> None:
    """The mask of an EXIF-turned picture was served upright, 77x123 over an image 3D Slicer (ITK) shows 123x77;
    a square one turned without a sign. The network still sees the picture upright."""
    truth = write_sideways(tmp_path / "photo.jpg", shape, orientation)
    seen = []
    segmenter = BundleSegmenter(network=DarkIsLesion(), load=LoadUltrasoundImaged("image", frames_key=FRAMES_KEY),
                                preprocess=lambda item: seen.append(item["image"].shape) or item,
                                class_names=["background", "lesion"], device=torch.device("cpu"), precision="fp32",
                                checkpoint="stand-in")
    mask, summary = segmenter.segment(tmp_path / "photo.jpg")
    np.testing.assert_array_equal(mask, truth)
    assert summary["size"] == list(shape) and summary["pixels"]["lesion"] == 20 * 25
    assert seen[0][1:] == (shape[::-1] if orientation in (6, 8) else shape)  # upright for the network
    if shape == (77, 123) and orientation == 6:  # the reviewer's file, against the reader 3D Slicer is built on
        itk = pytest.importorskip("itk")
        assert tuple(itk.size(itk.imread(str(tmp_path / "photo.jpg")))) == (123, 77) == mask.shape[::-1]


def test_a_mask_on_an_exif_turned_images_stored_grid_trains_and_an_upright_one_is_named(tmp_path) -> None:
    """A mask drawn in 3D Slicer (on the stored grid) was skipped as "mask size 123x77 differs from its image's
    77x123", contradicting the file's header (123 wide); a mask drawn on the upright picture is skipped, with the
    sizes as stored and the rule. (That a square one now lines up is LoadMaskd's test, which the bundle reads with.)"""
    items = [write_case(tmp_path, f"case{i}", (40, 60)) for i in range(2)]
    truth = write_sideways(tmp_path / "sideways.jpg", (77, 123), 6)
    cv2.imwrite(str(tmp_path / "sideways_mask.png"), truth * 255)  # as 3D Slicer saves it: on the stored grid
    cv2.imwrite(str(tmp_path / "upright_mask.png"), np.rot90(truth * 255, -1))  # drawn on the upright picture
    items += [{"image": str(tmp_path / "sideways.jpg"), "label": str(tmp_path / f"{name}_mask.png")}
              for name in ("sideways", "upright")]
    path, skipped, _ = mask_datalist(items, ["background", "lesion"], tmp_path / "d.json", 0.2, 0)
    data = json.loads(path.read_text())
    assert len(data["train"]) + len(data["validation"]) == 3 and list(skipped) == [str(tmp_path / "upright_mask.png")]
    assert "mask size 77x123 (width x height) differs from its image's 123x77" in skipped[items[-1]["label"]]
    assert "stored pixel grid, as 3D Slicer shows it, and take its EXIF orientation 6" in skipped[items[-1]["label"]]


def test_a_non_square_dicoms_served_mask_and_its_saved_mask_lie_on_the_stored_grid(tmp_path) -> None:
    """A DICOM of non-square pixels (PixelAspectRatio 2\\1) is segmented on square pixels (80 x 60); the served mask
    was that size over an image 3D Slicer shows 40 x 60, and a mask saved back on the stored grid was refused for
    its size. Both lie on the stored grid now."""
    import warnings

    import pydicom

    stored = np.full((1, 40, 60), 200, np.uint8)
    stored[0, 10:20, 5:25] = 20
    write_dicom_frames(stored, tmp_path / "scan.dcm")
    ds = pydicom.dcmread(tmp_path / "scan.dcm")
    ds.PixelAspectRatio = [2, 1]
    ds.save_as(tmp_path / "scan.dcm")
    seen = []
    segmenter = BundleSegmenter(network=DarkIsLesion(), load=LoadUltrasoundImaged("image", frames_key=FRAMES_KEY),
                                preprocess=lambda item: seen.append(item["image"].shape) or item,
                                class_names=["background", "lesion"], device=torch.device("cpu"), precision="fp32",
                                checkpoint="stand-in")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the reader's note that the frames are resampled
        mask, summary = segmenter.segment(tmp_path / "scan.dcm")
        cv2.imwrite(str(tmp_path / "scan_mask.png"), mask * 255)
        share = _mask_lesion_share(str(tmp_path / "scan.dcm"), str(tmp_path / "scan_mask.png"))
    np.testing.assert_array_equal(mask, (stored[0] < 100).astype(np.uint8))
    assert seen[0][1:] == (80, 60) and summary["size"] == [40, 60]
    assert share == pytest.approx(200 / 2400)


def test_the_served_summary_names_the_frame_segmented(tmp_path) -> None:
    """A volume's first slice with content is segmented (slice 3 of 5 here): the summary said "frames": 5 only, so
    a viewer laid the served 2-D mask on slice 0."""
    from tests.engines.test_segmentation import _sweep_from_slice_3

    truth = _sweep_from_slice_3(tmp_path / "sweep.nii.gz")
    segmenter = BundleSegmenter(network=DarkIsLesion(), load=LoadUltrasoundImaged("image", frames_key=FRAMES_KEY),
                                preprocess=lambda item: item, class_names=["background", "lesion"],
                                device=torch.device("cpu"), precision="fp32", checkpoint="stand-in")
    mask, summary = segmenter.segment(tmp_path / "sweep.nii.gz")
    np.testing.assert_array_equal(mask, 1 - truth)  # the stand-in's lesion is dark: slice 3's
    assert (summary["frames"], summary["frame"]) == (5, 3)
