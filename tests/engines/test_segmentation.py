"""predict_mask_files: one mask per input, also when two inputs of a recursive folder share a file name."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from monai_ext.engines.segmentation import predict_mask_files


class Threshold(torch.nn.Module):
    """Two-class logits: foreground where the pixel is bright. (N, 1, H, W) -> (N, 2, H, W)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([-x, x], dim=1)


def test_inputs_sharing_a_stem_get_their_own_masks(tmp_path):
    files = [str(tmp_path / "in" / "a" / "scan.dcm"), str(tmp_path / "in" / "b" / "scan.dcm"), "missing/other.png"]
    pixels = {files[0]: np.tile(np.linspace(-1, 1, 8, dtype=np.float32), (6, 1)), files[1]: -np.ones((6, 8), np.float32)}

    def load(item):
        if item["image"] not in pixels:
            raise FileNotFoundError(item["image"])
        return {"image": pixels[item["image"]][None]}

    result = predict_mask_files(Threshold(), files, load, lambda item: item, ["background", "lesion"], "cpu",
                                tmp_path / "out")
    masks = {path: entry["mask"] for path, entry in result["masks"].items()}
    assert len(set(masks.values())) == 2 and set(masks) == set(files[:2])
    assert [entry["pixels"]["lesion"] > 0 for entry in result["masks"].values()] == [True, False]
    assert "missing/other.png" in result["errors"]
    assert json.loads((tmp_path / "out" / "masks.json").read_text())["masks"] == result["masks"]
    # the uniform image is flagged, the gradient is not
    assert "warning" not in result["masks"][files[0]] and result["masks"][files[1]]["warning"].startswith("blank image")


LONG = "超" * 80  # 240 bytes in UTF-8: a name the filesystem takes, whose outputs' names it would not


def bright_or_dark(item: dict) -> dict:
    """The loader stand-in: (1, 6, 8) bright for ``z_`` names, dark otherwise; no file is read."""
    return {"image": np.full((1, 6, 8), 1.0 if "z_" in item["image"] else -1.0, np.float32)}


def test_a_name_too_long_for_its_mask_still_gets_one_and_every_output_is_written(tmp_path):
    files = [str(tmp_path / "in" / n) for n in ("a_first.png", f"{LONG}.png", "z_last.png")]
    result = predict_mask_files(Threshold(), files, bright_or_dark, lambda item: item, ["background", "lesion"], "cpu",
                                tmp_path / "out", overlays=True)
    assert set(result["masks"]) == set(files) and result["errors"] == {}
    assert len(list((tmp_path / "out" / "masks").iterdir())) == len(list((tmp_path / "out" / "overlays").iterdir())) == 3
    assert json.loads((tmp_path / "out" / "masks.json").read_text()) == result


def test_a_failed_mask_write_is_listed_and_the_batch_goes_on(tmp_path, monkeypatch):
    import errno

    from monai_ext.engines import segmentation

    def full_disk_for_the_long_name(image: np.ndarray, path, spacing=None) -> None:
        if LONG[:10] in path.name:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"png")

    monkeypatch.setattr(segmentation, "save_label_map", full_disk_for_the_long_name)
    files = [str(tmp_path / "in" / n) for n in ("a_first.png", f"{LONG}.png", "z_last.png")]
    result = predict_mask_files(Threshold(), files, bright_or_dark, lambda item: item, ["background", "lesion"], "cpu",
                                tmp_path / "out")
    assert set(result["masks"]) == {files[0], files[2]} and list(result["errors"]) == [files[1]]
    assert "No space left" in result["errors"][files[1]]
    assert json.loads((tmp_path / "out" / "masks.json").read_text()) == result


@pytest.mark.parametrize("taken", ["out", "out/masks", "out/overlays"])
def test_an_output_folder_that_is_a_file_fails_before_any_image_is_segmented(tmp_path, taken: str):
    (tmp_path / taken).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / taken).write_text("a file where the outputs go")
    read: list[str] = []

    def counting(item: dict) -> dict:
        read.append(item["image"])
        return bright_or_dark(item)

    with pytest.raises(FileExistsError, match=taken):
        predict_mask_files(Threshold(), ["a.png", "b.png"], counting, lambda item: item, ["background", "lesion"],
                           "cpu", tmp_path / "out", overlays=True)
    assert read == []


def test_a_stopped_batch_keeps_the_masks_made(tmp_path):
    """Ctrl-C on file 3 of 4: the masks written so far are listed in masks.json, marked incomplete."""
    files = [f"scan_{i}.png" for i in range(4)]

    def stops_at_the_third(item: dict) -> dict:
        if item["image"] == files[2]:
            raise KeyboardInterrupt
        return bright_or_dark(item)

    with pytest.raises(KeyboardInterrupt):
        predict_mask_files(Threshold(), files, stops_at_the_third, lambda item: item, ["background", "lesion"], "cpu",
                           tmp_path / "out", weights="/models/model.pt")
    kept = json.loads((tmp_path / "out" / "masks.json").read_text())
    assert list(kept["masks"]) == files[:2] and kept["complete"] is False and kept["weights"] == "/models/model.pt"


def test_a_rerun_where_a_file_fails_leaves_no_earlier_mask_of_it(tmp_path):
    """Run twice into one folder; the second time one input no longer reads (replaced by a broken copy): masks.json
    lists it under errors, and its first-run mask and overlay are gone, not left to be taken for this run's."""
    files = [str(tmp_path / "in" / "a_first.png"), str(tmp_path / "in" / "z_last.png")]
    broken: set[str] = set()

    def load(item: dict) -> dict:
        if item["image"] in broken:
            raise ValueError(f"{item['image']}: cannot decode")
        return bright_or_dark(item)

    def run() -> dict:
        return predict_mask_files(Threshold(), files, load, lambda item: item, ["background", "lesion"], "cpu",
                                  tmp_path / "out", overlays=True)

    first = run()
    kept, gone = first["masks"][files[0]]["mask"], first["masks"][files[1]]["mask"]
    broken.add(files[1])
    second = run()
    assert list(second["errors"]) == [files[1]] and set(second["masks"]) == {files[0]}
    assert Path(kept).is_file() and not Path(gone).exists()
    assert sorted(p.name for p in (tmp_path / "out" / "overlays").iterdir()) == ["a_first_overlay.png"]


def test_a_rerun_on_other_inputs_leaves_no_earlier_mask_or_overlay_and_keeps_the_users_files(tmp_path):
    """Masks and overlays of another batch (or another model) stayed beside this run's under names that look like
    its own; what the earlier masks.json lists goes, any other file in the folders stays."""
    out = tmp_path / "out"
    first = [str(tmp_path / "in" / n) for n in ("a_first.png", "z_last.png")]
    predict_mask_files(Threshold(), first, bright_or_dark, lambda item: item, ["background", "lesion"], "cpu", out,
                       overlays=True)
    (out / "masks" / "truth_mask.png").write_bytes(b"the user's own mask, never listed")
    second = [str(tmp_path / "in" / "b_other.png")]
    predict_mask_files(Threshold(), second, bright_or_dark, lambda item: item, ["background", "lesion"], "cpu", out,
                       overlays=True)
    assert sorted(p.name for p in (out / "masks").iterdir()) == ["b_other_mask.png", "truth_mask.png"]
    assert sorted(p.name for p in (out / "overlays").iterdir()) == ["b_other_overlay.png"]


def test_a_rerun_from_another_folder_with_a_relative_output_dir_clears_the_earlier_masks(tmp_path, monkeypatch):
    """masks.json listed its masks relative to the first run's working folder: a rerun started elsewhere resolved
    them against its own, found nothing to clear, and left the first batch's masks beside a JSON not listing them."""
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    first = [str(tmp_path / "in" / n) for n in ("a_first.png", "z_last.png")]
    result = predict_mask_files(Threshold(), first, bright_or_dark, lambda item: item, ["background", "lesion"],
                                "cpu", "out")
    assert all(Path(entry["mask"]).is_absolute() for entry in result["masks"].values())
    monkeypatch.chdir(tmp_path)
    predict_mask_files(Threshold(), [str(tmp_path / "in" / "b_other.png")], bright_or_dark, lambda item: item,
                       ["background", "lesion"], "cpu", tmp_path / "work" / "out")
    assert sorted(p.name for p in (tmp_path / "work" / "out" / "masks").iterdir()) == ["b_other_mask.png"]


def test_a_rerun_through_a_linked_spelling_of_the_output_folder_clears_the_earlier_masks(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    first = [str(tmp_path / "in" / n) for n in ("a_first.png", "z_last.png")]
    predict_mask_files(Threshold(), first, bright_or_dark, lambda item: item, ["background", "lesion"], "cpu",
                       tmp_path / "link" / "out")
    predict_mask_files(Threshold(), [str(tmp_path / "in" / "b_other.png")], bright_or_dark, lambda item: item,
                       ["background", "lesion"], "cpu", tmp_path / "real" / "out")
    assert sorted(p.name for p in (tmp_path / "real" / "out" / "masks").iterdir()) == ["b_other_mask.png"]


def test_a_network_giving_nan_is_an_error_per_file_not_an_empty_mask(tmp_path):
    """NaN logits are background everywhere: every image was segmented as "no lesion" and the run ended well."""
    class Broken(Threshold):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            logits = super().forward(x)
            return logits if float(x.mean()) > 0 else torch.full_like(logits, float("nan"))

    files = [str(tmp_path / "in" / "a_dark.png"), str(tmp_path / "in" / "z_bright.png")]
    result = predict_mask_files(Broken(), files, bright_or_dark, lambda item: item, ["background", "lesion"], "cpu",
                                tmp_path / "out")
    assert list(result["masks"]) == [files[1]]
    assert result["errors"][files[0]].startswith("the network's output holds NaN or inf")
    assert sorted(p.name for p in (tmp_path / "out" / "masks").iterdir()) == ["z_bright_mask.png"]


@pytest.mark.parametrize("mask, refused", [
    (np.array([[0, 1], [1, 0]], np.uint8), False),
    (np.array([[0, 0], [0, 0]], np.uint8), False),   # a class absent from the mask counts 0 pixels
    (np.array([[0, 1], [2, 0]], np.uint8), True),    # a network of 3 classes: its third was left out, unsaid
])
def test_mask_summary_refuses_a_class_index_with_no_name(mask: np.ndarray, refused: bool) -> None:
    from monai_ext.engines.segmentation import mask_summary

    names = ["background", "lesion"]
    if refused:
        with pytest.raises(ValueError, match=r"class index 2, but only 2 classes are named, "
                                             r"\['background', 'lesion'\]"):
            mask_summary(mask, names)
    else:
        summary = mask_summary(mask, names)
        assert sum(summary["fraction"].values()) == 1.0 and list(summary["pixels"]) == names


@pytest.mark.parametrize("shape", [(40, 60), (48, 48)], ids=["non-square", "square"])
@pytest.mark.parametrize("orientation", [2, 3, 5, 6, 7, 8])
def test_a_mask_is_written_on_the_files_stored_grid_and_its_overlay_upright(tmp_path, shape, orientation) -> None:
    """A picture stored sideways with an EXIF orientation is segmented upright; 3D Slicer (ITK) and OHIF show it as
    stored and laid the upright mask over it turned (a square one without a sign), so the mask file is turned back
    while the overlay, a picture of its own, stays upright."""
    from PIL import Image

    from monai_ext.io.images import read_image
    from monai_ext.transforms.loading import LoadUltrasoundImaged

    stored = np.zeros(shape, np.uint8)
    stored[2:12, 3:20] = 255  # the lesion, in one corner of the stored pixels
    exif = Image.new("L", (1, 1)).getexif()
    exif[0x0112] = orientation
    path = tmp_path / "photo.png"
    Image.fromarray(stored).save(path, exif=exif.tobytes())
    result = predict_mask_files(Threshold(), [str(path)], LoadUltrasoundImaged("image"),
                                lambda item: {"image": item["image"] - 0.5}, ["background", "lesion"], "cpu",
                                tmp_path / "out", "fp32", overlays=True)
    entry = result["masks"][str(path)]
    np.testing.assert_array_equal(cv2.imread(entry["mask"], cv2.IMREAD_UNCHANGED), stored // 255)
    assert entry["size"] == list(shape) and entry["pixels"]["lesion"] == 10 * 17
    overlay = cv2.imread(str(tmp_path / "out" / "overlays" / "photo_overlay.png"))
    assert overlay.shape[:2] == read_image(path).pixels.shape



@pytest.mark.parametrize(("dtype", "background", "lesion"), [
    (np.uint8, 30, 60),      # a dim scan: stretched to its own maximum, it was drawn twice as bright
    (np.uint8, 40, None),    # a uniform dark picture: drawn pure white
    (np.uint16, 30, 60),     # 16-bit: the loader's [0, 1] values, 30 * 257 / 65535 is 30 of 255
], ids=["dim", "uniform", "16-bit"])
def test_an_inference_overlay_shows_the_image_as_it_is(tmp_path, dtype, background: int, lesion: int | None) -> None:
    """The overlay is a picture for people: outside the mask it holds the file's own gray, not a stretch of it."""
    from PIL import Image

    from monai_ext.transforms.loading import LoadUltrasoundImaged

    scale = 257 if dtype == np.uint16 else 1
    pixels = np.full((40, 60), background * scale, dtype)
    if lesion is not None:
        pixels[10:25, 20:45] = lesion * scale
    path = tmp_path / "scan.png"
    Image.fromarray(pixels).save(path)
    threshold = (background + (lesion or 255)) / 2 / 255  # the lesion, if any, is foreground
    result = predict_mask_files(Threshold(), [str(path)], LoadUltrasoundImaged("image"),
                                lambda item: {"image": item["image"] - threshold}, ["background", "lesion"], "cpu",
                                tmp_path / "out", "fp32", overlays=True)
    mask = cv2.imread(result["masks"][str(path)]["mask"], cv2.IMREAD_UNCHANGED)
    overlay = cv2.imread(str(tmp_path / "out" / "overlays" / "scan_overlay.png"))
    assert (mask > 0).sum() == (0 if lesion is None else 15 * 25)
    assert (overlay[mask == 0] == background).all()

class EpochRecorder:
    """A validation handler standing in for the best-model saver: records each completed epoch."""

    def __init__(self, seen: list[int]) -> None:
        self.seen = seen

    def attach(self, engine) -> None:
        from ignite.engine import Events

        engine.add_event_handler(Events.EPOCH_COMPLETED, lambda e: self.seen.append(e.state.epoch))


@pytest.mark.parametrize("bad_images, key_metric", [([], True), ([1], True), ([0, 1, 2], True), ([2], False)])
def test_the_evaluator_stops_a_validation_with_non_finite_outputs_before_any_handler(bad_images: list[int],
                                                                                    key_metric: bool) -> None:
    """NaN logits arg-max to background, whose Dice is 0.0: a diverged fine-tune ended well, its model saved and
    published. Now the epoch fails before the best-model choice and the handlers (here: one that records epochs)."""
    from monai.data import DataLoader
    from monai.handlers import from_engine
    from monai.transforms import AsDiscreted

    from monai_ext.engines.segmentation import SegmentationEvaluator
    from monai_ext.handlers.metric_values import MeanDiceOrNaN

    images = torch.rand(3, 1, 8, 8) - 0.5
    images[bad_images, 0, 0, 0] = float("inf")  # inf - inf in the logits of those images: NaN, as diverged weights
    data = [{"image": image, "label": (image > 0).long()} for image in images]
    seen: list[int] = []
    metric = {"val_mean_dice": MeanDiceOrNaN(include_background=False,
                                             output_transform=from_engine(["pred", "label"]))}
    evaluator = SegmentationEvaluator(
        device="cpu", val_data_loader=DataLoader(data, batch_size=2), network=Threshold(),
        postprocessing=AsDiscreted(keys=["pred", "label"], argmax=[True, False], to_onehot=2),
        key_val_metric=metric if key_metric else None,
        val_handlers=[EpochRecorder(seen)])
    if not bad_images:
        evaluator.run()
        assert seen == [1] and evaluator.state.metrics["val_mean_dice"] == pytest.approx(1.0)
        return
    with pytest.raises(ValueError, match=rf"not finite \(NaN or inf\) for {len(bad_images)} of 3 images: .*lower "
                                         r"the learning rate"):
        evaluator.run()
    assert seen == [] and evaluator.state.best_metric_epoch == -1


@pytest.mark.parametrize("overlays", [False, True])
def test_a_killed_runs_masks_do_not_survive_a_rerun(tmp_path, overlays, monkeypatch) -> None:
    """masks.json is written from time to time, a mask after every file: a run killed outright (SIGKILL) left
    masks (and overlays) its JSON does not list, and a rerun on other inputs kept them beside its own."""
    from tests.engines.test_inference import killed_outright, stopping_at

    files = [f"scan_{i}.png" for i in range(4)]
    out = tmp_path / "out"
    (out / "masks").mkdir(parents=True)
    (out / "masks" / "benign (1)_mask.png").write_bytes(b"a user's own ground truth, BUSI's name pattern")
    with killed_outright(monkeypatch):
        predict_mask_files(Threshold(), files, stopping_at(files[3], bright_or_dark), lambda item: item,
                           ["background", "lesion"], "cpu", out, overlays=overlays)
    assert json.loads((out / "masks.json").read_text())["masks"] == {} and len(list((out / "masks").iterdir())) == 4
    (out / "masks" / "notes.txt").write_text("a user's file, not a mask")
    predict_mask_files(Threshold(), ["other.png"], bright_or_dark, lambda item: item, ["background", "lesion"], "cpu",
                       out, overlays=overlays)
    assert sorted(p.name for p in (out / "masks").iterdir()) == ["benign (1)_mask.png", "notes.txt", "other_mask.png"]
    if overlays:
        assert sorted(p.name for p in (out / "overlays").iterdir()) == ["other_overlay.png"]


def _non_square_dicom(path, ratio: list[int]) -> np.ndarray:
    """A 40 x 60 DICOM whose pixels are ``ratio`` (row \\ column spacing) apart, a bright lesion in it; returns the
    lesion's mask on the stored grid."""
    import pydicom

    from monai_ext.io.writers import write_dicom_frames

    stored = np.zeros((1, 40, 60), np.uint8)
    stored[0, 10:20, 5:25] = 255
    write_dicom_frames(stored, path)
    ds = pydicom.dcmread(path)
    ds.PixelAspectRatio = ratio
    ds.save_as(path)
    return stored[0] // 255


@pytest.mark.parametrize("ratio", [[2, 1], [1, 2]])
def test_a_dicoms_mask_is_written_on_its_stored_grid_when_its_pixels_are_not_square(tmp_path, ratio) -> None:
    """A DICOM of non-square pixels is read resampled to square ones (80 x 60 for 2\\1): its mask was written at
    that size, where 3D Slicer lays a label map on the stored 40 x 60 grid. It is resampled back; the overlay, a
    picture of its own, stays on square pixels."""
    import warnings

    from monai_ext.transforms.loading import LoadUltrasoundImaged

    path = tmp_path / "scan.dcm"
    truth = _non_square_dicom(path, ratio)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the reader's note that the frames are resampled
        result = predict_mask_files(Threshold(), [str(path)], LoadUltrasoundImaged("image"),
                                    lambda item: {"image": item["image"] - 0.5}, ["background", "lesion"], "cpu",
                                    tmp_path / "out", "fp32", overlays=True)
    entry = result["masks"][str(path)]
    np.testing.assert_array_equal(cv2.imread(entry["mask"], cv2.IMREAD_UNCHANGED), truth)
    square = (80, 60) if ratio == [2, 1] else (40, 120)
    assert cv2.imread(str(tmp_path / "out" / "overlays" / "scan_overlay.png")).shape[:2] == square


def _scan_with_pixel_size(path: Path, kind: str) -> tuple[np.ndarray, tuple[float, float] | None]:
    """A 60 x 90 scan, bright with a dark lesion, written as ``kind``; (the mask :class:`Threshold` gives of it, the
    (x, y) pixel size in mm ITK reads from the file, None for 1 x 1)."""
    import pydicom

    from monai_ext.io.writers import write_dicom, write_nifti

    scan = np.full((60, 90), 200, np.uint8)
    scan[20:40, 30:60] = 20
    spacing = None
    if kind == "jpeg-72dpi":
        Image.fromarray(scan).save(path, dpi=(72, 72), quality=95)
        spacing = (25.4 / 72, 25.4 / 72)
    elif kind == "tiff-300x150dpi":
        Image.fromarray(scan).save(path, dpi=(300, 150))
        spacing = (25.4 / 300, 25.4 / 150)
    elif kind == "dicom-pixel-spacing":
        write_dicom(scan, path)
        ds = pydicom.dcmread(path)
        ds.PixelSpacing = [0.2, 0.1]  # rows, columns
        ds.save_as(path)
        spacing = (0.1, 0.2)
    elif kind == "png-72dpi":  # ITK ignores a PNG's resolution: 1 x 1, as a PNG mask's
        Image.fromarray(scan).save(path, dpi=(72, 72))
    else:  # a volume's mask is on its displayed plane, not ITK's grid: no pixel size claimed
        write_nifti(scan, path)
    return (scan > 127).astype(np.uint8), spacing


def _load_and_centre(item: dict) -> dict:
    """The bundle's loading (every record), and the image centred for :class:`Threshold`."""
    from monai_ext.engines.inference import FRAMES_KEY, ORIENTATION_KEY
    from monai_ext.transforms.loading import LoadUltrasoundImaged

    return LoadUltrasoundImaged("image", frames_key=FRAMES_KEY, orientation_key=ORIENTATION_KEY)(item)


def _centred(item: dict) -> dict:
    return {**item, "image": item["image"] - 0.5}


@pytest.mark.parametrize(("kind", "name"), [
    ("jpeg-72dpi", "scan.jpg"), ("tiff-300x150dpi", "scan.tif"), ("dicom-pixel-spacing", "scan.dcm"),
    ("png-72dpi", "scan.png"), ("nifti", "scan.nii.gz"),
])
def test_a_batch_mask_lies_where_3d_slicer_places_its_image(tmp_path, kind: str, name: str) -> None:
    """3D Slicer places an image by ITK's pixel size (a 72-dpi JPEG at 0.353 mm a pixel, a DICOM at its
    PixelSpacing) and a PNG label map at 1 mm a pixel: the batch's masks covered several times their image, where
    the MONAI Label app's served ones lay right. A batch mask is the served one: a TIFF of the image's pixel size,
    its class indices unchanged; a PNG where ITK reads none."""
    itk = pytest.importorskip("itk")
    image = tmp_path / "in" / name
    image.parent.mkdir()
    truth, spacing = _scan_with_pixel_size(image, kind)
    result = predict_mask_files(Threshold(), [str(image)], _load_and_centre, _centred, ["background", "lesion"], "cpu",
                                tmp_path / "out", "fp32", overlays=True)
    entry = result["masks"][str(image)]
    mask_file = Path(entry["mask"])
    assert mask_file == tmp_path / "out" / "masks" / ("scan_mask.png" if spacing is None else "scan_mask.tif")
    assert sorted(p.name for p in (tmp_path / "out" / "masks").iterdir()) == [mask_file.name]
    assert (tmp_path / "out" / "overlays" / "scan_overlay.png").is_file()
    label = itk.imread(str(mask_file))
    np.testing.assert_array_equal(itk.array_from_image(label), truth)
    if spacing is None:
        assert tuple(label.GetSpacing()) == (1.0, 1.0) and "pixel_spacing_mm" not in entry
    else:
        assert tuple(label.GetSpacing()) == pytest.approx(tuple(itk.imread(str(image)).GetSpacing())[:2], rel=1e-6)
        assert entry["pixel_spacing_mm"] == pytest.approx([spacing[1], spacing[0]], rel=1e-5)


def test_a_rerun_replaces_a_mask_of_the_other_format_and_keeps_the_users_files(tmp_path) -> None:
    """One stem, first a PNG (a PNG mask), then a 72-dpi JPEG (a TIFF mask), then the PNG again: each run's mask
    replaces the other's, listed by the earlier masks.json or not (a masks.json deleted), and a user's own masks
    under other names stay."""
    out = tmp_path / "out"
    png, jpeg = tmp_path / "a" / "scan.png", tmp_path / "b" / "scan.jpg"
    for path, kind in ((png, "png-72dpi"), (jpeg, "jpeg-72dpi")):
        path.parent.mkdir()
        _scan_with_pixel_size(path, kind)
    (out / "masks").mkdir(parents=True)
    for own in ("truth_mask.png", "truth_mask.tif"):
        (out / "masks" / own).write_bytes(b"a user's own mask, never listed")

    def run(image: Path) -> list[str]:
        predict_mask_files(Threshold(), [str(image)], _load_and_centre, _centred, ["background", "lesion"], "cpu",
                           out, "fp32", overlays=True)
        assert sorted(p.name for p in (out / "overlays").iterdir()) == ["scan_overlay.png"]
        return sorted(p.name for p in (out / "masks").iterdir())

    assert run(png) == ["scan_mask.png", "truth_mask.png", "truth_mask.tif"]
    assert run(jpeg) == ["scan_mask.tif", "truth_mask.png", "truth_mask.tif"]
    assert run(png) == ["scan_mask.png", "truth_mask.png", "truth_mask.tif"]
    (out / "masks.json").unlink()  # nothing lists the PNG now: it is at the name of this input's mask all the same
    assert run(jpeg) == ["scan_mask.tif", "truth_mask.png", "truth_mask.tif"]


def test_a_killed_runs_tiff_masks_do_not_survive_a_rerun(tmp_path, monkeypatch) -> None:
    """A run killed outright names, under pending_outputs, every mask it may write: a TIFF one too, whose suffix
    is known only once its image is read."""
    from tests.engines.test_inference import killed_outright, stopping_at

    files = [str(tmp_path / "in" / f"scan_{i}.jpg") for i in range(3)]
    (tmp_path / "in").mkdir()
    for path in files:
        _scan_with_pixel_size(Path(path), "jpeg-72dpi")
    out = tmp_path / "out"
    (out / "masks").mkdir(parents=True)
    (out / "masks" / "benign (1)_mask.tif").write_bytes(b"a user's own ground truth")
    with killed_outright(monkeypatch):
        predict_mask_files(Threshold(), files, stopping_at(files[2], _load_and_centre), _centred,
                           ["background", "lesion"], "cpu", out, "fp32")
    assert sorted(p.name for p in (out / "masks").iterdir()) == ["benign (1)_mask.tif", "scan_0_mask.tif",
                                                                 "scan_1_mask.tif"]
    predict_mask_files(Threshold(), ["other.png"], bright_or_dark, lambda item: item, ["background", "lesion"], "cpu",
                       out)
    assert sorted(p.name for p in (out / "masks").iterdir()) == ["benign (1)_mask.tif", "other_mask.png"]


def _sweep_from_slice_3(path: Path) -> np.ndarray:
    """A NIfTI sweep of 5 slices, the first 3 empty (outside the scanned region), slice 3 a scan with a dark lesion;
    returns the mask :class:`Threshold` gives of slice 3 as it is shown."""
    import nibabel as nib

    from monai_ext.io.writers import LPS_AFFINE

    scan = np.full((60, 90), 200, np.uint8)
    scan[20:40, 30:60] = 20
    volume = np.zeros((90, 60, 5), np.uint8)  # (x, y, z): rows are y
    volume[:, :, 3] = scan.T
    volume[:, :, 4] = 120
    nib.save(nib.Nifti1Image(volume, LPS_AFFINE), path)
    return (scan > 127).astype(np.uint8)


@pytest.mark.parametrize(("kind", "frames", "frame"), [
    ("sweep_from_slice_3", 5, 3), ("nifti_5_slices", 5, 0), ("mha_5_slices", 5, 0), ("nifti_cine_6", 6, 0),
    ("dicom_loop", 3, 0), ("tiff_3_pages_and_a_thumbnail", 3, 0), ("gif_4", 4, 0), ("avi_7", 7, 0), ("png", 1, None),
])
def test_a_mask_of_a_file_of_several_frames_names_the_frame_it_is_of(tmp_path, caplog, kind, frames, frame) -> None:
    """A volume's first slice with content is segmented, not slice 0, and masks.json said only "frames": 5, so a
    viewer laid the 2-D mask on slice 0. The entry names the frame: 0 for a loop, a multi-frame DICOM or picture."""
    from tests.io.test_images import _frames_file

    if kind == "sweep_from_slice_3":
        path = str(tmp_path / "sweep.nii.gz")
        truth = _sweep_from_slice_3(Path(path))
    else:
        path = _frames_file(kind, tmp_path)
    with caplog.at_level("WARNING"):
        result = predict_mask_files(Threshold(), [path], _load_and_centre, _centred, ["background", "lesion"], "cpu",
                                    tmp_path / "out", "fp32")
    entry = result["masks"][path]
    assert (entry.get("frames"), entry.get("frame")) == ((frames, frame) if frame is not None else (None, None))
    assert json.loads((tmp_path / "out" / "masks.json").read_text())["masks"][path] == entry
    if kind == "sweep_from_slice_3":  # the mask is slice 3's, and the log says so
        np.testing.assert_array_equal(cv2.imread(entry["mask"], cv2.IMREAD_UNCHANGED), truth)
        assert f"{path}: holds 5 frames; the output is of frame 3, the volume's first slice with content" in caplog.text


def test_a_header_read_failing_for_the_stored_grid_fails_that_file_not_the_batch(tmp_path, monkeypatch) -> None:
    """The stored grid is read again from the file's header after its pixels: where that read fails (the file
    replaced since), that file is an error of the batch, and the batch goes on (it stopped there)."""
    import warnings

    import monai_ext.io.images as images
    from monai_ext.io.errors import UnreadableImageError
    from monai_ext.transforms.loading import LoadUltrasoundImaged

    first, second = tmp_path / "first.dcm", tmp_path / "second.dcm"
    _non_square_dicom(first, [2, 1])
    truth = _non_square_dicom(second, [2, 1])
    header = images.read_dicom_header

    def failing_for_the_first(path):
        if Path(path).name == "first.dcm":
            raise UnreadableImageError(f"{path}: not a DICOM file")
        return header(path)

    monkeypatch.setattr(images, "read_dicom_header", failing_for_the_first)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the reader's note that the frames are resampled
        result = predict_mask_files(Threshold(), [str(first), str(second)], LoadUltrasoundImaged("image"),
                                    lambda item: {"image": item["image"] - 0.5}, ["background", "lesion"], "cpu",
                                    tmp_path / "out", "fp32")
    assert list(result["masks"]) == [str(second)]
    assert "not a DICOM file" in str(result["errors"])
    np.testing.assert_array_equal(cv2.imread(result["masks"][str(second)]["mask"], cv2.IMREAD_UNCHANGED), truth)
