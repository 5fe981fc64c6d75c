"""The segmentation bundle end to end: released-layout init with the exact new and dropped keys, per-image reports,
evaluate parity with training, inference at the original size, verify_net_in_out and verify_metadata."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

from monai_ext.data.datalists import write_split
from monai_ext.data.segmentation import synthetic_segmentation_protocol
from monai_ext.io.writers import write_dicom_frames
from monai_ext.networks import build_from_checkpoint
from monai_ext.networks.checkpoints import read_checkpoint, sha256_of
from monai_ext.networks.mae import build_mae
from monai_ext.transforms import IMAGENET_MEAN, IMAGENET_STD
from tests.bundles.helpers import REPO, SEGMENT, bundle_command, run_bundle, tiny_segment_overrides
from tests.warm_python import run_python

pytestmark = pytest.mark.slow
TRAIN = "bundles/usf_mae_segment/configs/train.yaml"
EVALUATE = "bundles/usf_mae_segment/configs/evaluate.yaml"
INFERENCE = "bundles/usf_mae_segment/configs/inference.yaml"
META = str(SEGMENT / "configs" / "metadata.json")


@pytest.fixture(scope="module")
def cache(module_tmp):
    return module_tmp("segment_cache")


@pytest.fixture(scope="module")
def trained(module_tmp, cache):
    """Two epochs from a tiny MAE saved as a plain state dict (the released USF-MAE file's layout)."""
    out = module_tmp("segment")
    released = out / "usf_mae_tiny.pth"
    torch.save(build_mae("mae_vit_tiny_patch16_dec128d2b", img_size=64).state_dict(), released)
    result = run_bundle([TRAIN], tiny_segment_overrides(out, cache, init_checkpoint=str(released)))
    return out, result


def test_released_layout_init_reports_exactly_the_new_decoder_and_the_dropped_mae_decoder(trained) -> None:
    out, result = trained
    line = next(x for x in (result.stdout + result.stderr).splitlines() if "initial weights:" in x)
    assert "layout=usf_mae" in line
    assert "(decoder2, decoder3, decoder4, decoder5, encoder1, encoder2, encoder3, encoder4, out)" in line
    assert "dropped=32 (decoder_blocks, decoder_embed, decoder_norm, decoder_pos_embed, decoder_pred, mask_token)" in line
    history = json.loads((out / "eval" / "metrics.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2]
    assert {"val_mean_dice", "val_mean_iou", "val_hd95"} <= set(history[0])
    assert read_checkpoint(out / "models" / "model.pt")["arch"]["kind"] == "segmenter"


def test_evaluate_reproduces_the_best_validation_dice_of_training(trained, cache) -> None:
    out, _ = trained
    best = read_checkpoint(out / "models" / "model.pt")["val_mean_dice"]
    history = json.loads((out / "eval" / "metrics.json").read_text())
    assert best == pytest.approx(max(h["val_mean_dice"] for h in history), abs=1e-9)
    run_bundle([TRAIN, EVALUATE], tiny_segment_overrides(out, cache, eval_split="validation"))
    report = json.loads((out / "eval" / "validation_report.json").read_text())
    assert report["score"] == pytest.approx(best, abs=1e-6) and report["key_metric"] == "validation_mean_dice"
    # HD95 in the history is the report's mean over defined distances, null where no image had one (MONAI's own
    # mean over no values is 0.0, a perfect distance)
    at_best = next(h for h in history if h["val_mean_dice"] == pytest.approx(best, abs=1e-9))
    if report["mean_hd95"] is None:
        assert at_best["val_hd95"] is None
    else:
        assert at_best["val_hd95"] == pytest.approx(report["mean_hd95"], rel=1e-5)


def test_test_report_has_every_test_image_and_overlays(trained, cache) -> None:
    out, _ = trained
    result = run_bundle([TRAIN, EVALUATE], tiny_segment_overrides(out, cache))
    assert "test Dice" in result.stdout
    report = json.loads((out / "eval" / "test_report.json").read_text())
    # named by the part scored, as the classification bundle's test_macro_f1: the log said "Got new best metric of
    # val_mean_dice" of a test score, and the report and MLflow recorded it as a validation
    log = result.stdout + result.stderr
    assert report["key_metric"] == "test_mean_dice" and "Got new best metric of test_mean_dice" in log
    assert "test_mean_iou" in log and "test_hd95" in log and "val_mean_dice" not in log
    expected = [it["id"] for it in synthetic_segmentation_protocol(cache, 20, 42, 14).splits[0]["test"]]
    assert [e["id"] for e in report["per_image"]] == expected and report["n"] == 4
    assert set(report["per_class"]) == {"lesion"} and set(report["per_image"][0]) == {"id", "dice", "iou", "hd95"}
    overlays = sorted((out / "eval" / "test_overlays").iterdir())
    assert len(overlays) == 2 and cv2.imread(str(overlays[0])).shape == (192, 384, 3)  # 64 px enlarged 3x


def _expected_mask(network: torch.nn.Module, gray: np.ndarray) -> np.ndarray:
    """Independent reference at the training size: [0, 1] gray to 3 ImageNet-normalised channels, arg-max."""
    x = torch.as_tensor(gray, dtype=torch.float32)[None].repeat(3, 1, 1) / 255.0
    x = (x - torch.tensor(IMAGENET_MEAN)[:, None, None]) / torch.tensor(IMAGENET_STD)[:, None, None]
    with torch.no_grad():
        return network(x[None])[0].argmax(0).numpy().astype(np.uint8)


def test_inference_masks_at_the_original_size_png_and_dicom_alike(trained, tmp_path) -> None:
    out, _ = trained
    rng = np.random.default_rng(5)
    wide = rng.integers(0, 256, (96, 128), np.uint8)
    cv2.imwrite(str(tmp_path / "wide.png"), wide)
    write_dicom_frames(np.stack([wide, wide[::-1]]), tmp_path / "wide.dcm")  # a loop: its first frame is segmented
    at_size = rng.integers(0, 256, (64, 64), np.uint8)
    cv2.imwrite(str(tmp_path / "square.png"), at_size)
    (tmp_path / "notes.png").write_text("not an image")
    run_bundle([INFERENCE], {"ckpt_dir": str(out / "models"), "output_dir": str(out / "infer"),
                             "input_dir": str(tmp_path), "overlays": True, "precision": "fp32"})
    result = json.loads((out / "infer" / "masks.json").read_text())
    assert str(tmp_path / "notes.png") in result["errors"]
    assert result["weights"] == str((out / "models" / "model.pt").resolve())
    png = cv2.imread(result["masks"][str(tmp_path / "wide.png")]["mask"], cv2.IMREAD_UNCHANGED)
    dcm = cv2.imread(result["masks"][str(tmp_path / "wide.dcm")]["mask"], cv2.IMREAD_UNCHANGED)
    assert png.shape == (96, 128) and png.dtype == np.uint8
    np.testing.assert_array_equal(png, dcm)
    assert result["masks"][str(tmp_path / "wide.png")]["size"] == [96, 128]
    masks = result["masks"]
    assert masks[str(tmp_path / "wide.dcm")]["frames"] == 2 and "frames" not in masks[str(tmp_path / "wide.png")]
    square = cv2.imread(result["masks"][str(tmp_path / "square.png")]["mask"], cv2.IMREAD_UNCHANGED)
    network = build_from_checkpoint(out / "models" / "model.pt").eval()
    np.testing.assert_array_equal(square, _expected_mask(network, at_size))
    # wide.png and wide.dcm share a stem: distinct files, named with their suffix; square.png keeps its plain name
    for name in ("wide_png_overlay.png", "wide_dcm_overlay.png"):
        assert cv2.imread(str(out / "infer" / "overlays" / name)).shape == (96, 128, 3)
    assert (out / "infer" / "overlays" / "square_overlay.png").is_file()
    assert len({entry["mask"] for entry in result["masks"].values()}) == len(result["masks"])


@pytest.mark.parametrize("override", [{"image_size": 32}, {"in_channels": 1}])
def test_inference_refuses_a_setting_the_checkpoint_was_not_trained_with(trained, tmp_path, override) -> None:
    """The network is rebuilt from the checkpoint, so such a setting reached the preprocessing only and failed inside
    the network, a traceback about tensor sizes (exit 1)."""
    out, _ = trained
    cv2.imwrite(str(tmp_path / "scan.png"), np.random.default_rng(0).integers(0, 256, (40, 50), np.uint8))
    (key, value), = override.items()
    result = run_bundle([INFERENCE], {"ckpt_dir": str(out / "models"), "output_dir": str(tmp_path / "infer"),
                                      "input_dir": str(tmp_path), **override}, check=False)
    assert result.returncode == 2, result.stderr[-3000:]
    trained_value = {"image_size": 64, "in_channels": 3}[key]
    assert f"--{key} {value!r} (trained with {trained_value!r}): the network is rebuilt from the checkpoint" in \
        result.stderr.strip().splitlines()[-1]
    assert "Traceback" not in result.stderr


def test_verify_net_in_out_and_metadata(cache, tmp_path) -> None:
    common = {**tiny_segment_overrides(tmp_path, cache), "meta_file": META,
              "_meta_#network_data_format#inputs#image#spatial_shape": [64, 64],
              "_meta_#network_data_format#outputs#pred#spatial_shape": [64, 64]}
    verify = bundle_command("verify_net_in_out", [TRAIN], common)
    verify.insert(4, "network_def")
    result = run_python(verify, cwd=REPO)
    assert result.returncode == 0 and "data shape of network is verified" in result.stdout + result.stderr, \
        result.stderr[-3000:]
    meta = bundle_command("verify_metadata", [TRAIN], {"meta_file": META, "filepath": str(REPO / "bundles" / "meta_schema.json")})
    meta.remove("--config_file")
    meta.remove(TRAIN)
    result = run_python(meta, cwd=REPO)
    assert result.returncode == 0 and "metadata is verified with no error" in result.stdout + result.stderr, \
        result.stderr[-3000:]


def with_empty_masks(items, folder) -> list[dict]:
    """``items`` with every mask replaced by an empty one written to ``folder`` (normal images)."""
    emptied = []
    for item in items:
        empty = folder / f"{item['id']}_empty_mask.png"
        cv2.imwrite(str(empty), np.zeros_like(cv2.imread(item["label"], cv2.IMREAD_GRAYSCALE)))
        emptied.append({**item, "label": str(empty)})
    return emptied


def lesion_free_validation_datalist(cache, folder) -> str:
    """Fold 0 of the simulated set with every validation mask replaced by an empty one (normal images)."""
    split = synthetic_segmentation_protocol(cache, 20, 42, 14).splits[0]
    datalist = {"class_names": ["background", "lesion"], "train": split["train"],
                "validation": with_empty_masks(split["validation"], folder), "test": split["test"]}
    (folder / "fold.json").write_text(json.dumps(datalist))
    return str(folder / "fold.json")


def test_a_lesion_free_test_part_is_scored_undefined_in_strict_json(trained, cache, tmp_path) -> None:
    """A test part of normal images only (every mask empty): no Dice is defined. The line said "test Dice nan", which
    reads as a failed run; the report is strict JSON (null, not NaN) and names the false positives."""
    out, _ = trained
    split = synthetic_segmentation_protocol(cache, 20, 42, 14).splits[0]
    test = with_empty_masks(split["test"], tmp_path)
    (tmp_path / "normal.json").write_text(json.dumps({"class_names": ["background", "lesion"], "test": test}))
    overrides = tiny_segment_overrides(out, cache, datalist_file=str(tmp_path / "normal.json"),
                                       output_dir=str(tmp_path / "eval"))
    result = run_bundle([TRAIN, EVALUATE], overrides)
    text = (tmp_path / "eval" / "test_report.json").read_text()
    report = json.loads(text, parse_constant=lambda name: pytest.fail(f"{name} in the report"))
    assert report["score"] is None and report["mean_dice"] is None and report["mean_hd95"] is None
    assert report["empty_truth"]["lesion"]["images"] == 4 and report["hd95_undefined"] == 4
    line = next(x for x in result.stdout.splitlines() if x.startswith("test Dice"))
    assert line.startswith("test Dice undefined (Dice over 0 of 4 image(s); 4 without lesion, "), line


# no "no_validation" case (val_interval above the epochs) any more: the last epoch is validated whatever the
# interval (tests/handlers/test_validation.py)
@pytest.mark.parametrize("case, message", [
    ("lesion_free_validation", "none of the"),
])
def test_training_without_a_best_model_says_why(case, message, cache, tmp_path) -> None:
    """No epoch can be the best when every validation Dice is undefined (MONAI gave 0.0, which made an arbitrary
    epoch the best): the run stops in one line instead of leaving no model.pt."""
    extra = {"datalist_file": lesion_free_validation_datalist(cache, tmp_path)}
    result = run_bundle([TRAIN], tiny_segment_overrides(tmp_path, cache, **extra), check=False)
    assert result.returncode == 2, result.stderr[-3000:]
    last = result.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "models" / "model.pt").exists()
    # said at the first validation, not after the last epoch: empty truths never change
    assert last.startswith("usf_mae_segment: none of the 3 validation masks holds a foreground class (lesion): "
                           "Dice and IoU are undefined at every epoch"), last
    assert "Epoch[2/2]" not in result.stdout + result.stderr


def test_a_num_classes_other_than_the_datalists_is_refused_before_training(cache, tmp_path) -> None:
    """--num_classes 3 on the two-class set trained an epoch, saved a model.pt of three outputs, then stopped on the
    shape of the Dice details."""
    result = run_bundle([TRAIN], tiny_segment_overrides(tmp_path, cache, num_classes=3), check=False)
    assert result.returncode == 2, result.stderr[-3000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("usf_mae_segment: --num_classes 3 differs from the 2 class_names of the datalist, "
                           "['background', 'lesion']"), last
    assert "Epoch[1/" not in result.stdout + result.stderr and not (tmp_path / "models" / "model.pt").exists()


def test_class_index_masks_read_as_binary_are_refused_before_training(cache, tmp_path) -> None:
    split = synthetic_segmentation_protocol(cache, 20, 42, 14).splits[0]
    datalist = {"class_names": ["background", "benign", "malignant"], **{k: split[k] for k in ("train", "validation")}}
    (tmp_path / "three.json").write_text(json.dumps(datalist))
    result = run_bundle([TRAIN], tiny_segment_overrides(tmp_path, cache, datalist_file=str(tmp_path / "three.json")),
                        check=False)
    assert result.returncode == 2, result.stderr[-3000:]
    last = result.stderr.strip().splitlines()[-1]
    assert "2 foreground classes ['benign', 'malignant'], but --mask_encoding binary reads every mask as one " \
           "class" in last and "give --mask_encoding index" in last, last
    assert "Epoch[1/" not in result.stdout + result.stderr


@pytest.mark.parametrize("configs", [[TRAIN], [TRAIN, EVALUATE]])
def test_a_fold_with_a_datalist_is_refused_in_one_line(configs, trained, cache, tmp_path) -> None:
    """--fold 2 with --datalist_file (one fold, chosen by make-datalist) was ignored, yet recorded in model.pt and
    MLflow as the fold trained on."""
    datalist = lesion_free_validation_datalist(cache, tmp_path)
    checkpoint = {"ckpt_path": str(trained[0] / "models" / "model.pt")} if EVALUATE in configs else {}
    overrides = tiny_segment_overrides(tmp_path, cache, datalist_file=datalist, fold=2, **checkpoint)
    result = run_bundle(configs, overrides, check=False)
    assert result.returncode == 2, result.stderr[-3000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"usf_mae_segment: --fold 2 does not apply to --datalist_file {datalist!r}: the datalist "
                           "is one fold; make it with make-datalist --fold N"), last
    assert "Traceback" not in result.stderr and "Epoch[1/" not in result.stdout + result.stderr
    assert not (tmp_path / "models" / "model.pt").exists()


def test_model_pt_records_its_images_and_evaluate_warns_of_them_in_another_test_part(cache, tmp_path) -> None:
    """Evaluate scored fold 1's test part, which fold 0's model trained and was selected on, as held out."""
    protocol = synthetic_segmentation_protocol(cache, 20, 42, 14)
    lists = [write_split(protocol.splits[k], protocol.class_names, tmp_path / "lists" / f"fold{k}.json",
                         "segmentation") for k in (0, 1)]
    run_bundle([TRAIN], tiny_segment_overrides(tmp_path, cache, datalist_file=str(lists[0]), epochs=1))
    config = read_checkpoint(tmp_path / "models" / "model.pt")["arch"]["config"]
    seen = {it["image"] for part in ("train", "validation") for it in protocol.splits[0][part]}
    assert config["fold"] is None and config["datalist_sha256"] == sha256_of(lists[0])
    assert len(config["trained_images"]) == len(seen)
    overlap = [it for it in protocol.splits[1]["test"] if it["image"] in seen]
    assert overlap  # the folds' test parts are disjoint, so fold 1's test images are fold 0's training images
    result = run_bundle([TRAIN, EVALUATE], tiny_segment_overrides(tmp_path, cache, datalist_file=str(lists[1])))
    said = (f"{len(overlap)} of {len(protocol.splits[1]['test'])} image(s) of the test part of {lists[1]} are "
            f"training or validation images of {tmp_path / 'models' / 'model.pt'}")
    assert said in result.stdout + result.stderr, (result.stdout + result.stderr)[-3000:]
    assert "test Dice" in result.stdout
