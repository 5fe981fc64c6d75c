"""Dataset adapters on miniature trees in each dataset's exact distributed layout."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from monai_ext.data import downstream as ds


def write_stub(path: Path, kind: str) -> None:
    """A stand-in file of its own bytes: the protocols compare contents, and identical stand-ins would be copies.
    A picture's is a real 4 x 4 one (its pixels from its name): the protocols leave out what cannot be a picture."""
    if path.suffix.lower() in (".png", ".jpg", ".jpeg", ".bmp"):
        seed = int.from_bytes(hashlib.sha256(f"{path.parent.name}/{path.name}".encode()).digest()[:4], "little")
        pixels = np.random.default_rng(seed).integers(0, 256, (4, 4), np.uint8)
        path.write_bytes(cv2.imencode(path.suffix.lower(), pixels)[1].tobytes())
        return
    path.write_bytes(f"{kind} {path.name} {path.parent.name}".encode())


def make_busbra(root: Path, patients: int = 30, folds: int = 5) -> dict[str, str]:
    """BUSBRA/ with Images/, Masks/, bus_data.csv and k-fold-cv.csv as distributed (1-2 images per patient)."""
    (root / "Images").mkdir(parents=True)
    (root / "Masks").mkdir()
    rows, case_of = [], {}
    for p in range(1, patients + 1):
        pathology = "malignant" if p % 3 == 0 else "benign"
        for side in ("l", "r")[: 1 + p % 2]:
            image_id = f"bus_{p:04d}-{side}"
            write_stub((root / "Images" / f"{image_id}.png"), "png")
            write_stub((root / "Masks" / f"mask_{p:04d}-{side}.png"), "png")
            rows.append((image_id, p, pathology))
            case_of[image_id] = str(p)
    with open(root / "bus_data.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["ID", "Case", "Histology", "Pathology", "BIRADS", "Device", "Width", "Height", "Side", "BBOX"])
        for image_id, p, pathology in rows:
            w.writerow([image_id, p, "x", pathology, 3, "dev", 100, 80, "left", "[1, 2, 3, 4]"])
    for k_files in (5, 10):
        with open(root / f"{k_files}-fold-cv.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["ID", "Pathology", "kFold"] + [f"valid_{k}" for k in range(1, k_files + 1)])
            for image_id, p, pathology in rows:
                kf = 1 + (p % k_files)
                valid = ["" if k == kf else ("0" if (p + k) % 4 == 0 else "1") for k in range(1, k_files + 1)]
                w.writerow([image_id, pathology, kf, *valid])
    return case_of


@pytest.mark.parametrize("folds", [5, 10])
def test_busbra_folds_are_patient_disjoint_and_complete(tmp_path, folds: int) -> None:
    case_of = make_busbra(tmp_path / "BUSBRA")
    proto = ds.busbra_protocol(tmp_path / "BUSBRA", folds=folds)
    assert proto.class_names == ["benign", "malignant"] and len(proto.splits) == folds
    all_ids = set(case_of)
    tested = set()
    for split in proto.splits:
        parts = {name: {it["id"] for it in items} for name, items in split.items()}
        assert parts["train"] | parts["validation"] | parts["test"] == all_ids
        assert not (parts["train"] & parts["validation"]) and not (parts["train"] & parts["test"])
        patients = {name: {case_of[i] for i in ids} for name, ids in parts.items()}
        assert not (patients["test"] & (patients["train"] | patients["validation"]))
        tested |= parts["test"]
        for it in split["train"]:
            assert Path(it["image"]).is_file() and it["label"] == (int(case_of[it["id"]]) % 3 == 0)
    assert tested == all_ids  # every image tested exactly once over the folds


def test_busbra_rejects_unknown_pathology(tmp_path) -> None:
    make_busbra(tmp_path / "B")
    text = (tmp_path / "B" / "5-fold-cv.csv").read_text().replace("benign", "unclear", 1)
    (tmp_path / "B" / "5-fold-cv.csv").write_text(text)
    with pytest.raises(ValueError, match="'unclear'"):
        ds.busbra_protocol(tmp_path / "B")


def test_busbra_refuses_a_listed_image_missing_on_disk(tmp_path) -> None:
    make_busbra(tmp_path / "B")
    victim = sorted((tmp_path / "B" / "Images").glob("*.png"))[3]
    victim.unlink()
    with pytest.raises(ValueError, match=f"lists 1 image\\(s\\) missing .*'{victim.stem}'"):
        ds.busbra_protocol(tmp_path / "B")


def test_busbra_refuses_an_image_whose_patient_bus_data_does_not_give(tmp_path) -> None:
    """Its own patient by default, it could be validated on beside its twin of the same Case."""
    make_busbra(tmp_path / "B")
    _rewrite(tmp_path / "B" / "bus_data.csv",
             lambda b: b"\n".join(line for line in b.split(b"\n") if not line.startswith(b"bus_0003-r")))
    with pytest.raises(ValueError, match=r"lists 1 image\(s\) that bus_data.csv gives no Case .*'bus_0003-r'"):
        ds.busbra_protocol(tmp_path / "B")


def test_busbra_images_and_masks_renamed_in_another_case_are_found(tmp_path) -> None:
    from monai_ext.data.segmentation import busbra_segmentation_protocol

    make_busbra(tmp_path / "B")
    for folder in ("Images", "Masks"):
        for path in (tmp_path / "B" / folder).glob("*_0001-*.png"):
            path.rename(path.with_suffix(".PNG"))
    items = [it for split in busbra_segmentation_protocol(tmp_path / "B").splits for part in split.values()
             for it in part if it["id"] == "bus_0001-r"]
    assert items and all(Path(it["image"]).is_file() and Path(it["label"]).is_file() for it in items)
    assert items[0]["image"].endswith("bus_0001-r.PNG") and items[0]["label"].endswith("mask_0001-r.PNG")


@pytest.mark.parametrize("dataset", ["busbra", "mmotu", "gist"])
def test_images_that_no_list_names_are_counted_in_a_warning(tmp_path, caplog, dataset) -> None:
    """A wrong or edited list shrank the dataset without a word."""
    root = tmp_path / dataset
    folder, suffix, read = {"busbra": ("Images", ".png", ds.busbra_protocol),
                            "mmotu": ("images", ".JPG", ds.mmotu_protocol),
                            "gist": ("images", ".jpg", ds.gist514_protocol)}[dataset]
    {"busbra": make_busbra, "mmotu": make_mmotu, "gist": make_gist}[dataset](root)
    with caplog.at_level("WARNING", logger="monai_ext.data.downstream"):
        read(root)
        assert not [r for r in caplog.records if "are in none of" in r.getMessage()]
        write_stub((root / folder / f"stray{suffix}"), "img")
        read(root)
    said = [r.getMessage() for r in caplog.records if "are in none of" in r.getMessage()]
    assert len(said) == 1 and said[0].startswith("1 image(s) in ") and f"stray{suffix}" in said[0], said


def _rewrite(path: Path, edit) -> None:
    path.write_bytes(edit(path.read_bytes()))


def _parts(proto: ds.Protocol) -> list[dict[str, list[str]]]:
    return [{name: [it["id"] for it in items] for name, items in split.items()} for split in proto.splits]


@pytest.mark.parametrize("edit", [
    lambda b: b.replace(b",1,", b",1.0,").replace(b",0,", b",0.0,"),  # pandas' round trip
    lambda b: b"\xef\xbb\xbf" + b.replace(b"\n", b"\r\n"),  # Excel's "CSV UTF-8" on Windows
    lambda b: b.replace(b"ID,Pathology", b"ID, Pathology"),  # a space after the comma of the header
    lambda b: b + b",,,,,,,\r\n , ,,\n",  # cells cleared, not rows deleted: rows of commas (and spaces) remain
])
def test_busbra_sheets_saved_again_by_a_spreadsheet_give_the_same_folds(tmp_path, edit) -> None:
    """A fold file loaded into pandas to look at it and saved again turns 1 into 1.0 (the valid_k columns have
    empty cells): every training and validation row fell out of its fold, without a word."""
    make_busbra(tmp_path / "B")
    clean = _parts(ds.busbra_protocol(tmp_path / "B"))
    for name in ("5-fold-cv.csv", "bus_data.csv"):
        _rewrite(tmp_path / "B" / name, edit)
    assert _parts(ds.busbra_protocol(tmp_path / "B")) == clean


@pytest.mark.parametrize("value, column", [("yes", "valid_2"), ("", "valid_2"), ("1.5", "valid_2"), ("one", "kFold"),
                                           ("0", "kFold"), ("6", "kFold")])  # outside 1..5: never tested
def test_busbra_refuses_a_fold_cell_that_is_not_0_or_1(tmp_path, value, column) -> None:
    """One such cell dropped its image from the training part of that fold in silence."""
    make_busbra(tmp_path / "B")
    path = tmp_path / "B" / "5-fold-cv.csv"
    rows = list(csv.DictReader(path.open(newline="")))
    victim = next(r for r in rows if r["kFold"] != "2")
    victim[column] = value
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    with pytest.raises(ValueError, match=f"'{victim['ID']}': {column} is '{value}'"):
        ds.busbra_protocol(tmp_path / "B")


def test_busbra_names_a_missing_column(tmp_path) -> None:
    make_busbra(tmp_path / "B")
    _rewrite(tmp_path / "B" / "bus_data.csv", lambda b: b.replace(b"ID,Case", b"Image,Case", 1))
    with pytest.raises(ValueError, match=r"bus_data.csv' lacks the column\(s\) \['ID'\]"):
        ds.busbra_protocol(tmp_path / "B")


def make_mmotu(root: Path, train: int = 40, test: int = 16) -> None:
    (root / "images").mkdir(parents=True)
    (root / "annotations").mkdir()
    lines = {"train_cls.txt": [], "val_cls.txt": []}
    for i in range(1, train + test + 1):
        write_stub((root / "images" / f"{i}.JPG"), "jpg")
        write_stub((root / "annotations" / f"{i}.PNG"), "png")
        lines["train_cls.txt" if i <= train else "val_cls.txt"].append(f"{i}.JPG  {i % 8}")
    for name, content in lines.items():
        (root / name).write_text("\n".join(content) + "\n")
    (root / "train.txt").write_text("\n".join(str(i) for i in range(1, train + 1)))


def test_mmotu_reads_the_two_space_lists(tmp_path) -> None:
    make_mmotu(tmp_path / "OTU_2d")
    proto = ds.mmotu_protocol(tmp_path / "OTU_2d", val_fraction=0.25)
    split = proto.splits[0]
    assert len(proto.class_names) == 8 and proto.class_names[7] == "high-grade serous cystadenocarcinoma"
    assert len(split["train"]) + len(split["validation"]) == 40 and len(split["test"]) == 16
    assert {it["label"] for it in split["validation"]} == set(range(8))  # stratified
    first_test = split["test"][0]
    assert first_test["id"] == "41" and first_test["label"] == 41 % 8 and first_test["image"].endswith("images/41.JPG")


def test_mmotu_lists_saved_with_a_byte_order_mark_read_the_same(tmp_path) -> None:
    make_mmotu(tmp_path / "OTU_2d")
    clean = _parts(ds.mmotu_protocol(tmp_path / "OTU_2d"))
    for name in ("train_cls.txt", "val_cls.txt"):
        _rewrite(tmp_path / "OTU_2d" / name, lambda b: b"\xef\xbb\xbf" + b)
    proto = ds.mmotu_protocol(tmp_path / "OTU_2d")
    assert _parts(proto) == clean and proto.splits[0]["test"][0]["image"].endswith("/images/41.JPG")


def test_mmotu_images_renamed_in_another_case_are_found(tmp_path) -> None:
    """``1.jpg`` on disk for the listed ``1.JPG`` (an archive unpacked or renamed by a tool): the datalist named
    files that did not exist."""
    make_mmotu(tmp_path / "OTU_2d")
    for path in (tmp_path / "OTU_2d" / "images").iterdir():
        path.rename(path.with_suffix(".jpg"))
    split = ds.mmotu_protocol(tmp_path / "OTU_2d").splits[0]
    assert all(Path(it["image"]).is_file() and it["image"].endswith(".jpg") for items in split.values()
               for it in items)


def test_mmotu_and_gist_name_a_listed_image_missing_on_disk_with_its_list(tmp_path) -> None:
    """The error named the datalist about to be written, with a hint about relative paths, not the list."""
    make_mmotu(tmp_path / "OTU_2d")
    listed = (tmp_path / "OTU_2d" / "val_cls.txt").read_text().split()[0]
    (tmp_path / "OTU_2d" / "images" / listed).unlink()
    with pytest.raises(ValueError, match=f"MMOTU val_cls.txt lists 1 image\\(s\\) missing .*'{listed} \\(line 1\\)'"
                                         ".*incomplete"):
        ds.mmotu_protocol(tmp_path / "OTU_2d")
    make_gist(tmp_path / "g")
    (tmp_path / "g" / "images" / "case_003.jpg").unlink()
    with pytest.raises(ValueError, match=r"GIST514 train_anno_crop_split_0.json lists 1 image\(s\) missing "
                                         r".*'case_003.jpg'"):
        ds.gist514_protocol(tmp_path / "g")



@pytest.mark.parametrize("content, reason", [(b"", "empty file \\(0 bytes\\)"),
                                             (b"<!DOCTYPE html><html>Virus scan warning</html>", "not a picture")])
@pytest.mark.parametrize("dataset", ["busbra", "mmotu", "gist"])
def test_published_lists_refuse_a_listed_image_that_cannot_be_an_image(tmp_path, dataset, content, reason) -> None:
    """An interrupted unzip leaves empty files, a download a web page under the image's name: the official folds
    were written whole, then the bundles left those images out of training and the test figures with a warning."""
    root = tmp_path / dataset
    {"busbra": make_busbra, "mmotu": make_mmotu, "gist": make_gist}[dataset](root)
    image, listed = {"busbra": ("Images/bus_0002-l.png", "5-fold-cv.csv lists 1 image\\(s\\) .* 'bus_0002-l'"),
                     "mmotu": ("images/41.JPG", "val_cls.txt lists 1 image\\(s\\) .* '41.JPG \\(line 1\\)'"),
                     "gist": ("images/case_003.jpg", "train_anno_crop_split_0.json lists 1 image\\(s\\) .* "
                                                     "'case_003.jpg'")}[dataset]
    (root / image).write_bytes(content)
    read = {"busbra": ds.busbra_protocol, "mmotu": ds.mmotu_protocol, "gist": ds.gist514_protocol}[dataset]
    with pytest.raises(ValueError, match=f"{listed}: {reason}.* damaged"):
        read(root)


@pytest.mark.parametrize("dataset, folders", [("busbra", {"Images": "images"}), ("mmotu", {"images": "Images"}),
                                              ("gist", {"images": "IMAGES", "annotations": "Annotations"})])
def test_published_folders_renamed_in_another_case_are_found(tmp_path, caplog, dataset, folders) -> None:
    """``unzip -L`` lowercases BUS-BRA's ``Images/``: every image was refused as missing, the download called
    incomplete, and an unlisted image in the folder would not have been counted."""
    root = tmp_path / dataset
    {"busbra": make_busbra, "mmotu": make_mmotu, "gist": make_gist}[dataset](root)
    read = {"busbra": ds.busbra_protocol, "mmotu": ds.mmotu_protocol, "gist": ds.gist514_protocol}[dataset]
    clean = _parts(read(root))
    for listed, on_disk in folders.items():
        (root / listed).rename(root / on_disk)
    images = root / next(iter(folders.values()))
    write_stub(images / "stray.png", "png")
    with caplog.at_level("WARNING", logger="monai_ext.data.downstream"):
        proto = read(root)
    assert _parts(proto) == clean
    assert all(Path(it["image"]).parent == images for split in proto.splits for items in split.values() for it in items)
    assert "1 image(s) in " in caplog.text and "stray.png" in caplog.text

def test_gist_images_renamed_in_another_case_are_found(tmp_path) -> None:
    make_gist(tmp_path / "g")
    (tmp_path / "g" / "images" / "case_004.jpg").rename(tmp_path / "g" / "images" / "case_004.JPG")
    test = ds.gist514_protocol(tmp_path / "g").splits[4]["test"]
    assert [it["image"] for it in test if it["id"] == "case_004"] == [str(tmp_path / "g" / "images" / "case_004.JPG")]


def test_mmotu_bad_line_is_reported(tmp_path) -> None:
    make_mmotu(tmp_path / "OTU_2d")
    (tmp_path / "OTU_2d" / "val_cls.txt").write_text("41.JPG  9\n")
    with pytest.raises(ValueError, match=r"val_cls.txt:1: .*'41.JPG  9'"):
        ds.mmotu_protocol(tmp_path / "OTU_2d")


def make_gist(root: Path, n: int = 50) -> dict[str, int]:
    (root / "images").mkdir(parents=True)
    (root / "annotations").mkdir()
    truth = {}
    images = []
    annotations = []
    for i in range(n):
        name = f"case_{i:03d}.jpg"
        write_stub((root / "images" / name), "jpg")
        category = 2 if i % 2 else 1
        truth[Path(name).stem] = category - 1
        images.append({"id": i + 1, "file_name": name, "width": 64, "height": 64})
        annotations.append({"id": i + 1, "image_id": i + 1, "category_id": category,
                            "segmentation": [[1, 1, 5, 1, 5, 5]], "bbox": [1, 1, 4, 4], "area": 8, "iscrowd": 0})
    categories = [{"id": 1, "name": "lmym"}, {"id": 2, "name": "gist"}]

    def coco(idx):
        return {"images": [images[j] for j in idx], "annotations": [annotations[j] for j in idx],
                "categories": categories}

    (root / "annotations" / "all_anno_crop.json").write_text(json.dumps(coco(range(n))))
    for k in range(5):
        test_idx = [j for j in range(n) if j % 5 == k]
        train_idx = [j for j in range(n) if j % 5 != k]
        (root / "annotations" / f"train_anno_crop_split_{k}.json").write_text(json.dumps(coco(train_idx)))
        (root / "annotations" / f"val_anno_crop_split_{k}.json").write_text(json.dumps(coco(test_idx)))
    return truth


@pytest.mark.parametrize("edit, error", [(lambda b: b"\xef\xbb\xbf" + b, None),
                                         (lambda b: b[: len(b) // 2], "is not valid JSON")])
def test_gist514_annotation_files_with_a_byte_order_mark_read_and_cut_ones_are_named(tmp_path, edit, error) -> None:
    make_gist(tmp_path / "g")
    clean = _parts(ds.gist514_protocol(tmp_path / "g"))
    for path in (tmp_path / "g" / "annotations").glob("*.json"):
        _rewrite(path, edit)
    if error is None:
        assert _parts(ds.gist514_protocol(tmp_path / "g")) == clean
    else:
        with pytest.raises(ValueError, match=f"anno_crop_split_0.json' {error}"):
            ds.gist514_protocol(tmp_path / "g")


def test_gist514_reads_coco_splits(tmp_path) -> None:
    truth = make_gist(tmp_path / "usd514_jpeg_roi")
    proto = ds.gist514_protocol(tmp_path / "usd514_jpeg_roi")
    assert proto.class_names == ["leiomyoma", "GIST"] and len(proto.splits) == 5
    for k, split in enumerate(proto.splits):
        assert len(split["test"]) == 10 and len(split["train"]) + len(split["validation"]) == 40
        for items in split.values():
            for it in items:
                assert it["label"] == truth[it["id"]]
        assert {it["id"] for it in split["test"]} == {f"case_{j:03d}" for j in range(50) if j % 5 == k}


def test_folder_and_csv_protocols(tmp_path) -> None:
    for name in ("benign", "malignant"):
        (tmp_path / "data" / name).mkdir(parents=True)
        for i in range(15):
            write_stub((tmp_path / "data" / name / f"{name}_{i}.png"), "png")
    proto = ds.folder_protocol(tmp_path / "data", folds=5, val_fraction=0.2, max_train=10)
    assert proto.class_names == ["benign", "malignant"]
    for split in proto.splits:
        assert len(split["train"]) + len(split["validation"]) == 10 and len(split["test"]) == 6
    rows = [("data/benign/benign_0.png", "benign", 1, "p1"), ("data/benign/benign_1.png", "benign", 2, "p2"),
            ("data/malignant/malignant_0.png", "malignant", 1, "p3"),
            ("data/malignant/malignant_1.png", "malignant", 2, "p4")] * 1
    rows += [(f"data/benign/benign_{i}.png", "benign", 1 + i % 2, f"q{i}") for i in range(2, 12)]
    rows += [(f"data/malignant/malignant_{i}.png", "malignant", 1 + i % 2, f"r{i}") for i in range(2, 12)]
    with open(tmp_path / "labels.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "fold", "patient"])
        w.writerows(rows)
    proto = ds.csv_protocol(tmp_path / "labels.csv", val_fraction=0.2)
    assert proto.class_names == ["benign", "malignant"] and len(proto.splits) == 2
    assert all(Path(it["image"]).is_file() for s in proto.splits for items in s.values() for it in items)


def test_folder_protocol_lists_every_format_the_loader_reads(tmp_path) -> None:
    """DICOM, NIfTI (double suffix), NRRD and MHA files count as images, like bundle inference's --input_dir;
    other files and hidden ones do not."""
    for name, files in (("benign", ["a.png", "b.dcm", "c.nii.gz", "notes.txt"]),
                        ("malignant", ["d.NRRD", "e.mha", "f.jpg", ".hidden.png", "clip.mp4"])):
        (tmp_path / "data" / name).mkdir(parents=True)
        for f in files:
            write_stub((tmp_path / "data" / name / f), "x")
    proto = ds.folder_protocol(tmp_path / "data", folds=2, val_fraction=0.25)
    items = proto.splits[0]["train"] + proto.splits[0]["validation"] + proto.splits[0]["test"]
    assert sorted((it["label"], it["id"]) for it in items) == [(0, "a"), (0, "b"), (0, "c"), (1, "d"), (1, "e"), (1, "f")]


@pytest.mark.parametrize("extra, warned", [
    ({"benign": ["loop.avi"], "malignant": ["extra.jfif", "notes.txt"]},
     "3 file(s) in the class folders are of no format the image loader reads and are left out (.avi 1, .jfif 1, "
     ".txt 1), e.g. benign/loop.avi, malignant/extra.jfif, malignant/notes.txt; .jfif files are JPEGs: rename "
     "them to .jpg to use them"),
    ({"benign": ["study/a.mp4", "study/b.mp4"]},
     "2 file(s) in the class folders are of no format the image loader reads and are left out (.mp4 2), e.g. "
     "benign/study/a.mp4, benign/study/b.mp4"),
    # the synthetic benchmark's record in each class folder and an MHD's voxel file are no data passed over
    ({"benign": ["synthetic.json", "sweep.mhd", "sweep.raw"]}, None),
])
def test_folder_protocol_counts_the_files_it_leaves_out_by_suffix(tmp_path, caplog, extra, warned) -> None:
    """Cine loops, JPEGs saved as ``.jfif`` and notes in a class folder were dropped without a word."""
    _class_folders(tmp_path / "data")
    for name, files in extra.items():
        for f in files:
            (tmp_path / "data" / name / f).parent.mkdir(parents=True, exist_ok=True)
            write_stub(tmp_path / "data" / name / f, "x")
    with caplog.at_level("WARNING", logger="monai_ext.data.downstream"):
        ds.folder_protocol(tmp_path / "data", folds=3)
    if warned is None:
        assert "no format the image loader reads" not in caplog.text
    else:
        assert warned in caplog.text


def _class_folders(root: Path, per_class: int = 6, classes=("benign", "malignant")) -> None:
    for name in classes:
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            write_stub((root / name / f"{name}_{i}.png"), "png")


def test_folder_protocol_follows_a_linked_study_folder(tmp_path) -> None:
    _class_folders(tmp_path / "data")
    (tmp_path / "exports" / "study1").mkdir(parents=True)
    for i in range(3):
        write_stub((tmp_path / "exports" / "study1" / f"s{i}.png"), "png")
    (tmp_path / "data" / "malignant" / "study1").symlink_to(tmp_path / "exports" / "study1")
    proto = ds.folder_protocol(tmp_path / "data", folds=3)
    ids = sorted(it["id"] for items in proto.splits[0].values() for it in items if it["label"] == 1)
    assert ids == sorted([f"malignant_{i}" for i in range(6)] + ["s0", "s1", "s2"])


def test_folder_protocol_leaves_out_busi_masks_beside_their_images(tmp_path, caplog) -> None:
    """BUSI's class folders hold each image and its masks (``benign (1)_mask.png``, ``_mask_1.png``): they were
    counted as images of the class, half the items, and a mask and its image could land in training and test."""
    _class_folders(tmp_path / "Dataset_BUSI_with_GT", classes=("benign", "malignant", "normal", "other"))
    for name in ("benign", "malignant", "normal"):
        folder = tmp_path / "Dataset_BUSI_with_GT" / name
        for i in range(6):
            write_stub((folder / f"{name}_{i}_mask.png"), "png")
        write_stub((folder / f"{name}_0_mask_1.png"), "png")
    # a mask whose image was deleted, in a folder of image + mask pairs: a mask all the same
    write_stub((tmp_path / "Dataset_BUSI_with_GT" / "normal" / "normal_9_mask.png"), "png")
    # a "_mask" name in a folder without pairs: an image like any other
    write_stub((tmp_path / "Dataset_BUSI_with_GT" / "other" / "lone_mask.png"), "png")
    with caplog.at_level("WARNING"):
        proto = ds.folder_protocol(tmp_path / "Dataset_BUSI_with_GT", folds=3)
    ids = sorted(it["id"] for items in proto.splits[0].values() for it in items)
    classes = ("benign", "malignant", "normal", "other")
    assert ids == sorted([f"{n}_{i}" for n in classes for i in range(6)] + ["lone_mask"])
    assert "7 mask file(s) beside their images" in caplog.text and "make-datalist busi" in caplog.text
    assert "1 mask file(s) have no image beside them and are left out as masks, not images: normal_9_mask.png" \
        in caplog.text


def test_folder_protocol_refuses_a_class_folder_without_images(tmp_path) -> None:
    _class_folders(tmp_path / "data")
    (tmp_path / "data" / "empty_class").mkdir()
    (tmp_path / "data" / "empty_class" / "notes.txt").write_bytes(b"to do")
    with pytest.raises(ValueError, match="class folders without images .*\\['empty_class'\\]"):
        ds.folder_protocol(tmp_path / "data")


def test_folder_protocol_passes_over_an_unzipped_macosx_folder(tmp_path) -> None:
    """macOS's zip adds ``__MACOSX/<class>/._<name>``: the user was told to delete it before the data would read."""
    _class_folders(tmp_path / "data")
    clean = _parts(ds.folder_protocol(tmp_path / "data", folds=2))
    (tmp_path / "data" / "__MACOSX" / "benign").mkdir(parents=True)
    (tmp_path / "data" / "__MACOSX" / "benign" / "._benign_0.png").write_bytes(b"resource fork")
    proto = ds.folder_protocol(tmp_path / "data", folds=2)
    assert proto.class_names == ["benign", "malignant"] and _parts(proto) == clean



def test_folder_protocol_passes_over_a_synology_thumbnail_folder(tmp_path) -> None:
    """A copy taken off a Synology NAS holds ``@eaDir/<image>/SYNOPHOTO_THUMB_*.jpg`` beside every picture: each
    class doubled without a word, and a thumbnail of each test image was trained on."""
    _class_folders(tmp_path / "data", per_class=10)
    clean = _parts(ds.folder_protocol(tmp_path / "data"))
    for image in sorted((tmp_path / "data").glob("*/*.png")):
        thumbs = image.parent / "@eaDir" / image.name
        thumbs.mkdir(parents=True)
        for size in ("S", "M"):
            write_stub(thumbs / f"SYNOPHOTO_THUMB_{size}.jpg", "jpg")
    proto = ds.folder_protocol(tmp_path / "data")
    assert _parts(proto) == clean and sum(len(items) for items in proto.splits[0].values()) == 20


def test_folder_protocol_warns_of_images_in_no_class_folder(tmp_path, caplog) -> None:
    """Images unpacked into the dataset folder instead of their class folder were left out without a word."""
    _class_folders(tmp_path / "data")
    (tmp_path / "data" / "README.txt").write_text("benign and malignant")
    with caplog.at_level("WARNING", logger="monai_ext.data.downstream"):
        clean = _parts(ds.folder_protocol(tmp_path / "data", folds=2))
        assert "in no class folder" not in caplog.text  # other files beside the class folders are no images
        for i in range(3):
            write_stub(tmp_path / "data" / f"normal_{i}.png", "png")
        assert _parts(ds.folder_protocol(tmp_path / "data", folds=2)) == clean
    assert "3 image(s) lie directly in the dataset folder, in no class folder, and are left out, e.g. normal_0.png" \
        in caplog.text

def _write_csv(path: Path, rows, encoding: str = "utf-8") -> Path:
    with open(path, "w", newline="", encoding=encoding) as f:
        w = csv.writer(f)
        w.writerow(["path", "label"])
        w.writerows(rows)
    return path


def test_csv_from_a_spreadsheet_bom_and_padded_labels_is_read(tmp_path) -> None:
    _class_folders(tmp_path / "data")
    rows = [(f"data/{c}/{c}_{i}.png", f" {c} " if i % 2 else c) for c in ("benign", "malignant") for i in range(6)]
    proto = ds.csv_protocol(_write_csv(tmp_path / "labels.csv", rows, "utf-8-sig"), folds=3)
    assert proto.class_names == ["benign", "malignant"]            # ' benign ' is benign, not a third class


@pytest.mark.parametrize("bad_row, message", [(("data/benign/benign_0.png", ""), r"empty label on line\(s\) \[2\]"),
                                              (("data/benign/gone.png", "benign"), r"1 file\(s\) not found.*gone.png")])
def test_csv_refuses_empty_labels_and_missing_files_naming_the_line(tmp_path, bad_row, message) -> None:
    _class_folders(tmp_path / "data")
    rows = [bad_row] + [(f"data/{c}/{c}_{i}.png", c) for c in ("benign", "malignant") for i in range(1, 6)]
    with pytest.raises(ValueError, match=message):
        ds.csv_protocol(_write_csv(tmp_path / "labels.csv", rows), folds=3)


def test_csv_names_the_files_line_after_blank_lines_and_ignores_a_spreadsheets_empty_rows(tmp_path) -> None:
    """Blank lines were not counted (the missing file of line 6 was said to be on line 4), and Excel's trailing
    ``,,`` row was refused as an empty label."""
    _class_folders(tmp_path / "data")
    good = [f"data/{c}/{c}_{i}.png,{c}" for c in ("benign", "malignant") for i in range(6)]
    lines = ["path,label", good[0], "", "", good[1], "data/benign/gone.png,benign", *good[2:], ",", ","]
    (tmp_path / "labels.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"1 file\(s\) not found, on line\(s\) \[6\]"):
        ds.csv_protocol(tmp_path / "labels.csv", folds=3)
    lines.remove("data/benign/gone.png,benign")
    (tmp_path / "labels.csv").write_text("\n".join(lines) + "\n")
    assert len([it for items in ds.csv_protocol(tmp_path / "labels.csv", folds=3).splits[0].values()
                for it in items]) == 12


def test_csv_refuses_labels_that_differ_only_in_case(tmp_path) -> None:
    """``benign`` and ``Benign`` made two classes of one."""
    _class_folders(tmp_path / "data")
    rows = [(f"data/{c}/{c}_{i}.png", c.capitalize() if i == 0 else c) for c in ("benign", "malignant")
            for i in range(6)]
    with pytest.raises(ValueError, match=r"labels \['Benign', 'benign'\] differ only in case"):
        ds.csv_protocol(_write_csv(tmp_path / "labels.csv", rows), folds=3)


@pytest.mark.parametrize("parts", [("train", "test"), ("Training", "Validation", "Testing")])
def test_folder_protocol_refuses_a_split_layout_taken_for_classes(tmp_path, parts) -> None:
    """ROOT/train/<class>, ROOT/test/<class> gave the classes "test" and "train"."""
    for part in parts:
        _class_folders(tmp_path / "data" / part)
    with pytest.raises(ValueError, match="are parts of a split, not classes"):
        ds.folder_protocol(tmp_path / "data")


def test_csv_with_a_fold_column_refuses_a_fold_count(tmp_path) -> None:
    """``--folds 5`` on a CSV whose column gives 2 folds made 2, without a word."""
    _class_folders(tmp_path / "data")
    with open(tmp_path / "labels.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "fold"])
        w.writerows((f"data/{c}/{c}_{i}.png", c, i % 2) for c in ("benign", "malignant") for i in range(6))
    assert len(ds.csv_protocol(tmp_path / "labels.csv").splits) == 2
    with pytest.raises(ValueError, match="has a 'fold' column, which sets the folds; leave out folds=5"):
        ds.csv_protocol(tmp_path / "labels.csv", folds=5)
    (tmp_path / "labels.csv").write_text((tmp_path / "labels.csv").read_text().replace(",1\n", ",0\n"))
    with pytest.raises(ValueError, match="holds one fold \\(0\\)"):  # it failed inside scikit-learn
        ds.csv_protocol(tmp_path / "labels.csv")


def test_unknown_protocol_is_named(tmp_path) -> None:
    with pytest.raises(ValueError, match="'busbra2'"):
        ds.load_protocol("busbra2", tmp_path)


def test_three_patients_in_three_folds_hold_one_patient_out_for_validation(tmp_path) -> None:
    """Each training part has two patients, fewer than the five parts a 0.2 validation share asks for: one patient
    is held out for validation instead of scikit-learn refusing."""
    rows = ["path,label,patient"]
    for i in range(12):
        write_stub((tmp_path / f"{i}.png"), "png")
        rows.append(f"{i}.png,{'benign' if i % 2 else 'malignant'},p{i % 3}")
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    for split in ds.csv_protocol(tmp_path / "labels.csv", folds=3).splits:
        patients = [{it["patient"] for it in split[p]} for p in ("train", "validation", "test")]
        assert [len(p) for p in patients] == [1, 1, 1] and len(set.union(*patients)) == 3


def write_labels_csv(root: Path, per_class: int, patients: int | None = None, fold_of=None) -> Path:
    """``labels.csv`` over stand-in files: ``per_class`` images of benign and malignant, patient ``p{i % patients}``
    and test fold ``fold_of(class, i)`` where given."""
    header = ["path", "label"] + (["patient"] if patients else []) + (["fold"] if fold_of else [])
    rows = []
    for c in ("benign", "malignant"):
        for i in range(per_class):
            write_stub((root / f"{c}{i}.png"), "png")
            rows.append([f"{c}{i}.png", c] + ([f"p{i % patients}"] if patients else [])
                        + ([fold_of(c, i)] if fold_of else []))
    with open(root / "labels.csv", "w", newline="") as f:
        csv.writer(f).writerows([header, *rows])
    return root / "labels.csv"


@pytest.mark.parametrize("per_class, patients, folds, message, advised", [
    # 2 patients in 2 folds: each fold trains on one patient, and its validation part needs another one
    (4, 2, 2, "the training part has images of 1 patient(s); a patient-disjoint validation part needs images of at "
              "least 2 patients: add images of other patients", None),
    # 2 images per class in 2 folds leave one per class to train on: none to hold out for validation
    (2, None, 2, "the training part has fewer than 2 images in every class (images per class index: {0: 1, 1: 1}); "
                 "a stratified validation part needs a class with at least 2 images: add images", None),
    (2, None, 1, "folds must be 2 (the smallest class has 2 image(s)), got 1", None),
    (2, None, 3, "folds must be 2 (the smallest class has 2 image(s)), got 3; more folds need more images in that class", None),
    (6, None, 7, "folds must be an integer from 2 to 6 (the smallest class has 6 image(s)), got 7; more folds need more images in that class", 6),
    # 2 patients: 2 folds would leave one patient per training part (the first case), so no fold count is offered
    (4, 2, 3, "the dataset has images of 2 patient(s); 3 patient-disjoint test folds need images of at least 3 "
              "patients: add images of other patients", None),
    (6, 3, 4, "the dataset has images of 3 patient(s); 4 patient-disjoint test folds need images of at least 4 "
              "patients: add images of other patients or ask for at most 3 folds", 3),
])
def test_too_small_a_split_says_what_can_be_done_and_that_works(tmp_path, per_class, patients, folds, message,
                                                                 advised) -> None:
    """The whole message is compared: fewer folds are advised only where fewer would make every split, and then
    the largest count advised does."""
    labels = write_labels_csv(tmp_path, per_class, patients)
    with pytest.raises(ValueError) as refused:
        ds.csv_protocol(labels, folds=folds)
    assert str(refused.value) == message
    if advised is not None:
        assert len(ds.csv_protocol(labels, folds=advised).splits) == advised


@pytest.mark.parametrize("purpose", ["fold", "", None])
def test_check_splittable_refuses_an_unknown_purpose(purpose) -> None:
    with pytest.raises(ValueError, match=f"purpose must be one of.*got {purpose!r}"):
        ds.check_splittable(np.array([0, 1]), None, 2, purpose)


@pytest.mark.parametrize("labels, smallest", [
    ([0, 0, 1, 1, 1], 2), ([0, 0, 2, 2, 2], 2), ([1, 1, 1], 3), ([0, 3, 3], 1), ([], 0),
])
def test_smallest_class_counts_the_classes_present(labels, smallest) -> None:
    assert ds.smallest_class(np.array(labels, dtype=int)) == smallest


@pytest.mark.parametrize("classes", [(0, 1), (0, 2), (1, 2), (0, 5)])
@pytest.mark.parametrize("val_fraction, validation", [(0.2, 8), (0.25, 10), (0.1, 4)])
def test_a_class_index_absent_from_the_training_part_keeps_the_validation_share(classes, val_fraction,
                                                                                validation) -> None:
    """Two present classes of 20 images: 1/val_fraction stratified parts, whatever their indices (an absent middle
    class once counted as a class of 0 images and made the validation part half of the training part)."""
    train = [{"image": f"{c}_{i}.png", "label": c, "id": f"{c}_{i}"} for c in classes for i in range(20)]
    kept, held_out = ds.validation_from_train(train, val_fraction, seed=0)
    assert (len(kept), len(held_out)) == (40 - validation, validation)
    assert sorted(it["label"] for it in held_out) == sorted([*classes] * (validation // 2))


def test_a_fold_whose_training_part_lacks_a_class_keeps_the_validation_share(tmp_path) -> None:
    """The CSV ``fold`` column puts all of rare class b (index 0) in fold 0: fold 0 trains on classes 1 and 2."""
    labels = write_labels_csv(tmp_path, 10, fold_of=lambda c, i: str(i % 2))
    rows = (tmp_path / "labels.csv").read_text().splitlines()
    for i in range(4):  # class "b", sorted first, all in test fold 0
        write_stub((tmp_path / f"b{i}.png"), "png")
        rows.append(f"b{i}.png,b,0")
    labels.write_text("\n".join(rows) + "\n")
    protocol = ds.csv_protocol(labels, val_fraction=0.2)
    assert protocol.class_names == ["b", "benign", "malignant"]
    assert [{part: len(items) for part, items in split.items()} for split in protocol.splits] == [
        {"train": 8, "validation": 2, "test": 14},
        {"train": 11, "validation": 3, "test": 10},   # b's 4 images: a fifth of each class, rounded, at least one
    ]


def _items(counts: list[int], patients_of: dict[int, int] | None = None) -> list[dict]:
    """``counts[c]`` images of class c; with ``patients_of``, class c's images come from that many patients (others
    from one patient per image)."""
    items = []
    for c, n in enumerate(counts):
        for j in range(n):
            patient = f"{c}-{j % patients_of[c]}" if patients_of and c in patients_of else f"{c}-{j}"
            items.append({"image": f"{c}_{j}.png", "label": c, "id": f"{c}_{j}", "patient": patient})
    return items


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("counts, validation", [
    ([30, 10, 1], [6, 2, 0]),   # a lone image once always went to validation: the class was never trained on
    ([30, 10, 2], [6, 2, 1]),   # a class of 2 once made 2 parts: half of every class in validation (21 of 42)
    ([100, 40, 3], [20, 8, 1]),
])
def test_a_rare_class_keeps_the_validation_share_and_stays_in_training(counts, validation, seed) -> None:
    items = [{k: v for k, v in it.items() if k != "patient"} for it in _items(counts)]
    train, held_out = ds.validation_from_train(items, 0.2, seed)
    assert [sum(it["label"] == c for it in held_out) for c in range(len(counts))] == validation
    assert {it["label"] for it in train} == set(range(len(counts)))
    assert sorted(it["id"] for it in train + held_out) == sorted(it["id"] for it in items)


@pytest.mark.parametrize("seed", range(8))
def test_a_class_of_one_patient_stays_in_training_when_grouped(seed) -> None:
    # all 3 images of class 2 from one patient cannot be on both sides; it once went to validation for every seed
    items = _items([30, 10, 3], patients_of={2: 1})
    train, held_out = ds.validation_from_train(items, 0.2, seed)
    assert {it["label"] for it in train} == {0, 1, 2}
    assert not {it["patient"] for it in train} & {it["patient"] for it in held_out}


def _rewrite_cell(labels: Path, column: str, line: int, value: str) -> None:
    """Set one cell of ``labels.csv`` (line 1 is the header), as a user editing it in a spreadsheet would."""
    with open(labels, newline="") as f:
        rows = list(csv.reader(f))
    rows[line - 1][rows[0].index(column)] = value
    with open(labels, "w", newline="") as f:
        csv.writer(f).writerows(rows)


@pytest.mark.parametrize("column, fold_of", [("patient", None), ("fold", lambda c, i: i % 4 % 2)])
def test_a_partly_blank_optional_column_is_refused_naming_the_line(tmp_path, column, fold_of) -> None:
    # one blank patient cell used to turn patient grouping off for every row: patients then crossed the folds
    labels = write_labels_csv(tmp_path, 12, patients=4, fold_of=fold_of)
    ds.csv_protocol(labels, folds=None if fold_of else 2)  # complete: accepted (a fold column sets the folds)
    _rewrite_cell(labels, column, 5, "")
    with pytest.raises(ValueError, match=rf"column '{column}' is blank on line\(s\) \[5\] but filled on others"):
        ds.csv_protocol(labels, folds=3)


def test_one_blank_patient_cell_no_longer_lets_patients_cross_folds(tmp_path) -> None:
    labels = write_labels_csv(tmp_path, 12, patients=4)
    for split in ds.csv_protocol(labels, folds=3).splits:
        tested = {it["patient"] for it in split["test"]}
        assert not tested & {it["patient"] for it in split["train"] + split["validation"]}


@pytest.mark.parametrize("cell, fold", [("1.0", 1), (" 2 ", 2)])
def test_spreadsheet_folds_written_as_decimals_are_read(tmp_path, cell, fold) -> None:
    labels = write_labels_csv(tmp_path, 6, fold_of=lambda c, i: i % 3)
    _rewrite_cell(labels, "fold", 2, cell)  # benign0, fold 0 before
    protocol = ds.csv_protocol(labels)
    assert str(tmp_path / "benign0.png") in [it["image"] for it in protocol.splits[fold]["test"]]


@pytest.mark.parametrize("cell", ["1.5", "first", "nan"])
def test_a_fold_that_is_not_a_whole_number_names_file_line_and_column(tmp_path, cell) -> None:
    labels = write_labels_csv(tmp_path, 6, fold_of=lambda c, i: i % 3)
    _rewrite_cell(labels, "fold", 3, cell)
    with pytest.raises(ValueError, match=rf"labels.csv': fold '{cell}' on line 3 is not a whole number"):
        ds.csv_protocol(labels)


def test_a_patient_whose_images_sit_in_several_folds_is_refused(tmp_path) -> None:
    # patient p{i % 4}, fold i % 3: every patient's images are spread over the folds
    labels = write_labels_csv(tmp_path, 12, patients=4, fold_of=lambda c, i: i % 3)
    with pytest.raises(ValueError, match=r"4 patient\(s\) have images in several folds, e\.g\. \{'p0': \[0, 1, 2\]"):
        ds.csv_protocol(labels)
    consistent = write_labels_csv(tmp_path, 12, patients=4, fold_of=lambda c, i: i % 4 % 2)
    assert len(ds.csv_protocol(consistent).splits) == 2


def test_items_with_and_without_patients_are_not_split_by_image() -> None:
    items = [{"image": f"{i}.png", "label": i % 2, "patient": f"p{i % 3}"} for i in range(12)]
    items[7].pop("patient")
    with pytest.raises(ValueError, match=r"1 of 12 images have no patient while the others do, e\.g\. '7.png'"):
        ds.validation_from_train(items, 0.2, 0)


@pytest.mark.parametrize("seed", range(12))
def test_a_patient_grouped_validation_part_holds_every_class_where_a_split_allows(seed) -> None:
    # 4 labels per class from 2-image patients, as a label-efficiency draw gives: the first grouped fold often put
    # a class wholly in training, and the best model was then chosen on one class only
    rng = np.random.default_rng(seed)
    items = [{"image": f"{c}{i}.png", "label": c, "patient": f"{c}-{i // 2}"} for c in (0, 1) for i in range(4)]
    items = [items[i] for i in rng.permutation(len(items))]
    train, validation = ds.validation_from_train(items, 0.2, seed)
    assert {it["label"] for it in validation} == {0, 1} and {it["label"] for it in train} == {0, 1}
    assert not {it["patient"] for it in train} & {it["patient"] for it in validation}


# ----------------------------------------------------------------------------- what a real download or edit brings
def _edit_rows(path: Path, edit) -> None:
    """Rewrite a CSV sheet with ``edit(rows)`` applied to its rows (dicts), header kept."""
    rows = list(csv.DictReader(path.open(newline="")))
    fields = list(rows[0])
    rows = edit(rows)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


def _set(row_id: str, **cells):
    def edit(rows):
        for row in rows:
            if row["ID"] == row_id:
                row.update(cells)
        return rows
    return edit


def test_busbra_refuses_a_fold_sheet_that_tests_a_patient_trained_on(tmp_path) -> None:
    """Patient 1 has two images in test fold 2; one moved to fold 3 was trained on in run 2 while its twin was
    tested, without a word."""
    make_busbra(tmp_path / "B")
    _edit_rows(tmp_path / "B" / "5-fold-cv.csv", _set("bus_0001-r", kFold="3", valid_2="1", valid_3=""))
    with pytest.raises(ValueError, match=r"5-fold-cv.csv: test fold 2 holds 1 patient\(s\) \(Case\) whose other "
                                         r"images are in its training or validation part, e.g. Case '1' "
                                         r"\('bus_0001-l'\)"):
        ds.busbra_protocol(tmp_path / "B")


def test_busbra_warns_of_a_patient_in_training_and_validation(tmp_path, caplog) -> None:
    make_busbra(tmp_path / "B")
    with caplog.at_level("WARNING", logger="monai_ext.data.downstream"):
        ds.busbra_protocol(tmp_path / "B")
        assert "in both training and validation" not in caplog.text
        row = next(r for r in csv.DictReader((tmp_path / "B" / "5-fold-cv.csv").open()) if r["ID"] == "bus_0001-r")
        _edit_rows(tmp_path / "B" / "5-fold-cv.csv", _set("bus_0001-r", valid_1="0" if row["valid_1"] == "1" else "1"))
        ds.busbra_protocol(tmp_path / "B")
    assert "5-fold-cv.csv, run 1: 1 patient(s) have images in both training and validation (valid_1), e.g. " \
           "Case '1'" in caplog.text


@pytest.mark.parametrize("sheet, edit, message", [
    ("5-fold-cv.csv", lambda rows: rows + rows[2:3], r"5-fold-cv.csv lists 1 image ID\(s\) on more than one row, e.g. "
                                                     r"\['bus_0002-l'\]"),
    ("bus_data.csv", lambda rows: rows + [{**rows[0], "Case": "99"}], "bus_data.csv gives image 'bus_0001-l' two "
                                                                      "Cases, '1' and '99'"),
])
def test_busbra_refuses_sheets_that_contradict_themselves(tmp_path, sheet, edit, message) -> None:
    """The last row won: an image counted twice, or a patient's twin split off."""
    make_busbra(tmp_path / "B")
    _edit_rows(tmp_path / "B" / sheet, edit)
    with pytest.raises(ValueError, match=message):
        ds.busbra_protocol(tmp_path / "B")


def test_busbra_warns_where_its_two_sheets_disagree_on_a_pathology(tmp_path, caplog) -> None:
    make_busbra(tmp_path / "B")
    _edit_rows(tmp_path / "B" / "bus_data.csv", _set("bus_0002-l", Pathology="malignant"))
    with caplog.at_level("WARNING", logger="monai_ext.data.downstream"):
        proto = ds.busbra_protocol(tmp_path / "B")
    assert "bus_data.csv and 5-fold-cv.csv give 1 image(s) different pathologies, e.g. bus_0002-l" in caplog.text
    label = next(it["label"] for it in proto.splits[0]["test"] + proto.splits[0]["train"] + proto.splits[0]["validation"]
                 if it["id"] == "bus_0002-l")
    assert label == 0  # the fold sheet's benign


def _after_header(edit):
    def apply(data: bytes) -> bytes:
        header, rest = data.split(b"\r\n", 1)
        return header + b"\r\n" + edit(rest)
    return apply


@pytest.mark.parametrize("edit", [
    lambda b: b.replace(b'"[1, 2, 3, 4]"', b"[1, 2, 3, 4]"),  # a BBOX list saved unquoted: cells past the header
    _after_header(lambda rest: rest.replace(b"\r\n", b",\r\n")),  # a trailing comma on every row, not the header
])
def test_busbra_rows_longer_than_the_header_read_the_same(tmp_path, edit) -> None:
    """They crashed with AttributeError: 'list' object has no attribute 'strip', naming no file."""
    make_busbra(tmp_path / "B")
    clean = _parts(ds.busbra_protocol(tmp_path / "B"))
    for name in ("5-fold-cv.csv", "bus_data.csv"):
        _rewrite(tmp_path / "B" / name, edit)
    assert _parts(ds.busbra_protocol(tmp_path / "B")) == clean


def _cp1252_csv(tmp_path: Path) -> tuple[Path, callable]:
    _class_folders(tmp_path / "data", classes=("bénin", "malin"))
    rows = ["path,label"] + [f"data/{c}/{c}_{i}.png,{c}" for c in ("bénin", "malin") for i in range(6)]
    (tmp_path / "labels.csv").write_bytes(("\r\n".join(rows) + "\r\n").encode("cp1252"))
    return tmp_path / "labels.csv", ds.csv_protocol


def _cp1252_busbra(tmp_path: Path) -> tuple[Path, callable]:
    make_busbra(tmp_path / "B")
    _rewrite(tmp_path / "B" / "bus_data.csv", lambda b: b.replace(b",x,", ",Carcinoma é,".encode("cp1252")))
    return tmp_path / "B" / "bus_data.csv", lambda _: ds.busbra_protocol(tmp_path / "B")


def _cp1252_mmotu(tmp_path: Path) -> tuple[Path, callable]:
    make_mmotu(tmp_path / "M")
    _rewrite(tmp_path / "M" / "val_cls.txt", lambda b: "# liste validée\n".encode("cp1252") + b)
    return tmp_path / "M" / "val_cls.txt", lambda _: ds.mmotu_protocol(tmp_path / "M")


@pytest.mark.parametrize("make", [_cp1252_csv, _cp1252_busbra, _cp1252_mmotu])
def test_a_list_saved_in_a_windows_code_page_is_named(tmp_path, make) -> None:
    """Excel's plain "CSV" on Windows is cp1252: a UnicodeDecodeError traceback named no file."""
    path, read = make(tmp_path)
    with pytest.raises(ValueError, match=f"'{path}' is not UTF-8 text \\(byte 0xe9 at offset \\d+\\); save it as UTF-8"):
        read(path)


def test_mmotu_refuses_an_image_listed_twice_naming_the_lines(tmp_path) -> None:
    make_mmotu(tmp_path / "M")
    _rewrite(tmp_path / "M" / "train_cls.txt", lambda b: b + b"3.jpg  3\n")
    with pytest.raises(ValueError, match=r"train_cls.txt: '3.jpg' is listed on lines 3 and 41"):
        ds.mmotu_protocol(tmp_path / "M")


def test_mmotu_refuses_an_image_in_both_lists(tmp_path) -> None:
    make_mmotu(tmp_path / "M")
    _rewrite(tmp_path / "M" / "val_cls.txt", lambda b: b + b"5.JPG  5\n")
    with pytest.raises(ValueError, match=r"train_cls.txt and val_cls.txt both list 1 image\(s\), e.g. '5.JPG'"):
        ds.mmotu_protocol(tmp_path / "M")


def test_mmotu_warns_of_a_test_image_that_is_a_copy_of_a_training_one(tmp_path, caplog) -> None:
    make_mmotu(tmp_path / "M")
    (tmp_path / "M" / "images" / "50.JPG").write_bytes((tmp_path / "M" / "images" / "7.JPG").read_bytes())
    with caplog.at_level("WARNING", logger="monai_ext.data.identical"):
        ds.mmotu_protocol(tmp_path / "M")
    assert "MMOTU train_cls.txt and val_cls.txt, split 0: 1 test image(s) are byte-identical" in caplog.text
    assert "50.JPG" in caplog.text and "7.JPG" in caplog.text



def _list_gist_image_again(root: Path, source: str, target: str, image_index: int, spelling=lambda name: name) -> str:
    """Append the ``image_index``-th image of the COCO file ``source`` (and its annotation) to ``target`` under a
    new image id, its file name spelt by ``spelling``; the file name as listed."""
    src = json.loads((root / "annotations" / source).read_text())
    dst = json.loads((root / "annotations" / target).read_text())
    image = {**src["images"][image_index], "id": 999}
    image["file_name"] = spelling(image["file_name"])
    ann = next(a for a in src["annotations"] if a["image_id"] == src["images"][image_index]["id"])
    dst["images"].append(image)
    dst["annotations"].append({**ann, "id": 999, "image_id": 999})
    (root / "annotations" / target).write_text(json.dumps(dst))
    return image["file_name"]


@pytest.mark.parametrize("spelling", [lambda name: name, str.upper])
def test_gist_refuses_an_image_listed_twice_in_a_split_file(tmp_path, spelling) -> None:
    """A COCO file listing one image under two ids was read as two images: trained on twice, or trained on and
    validated on, without a word (MMOTU's lists refuse this)."""
    make_gist(tmp_path / "g")
    _list_gist_image_again(tmp_path / "g", "train_anno_crop_split_0.json", "train_anno_crop_split_0.json", 0, spelling)
    with pytest.raises(ValueError, match=r"GIST514 train_anno_crop_split_0.json lists 1 image file\(s\) more than "
                                         r"once, e.g. 'case_001.jpg' as image ids \[2, 999\]"):
        ds.gist514_protocol(tmp_path / "g")


def test_gist_refuses_an_image_in_the_training_and_test_files_of_one_split(tmp_path) -> None:
    """An image in ``train_anno_crop_split_k`` and ``val_anno_crop_split_k`` was trained on and tested on; only the
    datalist check stopped it, naming a datalist and no COCO file."""
    make_gist(tmp_path / "g")
    listed = _list_gist_image_again(tmp_path / "g", "val_anno_crop_split_2.json", "train_anno_crop_split_2.json", 0)
    with pytest.raises(ValueError, match=f"GIST514 train_anno_crop_split_2.json and val_anno_crop_split_2.json both "
                                         f"list 1 image\\(s\\), e.g. '{listed}'"):
        ds.gist514_protocol(tmp_path / "g")

def _flip_gist_categories(root: Path, categories: list[dict]) -> None:
    for path in (root / "annotations").glob("*.json"):
        coco = json.loads(path.read_text())
        for ann in coco["annotations"]:
            ann["category_id"] = 3 - ann["category_id"]
        coco["categories"] = categories
        path.write_text(json.dumps(coco))


def test_gist_reads_labels_by_category_name_not_by_id(tmp_path) -> None:
    """A copy whose ids run the other way (gist = 1, lmym = 2) had every label flipped."""
    truth = make_gist(tmp_path / "g")
    _flip_gist_categories(tmp_path / "g", [{"id": 1, "name": "gist"}, {"id": 2, "name": "lmym"}])
    for split in ds.gist514_protocol(tmp_path / "g").splits:
        assert all(it["label"] == truth[it["id"]] for items in split.values() for it in items)


@pytest.mark.parametrize("categories", [[{"id": 1, "name": "benign"}, {"id": 2, "name": "gist"}],
                                        [{"id": 1, "name": "gist"}, {"id": 2, "name": "GIST"}]])
def test_gist_refuses_a_category_table_of_other_classes(tmp_path, categories) -> None:
    make_gist(tmp_path / "g")
    _flip_gist_categories(tmp_path / "g", categories)
    with pytest.raises(ValueError, match=r"categories \[\(1, .*\)\] are not GIST514's 'lmym' and 'gist'"):
        ds.gist514_protocol(tmp_path / "g")


@pytest.mark.parametrize("layers", [("images", "masks"), ("Images", "Labels"), ("image", "annotations")])
def test_folder_protocol_refuses_a_segmentation_sets_images_and_masks_as_classes(tmp_path, layers) -> None:
    _class_folders(tmp_path / "seg", classes=layers)
    with pytest.raises(ValueError, match=re.escape(f"sub-folders {sorted(layers)!r}") + ".* are a segmentation set's images and masks"):
        ds.folder_protocol(tmp_path / "seg", folds=3)


@pytest.mark.parametrize("make, advised", [(make_busbra, "so it is BUS-BRA: make-datalist busbra"),
                                           (make_mmotu, "so it is MMOTU-2D: make-datalist mmotu"),
                                           (make_gist, "so it is GIST514-DB: make-datalist gist514")])
def test_folder_protocol_on_a_published_set_names_its_own_protocol(tmp_path, make, advised) -> None:
    """``make-datalist folder BUSBRA`` advised ``image-mask-folders``, which refuses BUS-BRA's ``Images/`` and
    ``Masks/`` (their names differ) and has none of its official folds; GIST514 was refused as a class folder
    without images (``annotations/``)."""
    make(tmp_path / "set")
    with pytest.raises(ValueError, match=r"are a segmentation set's images and masks, not classes; it holds .*"
                                         + re.escape(advised)):
        ds.folder_protocol(tmp_path / "set", folds=3)


@pytest.mark.parametrize("masks", ["masks", "Mask", "GT", "ground_truth", "Annotations", "segmentations",
                                   "study1/labels"])
def test_folder_protocol_leaves_out_mask_folders_inside_class_folders(tmp_path, caplog, masks) -> None:
    """``<class>/images/`` beside ``<class>/masks/`` (equal stems): the masks were trained and tested as images of
    their class, a quarter of the items."""
    for name in ("benign", "malignant"):
        (tmp_path / "data" / name / "images").mkdir(parents=True)
        (tmp_path / "data" / name / masks).mkdir(parents=True)
        for i in range(6):
            write_stub(tmp_path / "data" / name / "images" / f"{name}_{i}.png", "png")
        for i in range(2):
            write_stub(tmp_path / "data" / name / masks / f"{name}_{i}.png", "png")
    with caplog.at_level("WARNING"):
        proto = ds.folder_protocol(tmp_path / "data", folds=3)
    for split in proto.splits:
        images = [Path(it["image"]).relative_to(tmp_path / "data") for items in split.values() for it in items]
        assert sorted(images) == sorted(Path(name, "images", f"{name}_{i}.png")
                                        for name in ("benign", "malignant") for i in range(6))
    assert (f"4 file(s) in mask folders inside the class folders (benign/{masks}, malignant/{masks}) are masks, not "
            "images of their class, and are left out") in caplog.text


def test_folder_protocol_keeps_one_of_byte_identical_copies_of_a_class(tmp_path, caplog) -> None:
    """A copy could be trained on while its twin was tested."""
    _class_folders(tmp_path / "data")
    copy = tmp_path / "data" / "benign" / "copy of benign_2.png"
    copy.write_bytes((tmp_path / "data" / "benign" / "benign_2.png").read_bytes())
    with caplog.at_level("WARNING", logger="monai_ext.data.identical"):
        proto = ds.folder_protocol(tmp_path / "data", folds=3)
    for split in proto.splits:
        assert sorted(it["id"] for items in split.values() for it in items) == sorted(
            f"{c}_{i}" for c in ("benign", "malignant") for i in range(6))
    assert "1 image(s) are byte-identical copies" in caplog.text and "copy of benign_2.png" in caplog.text


def test_csv_protocol_leaves_out_one_image_under_two_classes_by_content(tmp_path, caplog) -> None:
    _class_folders(tmp_path / "data")
    (tmp_path / "data" / "malignant" / "m.png").write_bytes((tmp_path / "data" / "benign" / "benign_4.png").read_bytes())
    rows = ["path,label"] + [f"data/{c}/{c}_{i}.png,{c}" for c in ("benign", "malignant") for i in range(6)]
    (tmp_path / "l.csv").write_text("\n".join(rows + ["data/malignant/m.png,malignant"]) + "\n")
    with caplog.at_level("WARNING", logger="monai_ext.data.identical"):
        proto = ds.csv_protocol(tmp_path / "l.csv", folds=3)
    ids = sorted(it["id"] for items in proto.splits[0].values() for it in items)
    assert "benign_4" not in ids and "m" not in ids and len(ids) == 11
    assert "benign_4.png' (benign), " in caplog.text and "m.png' (malignant)" in caplog.text


def test_csv_protocol_refuses_a_row_listed_twice(tmp_path) -> None:
    """It was dropped as a "copy of itself"; with another label, called a copy under the wrong class."""
    _class_folders(tmp_path / "data")
    rows = ["path,label"] + [f"data/{c}/{c}_{i}.png,{c}" for c in ("benign", "malignant") for i in range(6)]
    (tmp_path / "l.csv").write_text("\n".join(rows + ["data/benign/benign_0.png,malignant"]) + "\n")
    with pytest.raises(ValueError, match=r"lists 1 file\(s\) more than once, e.g. '.*benign_0.png'; list each image once"):
        ds.csv_protocol(tmp_path / "l.csv", folds=3)


@pytest.mark.parametrize("header", ["Path,Label", "path;label"])
def test_csv_header_without_the_columns_says_what_it_has(tmp_path, header) -> None:
    _class_folders(tmp_path / "data")
    sep = header[4]
    (tmp_path / "l.csv").write_text(f"{header}\ndata/benign/benign_0.png{sep}benign\n")
    found = [c.strip() for c in header.split(",")]
    with pytest.raises(ValueError, match=re.escape(f"needs columns 'path' and 'label' (lower case, comma-separated); "
                                                   f"its header has {found!r}")):
        ds.csv_protocol(tmp_path / "l.csv")


@pytest.mark.parametrize("header, refused", [(["path", "label", "Patient", "Fold"], ["Patient", "Fold"]),
                                             (["path", "label", "PATIENT"], ["PATIENT"]),
                                             (["path", "label", "patient", " Fold "], ["Fold"])])
def test_csv_refuses_patient_and_fold_columns_in_another_case(tmp_path, header, refused) -> None:
    """``Patient`` and ``Fold``, as spreadsheets capitalise headers, were ignored without a word: patients crossed
    the split (p0_0 tested, p0_1 trained on) and folds were drawn instead of the user's. ``Path`` is refused for
    not being lower case; so are they."""
    rows = []
    for p in range(10):
        for j in range(3):
            write_stub(tmp_path / f"p{p}_{j}.png", "png")
            cells = {"path": f"p{p}_{j}.png", "label": "benign" if p % 2 else "malignant", "patient": f"p{p}",
                     "fold": str(p % 2)}
            rows.append([cells[c.strip().lower()] for c in header])
    with open(tmp_path / "list.csv", "w", newline="") as f:
        csv.writer(f).writerows([header, *rows])
    with pytest.raises(ValueError, match=re.escape(f"column(s) {refused!r} are read only as "
                                                   f"{[c.lower() for c in refused]!r} (column names are lower case")):
        ds.csv_protocol(tmp_path / "list.csv")


def _classes_of(sizes: dict[str, int], root: Path) -> Path:
    for name, n in sizes.items():
        (root / name).mkdir(parents=True)
        for i in range(n):
            write_stub(root / name / f"{name}{i}.png", "png")
    return root


@pytest.mark.parametrize("max_train", [6, 7, 10])
def test_a_training_cap_keeps_two_of_every_class(tmp_path, max_train) -> None:
    """Largest remainders rounded a class of 4 to none under a cap of 3 to 10: tested but never trained on."""
    proto = ds.folder_protocol(_classes_of({"a": 30, "b": 12, "c": 4}, tmp_path / "d"), folds=4, max_train=max_train)
    for split in proto.splits:
        labelled = split["train"] + split["validation"]
        assert len(labelled) == max_train
        assert np.bincount([it["label"] for it in labelled], minlength=3).min() >= 2
        assert {it["label"] for it in split["train"]} == {0, 1, 2}


@pytest.mark.parametrize("max_train", [5, 0, 2.5, True])
def test_a_training_cap_below_two_per_class_is_refused_naming_it(tmp_path, max_train) -> None:
    root = _classes_of({"a": 30, "b": 12, "c": 4}, tmp_path / "d")
    with pytest.raises(ValueError, match=re.escape(f"max_train must be a whole number of at least 6 (two labelled "
                                                   f"images for each of the 3 classes: one to train on, one to "
                                                   f"validate on), got {max_train!r}")):
        ds.folder_protocol(root, folds=4, max_train=max_train)


@pytest.mark.parametrize("per_class", [4, 0, 5.0, True])
def test_a_generated_benchmark_too_small_for_its_five_folds_is_refused(per_class) -> None:
    with pytest.raises(ValueError, match=re.escape(f"per_class must be a whole number of at least 5 (the "
                                                   f"benchmark's 5 folds test one image of each class in each), got "
                                                   f"{per_class!r}")):
        ds.check_generated_size(per_class)
    ds.check_generated_size(5)


def test_busbra_refuses_a_row_whose_columns_a_comma_shifted(tmp_path) -> None:
    """Cells past the header are BBOX's unquoted list only when BBOX is the last column; elsewhere a comma in a cell
    shifted Case and Pathology, and the patient grouping went wrong without a word."""
    make_busbra(tmp_path / "B")
    path = tmp_path / "B" / "bus_data.csv"
    rows = list(csv.DictReader(path.open(newline="")))
    # BBOX first and unquoted: its list spills into ID, Case and Pathology
    lines = ["BBOX,ID,Case,Pathology"] + [f"[1, 2, 3, 4],{r['ID']},{r['Case']},{r['Pathology']}" for r in rows]
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"bus_data.csv' line 2 has 3 cell\(s\) more than its header"):
        ds.busbra_protocol(tmp_path / "B")


def test_busbra_names_each_crossing_case_with_its_own_image(tmp_path) -> None:
    make_busbra(tmp_path / "B")
    _edit_rows(tmp_path / "B" / "5-fold-cv.csv", _set("bus_0001-r", kFold="3", valid_2="1", valid_3=""))
    _edit_rows(tmp_path / "B" / "5-fold-cv.csv", _set("bus_0011-l", kFold="3", valid_2="1", valid_3=""))
    with pytest.raises(ValueError, match=r"2 patient\(s\) \(Case\) .* e.g. Case '1' \('bus_0001-l'\)"):
        ds.busbra_protocol(tmp_path / "B")


def test_a_numpy_training_cap_is_a_cap(tmp_path) -> None:
    proto = ds.folder_protocol(_classes_of({"a": 12, "b": 12}, tmp_path / "d"), folds=3, max_train=np.int64(6))
    assert all(len(s["train"]) + len(s["validation"]) == 6 for s in proto.splits)


def _study_folders(root: Path, studies: int = 6, frames: int = 3, flat: int = 2) -> None:
    """``root/<class>/<class>_study<j>/frame<k>.png`` (frames of one study) and ``flat`` images directly in each
    class folder."""
    for name in ("benign", "malignant"):
        for j in range(studies):
            (root / name / f"{name}_study{j}").mkdir(parents=True)
            for k in range(frames):
                write_stub(root / name / f"{name}_study{j}" / f"frame{k}.png", "png")
        for i in range(flat):
            write_stub(root / name / f"{name}_{i}.png", "png")


def assert_each_patient_in_one_part(splits: list[dict]) -> None:
    """Every patient's images sit in one part (train, validation or test) of each split."""
    for split in splits:
        parts_of: dict[str, set[str]] = {}
        for part, items in split.items():
            for it in items:
                parts_of.setdefault(it["patient"], set()).add(part)
        assert all(len(parts) == 1 for parts in parts_of.values()), parts_of


def test_folder_protocol_keeps_the_frames_of_a_study_folder_in_one_part(tmp_path, caplog) -> None:
    """``root/<class>/<study>/frame.png``: every frame was an item of its own, so a study's frames were trained on
    and tested on (9 of 14 studies crossed parts). A study folder is now a group (``patient``), an image directly
    in its class folder a group of one."""
    _study_folders(tmp_path / "data")
    with caplog.at_level("INFO"):
        proto = ds.folder_protocol(tmp_path / "data", folds=3, val_fraction=0.25)
    assert "folds are grouped by study folder (16 studies:" in caplog.text
    tested = []
    for split in proto.splits:
        assert_each_patient_in_one_part([split])
        tested += [it["image"] for it in split["test"]]
    assert len(tested) == len(set(tested)) == 2 * (6 * 3 + 2)
    patients = {Path(it["image"]).relative_to(tmp_path / "data").as_posix(): it["patient"]
                for it in proto.splits[0]["train"] + proto.splits[0]["validation"] + proto.splits[0]["test"]}
    assert patients["benign/benign_study2/frame1.png"] == "benign/benign_study2"
    assert patients["malignant/malignant_0.png"] == "malignant/malignant_0.png"


@pytest.mark.parametrize("loose", [0, 3], ids=["only sub-folders", "a few loose images beside them"])
@pytest.mark.parametrize("sub_folders", [["{name}"], ["scannerA", "scannerB", "scannerC"]],
                         ids=["archive unpacked into its own name", "filed by scanner"])
def test_sub_folders_fewer_than_the_folds_are_no_studies_and_the_images_split_as_before(tmp_path, caplog,
                                                                                        sub_folders, loose) -> None:
    """``benign/benign/*.png`` or ``benign/scannerA..C/``: every sub-folder was read as a study, and a split that
    worked by image was refused for want of patients the user never declared; with a few loose images beside them,
    each counted as a study, the folds were grouped and one training part held 8 images."""
    for name in ("benign", "malignant"):
        for i in range(12 - loose):
            folder = tmp_path / "data" / name / sub_folders[i % len(sub_folders)].format(name=name)
            folder.mkdir(parents=True, exist_ok=True)
            write_stub(folder / f"{name}_{i}.png", "png")
        for i in range(loose):
            write_stub(tmp_path / "data" / name / f"{name}_loose{i}.png", "png")
    with caplog.at_level("INFO"):
        proto = ds.folder_protocol(tmp_path / "data", folds=5)
    assert "fewer than the 5 folds" in caplog.text and "the sub-folders are read as containers" in caplog.text
    assert not any("patient" in it for split in proto.splits for items in split.values() for it in items)
    assert sorted(len(split["test"]) for split in proto.splits) == [4, 5, 5, 5, 5]


def test_a_few_small_study_folders_beside_many_loose_images_are_grouped(tmp_path, caplog) -> None:
    """Three study folders of 5 frames beside 20 loose images per class: 23 groups a class, so grouped folds hold;
    counted as three folders against five folds, their frames were split one by one."""
    for name in ("benign", "malignant"):
        for j in range(3):
            (tmp_path / "data" / name / f"study{j}").mkdir(parents=True)
            for k in range(5):
                write_stub(tmp_path / "data" / name / f"study{j}" / f"frame{k}.png", "png")
        for i in range(20):
            write_stub(tmp_path / "data" / name / f"{name}_{i}.png", "png")
    with caplog.at_level("INFO"):
        proto = ds.folder_protocol(tmp_path / "data", folds=5)
    assert "folds are grouped by study folder (46 studies:" in caplog.text
    for split in proto.splits:
        parts_of: dict[str, set[str]] = {}
        for part, items in split.items():
            for it in items:
                parts_of.setdefault(it["patient"], set()).add(part)
        assert all(len(parts) == 1 for parts in parts_of.values())


@pytest.mark.parametrize("folds, long_study", [(5, 7), (3, 12), (6, 20)])
def test_one_long_study_among_as_many_study_folders_as_folds_keeps_the_grouping(tmp_path, caplog, folds,
                                                                                 long_study) -> None:
    """Six study folders a class, ``benign/benign_study0`` holding more than a fold's share of benign: grouping was
    turned off for every class with a warning, and studies sat in training and test. A class of at least as many
    sub-folders as folds is of studies; StratifiedGroupKFold takes unequal ones."""
    for name in ("benign", "malignant"):
        for j in range(6):
            (tmp_path / "data" / name / f"{name}_study{j}").mkdir(parents=True)
            for k in range(long_study if (name, j) == ("benign", 0) else 3):
                write_stub(tmp_path / "data" / name / f"{name}_study{j}" / f"frame{k}.png", "png")
    with caplog.at_level("INFO"):
        proto = ds.folder_protocol(tmp_path / "data", folds=folds)
    assert "folds are grouped by study folder (12 studies:" in caplog.text and "read as containers" not in caplog.text
    assert_each_patient_in_one_part(proto.splits)


def test_folder_protocol_without_study_folders_is_split_by_image_as_before(tmp_path, caplog) -> None:
    _class_folders(tmp_path / "data", per_class=10)
    with caplog.at_level("INFO"):
        proto = ds.folder_protocol(tmp_path / "data", folds=5)
    assert "study folder" not in caplog.text
    assert not any("patient" in it for split in proto.splits for items in split.values() for it in items)


@pytest.mark.parametrize("spellings", [("benign", "Benign"), ("malignant", "malignant "), ("BENIGN", " benign")])
def test_folder_protocol_refuses_class_folders_that_differ_only_in_case_or_spaces(tmp_path, spellings) -> None:
    """``benign/``, ``Benign/`` and ``malignant /`` were three classes of two, as the csv protocol refuses."""
    _class_folders(tmp_path / "data", classes=("other", *spellings))
    with pytest.raises(ValueError, match=re.escape(f"class folders {sorted(spellings)!r} differ only in case or "
                                                   "surrounding spaces; merge them into one folder")):
        ds.folder_protocol(tmp_path / "data", folds=2)


def test_grouped_folds_refuse_a_class_with_fewer_patients_than_folds(tmp_path) -> None:
    """5 patient-disjoint folds of a class of 3 patients left 2 test folds without it, where a model that never
    predicts it scored macro-F1 1.0; the class, its patients and the folds are named, and the advised count works."""
    rows = ["path,label,patient"]
    for i in range(30):
        malignant = i < 9
        write_stub(tmp_path / f"{i}.png", "png")
        rows.append(f"{i}.png,{'malignant' if malignant else 'benign'},{f'm{i % 3}' if malignant else f'b{i}'}")
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    with pytest.raises(ValueError) as refused:
        ds.csv_protocol(tmp_path / "labels.csv", folds=5)
    assert str(refused.value) == (
        "class 'malignant' has images of 3 patient(s), fewer than the 5 folds: a patient's images share a test fold, "
        "so 2 test fold(s) would hold no image of it and score it nowhere; ask for at most 3 folds (--folds or "
        "--num_folds 3) or add images of other patients of that class")
    for split in ds.csv_protocol(tmp_path / "labels.csv", folds=3).splits:
        assert {it["label"] for it in split["test"]} == {0, 1}


def test_a_dataset_fold_without_a_class_is_warned_of_by_fold_and_class(tmp_path, caplog) -> None:
    """A fold column (as BUS-BRA's sheets) may leave a class out of a test fold: its macro-F1 leaves the class out."""
    labels = write_labels_csv(tmp_path, 6, fold_of=lambda c, i: i % 3 if c == "benign" else i % 2)
    with caplog.at_level("WARNING"):
        proto = ds.csv_protocol(labels)
    assert len(proto.splits) == 3 and {it["label"] for it in proto.splits[2]["test"]} == {0}
    assert "'fold' column: test fold(s) [2] of 3 (numbered from 0) hold no image of class 'malignant'" in caplog.text


def test_busbra_warns_of_a_test_fold_without_a_class(tmp_path, caplog) -> None:
    make_busbra(tmp_path, patients=30)
    sheet = (tmp_path / "5-fold-cv.csv").read_text().splitlines()
    # fold 3 (index 2) loses its malignant rows: they are relabelled benign in the fold sheet
    edited = [re.sub(r",malignant,3,", ",benign,3,", line) for line in sheet]
    (tmp_path / "5-fold-cv.csv").write_text("\n".join(edited) + "\n")
    with caplog.at_level("WARNING"):
        ds.busbra_protocol(tmp_path, folds=5)
    assert "BUS-BRA 5-fold-cv.csv: test fold(s) [2] of 5 (numbered from 0) hold no image of class 'malignant'" in caplog.text


def test_csv_reads_a_file_named_in_another_unicode_form_than_the_disks(tmp_path) -> None:
    """macOS writes "é" decomposed (NFD), a spreadsheet saves it composed (NFC): the file was "not found"."""
    import unicodedata

    rows = []
    for c in ("benign", "malignant"):
        for i in range(4):
            write_stub(tmp_path / unicodedata.normalize("NFD", f"{c}_é{i}.png"), "png")
            rows.append((unicodedata.normalize("NFC", f"{c}_é{i}.png"), c))
    proto = ds.csv_protocol(_write_csv(tmp_path / "labels.csv", rows), folds=2)
    images = [it["image"] for split in proto.splits for it in split["test"]]
    assert len(images) == 8 and all(Path(image).is_file() for image in images)



def test_csv_reads_a_file_named_in_another_case_than_the_disks(tmp_path) -> None:
    """A sheet written where names ignore case (``Images/IMG_0.PNG`` for ``images/img_0.png``, Windows or macOS) was
    refused on Linux, every file "not found", though the published lists find such names."""
    (tmp_path / "images").mkdir()
    rows = []
    for c in ("benign", "malignant"):
        for i in range(4):
            write_stub(tmp_path / "images" / f"{c}_{i}.png", "png")
            rows.append((f"Images/{c.upper()}_{i}.PNG", c))
    proto = ds.csv_protocol(_write_csv(tmp_path / "labels.csv", rows), folds=2)
    images = sorted(it["image"] for split in proto.splits for it in split["test"])
    assert images == sorted(str(tmp_path / "images" / f"{c}_{i}.png") for c in ("benign", "malignant") for i in range(4))

def _patient_csv(path: Path, header: list[str]) -> Path:
    """``path``: a sheet of 10 patients of 3 images each (written beside it), its columns named by ``header`` in the
    order path, label, patient, fold, site (a header shorter than that leaves the rest out)."""
    rows = []
    for p in range(10):
        for j in range(3):
            write_stub(path.parent / f"p{p}_{j}.png", "png")
            rows.append([f"p{p}_{j}.png", "benign" if p % 2 else "malignant", f"p{p}", str(p % 2), "siteA"])
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows([header, *[row[: len(header)] for row in rows]])
    return path


@pytest.mark.parametrize("column", ["patient_id", "Case", "PatientID", "subject", "Study ID", "case_no", "MRN"])
def test_csv_refuses_a_patient_column_under_another_name(tmp_path, column) -> None:
    """``patient_id`` or ``Case`` was ignored without a word: the images were split one by one, and a patient's
    images landed in both training and test."""
    sheet = _patient_csv(tmp_path / "list.csv", ["path", "label", column])
    with pytest.raises(ValueError, match=re.escape(f"column(s) {[column]!r} look like a patient's identifier, but "
                                                   "only a column named 'patient' groups") + ".*rename it to 'patient'"):
        ds.csv_protocol(sheet, folds=2)


@pytest.mark.parametrize("header, unread", [(["path", "label", "patient", "fold", "site"], ["site"]),
                                            (["path", "label", "patient", "patient_id"], ["patient_id"]),
                                            (["path", "label", "notes"], ["notes"]),
                                            (["path", "label", "patient", "fold"], [])])
def test_csv_names_the_columns_it_does_not_read(tmp_path, caplog, header, unread) -> None:
    """A column beside ``patient`` (or one that names no patient) is read as before, with a warning naming it;
    a sheet of the columns read only warns of none."""
    sheet = _patient_csv(tmp_path / "list.csv", header)
    with caplog.at_level("WARNING"):
        proto = ds.csv_protocol(sheet, folds=None if "fold" in header else 2)
    said = f"column(s) {unread!r} are not read (a csv protocol reads path, label, fold and patient)"
    assert (said in caplog.text) if unread else ("are not read" not in caplog.text), caplog.text
    assert sum(len(items) for items in proto.splits[0].values()) == 30


@pytest.mark.parametrize("values, expected", [((0, 1, 2), [0, 1, 2]), ((1, 2, 3), [1, 2, 3]), ((3, 7, 5), [3, 5, 7])])
def test_csv_fold_column_values_are_kept_in_split_order(tmp_path, values, expected) -> None:
    """``--fold 1`` is the second split, whose test part is the column's second value (2 for a column of 1, 2, 3)."""
    _class_folders(tmp_path / "data")
    with open(tmp_path / "labels.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "fold"])
        w.writerows((f"data/{c}/{c}_{i}.png", c, values[i % 3]) for c in ("benign", "malignant") for i in range(6))
    proto = ds.csv_protocol(tmp_path / "labels.csv")
    assert proto.fold_values == expected
    for split, value in zip(proto.splits, expected):
        assert {int(Path(it["image"]).stem.rsplit("_", 1)[1]) % 3 for it in split["test"]} == {values.index(value)}


@pytest.mark.parametrize("shared", [["pt0"], ["pt0", "pt3"], []])
def test_folder_protocol_warns_of_a_study_folder_name_under_two_classes(tmp_path, caplog, shared) -> None:
    """``benign/pt0/`` and ``malignant/pt0/`` were two patients without a word: if one patient's, tested on a model
    trained on its other lesion. Study folders of distinct names are not warned of."""
    for name in ("benign", "malignant"):
        for j in range(6):
            study = f"pt{j}" if f"pt{j}" in shared else f"{name}_pt{j}"
            (tmp_path / "data" / name / study).mkdir(parents=True)
            for k in range(2):
                write_stub(tmp_path / "data" / name / study / f"{name}_{j}_{k}.png", "png")
    with caplog.at_level("WARNING"):
        ds.folder_protocol(tmp_path / "data", folds=3)
    if not shared:
        assert "under several class folders" not in caplog.text
        return
    named = ", ".join(f"benign/{s}/ and malignant/{s}/" for s in shared)
    assert f"{len(shared)} study folder name(s) are under several class folders ({named})" in caplog.text
    assert "'patient' column" in caplog.text


def test_gist_on_a_filesystem_without_inode_numbers(tmp_path, monkeypatch) -> None:
    """FAT or a network share gives st_ino 0 for every file: the images are still told apart (by their path), not all
    refused as one image listed many times."""
    make_gist(tmp_path / "g")
    real_stat = os.stat

    class NoInode:
        def __init__(self, result: os.stat_result) -> None:
            self._result = result

        def __getattr__(self, name: str) -> Any:
            return 0 if name == "st_ino" else getattr(self._result, name)

    monkeypatch.setattr(ds.os, "stat", lambda path, *args, **kwargs: NoInode(real_stat(path, *args, **kwargs)))
    assert len(ds.gist514_protocol(tmp_path / "g").splits) == 5
