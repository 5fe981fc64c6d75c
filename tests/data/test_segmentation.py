"""Segmentation datasets on tiny fixtures written in each dataset's real on-disk layout (names, mask encodings,
splits), and the mask loader that turns every encoding into the same class-index map."""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from monai_ext.cli import make_datalist
from monai_ext.data.downstream import csv_protocol
from monai_ext.data.segmentation import (
    busbra_segmentation_protocol,
    busi_items,
    busi_protocol,
    image_mask_folder_items,
    image_mask_folder_protocol,
    kfold_splits,
    mmotu_segmentation_protocol,
    split_validation,
    synthetic_segmentation_dataset,
    synthetic_segmentation_protocol,
)
from monai_ext.io.errors import UnreadableImageError
from monai_ext.io.writers import LPS_AFFINE
from monai_ext.transforms.masks import LoadMask, LoadMaskd
from tests.data.test_downstream import write_stub


def _write(path: Path, pixels: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), pixels), path
    return path


def _disc(size: int = 24, centre: tuple[int, int] = (12, 12), radius: int = 5, value: int = 255) -> np.ndarray:
    mask = np.zeros((size, size), np.uint8)
    cv2.circle(mask, centre[::-1], radius, value, -1)
    return mask


def _image(size: int = 24, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size, size), np.uint8)


def _every_item(protocol) -> list[dict]:
    return [it for split in protocol.splits for part in split.values() for it in part]


# ----------------------------------------------------------------------------------------------------------- BUS-BRA
@pytest.fixture
def busbra(tmp_path: Path) -> Path:
    """10 images of 5 patients (two sides each), official 5-fold file with patient-disjoint folds."""
    root = tmp_path / "BUSBRA"
    rows, folds = [], []
    for patient in range(5):
        for side in "lr":
            image_id = f"bus_{patient + 1:04d}-{side}"
            _write(root / "Images" / f"{image_id}.png", _image(seed=patient))
            _write(root / "Masks" / f"mask_{patient + 1:04d}-{side}.png", _disc(radius=3 + patient))
            pathology = "malignant" if patient % 2 else "benign"
            rows.append({"ID": image_id, "Case": str(patient + 1), "Histology": "x", "Pathology": pathology,
                         "BIRADS": "4", "Device": "d", "Width": "24", "Height": "24", "Side": side, "BBOX": "[]"})
            test_fold = patient + 1
            row = {"ID": image_id, "Pathology": pathology, "kFold": str(test_fold)}
            for k in range(1, 6):
                # run k: its test fold empty, patient (k % 5) + 1 validates, the others train
                row[f"valid_{k}"] = "" if k == test_fold else ("0" if patient + 1 == k % 5 + 1 else "1")
            folds.append(row)
    for name, table in (("bus_data.csv", rows), ("5-fold-cv.csv", folds)):
        with open(root / name, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(table[0]))
            writer.writeheader()
            writer.writerows(table)
    return root


def test_busbra_masks_follow_the_official_patient_disjoint_folds(busbra: Path) -> None:
    protocol = busbra_segmentation_protocol(busbra, folds=5)
    assert protocol.class_names == ["background", "lesion"] and len(protocol.splits) == 5
    first = protocol.splits[0]
    assert {it["patient"] for it in first["test"]} == {"1"}
    assert {it["patient"] for it in first["validation"]} == {"2"}
    assert {it["patient"] for it in first["train"]} == {"3", "4", "5"}
    item = next(it for it in first["test"] if it["id"] == "bus_0001-l")
    assert item["label"] == str(busbra / "Masks" / "mask_0001-l.png")
    assert item["image"] == str(busbra / "Images" / "bus_0001-l.png") and item["group"] == "benign"
    mask = LoadMask()(item["label"])
    assert mask.shape == (1, 24, 24) and set(np.unique(mask)) == {0, 1}


def test_busbra_masks_are_not_warned_of_a_test_fold_without_a_pathology(busbra: Path, caplog) -> None:
    """Each test fold here holds one patient, so one pathology: busbra-seg passed on the classification warning
    that macro-F1 leaves the other out, which lesion masks (lesion or not, any pathology) have nothing to do with."""
    from monai_ext.data.downstream import busbra_protocol

    with caplog.at_level(logging.WARNING):
        busbra_segmentation_protocol(busbra, folds=5)
    assert "hold no image of class" not in caplog.text
    with caplog.at_level(logging.WARNING):
        busbra_protocol(busbra, folds=5)  # the classification protocol of the same folds still warns
    assert "hold no image of class 'benign'" in caplog.text


def test_busbra_masks_no_image_uses_are_named(busbra: Path, caplog) -> None:
    """A mask left over from an image deleted or renamed shrank the dataset without a word."""
    _write(busbra / "Masks" / "mask_9999-l.png", _disc())
    with caplog.at_level("WARNING", logger="monai_ext.data.segmentation"):
        busbra_segmentation_protocol(busbra, folds=5)
    assert "1 mask files have no image and are left out, e.g." in caplog.text and "mask_9999-l.png" in caplog.text


def test_busbra_missing_mask_is_named(busbra: Path) -> None:
    (busbra / "Masks" / "mask_0003-r.png").unlink()
    with pytest.raises(ValueError, match="mask_0003-r.png"):
        busbra_segmentation_protocol(busbra)


# ---------------------------------------------------------------------------------------------------------- MMOTU-2D
@pytest.fixture
def mmotu(tmp_path: Path) -> Path:
    return make_mmotu_segmentation(tmp_path / "OTU_2d")


def make_mmotu_segmentation(root: Path) -> Path:
    """MMOTU-2D's segmentation layout in ``root``: 8 images, binary and colour masks, 6 listed to train and 2 to
    test, each of its own class (1..8) in the classification lists."""
    for stem in range(1, 9):
        _write(root / "images" / f"{stem}.JPG", _image(seed=stem))
        _write(root / "annotations" / f"{stem}_binary.PNG", _disc(radius=2 + stem % 4, value=1 if stem % 2 else 255))
        rgb = np.zeros((24, 24, 3), np.uint8)
        rgb[_disc() > 0] = (64, 0, 128)
        _write(root / "annotations" / f"{stem}.PNG", rgb)
    (root / "train.txt").write_text("1\n2\n3\n4\n5\n6\n")
    (root / "val.txt").write_text("7\n8\n")
    (root / "train_cls.txt").write_text("".join(f"{s}.JPG  {s - 1}\n" for s in range(1, 7)))
    (root / "val_cls.txt").write_text("7.JPG  6\n8.JPG  7\n")
    return root


def test_mmotu_masks_and_images_renamed_in_another_case_are_found(mmotu: Path) -> None:
    """An archive unpacked or renamed to lower-case suffixes: images were found in any case, masks were not."""
    for path in [*(mmotu / "images").iterdir(), *(mmotu / "annotations").iterdir()]:
        path.rename(path.with_suffix(path.suffix.lower()))
    split = mmotu_segmentation_protocol(mmotu, val_fraction=0.2).splits[0]
    assert split["test"][0]["image"] == str(mmotu / "images" / "7.jpg")
    assert split["test"][0]["label"] == str(mmotu / "annotations" / "7_binary.png")


def test_mmotu_official_split_binary_masks_of_both_encodings(mmotu: Path) -> None:
    protocol = mmotu_segmentation_protocol(mmotu, val_fraction=0.2)
    split = protocol.splits[0]
    assert [it["id"] for it in split["test"]] == ["7", "8"]
    assert sorted(it["id"] for it in split["train"] + split["validation"]) == ["1", "2", "3", "4", "5", "6"]
    assert len(split["validation"]) >= 1
    assert split["test"][0]["image"] == str(mmotu / "images" / "7.JPG")
    assert split["test"][0]["label"] == str(mmotu / "annotations" / "7_binary.PNG")
    # 0/1 (odd stems) and 0/255 (even stems) masks load alike
    assert set(np.unique(LoadMask()(str(mmotu / "annotations" / "7_binary.PNG")))) == {0, 1}
    assert set(np.unique(LoadMask()(str(mmotu / "annotations" / "8_binary.PNG")))) == {0, 1}


def test_mmotu_multiclass_masks_take_the_image_class(mmotu: Path) -> None:
    protocol = mmotu_segmentation_protocol(mmotu, multiclass=True, val_fraction=0.2)
    assert len(protocol.class_names) == 9 and protocol.class_names[0] == "background"
    item = protocol.splits[0]["test"][1]  # 8.JPG, class 7 -> mask value 8
    assert item["foreground"] == 8 and protocol.class_names[8] == "high-grade serous cystadenocarcinoma"
    loaded = LoadMaskd("label", foreground_key="foreground", image_key=None)(item)
    assert set(np.unique(loaded["label"])) == {0, 8}


# ----------------------------------------------------------------------------------------------------------- BUSI
@pytest.fixture
def busi(tmp_path: Path) -> Path:
    root = tmp_path / "Dataset_BUSI_with_GT"
    for c, cls in enumerate(("benign", "malignant", "normal")):
        for i in range(1, 6):
            name = f"{cls} ({i})"
            _write(root / cls / f"{name}.png", _image(seed=10 * c + i))  # each its own picture: copies are left out
            empty = cls == "normal"
            _write(root / cls / f"{name}_mask.png", np.zeros((24, 24), np.uint8) if empty else _disc((24), (8, 8), 3))
    # a second lesion in its own mask file: the masks of one image are merged
    _write(root / "benign" / "benign (2)_mask_1.png", _disc(24, (16, 16), 3))
    return root


def test_busi_merges_several_masks_and_keeps_names_with_spaces(busi: Path) -> None:
    protocol = busi_protocol(busi, folds=5, seed=1)
    items = {it["id"]: it for it in _every_item(protocol)}
    assert len(items) == 15 and protocol.class_names == ["background", "lesion"]
    two = items["benign/benign (2)"]
    assert two["label"] == [str(busi / "benign" / "benign (2)_mask.png"), str(busi / "benign" / "benign (2)_mask_1.png")]
    merged = LoadMask()(two["label"])[0]
    expected = ((_disc(24, (8, 8), 3) > 0) | (_disc(24, (16, 16), 3) > 0)).astype(np.uint8)
    np.testing.assert_array_equal(merged, expected)
    assert LoadMask()(items["normal/normal (3)"]["label"]).max() == 0
    for split in protocol.splits:  # each test fold holds one image of each class (stratified by folder)
        assert sorted(it["group"] for it in split["test"]) == ["benign", "malignant", "normal"]


def test_busi_image_without_mask_is_named(busi: Path) -> None:
    (busi / "malignant" / "malignant (4)_mask.png").unlink()
    with pytest.raises(ValueError, match=r"malignant \(4\)\.png"):
        busi_protocol(busi)


# ---------------------------------------------------------------------------------------------- images/ + masks/
def test_images_and_masks_folders_with_equal_stems(tmp_path: Path) -> None:
    root = tmp_path / "thyroid"
    for i in range(6):
        _write(root / "images" / f"case_{i}.jpg", _image(seed=i))
        _write(root / "masks" / f"case_{i}.png", _disc(value=1 if i == 0 else 255))  # first mask 0/1, as in the wild
    protocol = image_mask_folder_protocol(root, folds=3)
    items = _every_item(protocol)
    assert sorted({it["id"] for it in items}) == [f"case_{i}" for i in range(6)]
    for split in protocol.splits:
        ids = [it["id"] for part in split.values() for it in part]
        assert len(ids) == len(set(ids)) == 6  # train, validation and test are disjoint and cover everything
    np.testing.assert_array_equal(LoadMask()(str(root / "masks" / "case_0.png")),
                                  LoadMask()(str(root / "masks" / "case_1.png")))
    (root / "masks" / "case_5.png").unlink()
    with pytest.raises(ValueError, match=r"have no mask of the same stem .*\['case_5'\]"):
        image_mask_folder_protocol(root, folds=3)


def test_images_and_masks_in_sub_folders_pair_by_their_sub_folder(tmp_path: Path) -> None:
    """A set gathered from two sites keeps one sub-folder each: those images were passed over without a word."""
    root = tmp_path / "nerve"
    for site in ("", "site2/", "site3/b/"):
        for i in range(2):
            _write(root / "images" / f"{site}case_{i}.png", _image(seed=i + len(site)))
            _write(root / "masks" / f"{site}case_{i}.png", _disc())
    items = image_mask_folder_items(root)
    assert [it["id"] for it in items] == ["case_0", "case_1", "site2/case_0", "site2/case_1", "site3/b/case_0",
                                          "site3/b/case_1"]
    assert all(Path(it["label"]).relative_to(root / "masks").with_suffix("").as_posix() == it["id"] for it in items)
    (root / "masks" / "site2" / "case_1.png").rename(root / "masks" / "case_9.png")  # paired by folder, not by name
    with pytest.raises(ValueError, match=r"1 images in .* have no mask of the same stem .*\['site2/case_1'\]"):
        image_mask_folder_items(root)


def test_volume_images_pair_with_masks_of_the_name_without_the_double_suffix(tmp_path: Path) -> None:
    """``case.nii.gz`` is image ``case`` (not ``case.nii``) and pairs with ``masks/case.png``; hidden files are skipped."""
    import nibabel as nib

    root = tmp_path / "kidney"
    for i in range(3):
        (root / "images").mkdir(parents=True, exist_ok=True)
        nib.save(nib.Nifti1Image(_image(seed=i)[:, :, None].astype(np.uint8), LPS_AFFINE), root / "images" / f"case_{i}.nii.gz")
        _write(root / "masks" / f"case_{i}.png", _disc())
    (root / "images" / ".DS_Store").write_bytes(b"x")
    items = image_mask_folder_items(root)
    assert [it["id"] for it in items] == ["case_0", "case_1", "case_2"]
    assert [Path(it["label"]).name for it in items] == ["case_0.png", "case_1.png", "case_2.png"]


def test_make_datalist_writes_a_segmentation_datalist(busi: Path, tmp_path: Path, capsys) -> None:
    make_datalist("busi", str(busi), str(tmp_path / "busi.json"), fold=2)
    data = json.loads((tmp_path / "busi.json").read_text())
    assert data["class_names"] == ["background", "lesion"]
    assert sum(len(data[k]) for k in ("train", "validation", "test")) == 15
    assert "fold 2" in capsys.readouterr().out


# ------------------------------------------------------------------------------------------------ splits, loader
@pytest.mark.parametrize("max_train", [None, 8])
def test_kfold_splits_cover_every_image_once_as_test_and_cap_training(max_train: int | None) -> None:
    items = [{"image": f"{i}.png", "label": f"{i}_mask.png", "id": str(i), "patient": str(i // 2)} for i in range(30)]
    splits = kfold_splits(items, folds=5, val_fraction=0.25, seed=3, max_train=max_train)
    assert sorted(it["id"] for s in splits for it in s["test"]) == sorted(it["id"] for it in items)
    for split in splits:
        labelled = split["train"] + split["validation"]
        assert len(labelled) == (max_train or 24)
        patients = [{it["patient"] for it in split[p]} for p in ("train", "validation", "test")]
        assert not (patients[0] & patients[1]) and not (patients[0] & patients[2]) and not (patients[1] & patients[2])


TOO_FEW_PATIENTS = [  # (patients, folds, the whole message): fewer folds are advised only where they would do
    (2, 3, "the dataset has images of 2 patient(s); 3 patient-disjoint test folds need images of at least 3 patients: "
           "add images of other patients"),
    (2, 2, "the training part has images of 1 patient(s); a patient-disjoint validation part needs images of at "
           "least 2 patients: add images of other patients"),                  # a fold's training part, for validation
    (3, 4, "the dataset has images of 3 patient(s); 4 patient-disjoint test folds need images of at least 4 patients: "
           "add images of other patients or ask for at most 3 folds"),
]


@pytest.mark.parametrize("patients, folds, message", TOO_FEW_PATIENTS)
def test_too_few_patients_are_named_before_scikit_learn_refuses(patients: int, folds: int, message: str) -> None:
    items = [{"image": f"{i}.png", "label": f"{i}_mask.png", "id": str(i), "patient": str(i % patients)}
             for i in range(12)]
    with pytest.raises(ValueError) as refused:
        kfold_splits(items, folds=folds)
    assert str(refused.value) == message
    if "at most" in message:  # the advice works
        advised = int(message.split("at most ")[1].split()[0])
        assert len(kfold_splits(items, folds=advised)) == advised


@pytest.mark.parametrize("patients, folds, message", TOO_FEW_PATIENTS)
def test_classification_says_the_same_of_the_same_patients(tmp_path: Path, patients: int, folds: int,
                                                            message: str) -> None:
    """One wording for both tasks: the classification CSV protocol over the same 12 images of the same patients."""
    rows = ["path,label,patient"]
    for i in range(12):
        write_stub(tmp_path / f"{i}.png", "png")  # each its own picture: copies and non-pictures are left out
        rows.append(f"{i}.png,{'benign' if i < 6 else 'malignant'},p{i % patients}")
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    with pytest.raises(ValueError) as refused:
        csv_protocol(tmp_path / "labels.csv", folds=folds)
    assert str(refused.value) == message


@pytest.mark.parametrize("groups", [("benign", "malignant"), ("a", "c"), ("GIST", "leiomyoma")])
@pytest.mark.parametrize("val_fraction, validation", [(0.2, 8), (0.25, 10)])
def test_validation_share_does_not_depend_on_which_groups_a_training_part_has(groups, val_fraction,
                                                                               validation) -> None:
    """The twin of classification's absent class: strata are counted over the groups present, so a fold's training
    part that lacks one keeps 1/val_fraction parts."""
    train = [{"image": f"{g}{i}.png", "label": f"{g}{i}_mask.png", "id": f"{g}{i}", "group": g}
             for g in groups for i in range(20)]
    kept, held_out = split_validation(train, val_fraction, seed=0)
    assert (len(kept), len(held_out)) == (40 - validation, validation)
    assert sorted(it["group"] for it in held_out) == sorted([*groups] * (validation // 2))


def test_two_patients_in_training_give_one_to_validation() -> None:
    """Fewer patients than the validation share asks for (5 parts): one patient is still held out, not an error."""
    items = [{"image": f"{i}.png", "label": f"{i}_mask.png", "id": str(i), "patient": str(i % 3)} for i in range(12)]
    for split in kfold_splits(items, folds=3):
        patients = [{it["patient"] for it in split[p]} for p in ("train", "validation", "test")]
        assert len(patients[0]) == len(patients[1]) == len(patients[2]) == 1 and len(set.union(*patients)) == 3


def test_index_masks_out_of_range_and_mismatched_sizes_are_reported(tmp_path: Path) -> None:
    path = _write(tmp_path / "m.png", _disc(value=255))
    with pytest.raises(UnreadableImageError, match="255 is not a class index below 3"):
        LoadMask("index", num_classes=3)(str(path))
    small = _write(tmp_path / "small.png", _disc(size=12, centre=(6, 6)))
    with pytest.raises(UnreadableImageError, match="differ in size"):
        LoadMask()([str(path), str(small)])
    with pytest.raises(UnreadableImageError, match="differs from the image"):
        LoadMaskd("label")({"image": np.zeros((1, 24, 30), np.float32), "label": str(path)})
    (tmp_path / "bad.png").write_text("not a png")
    with pytest.raises(UnreadableImageError, match="bad.png"):
        LoadMask()(str(tmp_path / "bad.png"))
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(UnreadableImageError, match=r"empty.png: empty file \(0 bytes\)"):
        LoadMask()(str(tmp_path / "empty.png"))


def test_simulated_set_masks_match_the_lesions(tmp_path: Path) -> None:
    protocol = synthetic_segmentation_protocol(tmp_path, num=10, max_train=6)
    split = protocol.splits[0]
    assert len(split["test"]) == 2 and len(split["train"]) + len(split["validation"]) == 6
    item = split["test"][0]
    mask = LoadMask()(item["label"])[0]
    image = cv2.imread(item["image"], cv2.IMREAD_GRAYSCALE).astype(float)
    assert 0.003 < mask.mean() < 0.2  # one lesion per image
    # simulated lesions are hypoechoic or anechoic: darker inside the mask than in a ring around it
    ring = cv2.dilate(mask, np.ones((15, 15), np.uint8)).astype(bool) & ~mask.astype(bool)
    assert image[mask.astype(bool)].mean() < image[ring].mean()


@pytest.mark.parametrize("record_text", ['{"num": 5, "seed": 0, "layout": "busi", "config": "SimulatorConfig(old)"}',
                                         '{"num": 5, "seed"', "[]"])
def test_simulated_set_made_with_other_settings_is_made_again(tmp_path: Path, record_text: str) -> None:
    root = synthetic_segmentation_dataset(tmp_path, num=5)
    record = (root / "synthetic.json").read_text()
    original = (root / "us_000000.png").read_bytes()
    # a folder of an older simulator (or a cut record): its frames must not be served as this simulator's
    cv2.imwrite(str(root / "us_000000.png"), np.zeros((8, 8), np.uint8))
    (root / "synthetic.json").write_text(record_text)
    synthetic_segmentation_dataset(tmp_path, num=5)
    assert (root / "us_000000.png").read_bytes() == original
    assert (root / "synthetic.json").read_text() == record


def test_simulated_set_of_the_same_settings_is_reused(tmp_path: Path) -> None:
    root = synthetic_segmentation_dataset(tmp_path, num=5)
    stamp = (root / "us_000000.png").stat().st_mtime_ns
    assert synthetic_segmentation_dataset(tmp_path, num=5) == root
    assert (root / "us_000000.png").stat().st_mtime_ns == stamp


# ------------------------------------------------------------------------------------ links and DICOM without suffix
def test_busi_class_folders_reached_through_symbolic_links_are_listed(busi: Path, tmp_path: Path) -> None:
    """A class folder linked in from elsewhere (``malignant -> /data/exports/malignant``) is read like a real one."""
    moved = tmp_path / "elsewhere" / "malignant"
    moved.parent.mkdir()
    (busi / "malignant").rename(moved)
    (busi / "malignant").symlink_to(moved, target_is_directory=True)
    (moved / "loop").symlink_to(busi, target_is_directory=True)  # a link back up the tree must end
    items = busi_items(busi)
    assert sorted(it["id"] for it in items if it["group"] == "malignant") == [f"malignant/malignant ({i})"
                                                                               for i in range(1, 6)]
    assert len(items) == 15 and all(it["image"].startswith(str(busi)) for it in items)


def test_dicom_images_without_a_suffix_pair_with_their_masks(tmp_path: Path) -> None:
    from monai_ext.io.writers import write_dicom

    root = tmp_path / "export"
    write_dicom(_image(seed=1), root / "images" / "IM0001")
    _write(root / "images" / "IM0002.png", _image(seed=2))
    for stem in ("IM0001", "IM0002"):
        _write(root / "masks" / f"{stem}.png", _disc())
    items = image_mask_folder_items(root)
    assert [(Path(it["image"]).name, it["id"]) for it in items] == [("IM0001", "IM0001"), ("IM0002.png", "IM0002")]


@pytest.mark.parametrize("images, folds, message", [
    (4, 5, "folds must be an integer from 2 to 4 (there are 4 image(s)), got 5; more folds need more images"),
    (4, 1, "folds must be an integer from 2 to 4 (there are 4 image(s)), got 1"),
    (2, 3, "folds must be 2 (there are 2 image(s)), got 3; more folds need more images"),
    (6, True, "folds must be an integer from 2 to 6 (there are 6 image(s)), got True"),
])
def test_too_many_folds_for_the_images_are_refused_in_the_classification_words(images, folds, message) -> None:
    items = [{"image": f"{i}.png", "label": f"{i}_mask.png", "id": str(i)} for i in range(images)]
    with pytest.raises(ValueError) as error:
        kfold_splits(items, folds=folds)
    assert str(error.value) == message


@pytest.mark.parametrize("layout", ["busi", "image-mask-folders"])
def test_masks_without_an_image_are_named_in_a_warning(tmp_path: Path, layout: str, caplog) -> None:
    """An annotation whose image is missing (an incomplete download, a renamed file) was dropped without a word,
    leaving a smaller dataset; the listing still goes on, and the warning names the mask files."""
    if layout == "busi":
        for i in range(1, 6):
            _write(tmp_path / "benign" / f"benign ({i}).png", _image(seed=i))
            _write(tmp_path / "benign" / f"benign ({i})_mask.png", _disc())
        orphans = [tmp_path / "benign" / "benign (7)_mask.png", tmp_path / "benign" / "benign (9)_mask_1.png"]
        items = busi_items
    else:
        for i in range(5):
            _write(tmp_path / "images" / f"case_{i}.png", _image(seed=i))
            _write(tmp_path / "masks" / f"case_{i}.png", _disc())
        orphans = [tmp_path / "masks" / "case_7.png", tmp_path / "masks" / "case_9.png"]
        items = image_mask_folder_items
    for path in orphans:
        _write(path, _disc())
    with caplog.at_level(logging.WARNING, logger="monai_ext.data.segmentation"):
        listed = items(tmp_path)
    assert len(listed) == 5
    [record] = [r for r in caplog.records if "no image" in r.getMessage()]
    assert "2 mask files" in record.getMessage() and all(str(p) in record.getMessage() for p in orphans)


@pytest.mark.parametrize("folder, extra", [("masks", "case_1.tif"), ("images", "case_1.bmp")])
def test_two_files_of_one_stem_in_images_or_masks_are_refused_naming_both(tmp_path: Path, folder: str,
                                                                          extra: str) -> None:
    """Stems pair images with masks: two masks of one stem left one of them unused at random (the last in name
    order), and two images of one stem became two items with one id and one mask, free to land in different folds."""
    for i in range(3):
        _write(tmp_path / "images" / f"case_{i}.png", _image(seed=i))
        _write(tmp_path / "masks" / f"case_{i}.png", _disc())
    _write(tmp_path / folder / extra, _disc() if folder == "masks" else _image(seed=9))
    with pytest.raises(ValueError, match=rf"case_1\.png.*{re.escape(extra)}|{re.escape(extra)}.*case_1\.png"):
        image_mask_folder_items(tmp_path)


def test_busi_two_images_of_one_stem_are_refused_naming_both(busi: Path) -> None:
    """``benign (3).png`` beside a ``benign (3).jpg`` export: both took the same masks and the same id."""
    _write(busi / "benign" / "benign (3).jpg", _image(seed=3))
    with pytest.raises(ValueError, match=r"benign \(3\)\.jpg', 'benign \(3\)\.png"):
        busi_items(busi)


@pytest.mark.parametrize("mask_shape, message", [
    ((20, 30), None),                                          # drawn on the image: loads, aligned
    ((30, 20), r"mask size \(30, 20\) differs from the image's \(20, 30\)"),  # transposed
    ((20, 31), r"mask size \(20, 31\) differs from the image's \(20, 30\)"),  # one column more
])
@pytest.mark.parametrize("suffix", [".png", ".dcm"])
def test_mask_against_the_image_as_the_bundle_loads_it(tmp_path: Path, mask_shape, message, suffix: str) -> None:
    """The image loader and the mask reader agree on rows and columns (a picture or a DICOM image of 20 rows and 30
    columns takes a 20 x 30 mask, pixel for pixel); a transposed or off-by-one mask is named, not resized to fit."""
    from monai_ext.io.writers import write_dicom
    from monai_ext.transforms.loading import LoadUltrasoundImaged

    pixels = np.zeros((20, 30), np.uint8)
    pixels[2:6, 20:27] = 200  # a bright block off the diagonal: a transposition would move it
    image = tmp_path / f"scan{suffix}"
    write_dicom(pixels, image) if suffix == ".dcm" else _write(image, pixels)
    mask = np.zeros(mask_shape, np.uint8)
    mask[2:6, 20:27] = 255 if mask_shape[1] > 27 else 0
    mask_file = _write(tmp_path / "scan_mask.png", mask)
    def load(item: dict) -> dict:  # the bundle's first two transforms, without Compose's wrapping of the error
        return LoadMaskd("label")(LoadUltrasoundImaged("image")(item))

    if message is None:
        loaded = load({"image": str(image), "label": str(mask_file)})
        bright = np.asarray(loaded["image"])[0] > np.asarray(loaded["image"]).mean()
        np.testing.assert_array_equal(bright, loaded["label"][0] > 0)
    else:
        with pytest.raises(UnreadableImageError, match=f"scan_mask.png: {message}"):
            load({"image": str(image), "label": str(mask_file)})


def test_segmentation_items_with_and_without_patients_are_not_split_by_image() -> None:
    from monai_ext.data.segmentation import kfold_splits, split_validation

    items = [{"image": f"{i}.png", "label": f"{i}_mask.png", "patient": f"p{i % 4}"} for i in range(12)]
    items[5].pop("patient")
    with pytest.raises(ValueError, match=r"1 of 12 images have no patient while the others do, e\.g\. '5.png'"):
        split_validation(items, 0.2, 0)
    with pytest.raises(ValueError, match="have no patient while the others do"):
        kfold_splits(items, folds=3)


# ------------------------------------------------------------------------------------- copies, studies, messages
def _study_tree(root: Path, layout: str, studies: int, frames: int = 4) -> None:
    """``studies`` study folders of ``frames`` frames each: ``images/patient<k>/frame<j>.png`` with the same tree under
    ``masks/``, or BUSI's ``<class>/patient<k>/frame<j>.png`` with ``frame<j>_mask.png`` beside it (two classes)."""
    for k in range(studies):
        for j in range(frames):
            if layout == "busi":
                folder = root / ("benign" if k % 2 else "malignant") / f"patient{k}"
                _write(folder / f"frame{j}.png", _image(seed=100 * k + j))
                _write(folder / f"frame{j}_mask.png", _disc())
            else:
                _write(root / "images" / f"patient{k}" / f"frame{j}.png", _image(seed=100 * k + j))
                _write(root / "masks" / f"patient{k}" / f"frame{j}.png", _disc())


@pytest.mark.parametrize("layout", ["busi", "image-mask-folders"])
def test_byte_identical_copies_are_kept_once_with_a_warning(tmp_path: Path, layout: str, caplog) -> None:
    """BUSI holds copies under other names: a copy was drawn into training while its twin was tested, without a
    word (``benign (11..15)`` copies of ``benign (1..5)``, and so for ``images/`` + ``masks/``)."""
    for i in range(1, 11):
        image = _image(seed=i if i <= 5 else i - 5)  # 6..10 are copies of 1..5
        if layout == "busi":
            _write(tmp_path / "benign" / f"benign ({i}).png", image)
            _write(tmp_path / "benign" / f"benign ({i})_mask.png", _disc())
            _write(tmp_path / "malignant" / f"malignant ({i}).png", _image(seed=50 + i))
            _write(tmp_path / "malignant" / f"malignant ({i})_mask.png", _disc())
        else:
            _write(tmp_path / "images" / f"case_{i}.png", image)
            _write(tmp_path / "masks" / f"case_{i}.png", _disc())
    load = busi_protocol if layout == "busi" else image_mask_folder_protocol
    with caplog.at_level(logging.WARNING, logger="monai_ext.data.identical"):
        protocol = load(tmp_path, folds=2)
    assert "5 image(s) are byte-identical copies of others of their class and are left out" in caplog.text
    for split in protocol.splits:
        contents = [hashlib.sha256(Path(it["image"]).read_bytes()).hexdigest() for part in split.values()
                    for it in part]
        assert len(contents) == len(set(contents)) == (15 if layout == "busi" else 5)


def test_busi_copies_under_two_class_folders_are_all_left_out(busi: Path, caplog) -> None:
    """Which folder is right is the user's call, as for the classification folder protocol."""
    _write(busi / "malignant" / "malignant (9).png", _image(seed=1))  # the picture of benign (1)
    _write(busi / "malignant" / "malignant (9)_mask.png", _disc())
    with caplog.at_level(logging.WARNING, logger="monai_ext.data.identical"):
        ids = {it["id"] for it in busi_items(busi)}
    assert "1 set(s) of byte-identical images have different classes" in caplog.text
    assert len(ids) == 14 and "benign/benign (1)" not in ids and "malignant/malignant (9)" not in ids


@pytest.mark.parametrize("layout", ["busi", "image-mask-folders"])
@pytest.mark.parametrize("studies, folds", [(5, 5), (6, 3)])
def test_frames_of_one_study_folder_share_a_part(tmp_path: Path, layout: str, studies: int, folds: int) -> None:
    """One patient's frames (``patient0/frame0..3``) were spread over training, validation and test."""
    _study_tree(tmp_path, layout, studies)
    load = busi_protocol if layout == "busi" else image_mask_folder_protocol
    protocol = load(tmp_path, folds=folds)
    assert {it["patient"].split("/")[-1] for it in _every_item(protocol)} == {f"patient{k}" for k in range(studies)}
    for split in protocol.splits:
        patients = [{it["patient"] for it in split[part]} for part in ("train", "validation", "test")]
        assert all(patients) and sum(map(len, patients)) == len(set.union(*patients)) == studies
    if layout == "busi":  # the class folder is the stratum, not the study
        assert {it["group"] for it in _every_item(protocol)} == {"benign", "malignant"}


@pytest.mark.parametrize("layout", ["busi", "image-mask-folders"])
def test_fewer_sub_folders_than_folds_are_containers_split_by_image(tmp_path: Path, layout: str, caplog) -> None:
    """Sites or exports, not studies: grouping by 4 folders could not fill 5 test folds, so images are split one by
    one, and a warning says so and what would keep studies together."""
    _study_tree(tmp_path, layout, 4)
    load = busi_protocol if layout == "busi" else image_mask_folder_protocol
    with caplog.at_level(logging.WARNING, logger="monai_ext.data.studies"):
        protocol = load(tmp_path, folds=5)
    assert "16 of 16 image(s) sit in 4 sub-folder(s), fewer than the 5 folds" in caplog.text
    assert "--folds 4" in caplog.text and not any("patient" in it for it in _every_item(protocol))


def test_a_few_small_studies_beside_loose_images_are_still_grouped(tmp_path: Path, caplog) -> None:
    """3 study folders of 2 frames beside 14 loose images can fill 5 test folds (each loose image a study of its
    own): read as containers, the study frames were split one by one, as the classification protocol does not."""
    _study_tree(tmp_path, "image-mask-folders", 3, frames=2)
    for i in range(14):
        _write(tmp_path / "images" / f"case_{i}.png", _image(seed=1000 + i))
        _write(tmp_path / "masks" / f"case_{i}.png", _disc())
    with caplog.at_level(logging.WARNING, logger="monai_ext.data.studies"):
        protocol = image_mask_folder_protocol(tmp_path, folds=5)
    assert "fewer than the 5 folds" not in caplog.text
    for split in protocol.splits:
        parts = [{it["patient"] for it in split[part] if "/" in it["id"]} for part in ("train", "validation", "test")]
        assert sum(map(len, parts)) == len(set.union(*parts)) == 3  # each study on one side only


@pytest.mark.parametrize("wrapper", ["", "Dataset_BUSI_with_GT/"])
def test_busi_class_folders_are_no_studies_even_inside_a_wrapper_folder(busi: Path, wrapper: str) -> None:
    """The folder a BUSI archive unpacks into holds the class folders: they stay strata, not studies."""
    root = busi.parent / "download"
    (root / wrapper).parent.mkdir(parents=True, exist_ok=True)
    busi.rename(root / wrapper) if wrapper else busi.rename(root)
    protocol = busi_protocol(root, folds=5)
    assert not any("patient" in it for it in _every_item(protocol))
    for split in protocol.splits:
        assert sorted(it["group"] for it in split["test"]) == [f"{wrapper}{c}" for c in ("benign", "malignant", "normal")]


@pytest.mark.parametrize("change, warning", [
    (lambda root: _write(root / "images" / "9.JPG", _image(seed=9)),
     "1 image(s) in {root}/images are in none of MMOTU train.txt and val.txt and are left out, e.g. 9.JPG"),
    (lambda root: (root / "images" / "8.JPG").write_bytes((root / "images" / "2.JPG").read_bytes()),
     "MMOTU train.txt and val.txt, split 0: 1 test image(s) are byte-identical to training or validation images"),
    (None, "MMOTU val.txt: the test part of split 0 holds no image of 6 class(es), 'chocolate cyst'"),
], ids=["unlisted-image", "test-copy-of-training", "multiclass-absent-class"])
def test_mmotu_segmentation_warns_as_the_classification_protocol_does(mmotu: Path, change, warning: str,
                                                                      caplog) -> None:
    """Unlisted images, test images that are copies of training ones, and (multi-class) classes the test part lacks
    were said by ``mmotu`` but not by ``mmotu-seg``."""
    if change is not None:
        change(mmotu)
    with caplog.at_level(logging.WARNING):
        mmotu_segmentation_protocol(mmotu, multiclass=change is None, val_fraction=0.2)
    assert warning.format(root=mmotu) in caplog.text


def test_mmotu_segmentation_refuses_an_image_in_both_lists(mmotu: Path) -> None:
    (mmotu / "val.txt").write_text("7\n8\n3\n")
    with pytest.raises(ValueError, match=r"train.txt and val.txt both list 1 image\(s\), e.g. '3'"):
        mmotu_segmentation_protocol(mmotu, val_fraction=0.2)


@pytest.mark.parametrize("name", ["Thumbs.db", "desktop.ini"])
def test_busbra_files_of_a_windows_folder_are_no_masks(busbra: Path, name: str, caplog) -> None:
    (busbra / "Masks" / name).write_bytes(b"\xd0\xcf\x11\xe0 not a mask")
    with caplog.at_level(logging.WARNING, logger="monai_ext.data.segmentation"):
        busbra_segmentation_protocol(busbra, folds=5)
    assert "mask files have no image" not in caplog.text


@pytest.mark.parametrize("dataset, protocol", [("busbra", "busbra-seg"), ("mmotu", "mmotu-seg")])
def test_image_mask_folders_on_busbra_or_mmotu_names_their_protocol(request, dataset: str, protocol: str) -> None:
    """``images folder not found`` (BUS-BRA has ``Images/`` with ``mask_*.png`` masks) left the user guessing."""
    root = request.getfixturevalue(dataset)
    with pytest.raises(ValueError, match=rf"folder not found: .*: use make-datalist {protocol}$"):
        image_mask_folder_items(root)


@pytest.mark.parametrize("folders, error", [
    (("Images", "Masks"), None),                                                 # read as downloaded
    (("Images", "IMAGES", "masks"), r"holds 2 folders of that name in other letter cases, \['IMAGES', 'Images'\]"),
])
def test_images_and_masks_folders_in_another_letter_case(tmp_path: Path, folders, error) -> None:
    for i in range(3):
        for folder in folders:
            _write(tmp_path / folder / f"case_{i}.png", _image(seed=i) if folder.lower() == "images" else _disc())
    if error is None:
        assert [Path(it["image"]).parent.name for it in image_mask_folder_items(tmp_path)] == ["Images"] * 3
    else:
        with pytest.raises(ValueError, match=error):
            image_mask_folder_items(tmp_path)


def _frames(root: Path, folder: str, count: int, seed: int, mask: np.ndarray | None = None) -> None:
    """``count`` frames ``images/<folder>/frame<j>.png`` with their masks under ``masks/`` (each its own picture)."""
    for j in range(count):
        _write(root / "images" / folder / f"frame{j}.png", _image(seed=seed + j))
        _write(root / "masks" / folder / f"frame{j}.png", _disc() if mask is None else mask)


@pytest.mark.parametrize("layout", ["busi", "image-mask-folders"])
@pytest.mark.parametrize("sizes", [(60, *[6] * 9), (30, 20, *[4] * 8)], ids=["one-long-study", "unequal-sites"])
def test_studies_of_unequal_size_are_split_by_seed_and_every_one_is_trained_on(tmp_path: Path, layout: str,
                                                                               sizes) -> None:
    """GroupKFold did not shuffle and split_validation took a whole k-fold part: the largest study was the whole
    validation part of every fold that did not test it (never trained on), and seeds gave identical splits."""
    for k, size in enumerate(sizes):
        if layout == "busi":
            for j in range(size):
                folder = tmp_path / ("benign" if k % 2 == 0 else "malignant") / f"study{k}"
                _write(folder / f"frame{j}.png", _image(seed=1000 * k + j))
                _write(folder / f"frame{j}_mask.png", _disc())
        else:
            _frames(tmp_path, f"study{k}", size, seed=1000 * k)
    load = busi_protocol if layout == "busi" else image_mask_folder_protocol
    folds = {seed: load(tmp_path, folds=5, seed=seed).splits for seed in (0, 1)}
    for splits in folds.values():
        for split in splits:
            tested, trained, held_out = ({it["patient"].split("/")[-1] for it in split[part]}
                                         for part in ("test", "train", "validation"))
            assert "study0" in tested | trained  # the longest study is trained on wherever it is not tested
            assert held_out and len(split["validation"]) < 0.35 * (len(split["train"]) + len(split["validation"]))
    if layout == "image-mask-folders":  # the stratified busi folds were drawn with the seed before
        assert [[it["id"] for it in s["test"]] for s in folds[0]] != [[it["id"] for it in s["test"]] for s in folds[1]]


def test_the_simulated_default_folds_are_not_grouped_and_stay_as_they_were(tmp_path: Path) -> None:
    """The embedded default (bundle tests, docs figures) splits image by image: the grouped rule does not reach it."""
    protocol = synthetic_segmentation_protocol(tmp_path, num=10, seed=0, max_train=50)
    assert not any("patient" in it for it in _every_item(protocol))
    # as split before studies were grouped (the default of 75 images too, checked when the grouped rule came)
    assert [sorted(it["id"][-1] for it in s["test"]) for s in protocol.splits] == [
        ["2", "8"], ["4", "9"], ["1", "6"], ["3", "7"], ["0", "5"]]
    assert [sorted(it["id"][-1] for it in s["validation"]) for s in protocol.splits] == [
        ["3", "7"], ["2", "8"], ["2", "5"], ["6", "9"], ["6", "9"]]


@pytest.mark.parametrize("sites, patients, folds", [(3, 4, 5), (2, 6, 3)])
def test_sites_that_hold_patient_folders_group_by_patient(tmp_path: Path, sites: int, patients: int, folds: int,
                                                          caplog) -> None:
    """``images/siteA/patient3/frame.png``: fewer sites than folds split the images one by one with a warning whose
    advice did not fit the tree."""
    for s in range(sites):
        for p in range(patients):
            _frames(tmp_path, f"site{s}/patient{p}", 2, seed=1000 * s + 10 * p)
    with caplog.at_level(logging.INFO, logger="monai_ext.data.studies"):
        protocol = image_mask_folder_protocol(tmp_path, folds=folds)
    assert "fewer than the" not in caplog.text and "the folders below them as studies" in caplog.text
    assert {it["patient"] for it in _every_item(protocol)} == {
        f"site{s}/patient{p}" for s in range(sites) for p in range(patients)}
    for split in protocol.splits:
        parts = [{it["patient"] for it in split[part]} for part in ("train", "validation", "test")]
        assert sum(map(len, parts)) == len(set.union(*parts)) == sites * patients
    assert any(len({it["patient"].split("/")[0] for it in split["test"]}) > 1 for split in protocol.splits)


@pytest.mark.parametrize("wrapper", ["", "export/"])
def test_busi_set_of_one_class_folder_groups_its_study_folders(tmp_path: Path, wrapper: str) -> None:
    """``malignant/p0..p9/f0..f3.png``: the class folder, common to every image, was stripped as a wrapper, and the
    studies were looked for below them: nothing grouped, 6 of 10 patients crossed train and test in every fold."""
    for p in range(10):
        for j in range(4):
            _write(tmp_path / f"{wrapper}malignant" / f"p{p}" / f"f{j}.png", _image(seed=10 * p + j))
            _write(tmp_path / f"{wrapper}malignant" / f"p{p}" / f"f{j}_mask.png", _disc())
    protocol = busi_protocol(tmp_path, folds=5)
    assert {it["patient"] for it in _every_item(protocol)} == {f"{wrapper}malignant/p{p}" for p in range(10)}
    assert {it["group"] for it in _every_item(protocol)} == {f"{wrapper}malignant"}
    for split in protocol.splits:
        parts = [{it["patient"] for it in split[part]} for part in ("train", "validation", "test")]
        assert sum(map(len, parts)) == len(set.union(*parts)) == 10


@pytest.mark.parametrize("layout", ["busi", "image-mask-folders"])
@pytest.mark.parametrize("second_mask, kept", [
    ("same-bytes", 1),
    ("same-pixels", 1),  # saved again with another PNG compression: the same mask
    ("other-lesion", 0),
])
def test_identical_images_are_one_copy_only_where_their_masks_agree(tmp_path: Path, layout: str, second_mask: str,
                                                                    kept: int, caplog) -> None:
    """a.png (empty mask) and b.png (its bytes, a lesion mask): a.png was kept and the lesion dropped silently."""
    first = np.zeros((24, 24), np.uint8)
    second = _disc() if second_mask == "other-lesion" else first
    level = 0 if second_mask == "same-bytes" else 9
    for stem, mask, compression in (("a", first, 0), ("b", second, level)):
        image = tmp_path / ("benign" if layout == "busi" else "images") / f"{stem}.png"
        mask_path = image.with_name(f"{stem}_mask.png") if layout == "busi" else tmp_path / "masks" / f"{stem}.png"
        _write(image, _image(seed=1))
        mask_path.parent.mkdir(parents=True, exist_ok=True)
        assert cv2.imwrite(str(mask_path), mask, [cv2.IMWRITE_PNG_COMPRESSION, compression])
    for k in range(3):  # other images
        image = tmp_path / ("benign" if layout == "busi" else "images") / f"c{k}.png"
        _write(image, _image(seed=10 + k))
        _write(image.with_name(f"c{k}_mask.png") if layout == "busi" else tmp_path / "masks" / f"c{k}.png", _disc())
    load = busi_items if layout == "busi" else image_mask_folder_items
    with caplog.at_level(logging.WARNING):
        stems = {Path(it["image"]).stem for it in load(tmp_path)}
    assert len(stems & {"a", "b"}) == kept and {"c0", "c1", "c2"} <= stems
    assert ("1 set(s) of byte-identical images have different masks and are left out" in caplog.text) == (kept == 0)


@pytest.mark.parametrize("studies", [("p0", "p1"), ("p0", "p1/series2")])
def test_busi_copies_in_two_study_folders_of_one_class_are_kept_once(tmp_path: Path, studies, caplog) -> None:
    """benign/p0 and benign/p1 hold the same picture: its copies were named of "different classes" and all dropped,
    since the copies were compared by folder before the class folder was known."""
    for c in ("benign", "malignant"):
        for k in range(4):
            _write(tmp_path / c / f"p{k}" / "f.png", _image(seed=100 * (c == "benign") + k))
            _write(tmp_path / c / f"p{k}" / "f_mask.png", _disc())
    for study in studies:
        _write(tmp_path / "benign" / study / "copy.png", _image(seed=7))
        _write(tmp_path / "benign" / study / "copy_mask.png", _disc())
    with caplog.at_level(logging.WARNING, logger="monai_ext.data.identical"):
        ids = [it["id"] for it in busi_items(tmp_path)]
    assert "different classes" not in caplog.text
    assert "1 image(s) are byte-identical copies of others of their class" in caplog.text
    assert sum(i.endswith("/copy") for i in ids) == 1 and len(ids) == 9


@pytest.mark.parametrize("mark", ["train.txt", "train_cls.txt"])
def test_a_generic_set_with_a_train_list_is_no_mmotu_without_its_annotations_folder(tmp_path: Path,
                                                                                   mark: str) -> None:
    """``Images/`` + ``Masks/`` with a ``train.txt`` of its own was refused as MMOTU-2D ("use make-datalist
    mmotu-seg"); MMOTU is named only beside its ``annotations/`` folder."""
    for i in range(3):
        _write(tmp_path / "Images" / f"case_{i}.png", _image(seed=i))
        _write(tmp_path / "Masks" / f"case_{i}.png", _disc())
    (tmp_path / mark).write_text("case_0\ncase_1\n")
    assert len(image_mask_folder_items(tmp_path)) == 3
    (tmp_path / "Annotations").mkdir()  # in any letter case, as Images/ and Masks/
    with pytest.raises(ValueError, match="use make-datalist mmotu-seg$"):
        image_mask_folder_items(tmp_path)


def test_label_maps_of_the_images_stems_are_named_when_no_picture_mask_pairs(tmp_path: Path) -> None:
    """``masks/c0.nii.gz`` for ``images/c0.png``: the label map was passed over and the message said only that the
    image had no mask of its stem, which it has."""
    for i in range(3):
        _write(tmp_path / "images" / f"c{i}.png", _image(seed=i))
        (tmp_path / "masks").mkdir(exist_ok=True)
        (tmp_path / "masks" / f"c{i}.nii.gz").write_bytes(b"label map")
    with pytest.raises(ValueError, match=r"3 images .* e\.g\. \['c0', 'c1', 'c2'\]; .*masks' holds 3 file\(s\) of "
                                         r"those stems that are no pictures, e\.g\. 'c\d\.nii\.gz': masks are read"):
        image_mask_folder_protocol(tmp_path, folds=2)


def test_mmotu_segmentation_finds_its_images_folder_named_in_another_case(mmotu: Path, caplog) -> None:
    """``Images/`` for ``images/`` (a renaming tool, another archive's spelling): every image was reported missing,
    as the classification protocol already found it; its unlisted images are counted too."""
    (mmotu / "images").rename(mmotu / "Images")
    _write(mmotu / "Images" / "9.JPG", _image(seed=9))
    with caplog.at_level(logging.WARNING):
        protocol = mmotu_segmentation_protocol(mmotu, val_fraction=0.2)
    assert len(protocol.splits[0]["test"]) == 2 and Path(protocol.splits[0]["test"][0]["image"]).parent.name == "Images"
    assert "1 image(s) in" in caplog.text and "9.JPG" in caplog.text
