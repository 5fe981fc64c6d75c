"""Bundle support: the files a bundle's ``inference.yaml`` predicts on, yes/no settings, which checkpoint it loads."""

from __future__ import annotations

import json
import logging
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from monai_ext.apps.bundle_support import (
    as_flag,
    as_trained,
    class_names_trained_for,
    classification_split,
    inference_files,
    initialize_weights,
    load_inference_weights,
    recorded_class_names,
    trained_settings,
)
from monai_ext.io.checkpoints import CheckpointError
from monai_ext.io.writers import write_dicom, write_nifti
from monai_ext.networks import build_classifier
from monai_ext.networks.checkpoints import save_model_checkpoint
from monai_ext.networks.mae import build_mae
from monai_ext.networks.segmentation import build_segmenter
from tests.io.test_volumes import write_itk

IMAGE = (np.arange(32 * 48, dtype=np.uint8).reshape(32, 48) * 3) % 251


def _scan_folder(root):
    """A user's export folder: every single-image format the decoder reads, in sub-folders, plus files it must skip."""
    (root / "a" / "b").mkdir(parents=True)
    write_dicom(IMAGE, root / "a" / "scan.dcm")
    write_dicom(IMAGE, root / "a" / "US0001.IMA")  # Siemens' suffix: a DICOM by its content
    write_nifti(IMAGE, root / "a" / "b" / "volume.nii.gz")
    write_itk(IMAGE[None], root / "b_mode.nrrd")
    write_itk(IMAGE[None], root / "a" / "sweep.mha").rename(root / "a" / "sweep.MHA")  # suffixes match any case
    import cv2

    cv2.imwrite(str(root / "a" / "b" / "frame.png"), IMAGE)
    (root / "report.txt").write_text("not an image")
    (root / "loop.avi").write_bytes(b"cine loops only enter the corpus")
    (root / ".hidden.png").write_bytes(b"")
    return root


def test_input_dir_lists_every_format_the_loader_reads_and_says_what_it_passes_over(tmp_path, caplog):
    with caplog.at_level("WARNING"):
        found = inference_files(_scan_folder(tmp_path / "scans"), None)
    names = sorted(p.rsplit("/", 1)[1] for p in found)
    assert names == ["US0001.IMA", "b_mode.nrrd", "frame.png", "scan.dcm", "sweep.MHA", "volume.nii.gz"]
    # a batch that predicts fewer files than the folder holds says which it left and why (hidden files aside)
    assert "2 file(s) not read, not images by their suffix or content (.avi 1, .txt 1)" in caplog.text
    assert "cine loops are predicted from their first frame when named in --input_files" in caplog.text


@pytest.mark.parametrize("header", ["sweep.mhd", "study 3.mhd"])  # the second renamed after ITK wrote it
def test_an_mhd_voxel_file_is_neither_predicted_nor_reported_as_passed_over(tmp_path, caplog, header):
    root = tmp_path / "volumes"
    root.mkdir()
    write_itk(IMAGE[None], root / "sweep.mhd")
    (root / "sweep.mhd").rename(root / header)
    assert sorted(p.name for p in root.iterdir()) == sorted([header, "sweep.raw"])
    with caplog.at_level("WARNING"):
        assert inference_files(root, None) == [str(root / header)]
    assert "not read" not in caplog.text


def test_a_file_given_twice_is_predicted_once(tmp_path, caplog):
    scans = _scan_folder(tmp_path / "scans")
    again = [str(scans / "a" / "scan.dcm"), str(scans / "a" / ".." / "a" / "scan.dcm")]
    with caplog.at_level("WARNING"):
        files = inference_files(scans, again)
    assert len(files) == 6 and files == list(dict.fromkeys(files))
    assert "2 input file(s) were given more than once" in caplog.text


def test_input_files_are_appended_and_nothing_given_is_refused(tmp_path):
    extra = str(tmp_path / "extra.png")
    assert inference_files(None, [extra]) == [extra]
    with pytest.raises(ValueError, match="--input_dir or --input_files"):
        inference_files(None, None)


@pytest.mark.parametrize("make", [lambda p: None, lambda p: p.write_bytes(b"a file")])
def test_an_input_dir_that_is_no_folder_names_the_setting(tmp_path, make):
    """It said "dataset folder ... does not exist", the pretraining data's words, not the setting the user typed."""
    make(tmp_path / "scans")
    with pytest.raises(ValueError, match=f"--input_dir '{tmp_path / 'scans'}' does not exist or is not a folder"):
        inference_files(str(tmp_path / "scans"), None)


@pytest.mark.parametrize("output", ["same", "parent"])
def test_an_output_dir_holding_every_input_is_named_as_the_reason(tmp_path, output):
    """--output_dir equal to (or above) --input_dir leaves out every input as a run's own output; the error said
    "give --input_dir or --input_files", though both were given."""
    scans = _scan_folder(tmp_path / "scans")
    out = scans if output == "same" else tmp_path
    with pytest.raises(ValueError, match=r"all \d+ images under --input_dir .* lie inside --output_dir .*; choose an "
                                         r"--output_dir outside it"):
        inference_files(scans, None, out)
    assert inference_files(scans, None, scans / "eval")  # an output folder inside the inputs is fine


@pytest.mark.parametrize("unset", ["null", "None", "none"])
def test_settings_given_as_null_on_the_command_line_are_unset(unset, tmp_path):
    """``--init_checkpoint null`` reaches the config as the text 'null' (fire makes only ``None`` None): it means
    random weights as the YAML's null does, not a file named 'null'."""
    network = build_classifier("mae_vit_tiny_patch16_dec128d2b", num_classes=2, img_size=32)
    assert initialize_weights(network, unset) == "random initialisation"
    path = tmp_path / "w.pt"
    save_model_checkpoint(path, build_mae("mae_vit_tiny_patch16_dec128d2b", img_size=32), "mae")
    assert "layout=monai_ext" in initialize_weights(network, str(path), sha256=unset, encoder_only=True)
    with pytest.raises(ValueError, match="--input_dir or --input_files"):
        inference_files(unset, unset)
    assert classification_split(unset, tmp_path / "cache", per_class=5)["class_names"] == ["benign", "malignant"]


def test_a_single_input_file_given_as_text_is_one_file_not_its_letters(tmp_path):
    """``--input_files scan.png`` reaches the config as the string, not a list."""
    single = str(tmp_path / "scan.png")
    assert inference_files(None, single) == [single]
    assert inference_files(None, tmp_path / "scan.png") == [single]
    with pytest.raises(ValueError, match="--input_dir or --input_files"):
        inference_files(None, "")


def test_outputs_inside_the_input_folder_are_not_read_back(tmp_path):
    """An output folder inside the input folder: a second run must not segment the first run's masks."""
    import cv2

    root = tmp_path / "nest"
    (root / "results" / "overlays").mkdir(parents=True)
    (root / "results_old").mkdir()
    for path in (root / "good.png", root / "results" / "overlays" / "good.png", root / "results_old" / "a.png"):
        cv2.imwrite(str(path), IMAGE)
    for output_dir in (root / "results", str(root / "results") + "/", tmp_path / "nest" / "." / "results"):
        found = inference_files(root, None, output_dir)
        assert sorted(Path(p).relative_to(root).as_posix() for p in found) == ["good.png", "results_old/a.png"]
    assert len(inference_files(root, None, tmp_path / "elsewhere")) == 3


def test_an_output_folder_reached_through_a_link_is_not_read_back(tmp_path):
    """``/data`` is often a link: the input folder given through it and the output folder by its real path (or a
    relative one, which the working folder resolves physically) were taken for different folders."""
    import cv2

    (tmp_path / "study" / "out" / "masks").mkdir(parents=True)
    (tmp_path / "link").symlink_to(tmp_path / "study")
    cv2.imwrite(str(tmp_path / "study" / "scan.png"), IMAGE)
    cv2.imwrite(str(tmp_path / "study" / "out" / "masks" / "scan_mask.png"), IMAGE)
    for input_dir, output_dir in [(tmp_path / "link", tmp_path / "study" / "out"),
                                  (tmp_path / "study", tmp_path / "link" / "out")]:
        assert inference_files(input_dir, None, output_dir) == [str(input_dir / "scan.png")]


def test_the_outputs_of_earlier_runs_inside_the_input_folder_are_not_predicted(tmp_path, caplog):
    """Dated output folders inside a study folder: the second run segmented the first run's masks and overlays."""
    import logging

    import cv2

    study = tmp_path / "study"
    for folder in ("run1/masks", "run1/overlays", "run2/heatmaps", "notes/overlays"):
        (study / folder).mkdir(parents=True)
    for name in ("scan.png", "run1/masks/scan_mask.png", "run1/overlays/scan_overlay.png",
                 "run2/heatmaps/scan_gradcam.png", "notes/overlays/hand_drawn.png"):
        cv2.imwrite(str(study / name), IMAGE)
    (study / "run1" / "masks.json").write_text(json.dumps({"class_names": ["background", "lesion"], "masks": {}}))
    (study / "run2" / "predictions.json").write_text(json.dumps({"class_names": ["a", "b"], "predictions": {}}))
    (study / "notes" / "masks.json").write_text(json.dumps({"todo": "a user's own file"}))
    with caplog.at_level(logging.WARNING, logger="monai_ext.apps.bundle_support"):
        found = inference_files(study, None, study / "run3")
    assert sorted(Path(p).relative_to(study).as_posix() for p in found) == ["notes/overlays/hand_drawn.png",
                                                                             "scan.png"]
    assert "3 image(s) under" in caplog.text and "outputs of an earlier run" in caplog.text


def test_masks_beside_their_images_in_the_input_folder_are_not_predicted(tmp_path, caplog):
    """A BUSI-style folder (``benign (1).png`` beside ``benign (1)_mask.png`` and ``_mask_1.png``): its ground-truth
    masks were segmented and classified as scans, as the class-folder readers no longer count them as images."""
    import cv2

    busi = tmp_path / "BUSI"
    for folder in ("benign", "other"):
        (busi / folder).mkdir(parents=True)
    for name in ("benign (1).png", "benign (1)_mask.png", "benign (1)_mask_1.png", "benign (2).png",
                 "benign (2)_mask.png", "benign (3)_mask.png", "other/lone_mask.png"):
        cv2.imwrite(str(busi / ("benign/" + name if "/" not in name else name)), IMAGE)
    with caplog.at_level(logging.WARNING):
        found = inference_files(busi, None)
    # benign (3)_mask.png lost its image, in a folder of image + mask pairs: a mask all the same; a "_mask" name in
    # a folder without pairs is a scan like any other
    assert sorted(Path(p).relative_to(busi).as_posix() for p in found) == [
        "benign/benign (1).png", "benign/benign (2).png", "other/lone_mask.png"]
    assert "3 mask file(s) beside their images" in caplog.text and "not scans to predict" in caplog.text
    assert "e.g. benign (1)_mask.png" in caplog.text
    assert "1 mask file(s) have no image beside them" in caplog.text and "benign (3)_mask.png" in caplog.text
    named = str(busi / "benign" / "benign (1)_mask.png")  # named on purpose: predicted
    assert named in inference_files(busi, [named])


@pytest.mark.parametrize("pictures_only", [False, True])
def test_a_folder_named_in_input_files_is_pointed_to_input_dir(tmp_path, pictures_only) -> None:
    """It was "cannot open (missing, a broken link or not a file)", which did not say where a folder goes."""
    (tmp_path / "scans").mkdir()
    with pytest.raises(ValueError, match=r"--input_files '.*scans' is a folder: give folders as --input_dir"):
        inference_files(None, [str(tmp_path / "scans")], pictures_only=pictures_only)


@pytest.mark.parametrize("layout, masks, folders", [
    # BUS-BRA as distributed: Images/ beside Masks/
    ({"Images/bus_0001-l.png": 1, "Images/bus_0002-r.png": 1, "Masks/mask_0001-l.png": 0, "Masks/mask_0002-r.png": 0},
     2, "Masks"),
    # class folders, each with its images and a masks/ or annotations/ folder
    ({"benign/images/a.png": 1, "benign/masks/a.png": 0, "malignant/b.png": 1, "malignant/annotations/b.png": 0,
      "malignant/Ground Truth/c.png": 0}, 3, "benign/masks, malignant/Ground Truth, malignant/annotations"),
])
def test_files_in_mask_folders_of_a_dataset_folder_are_not_predicted(tmp_path, caplog, layout, masks, folders):
    """``--input_dir data/BUSBRA`` classified the masks in ``Masks/`` as scans; ``make-datalist folder`` already
    left such folders out."""
    import cv2

    root = tmp_path / "data"
    for name in layout:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / name), IMAGE)
    (root / "notes.txt").write_text("not an image")
    with caplog.at_level(logging.WARNING):
        found = inference_files(root, None)
    assert sorted(Path(p).relative_to(root).as_posix() for p in found) == sorted(n for n, scan in layout.items()
                                                                               if scan)
    assert (f"{masks + 1} file(s) not read: {masks} in mask folders ({folders}), masks rather than scans" in
            caplog.text), caplog.text
    assert "1 not images by their suffix or content (.txt 1)" in caplog.text


# ------------------------------------------------------------------------------------------------ yes/no settings
@pytest.mark.parametrize("value", [True, 1, "true", "True", "TRUE", " yes ", "Yes", "1"])
def test_as_flag_reads_yes(value):
    assert as_flag(value, "resume") is True


@pytest.mark.parametrize("value", [False, 0, "false", "False", "FALSE", "no", "NO", "0", " false\n"])
def test_as_flag_reads_no(value):
    """``--resume false`` arrives as the text 'false', which Python's truth test reads as yes."""
    assert as_flag(value, "resume") is False


@pytest.mark.parametrize("value", ["", "flase", "none", "null", "on", "2", 2, -1, 0.0, None, [], ["false"]])
def test_as_flag_refuses_anything_else_quoting_name_and_value(value):
    with pytest.raises(ValueError, match=r"heatmaps must be true or false.*got " + re.escape(repr(value))):
        as_flag(value, "heatmaps")


# ------------------------------------------------------------------------------------------------ checkpoints
TINY = "mae_vit_tiny_patch16_dec128d2b"


@pytest.fixture(scope="module")
def tiny_files(module_tmp) -> dict[str, Path]:
    """A ViT-Tiny 64-px checkpoint of each kind, as the bundles write them."""
    root = module_tmp("kinds")
    files = {kind: root / f"{kind}.pt" for kind in ("mae", "classifier", "segmenter")}
    save_model_checkpoint(files["mae"], build_mae(TINY, img_size=64), "mae", {"arch": TINY, "image_size": 64})
    save_model_checkpoint(files["classifier"], build_classifier(TINY, 3, img_size=64), "classifier",
                          {"arch": TINY, "image_size": 64, "class_names": ["a", "b", "c"]})
    save_model_checkpoint(files["segmenter"], build_segmenter(TINY, 2, img_size=64, feature_size=8), "segmenter",
                          {"arch": TINY, "image_size": 64, "class_names": ["background", "lesion"]})
    return files


def test_only_the_default_checkpoint_may_be_missing(tmp_path):
    """Before training the bundle's own models/model.pt is absent (random weights); a path the user gave must exist."""
    default = tmp_path / "models" / "model.pt"
    network = build_classifier(TINY, 2, img_size=64)
    assert trained_settings(default, "usf_mae_classify", default) == {}
    assert load_inference_weights(network, str(default), "usf_mae_classify", str(tmp_path / "models" / ".." /
                                                                                 "models" / "model.pt")) == "random"
    elsewhere = tmp_path / "typo_bundle" / "models" / "model.pt"  # --bundle_root with a typo: no random weights
    with pytest.raises(FileNotFoundError, match="typo_bundle/models/model.pt': no such checkpoint file"):
        trained_settings(elsewhere, "usf_mae_classify", elsewhere)
    given = tmp_path / "nope.pt"
    with pytest.raises(FileNotFoundError, match=f"ckpt_path '{given}': no such checkpoint file"):
        trained_settings(given, "usf_mae_classify", default)
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        load_inference_weights(network, given, "usf_mae_classify", default)
    with pytest.raises(FileNotFoundError, match="no such checkpoint"):  # no default at all: evaluate, segmentation
        trained_settings(default, "usf_mae_segment")


def test_a_folder_is_not_a_checkpoint_even_at_the_default_path(tmp_path):
    (tmp_path / "model.pt").mkdir()
    network = build_classifier(TINY, 2, img_size=64)
    for path in (tmp_path, tmp_path / "model.pt"):
        with pytest.raises(ValueError, match=f"ckpt_path '{path}' is a folder"):
            load_inference_weights(network, path, "usf_mae_classify", tmp_path / "model.pt")


def test_inference_weights_are_loaded_and_named(tiny_files, tmp_path):
    network = build_classifier(TINY, 3, img_size=64)
    used = load_inference_weights(network, tiny_files["classifier"], "usf_mae_classify", tmp_path / "model.pt")
    assert used == str(tiny_files["classifier"].resolve())
    expected = torch.load(tiny_files["classifier"], weights_only=True)["model"]["head.weight"]
    torch.testing.assert_close(network.state_dict()["head.weight"], expected, atol=0, rtol=0)
    assert trained_settings(tiny_files["classifier"], "usf_mae_classify") == {
        "arch": TINY, "image_size": 64, "class_names": ["a", "b", "c"], "in_channels": 3, "global_pool": "avg",
        "linear_probe": False}
    assert trained_settings(tiny_files["segmenter"], "usf_mae_segment")["feature_size"] == 8


@pytest.mark.parametrize("trained_at, warned", [(64, True), (32, False)])
def test_bare_weights_resized_for_inference_are_warned_of(trained_at, warned, tmp_path, caplog):
    """Weights without a record, trained at 64 px, ran at the default size after an INFO line only."""
    torch.save(build_classifier(TINY, 2, img_size=trained_at).state_dict(), tmp_path / "bare.pt")
    with caplog.at_level(logging.WARNING, logger="monai_ext"):
        load_inference_weights(build_classifier(TINY, 2, img_size=32), tmp_path / "bare.pt", "usf_mae_classify")
    assert ("records no image size and its position embeddings were resized" in caplog.text) is warned, caplog.text


def test_recorded_weights_run_at_another_size_are_warned_of_with_the_size_they_were_trained_at(tmp_path, caplog):
    """A 64-px pretraining model.pt run with --image_size 96 was warned of as a file that "records no image size"."""
    from monai_ext.networks.checkpoints import save_model_checkpoint
    from monai_ext.networks.mae import build_mae

    save_model_checkpoint(tmp_path / "model.pt", build_mae(TINY, img_size=64), "mae", {"arch": TINY, "image_size": 64})
    with caplog.at_level(logging.WARNING, logger="monai_ext"):
        load_inference_weights(build_mae(TINY, img_size=96), tmp_path / "model.pt", "usf_mae_pretrain")
    assert "records no image size" not in caplog.text
    assert f"model.pt was trained with arch='{TINY}', image_size=64" in caplog.text and "interpolated" in caplog.text


@pytest.mark.parametrize("kind,bundle,advice", [
    ("mae", "usf_mae_classify", "fine-tune it with usf_mae_classify first"),
    ("mae", "usf_mae_segment", "fine-tune it with usf_mae_segment first"),
    ("segmenter", "usf_mae_classify", "use it with the usf_mae_segment bundle"),
    ("classifier", "usf_mae_segment", "use it with the usf_mae_classify bundle"),
    ("classifier", "usf_mae_pretrain", "use it with the usf_mae_classify bundle"),
])
def test_a_checkpoint_of_another_kind_is_refused_with_what_to_do(tiny_files, kind, bundle, advice, tmp_path):
    path = tiny_files[kind]
    message = f"{path} is a checkpoint of kind '{kind}'.*{advice}"
    with pytest.raises(CheckpointError, match=message):
        trained_settings(path, bundle, tmp_path / "model.pt")
    with pytest.raises(CheckpointError, match=message):
        load_inference_weights(build_classifier(TINY, 3, img_size=64), path, bundle)


def test_evaluate_accepts_the_kinds_it_is_given(tiny_files):
    assert trained_settings(tiny_files["classifier"], "usf_mae_classify", kinds=["classifier", "external"])
    with pytest.raises(CheckpointError, match="needs kind 'segmenter' or 'external'"):
        trained_settings(tiny_files["classifier"], "usf_mae_segment", kinds=["segmenter", "external"])


def test_a_file_without_a_record_passes_the_kind_check(tmp_path):
    """Released USF-MAE / Facebook MAE weights carry no record: the pretraining configs still read them."""
    torch.save(build_mae(TINY, img_size=64).state_dict(), tmp_path / "released.pth")
    assert trained_settings(tmp_path / "released.pth", "usf_mae_pretrain") == {}


@pytest.mark.parametrize("kind", ["classifier", "segmenter"])
def test_pretraining_from_a_fine_tuned_model_is_refused_in_words(tiny_files, kind):
    """--init_checkpoint with a classifier's model.pt ended in torch's list of missing and unexpected keys."""
    with pytest.raises(CheckpointError, match=f"is a checkpoint of kind '{kind}'.*usf_mae_pretrain needs kind 'mae'"):
        initialize_weights(build_mae(TINY, img_size=64), tiny_files[kind])


def test_encoder_only_is_refused_for_pretraining(tmp_path):
    """init_options {"encoder_only": true} raised an AttributeError inside the loader."""
    torch.save(build_mae(TINY, img_size=64).state_dict(), tmp_path / "released.pth")
    with pytest.raises(CheckpointError, match="encoder_only applies to fine-tuning bundles"):
        initialize_weights(build_mae(TINY, img_size=64), tmp_path / "released.pth", encoder_only=True)
    assert "released.pth" in initialize_weights(build_mae(TINY, img_size=64), tmp_path / "released.pth")


@pytest.mark.parametrize("given, recorded, refused", [
    (["2", "3", "4"], [2, 3, 4], False),              # BI-RADS digits recorded as numbers, given as text
    (["benign", "malignant"], ["benign", "malignant"], False),
    (["malignant", "benign"], ["benign", "malignant"], True),
    (["benign"], ["benign", "malignant"], True),
])
def test_as_trained_compares_class_names_as_text_and_in_order(given, recorded, refused):
    network = torch.nn.Identity()
    if refused:
        with pytest.raises(ValueError, match=r"model.pt: --class_names .* \(trained with"):
            as_trained(network, {"class_names": given}, {"class_names": recorded}, "model.pt")
    else:
        assert as_trained(network, {"class_names": given}, {"class_names": recorded}, "model.pt") is network


def test_a_shape_mismatch_says_what_the_checkpoint_was_trained_with(tiny_files):
    """evaluate.yaml given --arch of another size: the error names the recorded arch and image size."""
    network = build_classifier("mae_vit_small_patch16_dec256d4b", 3, img_size=64)
    with pytest.raises(CheckpointError, match=f"trained with arch='{TINY}', image_size=64, in_channels=3"):
        initialize_weights(network, tiny_files["classifier"])


@pytest.mark.parametrize("network", [
    lambda: build_classifier("mae_vit_small_patch16_dec256d4b", 2, img_size=64),   # fine-tuning, another size
    lambda: build_mae("mae_vit_small_patch16_dec256d4b", img_size=64),             # continued pretraining
])
def test_an_mae_of_another_size_says_what_it_was_trained_with(tiny_files, network):
    """The documented pretrain -> fine-tune path with a ViT-Tiny 64-px MAE and the default network said only
    "key 'cls_token' has shape (1, 1, 192), the model expects (1, 1, 768)"."""
    encoder_only = not hasattr(network(), "decoder_embed")
    with pytest.raises(CheckpointError, match=f"trained with arch='{TINY}', image_size=64, in_channels=3 \\(pass"):
        initialize_weights(network(), tiny_files["mae"], encoder_only=encoder_only)


# --------------------------------------------------------------------- fine-tuning from this project's own models
_NEW_NETWORKS = {
    "classifier of 2": lambda: build_classifier(TINY, 2, img_size=64),
    "classifier of 3, cls token": lambda: build_classifier(TINY, 3, img_size=64, global_pool="cls"),
    "segmenter of 3": lambda: build_segmenter(TINY, 3, img_size=64, feature_size=8),
    "segmenter of 2": lambda: build_segmenter(TINY, 2, img_size=64, feature_size=8),
}


@pytest.mark.parametrize("kind, new", [
    ("classifier", "classifier of 2"),         # transfer to a task with another class count
    ("segmenter", "classifier of 2"),           # a segmenter's encoder starting a classifier
    ("segmenter", "classifier of 3, cls token"),
    ("segmenter", "segmenter of 3"),
])
def test_fine_tuning_takes_the_encoder_of_an_own_model_whose_head_does_not_fit(tiny_files, kind, new, tmp_path):
    """A classifier of 3 classes as the start of one of 2 was refused as if the image size were wrong, and a segmenter
    as a classifier's start ended in torch's page of missing and unexpected keys."""
    content = torch.load(tiny_files[kind], weights_only=True)
    generator = torch.Generator().manual_seed(0)  # "trained": no tensor equal to a fresh initialisation
    content["model"] = {k: v + torch.rand(v.shape, generator=generator) if v.is_floating_point() else v
                        for k, v in content["model"].items()}
    torch.save(content, tmp_path / "trained.pt")
    network = _NEW_NETWORKS[new]()
    head_before = {k: v.clone() for k, v in network.state_dict().items() if k not in network.encoder_parameter_names()}
    summary = initialize_weights(network, tmp_path / "trained.pt", encoder_only=True)
    assert f"the encoder of a {kind}" in summary
    saved = content["model"]
    for key in network.encoder_parameter_names():
        assert torch.equal(network.state_dict()[key], saved[key]), key
    kept = {"fc_norm.weight", "fc_norm.bias"} if kind == "classifier" and new == "classifier of 2" else set()
    assert ("its fc_norm kept" in summary) == bool(kept)
    for key, value in head_before.items():  # the head or decoder keeps its fresh initialisation; a trained fc_norm
        expected = saved[key] if key in kept else value  # of the same pooling is kept (all but the head transfers)
        assert torch.equal(network.state_dict()[key], expected), key


@pytest.mark.parametrize("kind, new", [("classifier", lambda: build_classifier(TINY, 3, img_size=64)),
                                       ("segmenter", lambda: build_segmenter(TINY, 2, img_size=64, feature_size=8))])
def test_fine_tuning_continues_an_own_model_of_the_same_shape_whole(tiny_files, kind, new):
    network = new()
    assert "(strict)" in initialize_weights(network, tiny_files[kind], encoder_only=True)
    saved = torch.load(tiny_files[kind], weights_only=True)["model"]
    assert all(torch.equal(value, saved[key]) for key, value in network.state_dict().items())


def test_an_own_model_whose_encoder_does_not_fit_still_says_what_it_was_trained_with(tiny_files):
    """Another image size is a forgotten setting, not a transfer: the strict load's advice stands."""
    with pytest.raises(CheckpointError, match="trained with .*image_size=64"):
        initialize_weights(build_classifier(TINY, 2, img_size=96), tiny_files["classifier"], encoder_only=True)


def test_evaluating_an_own_model_of_another_class_count_is_refused(tiny_files):
    with pytest.raises(CheckpointError, match="'head.weight' has shape"):
        initialize_weights(build_classifier(TINY, 2, img_size=64), tiny_files["classifier"])


@pytest.mark.parametrize("new", ["segmenter of 2", "classifier of 3, cls token"])
def test_an_average_pooling_classifier_cannot_start_a_network_that_needs_the_final_norm(tiny_files, new):
    """It has no final encoder norm, which a segmenter's deepest feature map and a cls-token classifier need."""
    with pytest.raises(CheckpointError, match=r"lacks encoder keys \['norm.bias', 'norm.weight'\]; a classifier "
                                              "fine-tuned with average pooling"):
        initialize_weights(_NEW_NETWORKS[new](), tiny_files["classifier"], encoder_only=True)


# ------------------------------------------------------------------------------------------- paths typed as numbers
def _named_2024(setting: str, root: Path, tiny_files: dict[str, Path]) -> Path:
    """Put what ``setting`` names at ``root/2024``: a folder of images, an image, a datalist or a checkpoint."""
    import cv2

    target = root / "2024"
    if setting == "input_dir":
        target.mkdir()
        cv2.imwrite(str(target / "a.png"), IMAGE)
    elif setting == "input_files":
        cv2.imwrite(str(root / "a.png"), IMAGE)
        target.write_bytes((root / "a.png").read_bytes())
    elif setting == "datalist_file":
        for name in ("a.png", "b.png"):
            cv2.imwrite(str(root / name), IMAGE)
        parts = {"train": [{"image": "a.png", "label": 1}], "validation": [{"image": "b.png", "label": 0}]}
        target.write_text(json.dumps({"class_names": ["x", "y"], **parts}))
    else:
        target.write_bytes(tiny_files["classifier"].read_bytes())
    return target


PATH_READERS = {  # how the bundle configs read each setting (see bundles/*/configs/*.yaml)
    "input_dir": lambda value: inference_files(value, None),
    "input_files": lambda value: inference_files(None, [value, "b.png"]),
    "datalist_file": lambda value: classification_split(value, "cache")["train"][0]["label"],
    "init_checkpoint": lambda value: initialize_weights(build_classifier(TINY, 3, img_size=64), value),
    "ckpt_path": lambda value: trained_settings(value, "usf_mae_classify")["class_names"],
}
PATH_READ_AS = {"input_dir": ["2024/a.png"], "input_files": ["2024", "b.png"], "datalist_file": 1,
                "init_checkpoint": "2024: all ", "ckpt_path": ["a", "b", "c"]}


@pytest.mark.parametrize("setting", sorted(PATH_READERS))
def test_a_path_typed_as_a_number_names_the_file_or_folder_of_that_name(setting, tiny_files, tmp_path, monkeypatch):
    """``--input_dir 2024`` reaches the config as the int 2024 (fire reads values as literals): it is the folder
    '2024', not ``Path(2024)``'s TypeError; 2024.10 arrives as 2024.1, whose text is lost, and is refused by name."""
    monkeypatch.chdir(tmp_path)
    _named_2024(setting, tmp_path, tiny_files)
    found = PATH_READERS[setting](2024)
    expected = PATH_READ_AS[setting]
    assert found.startswith(expected) if isinstance(expected, str) else found == expected
    with pytest.raises(ValueError, match=rf"{setting} must be text \(a path or a name\), got float 2024\.1"):
        PATH_READERS[setting](2024.1)


@pytest.mark.parametrize("typed", ["2024_01", "0x10", "+7", "2024.10"])
@pytest.mark.parametrize("setting", ["input_dir", "datalist_file", "ckpt_path"])
def test_a_path_fire_reads_as_another_number_is_the_one_typed(setting, typed, tiny_files, tmp_path, monkeypatch):
    """``monai.bundle run ... --input_dir 2024_01``: MONAI's fire makes it 202401 (``0x10`` 16, ``2024.10`` 2024.1)
    before the config sees it; the bundle reads the folder typed, found on the command line, not '202401'."""
    from fire.parser import DefaultParseValue

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["monai/bundle/__main__.py", "run", "--config_file", "c.yaml", f"--{setting}",
                                      typed])
    _named_2024(setting, tmp_path, tiny_files).rename(tmp_path / typed)
    found = PATH_READERS[setting](DefaultParseValue(typed))
    assert found == ([f"{typed}/a.png"] if setting == "input_dir" else PATH_READ_AS[setting])


@pytest.mark.parametrize("datalist, recorded, refused", [
    (["benign", "malignant"], ["benign", "malignant"], False),
    (["benign", "malignant"], None, False),                       # no record (an external network): not checked
    (["background", "lesion"], ["background", "lesion"], False),
    (["malignant", "benign"], ["benign", "malignant"], True),     # same classes, other order: labels would swap
    (["benign", "malignant", "normal"], ["benign", "malignant"], True),
    (["2", "3", "4"], [2, 3, 4], False),                          # BI-RADS digits recorded as numbers
    (["background", "tumour"], ["background", "lesion"], True),
])
def test_evaluated_class_names_must_be_the_checkpoints(datalist, recorded, refused) -> None:
    trained = {} if recorded is None else {"class_names": recorded}
    if refused:
        with pytest.raises(ValueError, match=r"model\.pt was trained for classes .* but the datalist has"):
            class_names_trained_for(datalist, trained, "runs/a/models/model.pt")
    else:
        assert class_names_trained_for(datalist, trained, "runs/a/models/model.pt") == datalist


@pytest.mark.parametrize("encoder_only", [True, False])
def test_a_foreign_file_that_does_not_fit_is_named_in_the_error(tmp_path, encoder_only):
    """A bare state dict of a larger ViT: the error named '<in-memory checkpoint>' instead of the file."""
    big = build_mae("mae_vit_tiny_patch16_dec128d2b", img_size=32, embed_dim=96, num_heads=3)
    path = tmp_path / "bare_weights.pt"
    torch.save(big.state_dict() if not encoder_only else {"model": big.state_dict()}, path)
    network = (build_classifier("mae_vit_tiny_patch16_dec128d2b", num_classes=2, img_size=32) if encoder_only
               else build_mae("mae_vit_tiny_patch16_dec128d2b", img_size=32))
    with pytest.raises(CheckpointError, match=rf"^{re.escape(str(path))}: ") as caught:
        initialize_weights(network, str(path), encoder_only=encoder_only)
    assert "in-memory" not in str(caught.value)


def test_a_checkpoint_saved_outside_a_bundle_run_still_gives_its_image_size(tmp_path):
    """A segmenter saved with no bundle config (by a script) records img_size among its architecture arguments only;
    the standalone inference config failed on a bare KeyError 'image_size'."""
    path = tmp_path / "seg.pt"
    save_model_checkpoint(path, build_segmenter(TINY, 2, img_size=48, feature_size=8), "segmenter", {})
    trained = trained_settings(path, "usf_mae_segment")
    assert trained["image_size"] == 48 and trained["in_channels"] == 3


class _Saver:
    """BestModelSaver's state as require_best_model reads it."""

    metric_name, evaluator = "val_macro_f1", None

    def __init__(self, best: float | None) -> None:
        self.best = best


def test_a_resumed_best_whose_file_is_gone_is_named(tmp_path) -> None:
    """A resumed run restores its best score from the checkpoint; if no later epoch beats it and the file was
    removed, the run said 'best model: .../model.pt' for a file that is not there."""
    from monai_ext.apps.bundle_support import require_best_model

    with pytest.raises(ValueError, match=r"best val_macro_f1 of 0.8 from its checkpoint, but .*model.pt .* is gone"):
        require_best_model(tmp_path / "model.pt", _Saver(0.8))
    (tmp_path / "model.pt").write_bytes(b"x")
    require_best_model(tmp_path / "model.pt", _Saver(0.8))
    with pytest.raises(ValueError, match="no validation ran during training"):
        require_best_model(tmp_path / "other.pt", _Saver(None))


def test_pictures_only_inference_counts_dicom_among_the_files_not_read(tmp_path, caplog) -> None:
    """The pretraining bundle reads pictures: it listed DICOM files and volumes, then called each unreadable."""
    scans = _scan_folder(tmp_path / "scans")
    with caplog.at_level("WARNING"):
        files = inference_files(scans, None, pictures_only=True)
    assert files and all(Path(f).suffix.lower() in (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff") for f in files)
    assert "this bundle reads pictures: DICOM files, cine loops and volumes go through prepare-corpus" in caplog.text
    dicom = next(str(p) for p in scans.rglob("*.dcm"))
    with pytest.raises(ValueError, match="this bundle reads pictures .*prepare-corpus"):
        inference_files(None, [dicom], pictures_only=True)
    assert dicom in inference_files(None, [dicom])  # the fine-tuning bundles read DICOM


@pytest.mark.parametrize("train, validation, expected", [
    ([{"image": "/d/c.png"}, {"image": "/d/a.png"}], [{"image": "/d/b.png"}], ["/d/a.png", "/d/b.png", "/d/c.png"]),
    ([{"image": 7}, {"image": 2}], [{"image": 10}, {"image": 0}], [0, 2, 7, 10]),  # a corpus cache's frame indices
])
def test_pretrain_eval_part_all_is_the_whole_set_in_file_order(train, validation, expected) -> None:
    from monai_ext.apps.bundle_support import pretrain_eval_part

    datalists = {"train": train, "validation": validation}
    assert [item["image"] for item in pretrain_eval_part(datalists, "all")] == expected
    assert pretrain_eval_part(datalists, "validation") == validation
    with pytest.raises(ValueError, match="eval_split must be one of .*got 'test'"):
        pretrain_eval_part(datalists, "test")


def test_only_rank_0_requires_the_best_model_file(tmp_path, monkeypatch) -> None:
    """Rank 0 alone writes model.pt: another node's rank (ckpt_dir not shared) failed a finished run for not
    seeing it. Rank 0 still refuses a resumed best whose file is gone."""
    from types import SimpleNamespace

    from monai_ext.apps.bundle_support import require_best_model
    from monai_ext.engines import distributed

    saver = SimpleNamespace(best=0.81, metric_name="val_macro_f1", evaluator=None)
    monkeypatch.setattr(distributed, "_rank_before_teardown", 1)  # what the teardown leaves on rank 1
    require_best_model(tmp_path / "model.pt", saver)
    monkeypatch.setattr(distributed, "_rank_before_teardown", 0)
    with pytest.raises(ValueError, match="is gone"):
        require_best_model(tmp_path / "model.pt", saver)


@pytest.mark.parametrize("names, encoding, foreground, refused", [
    (["background", "benign", "malignant"], "binary", False, True),   # class-index masks would train as one class
    (["background", "benign", "malignant"], "binary", True, False),   # MMOTU: each item says its class
    (["background", "benign", "malignant"], "index", False, False),
    (["background", "lesion"], "binary", False, False),
])
def test_binary_masks_of_several_classes_are_refused_unless_items_give_their_class(names, encoding, foreground,
                                                                                    refused) -> None:
    from monai_ext.apps.bundle_support import check_mask_encoding

    item = {"image": "/d/a.png", "label": "/d/a_mask.png", **({"foreground": 2} if foreground else {})}
    split = {"class_names": names, "train": [item], "validation": [dict(item, image="/d/b.png")]}
    if refused:
        with pytest.raises(ValueError, match=r"2 foreground classes \['benign', 'malignant'\], but --mask_encoding "
                                             r"binary .* 2 item\(s\) .* e\.g\. '/d/a\.png': give --mask_encoding index"):
            check_mask_encoding(split, encoding)
    else:
        check_mask_encoding(split, encoding)


@pytest.mark.parametrize("num_classes, names, refused", [
    (3, ["background", "lesion"], True),     # trained a whole epoch, saved model.pt, then failed on the Dice shape
    (1, ["background", "lesion"], True),
    (2, ["background", "lesion"], False),
    (3, ["background", "benign", "malignant"], False),
])
def test_a_num_classes_other_than_the_datalists_is_refused_naming_both(num_classes, names, refused) -> None:
    """The bundle checks it with the masks' encoding (its mask_check), before the weights or any data are loaded."""
    from monai_ext.apps.bundle_support import check_mask_encoding, check_num_classes

    split = {"class_names": names, "train": [{"image": "/d/a.png", "label": "/d/a_mask.png", "foreground": 1}]}
    for check in (lambda: check_num_classes(num_classes, names),
                  lambda: check_mask_encoding(split, "binary", num_classes)):
        if refused:
            with pytest.raises(ValueError, match=rf"--num_classes {num_classes} differs from the 2 class_names of "
                                                 r"the datalist, \['background', 'lesion'\]"):
                check()
        else:
            check()


@pytest.mark.parametrize("kind, outputs, names", [
    ("segmenter", 3, ["background", "lesion"]),
    ("classifier", 2, ["a", "b", "c"]),
])
def test_a_checkpoint_of_more_or_fewer_outputs_than_class_names_is_refused(tmp_path, kind, outputs, names) -> None:
    """Such a file (a run given --num_classes) predicted a class with no name, left out of every summary."""
    path = tmp_path / "model.pt"
    model = (build_segmenter(TINY, outputs, img_size=64, feature_size=8) if kind == "segmenter"
             else build_classifier(TINY, outputs, img_size=64))
    save_model_checkpoint(path, model, kind, {"arch": TINY, "image_size": 64, "class_names": names})
    with pytest.raises(CheckpointError, match=rf"model\.pt: its network has {outputs} output classes but it names "
                                              rf"{len(names)}, {re.escape(repr(names))}"):
        trained_settings(path, f"usf_mae_{'segment' if kind == 'segmenter' else 'classify'}")


@pytest.mark.parametrize("values, names, refused", [
    ((0, 255), ["background", "lesion"], True),                  # BUSI / BUS-BRA masks
    ((0, 255), ["background", "benign", "malignant"], True),
    ((0, 1), ["background", "lesion"], False),                   # 0/1 masks are class indices already
    ((0, 1, 2), ["background", "benign", "malignant"], False),
    ((0,), ["background", "lesion"], False),                     # a lesion-free mask tells nothing
])
def test_index_encoding_is_refused_for_binary_masks_naming_the_file(tmp_path, values, names, refused) -> None:
    """Each 0/255 mask was left out as it was loaded, with a warning each, and the run ended saying that the few
    lesion-free masks left held no lesion."""
    from monai_ext.apps.bundle_support import check_mask_encoding

    pixels = np.zeros((8, 10), np.uint8)
    for row, value in enumerate(values):
        pixels[row] = value
    mask = tmp_path / "a_mask.png"
    Image.fromarray(pixels).save(mask)
    empty = tmp_path / "empty_mask.png"
    Image.fromarray(np.zeros((8, 10), np.uint8)).save(empty)
    split = {"class_names": names, "train": [{"image": "/d/e.png", "label": str(empty)},  # looked past: no lesion
                                             {"image": "/d/a.png", "label": str(mask)}],
             "validation": [{"image": "/d/m.png", "label": [str(empty), str(empty)]}]}  # BUSI's several masks
    if refused:
        with pytest.raises(ValueError, match=rf"--mask_encoding index reads mask values as class indices below "
                                             rf"{len(names)}, but '[^']*a_mask\.png' holds 0 and 255 only: a binary "
                                             r"mask; give --mask_encoding binary"):
            check_mask_encoding(split, "index")
    else:
        check_mask_encoding(split, "index")


@pytest.mark.parametrize("layout", ["many_empty_first", "second_of_an_items_masks"])
def test_index_encoding_finds_a_binary_mask_behind_lesion_free_ones(tmp_path, layout) -> None:
    """The check read five masks a part, lesion-free ones included, and only the first of an item's several masks:
    a part of mostly normal images, or an item whose lesion mask came second, passed, and each 0/255 mask was then
    left out as it was loaded."""
    from monai_ext.apps.bundle_support import check_mask_encoding

    empty, binary = tmp_path / "empty_mask.png", tmp_path / "lesion_mask.png"
    Image.fromarray(np.zeros((8, 10), np.uint8)).save(empty)
    pixels = np.zeros((8, 10), np.uint8)
    pixels[2:5, 3:6] = 255
    Image.fromarray(pixels).save(binary)
    items = ([{"image": f"/d/n{i}.png", "label": str(empty)} for i in range(12)] + [{"image": "/d/a.png",
             "label": str(binary)}] if layout == "many_empty_first" else
             [{"image": "/d/a.png", "label": [str(empty), str(binary)]}])
    with pytest.raises(ValueError, match=r"but '[^']*lesion_mask\.png' holds 0 and 255 only: a binary mask"):
        check_mask_encoding({"class_names": ["background", "lesion"], "train": items}, "index")


def test_a_recorded_dataset_folder_that_is_gone_says_where_it_came_from(tmp_path) -> None:
    from monai_ext.apps.bundle_support import recorded_dataset_dir

    assert recorded_dataset_dir({}, "m.pt") is None
    assert recorded_dataset_dir({"dataset_dir": str(tmp_path)}, "m.pt") == str(tmp_path)
    with pytest.raises(ValueError, match=r"m\.pt was pretrained on '/home/alice/us_archive', which is not a folder "
                                         r"here .* give --dataset_dir"):
        recorded_dataset_dir({"dataset_dir": "/home/alice/us_archive"}, "m.pt")


def test_a_corpus_cache_given_to_inference_is_refused_in_words(tmp_path):
    """Its one picture is report.png: the pretraining inference reconstructed the report's bar chart, exit 0."""
    from monai_ext.data.corpus import CorpusOptions, prepare_corpus
    from monai_ext.io.writers import write_dicom_frames

    write_dicom_frames(np.random.default_rng(0).integers(0, 255, (2, 48, 64), np.uint8), tmp_path / "root" / "a" / "x.dcm")
    prepare_corpus(tmp_path / "root", tmp_path / "cache", CorpusOptions(size=32, deannotate=False))
    with pytest.raises(ValueError, match="is a prepare-corpus cache, whose frames are not files to predict") as e:
        inference_files(tmp_path / "cache", None, pictures_only=True)
    assert "--eval_split all" in str(e.value)  # the pretraining bundle's evaluate reads caches; the others do not
    with pytest.raises(ValueError, match="give the folder of the source files$"):
        inference_files(tmp_path / "cache", None)


def test_a_probe_checkpoint_without_its_validation_head_is_evaluated_with_a_warning(tmp_path, caplog) -> None:
    """A linear-probe checkpoint of an earlier version keeps only the head refit on training + validation: scoring
    its validation part says so; other splits, and fine-tuned checkpoints, pass without a word."""
    from monai_ext.apps.bundle_support import use_validation_probe

    network = torch.nn.Module()
    network.head = torch.nn.Linear(3, 2)
    before = {k: v.clone() for k, v in network.head.state_dict().items()}
    for linear_probe in (True, False):
        torch.save({"model": {}, "arch": {"arch_args": {"linear_probe": linear_probe}}}, tmp_path / f"{linear_probe}.pt")
    with caplog.at_level(logging.INFO):
        assert use_validation_probe(network, tmp_path / "True.pt", "test") is None
        assert use_validation_probe(network, tmp_path / "False.pt", "validation") is None
        assert caplog.text == ""
        summary = use_validation_probe(network, tmp_path / "True.pt", "validation")
    assert "refit on training + validation" in summary and "linear_validation" in summary and summary in caplog.text
    assert all(torch.equal(v, network.head.state_dict()[k]) for k, v in before.items())


@pytest.mark.parametrize("trained, defaults, expected", [
    ({"class_names": [2, 3]}, ["benign", "malignant"], ["2", "3"]),  # recorded: taken, as text
    ({"in_channels": 3}, ["benign", "malignant"], None),  # a file without names: not the defaults
    ({"in_channels": 3}, None, None),
])
def test_recorded_class_names_never_invents_names_for_a_checkpoint(tmp_path, trained, defaults, expected) -> None:
    """A checkpoint saved without a training config got the bundle's benign/malignant, relabelling its classes."""
    path = tmp_path / "model.pt"
    path.write_bytes(b"a checkpoint")
    if expected is None:
        with pytest.raises(ValueError, match=r"records no class names .*--class_names"):
            recorded_class_names(trained, path, None, defaults)
    else:
        assert recorded_class_names(trained, path, None, defaults) == expected


def test_recorded_class_names_defaults_only_before_any_checkpoint(tmp_path) -> None:
    default = tmp_path / "bundle" / "models" / "model.pt"
    default.parent.mkdir(parents=True)
    assert recorded_class_names({}, default, default, ["benign", "malignant"]) == ["benign", "malignant"]
    with pytest.raises(ValueError, match="records no class names"):
        recorded_class_names({}, default, default, None)  # the segment bundle needs a checkpoint


@pytest.mark.parametrize("content, told", [({"a": torch.zeros(1)}, "unrecognised checkpoint layout; first keys: ['a']"),
                                           ("other.pth", "a checkpoint must be a dict, got 'str'")])
@pytest.mark.parametrize("network", ["mae", "classifier"])
def test_an_unrecognised_checkpoint_is_refused_naming_the_file(tmp_path, content, told, network) -> None:
    """The layout's refusal reached the user without the file's name ("unrecognised checkpoint layout")."""
    path = tmp_path / "odd_weights.pt"
    torch.save(content, path)
    model = build_mae(TINY, img_size=64) if network == "mae" else build_classifier(TINY, 2, img_size=64)
    with pytest.raises(CheckpointError, match=rf"^{re.escape(str(path))}: {re.escape(told)}"):
        initialize_weights(model, path)
    with pytest.raises(CheckpointError, match=rf"^{re.escape(str(path))}: {re.escape(told)}"):
        load_inference_weights(model, path, "usf_mae_pretrain" if network == "mae" else "usf_mae_classify")


@pytest.mark.parametrize("arch", [TINY, "mae_vit_small_patch16_dec256d4b"])
@pytest.mark.parametrize("kind", ["mae", "classifier", "segmenter"])
def test_a_record_without_an_arch_name_is_named_by_its_structure(tmp_path, kind, arch) -> None:
    """A classifier saved by save_model_checkpoint without config.arch was rebuilt by evaluate and inference as the
    bundles' default ViT-B."""
    build = {"mae": lambda name: build_mae(name, img_size=32),
             "classifier": lambda name: build_classifier(name, 2, img_size=32),
             "segmenter": lambda name: build_segmenter(name, 2, img_size=32, feature_size=8)}[kind]
    path = tmp_path / f"{kind}.pt"
    save_model_checkpoint(path, build(arch), kind, {"class_names": ["a", "b"]})
    bundle = {"mae": "usf_mae_pretrain", "classifier": "usf_mae_classify", "segmenter": "usf_mae_segment"}[kind]
    trained = trained_settings(path, bundle)
    assert trained["arch"] == arch
    # the network the bundle then builds by that name takes the file whole (a refusal raises)
    assert load_inference_weights(build(trained["arch"]), path, bundle) == str(path.resolve())


def test_a_record_of_no_registered_structure_names_no_arch(tmp_path) -> None:
    path = tmp_path / "odd.pt"
    save_model_checkpoint(path, build_classifier(TINY, 2, img_size=32, depth=2), "classifier", {"class_names": ["a", "b"]})
    assert "arch" not in trained_settings(path, "usf_mae_classify")


@pytest.mark.parametrize("through_link", [False, True])
def test_the_trained_images_record_resolves_through_a_linked_folder(tmp_path, through_link: bool) -> None:
    """The record's paths were relative to the datalist folder's text: reached through a link at another depth
    (``/data`` -> ``/mnt/disk/x``), its ``..`` steps resolved elsewhere and no trained image was recognised, so the
    label app scored the served model on its own training images."""
    from monai_ext.apps.bundle_support import recorded_trained_images, trained_images

    images = tmp_path / "studies"
    images.mkdir()
    for name in ("a.png", "b.png"):
        (images / name).write_bytes(b"image")
    work = tmp_path / "deep" / "a" / "b" / "work"
    work.mkdir(parents=True)
    folder = work
    if through_link:
        (tmp_path / "link").symlink_to(work.parent)  # one level up from tmp_path, four levels deep for real
        folder = tmp_path / "link" / "work"
    datalist = folder / "datalist.json"
    datalist.write_text("{}")
    split = {"train": [{"image": str(images / "a.png")}], "validation": [{"image": str(images / "b.png")}]}
    config = {"trained_images": trained_images(datalist, split), "datalist_file": str(datalist)}
    assert recorded_trained_images(config) == {str((images / n).resolve()) for n in ("a.png", "b.png")}


def test_inference_weights_of_another_scripts_file_naming_its_arch_load_at_another_size(tmp_path, caplog) -> None:
    """``{"arch": "<name>", "state_dict": ...}`` (MoCo v3, DINO style) resized to --image_size: the size warning read
    the name as a record and raised AttributeError: 'str' object has no attribute 'get'."""
    from monai_ext.networks.reconstruction import build_mae_reconstructor

    arch = "mae_vit_tiny_patch16_dec128d2b"
    torch.save({"arch": arch, "state_dict": build_mae(arch, img_size=64).state_dict()}, tmp_path / "mae.pth")
    with caplog.at_level(logging.WARNING, logger="monai_ext.apps.bundle_support"):
        assert load_inference_weights(build_mae_reconstructor(arch, img_size=96), str(tmp_path / "mae.pth"),
                                      "usf_mae_pretrain").endswith("mae.pth")
    assert "records no image size" in caplog.text
