"""The classification bundle end to end: released-layout init, evaluate parity, inference, export, cross-validation."""

from __future__ import annotations

import json
import sys

import cv2
import numpy as np
import pytest
import torch

from monai_ext.io.writers import write_dicom_frames
from monai_ext.networks.checkpoints import read_checkpoint
from monai_ext.networks.mae import build_mae
from tests.bundles.helpers import REPO, run_bundle, tiny_classify_overrides
from tests.warm_python import run_python

pytestmark = pytest.mark.slow
TRAIN = "bundles/usf_mae_classify/configs/train.yaml"
EVALUATE = "bundles/usf_mae_classify/configs/evaluate.yaml"
INFERENCE = "bundles/usf_mae_classify/configs/inference.yaml"


@pytest.fixture(scope="module")
def cache(module_tmp):
    return module_tmp("classify_cache")


@pytest.fixture(scope="module")
def released_layout_file(module_tmp):
    """A tiny MAE saved as a plain state dict: the released USF-MAE file's layout."""
    path = module_tmp("weights") / "usf_mae_tiny.pth"
    torch.save(build_mae("mae_vit_tiny_patch16_dec128d2b", img_size=64).state_dict(), path)
    return path


@pytest.fixture(scope="module")
def trained(module_tmp, cache, released_layout_file):
    out = module_tmp("classify")
    # mixup + cutmix on, so the bundle's soft-target path runs end to end
    result = run_bundle([TRAIN], tiny_classify_overrides(out, cache, init_checkpoint=str(released_layout_file),
                                                         mixup_alpha=0.8, cutmix_alpha=1.0))
    return out, result


def test_released_layout_init_reports_dropped_and_new_keys(trained) -> None:
    out, result = trained
    log = result.stdout + result.stderr
    line = next(x for x in log.splitlines() if "initial weights:" in x)
    assert "layout=usf_mae" in line
    assert "new (initialised here)=4 (fc_norm, head)" in line
    assert "dropped=34 (decoder_blocks, decoder_embed, decoder_norm, decoder_pos_embed, decoder_pred, mask_token, norm)" in line
    history = json.loads((out / "eval" / "metrics.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2]
    assert {"val_macro_f1", "accuracy", "balanced_accuracy", "auc"} <= set(history[0])


def test_an_interval_above_the_epochs_validates_the_last_epoch_and_replaces_an_earlier_model(cache, tmp_path) -> None:
    """val_interval above the epochs: no epoch was validated, so none was the best and no model.pt was written (an
    earlier run's model.pt in the same folder was evaluated as this run's, until the run was made to stop); the
    last epoch is now validated whatever the interval."""
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "model.pt").write_bytes(b"an earlier run's best model")
    run_bundle([TRAIN], tiny_classify_overrides(tmp_path, cache, val_interval=5))
    assert [h["epoch"] for h in json.loads((tmp_path / "eval" / "metrics.json").read_text())] == [2]
    assert (tmp_path / "models" / "model.pt").read_bytes() != b"an earlier run's best model"


def test_a_num_classes_other_than_the_datalists_is_refused_before_training(cache, tmp_path) -> None:
    """--num_classes 3 on the two-class set trained and saved a model.pt whose third output has no name."""
    result = run_bundle([TRAIN], tiny_classify_overrides(tmp_path, cache, num_classes=3), check=False)
    assert result.returncode == 2, result.stderr[-3000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("usf_mae_classify: --num_classes 3 differs from the 2 class_names of the datalist"), last
    assert "Epoch[1/" not in result.stdout + result.stderr and not (tmp_path / "models" / "model.pt").exists()


def test_evaluate_reproduces_the_validation_metrics_of_training(trained, cache) -> None:
    out, _ = trained
    best = read_checkpoint(out / "models" / "model.pt")
    run_bundle([TRAIN, EVALUATE], tiny_classify_overrides(out, cache, eval_split="validation"))
    report = json.loads((out / "eval" / "validation_report.json").read_text())
    assert report["macro_f1"] == pytest.approx(best["val_macro_f1"], abs=1e-9)
    history = json.loads((out / "eval" / "metrics.json").read_text())
    assert report["macro_f1"] == pytest.approx(max(h["val_macro_f1"] for h in history), abs=1e-9)
    assert (out / "eval" / "validation_confusion_matrix.png").stat().st_size > 1000
    assert (out / "eval" / "validation_roc.png").stat().st_size > 1000
    assert set(report["per_class"]) == {"benign", "malignant"}
    assert sum(map(sum, report["confusion_matrix"])) == report["n"]


def test_evaluate_reproduces_a_linear_probes_validation_metrics(cache, tmp_path) -> None:
    """A linear probe's saved head was refit on validation too, and scored it 1.0 where training recorded 0.52:
    the validation part is scored with the head fit on the training part only, as recorded."""
    overrides = tiny_classify_overrides(tmp_path, cache, linear_probe=True)
    run_bundle([TRAIN], overrides)
    recorded = json.loads((tmp_path / "eval" / "probe_report.json").read_text())["linear_validation"]
    result = run_bundle([TRAIN, EVALUATE], {**overrides, "eval_split": "validation"})
    report = json.loads((tmp_path / "eval" / "validation_report.json").read_text())
    assert report["macro_f1"] == pytest.approx(recorded["macro_f1"], abs=1e-6)
    assert report["confusion_matrix"] == recorded["confusion_matrix"]
    assert report["macro_f1"] == pytest.approx(read_checkpoint(tmp_path / "models" / "model.pt")["val_macro_f1"])
    assert "validation scored with the probe head fit on the training part only" in result.stdout + result.stderr


def test_test_split_report(trained, cache) -> None:
    out, _ = trained
    result = run_bundle([TRAIN, EVALUATE], tiny_classify_overrides(out, cache))
    assert "test macro-F1" in result.stdout
    # the test score was logged as "Got new best metric of val_macro_f1"
    log = result.stdout + result.stderr
    assert "Got new best metric of test_macro_f1" in log and "val_macro_f1" not in log, log[-3000:]
    assert json.loads((out / "eval" / "test_report.json").read_text())["n"] == 5  # 24 images / 5 folds


def hand_written_datalist(cache, folder, class_names: list[str]) -> None:
    """``folder/data/fold.json`` with relative paths and class names as labels, as a user writes one by hand."""
    images = {c: sorted(cache.rglob(f"{c}/*.png"))[:3] for c in ("benign", "malignant")}
    (folder / "data" / "images").mkdir(parents=True)
    items = []
    for name, files in images.items():
        for file in files:
            (folder / "data" / "images" / f"{name}_{file.name}").write_bytes(file.read_bytes())
            items.append({"image": f"images/{name}_{file.name}", "label": name})
    datalist = {"class_names": class_names, "train": items[:1], "validation": items[3:4],
                "test": items[1:3] + items[4:]}
    (folder / "data" / "fold.json").write_text(json.dumps(datalist))
    (folder / "elsewhere").mkdir()


def test_a_hand_written_datalist_is_read_from_its_own_folder(trained, cache, tmp_path) -> None:
    """Relative paths and class names as labels, as a user writes a datalist by hand, run from another folder."""
    out, _ = trained
    hand_written_datalist(cache, tmp_path, ["benign", "malignant"])
    overrides = tiny_classify_overrides(out, cache, datalist_file="../data/fold.json", output_dir=str(tmp_path / "eval"))
    run_bundle([str(REPO / TRAIN), str(REPO / EVALUATE)], overrides, cwd=tmp_path / "elsewhere")
    report = json.loads((tmp_path / "eval" / "test_report.json").read_text())
    assert report["n"] == 4 and [sum(row) for row in report["confusion_matrix"]] == [2, 2]  # names became indices


@pytest.mark.parametrize("class_names", [["malignant", "benign"], ["benign", "malignant", "normal"]])
def test_evaluate_refuses_a_datalist_with_other_classes_than_the_checkpoints(class_names, trained, cache,
                                                                             tmp_path) -> None:
    """Labels index class_names: in the other order every benign image is scored as malignant, without an error
    (a third class failed on the head's shape with a message about tensors)."""
    out, _ = trained
    hand_written_datalist(cache, tmp_path, class_names)
    overrides = tiny_classify_overrides(out, cache, datalist_file="../data/fold.json", output_dir=str(tmp_path / "eval"))
    result = run_bundle([str(REPO / TRAIN), str(REPO / EVALUATE)], overrides, cwd=tmp_path / "elsewhere", check=False)
    assert result.returncode == 2, result.stderr[-3000:]
    assert result.stderr.strip().splitlines()[-1] == (
        f"usf_mae_classify: {out / 'models' / 'model.pt'} was trained for classes ['benign', 'malignant'] but the "
        f"datalist has {class_names!r}: labels are indices into these lists, so they must name the same classes in "
        "the same order (write the datalist's class_names and labels in the checkpoint's order, or pass the "
        "--ckpt_path trained for these classes) (MONAI_EXT_TRACEBACK=1 shows where)")
    assert not (tmp_path / "eval" / "test_report.json").exists()


def test_dicom_and_png_with_the_same_pixels_give_the_same_probabilities(trained, cache, tmp_path) -> None:
    out, _ = trained
    pixels = np.random.default_rng(3).integers(0, 256, (96, 128), np.uint8)
    cv2.imwrite(str(tmp_path / "scan.png"), pixels)
    # a cine loop whose first frame is the picture: its first frame is classified, and the record says so
    write_dicom_frames(np.stack([pixels, pixels[::-1], 255 - pixels]), tmp_path / "scan.dcm")
    (tmp_path / "notes.png").write_text("not an image")
    # standalone inference config: arch, image size and class names come from the checkpoint's record
    run_bundle([INFERENCE], {"ckpt_dir": str(out / "models"), "output_dir": str(out / "eval"),
                             "input_dir": str(tmp_path), "heatmaps": True})
    result = json.loads((out / "eval" / "predictions.json").read_text())
    png, dcm = result["predictions"][str(tmp_path / "scan.png")], result["predictions"][str(tmp_path / "scan.dcm")]
    assert png["probabilities"] == pytest.approx(dcm["probabilities"], abs=1e-6)
    assert sum(png["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    assert dcm["frames"] == 3 and "frames" not in png
    assert str(tmp_path / "notes.png") in result["errors"]
    # scan.png and scan.dcm share a stem: each gets its own heat map (named with its suffix), none overwrites the other
    for name in ("scan_png_gradcam.png", "scan_dcm_gradcam.png"):
        assert cv2.imread(str(out / "eval" / "heatmaps" / name)).shape == (96, 128, 3)  # the file's size, not 64


@pytest.mark.parametrize("class_names, refused", [("['malignant','benign']", True), ("['benign','malignant']", False)])
def test_inference_refuses_class_names_that_would_relabel_the_predictions(trained, tmp_path, class_names, refused):
    """--class_names in the other order named every benign prediction malignant, with exit code 0."""
    out, _ = trained
    cv2.imwrite(str(tmp_path / "scan.png"), np.random.default_rng(4).integers(0, 256, (64, 64), np.uint8))
    result = run_bundle([INFERENCE], {"ckpt_dir": str(out / "models"), "output_dir": str(tmp_path / "eval"),
                                      "input_files": str(tmp_path / "scan.png"), "class_names": class_names},
                        check=False)
    if refused:
        assert result.returncode == 2, result.stderr[-3000:]
        assert "--class_names ['malignant', 'benign'] (trained with ['benign', 'malignant'])" in result.stderr
        assert not (tmp_path / "eval" / "predictions.json").exists()
    else:
        assert result.returncode == 0, result.stderr[-3000:]


def test_cross_validation_runner_writes_the_table(tmp_path, cache, released_layout_file) -> None:
    cmd = [sys.executable, "-m", "monai_ext", "cross-validate", "synthetic", str(tmp_path / "cv"),
           "--init_checkpoint", str(released_layout_file), "--methods", "pretrained,random,cnn", "--folds", "0,1",
           "--cache_dir", str(cache), "--arch", "mae_vit_tiny_patch16_dec128d2b", "--image_size", "64",
           "--per_class", "12", "--epochs", "1", "--batch_size", "8", "--num_workers", "0"]
    result = run_python(cmd, cwd=REPO, timeout=900)
    assert result.returncode == 0, result.stderr[-4000:]
    summary = json.loads((tmp_path / "cv" / "cv_summary.json").read_text())["summary"]
    assert set(summary) == {"pretrained", "random", "cnn"}
    for method in summary.values():
        assert len(method["macro_f1"]["folds"]) == 2
        assert method["macro_f1"]["mean"] == pytest.approx(np.mean(method["macro_f1"]["folds"]))
    table = (tmp_path / "cv" / "cv_table.md").read_text()
    assert "| pretrained |" in table and "±" in table
    assert table in result.stdout
    counts = json.loads((tmp_path / "cv" / "cv_summary.json").read_text())["test_images"]
    assert all(c["skipped"] == 0 and c["n"] > 0 for folds in counts.values() for c in folds), counts
    # a resume with other settings: the finished folds' models would be tested as this run's; refused in one line
    # before anything trains, and the summary of the finished run is left as it was
    resumed = run_python([*cmd[:cmd.index("--epochs")], "--epochs", "2", *cmd[cmd.index("--epochs") + 2:],
                          "--resume", "true"], cwd=REPO, timeout=300)
    assert resumed.returncode == 2, resumed.stderr[-4000:]
    assert resumed.stderr.strip().splitlines()[-1] == (
        "monai_ext cross-validate: pretrained fold 0 was trained with --epochs 1 and this run has --epochs 2; rerun "
        "without --resume true (or into another output folder)")
    assert (tmp_path / "cv" / "cv_table.md").read_text() == table
