"""JSON datalists: written absolute, read from the datalist's folder, checked whole with errors naming the item."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from monai_ext.data.datalists import check_split, read_split, write_split


def _files(root: Path, *names: str) -> None:
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"\x89PNG")  # existence is what the reader checks; decoding comes later


def _write(path: Path, data: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
    return path


GOOD = {"class_names": ["benign", "malignant"], "train": [{"image": "img/a.png", "label": 0, "id": "a"}],
        "validation": [{"image": "img/b.png", "label": "malignant"}]}


def test_relative_paths_are_read_from_the_datalist_folder_and_names_become_indices(tmp_path, monkeypatch) -> None:
    _files(tmp_path / "data", "img/a.png", "img/b.png")
    path = _write(tmp_path / "data" / "fold0.json", GOOD)
    monkeypatch.chdir(tmp_path)  # another folder than the datalist's: relative paths must not depend on it
    split = read_split(path)
    assert split["train"] == [{"image": str(tmp_path / "data/img/a.png"), "label": 0, "id": "a"}]
    assert split["validation"] == [{"image": str(tmp_path / "data/img/b.png"), "label": 1}]
    assert split["test"] == [] and split["class_names"] == ["benign", "malignant"]


def test_write_then_read_round_trips_from_any_folder(tmp_path, monkeypatch) -> None:
    _files(tmp_path / "dataset", "a.png", "b.png", "a_mask.png")
    monkeypatch.chdir(tmp_path)  # the protocol was built from a relative root, as make-datalist gets it
    split = {"train": [{"image": "dataset/a.png", "label": ["dataset/a_mask.png"]}],
             "validation": [{"image": "dataset/b.png", "label": "dataset/a_mask.png"}], "test": []}
    path = write_split(split, ["background", "lesion"], tmp_path / "splits" / "fold0.json", "segmentation")
    monkeypatch.chdir(tmp_path / "splits")
    read = read_split(path, "segmentation")
    mask = str(tmp_path / "dataset/a_mask.png")
    assert read["train"] == [{"image": str(tmp_path / "dataset/a.png"), "label": [mask]}]
    assert read["validation"][0]["label"] == str(tmp_path / "dataset/a_mask.png")


def test_items_of_one_part_leave_with_one_set_of_keys(tmp_path, caplog) -> None:
    """A merged datalist: only some items give an id, a patient or a foreground class. MONAI's collate once failed on
    such a batch after a whole epoch; ids are filled with the image path, other partial keys left out, and the
    foreground class is left to the mask loader, which fills it."""
    _files(tmp_path, "a.png", "b.png", "c.png", "m.png")
    items = [{"image": "a.png", "label": "m.png", "id": 7, "patient": "p1"},
             {"image": "b.png", "label": "m.png", "foreground": 2},
             {"image": "c.png", "label": "m.png", "id": "c", "patient": "p2", "foreground": 1}]
    path = _write(tmp_path / "merged.json", {"class_names": ["background", "benign", "malignant"], "validation": items})
    with caplog.at_level("WARNING"):
        read = read_split(path, "segmentation")["validation"]
    assert [it["id"] for it in read] == ["7", str(tmp_path / "b.png"), "c"]
    assert [sorted(it) for it in read] == [["id", "image", "label"], ["foreground", "id", "image", "label"],
                                           ["foreground", "id", "image", "label"]]
    assert "validation key(s) ['patient'] are given for some items only and are left out" in caplog.text


def test_items_with_the_same_keys_are_left_as_they_are(tmp_path) -> None:
    _files(tmp_path, "a.png", "b.png")
    items = [{"image": "a.png", "label": 0, "id": 3, "patient": "p"}, {"image": "b.png", "label": 1, "id": 4,
                                                                        "patient": "q"}]
    read = read_split(_write(tmp_path / "d.json", {"class_names": ["x", "y"], "train": items}))["train"]
    assert [(it["id"], it["patient"]) for it in read] == [(3, "p"), (4, "q")]


def test_other_keys_of_a_datalist_are_kept(tmp_path) -> None:
    """A description, a source, or a list of notes beside parts that are all there is no misnamed part."""
    _files(tmp_path, "img/a.png", "img/b.png")
    path = tmp_path / "fold.json"
    extra = {"description": "BUS-BRA fold 1", "tests": ["notes"], "numTraining": 1,
             "notes": ["exported from PACS 2024-05", "fold 0 of 5"], "traits": [{"name": "x"}]}
    path.write_text(json.dumps({**GOOD, **extra}))  # no test part: "notes" is close to "test" by spelling
    read = read_split(path)
    assert {key: read[key] for key in extra} == extra


def test_a_byte_order_mark_is_accepted(tmp_path) -> None:
    _files(tmp_path, "img/a.png", "img/b.png")
    path = tmp_path / "fold.json"
    path.write_text(json.dumps(GOOD), encoding="utf-8-sig")  # what Notepad saves as "UTF-8"
    assert len(read_split(path)["train"]) == 1


@pytest.mark.parametrize("content, message", [
    ('{"class_names": ["a"], "train": [', r"is not valid JSON: Expecting value at line 1 column 34"),
    ("", r"is not valid JSON: Expecting value at line 1 column 1"),
    (b"\xff\xfe{", r"is not UTF-8 text"),
    ([{"image": "img/a.png", "label": 0}], r"must be a JSON object .* got a list"),
    ({"class_names": ["a", "b"], "train": []}, r"has no items in any of \['train', 'validation', 'test'\]"),
    ({"train": GOOD["train"]}, r"lacks 'class_names'"),
    ({**GOOD, "class_names": []}, r"'class_names' needs at least two classes, got \[\] \(e.g. \[\"benign\""),
    ({**GOOD, "class_names": ["benign"]}, r"'class_names' needs at least two classes, got \['benign'\]"),
    ({**GOOD, "class_names": ["a", 1]}, r"'class_names' must be a list of names, got \['a', 1\]"),
    ({**GOOD, "class_names": ["a", "a"]}, r"'class_names' has repeated names"),
    ({**GOOD, "train": "img/a.png"}, r"'train' must be a list of items, got str"),
    ({**GOOD, "test": ["img/a.png"]}, r"test\[0\] must be an object with 'image' and 'label', got 'img/a.png'"),
    ({**GOOD, "train": [{"label": 0}]}, r"train\[0\] needs 'image'"),
    ({**GOOD, "train": [{"image": "img/a.png"}]}, r"train\[0\] has no 'label'"),
    ({**GOOD, "train": [{"image": "img/a.png", "label": 2}]}, r"train\[0\] has label 2, which is not a class: give an "
                                                               r"index 0..1 or one of \['benign', 'malignant'\]"),
    ({**GOOD, "train": [{"image": "img/a.png", "label": "Benign"}]}, r"train\[0\] has label 'Benign'"),
    ({**GOOD, "train": [{"image": "img/a.png", "label": True}]}, r"train\[0\] has label True"),
    ({**GOOD, "test": [{"image": "img/a.png", "label": 0}]},
     r"'.*img/a.png' is both train\[0\] and test\[0\]; an image belongs to one of train, validation and test"),
    ({**GOOD, "train": [{"image": "img/a.png", "label": 0.5}]}, r"train\[0\] has label 0.5, which is not a class"),
    ({**GOOD, "train": [{"image": "img/a.png", "label": "2"}]}, r"train\[0\] has label '2', which is not a class"),
    ({**GOOD, "class_names": ["2", "3", "4"], "train": [{"image": "img/a.png", "label": "1"}]},
     r"train\[0\] has label '1', which is not a class: .*; with class names made of digits, write an index as a"),
    ({**GOOD, "train": [{"image": "img/a.png", "label": "²"}]}, r"train\[0\] has label '²', which is not a class"),
    ({**GOOD, "validation": [{"image": "img/b.png", "label": 1}, {"image": "img/./b.png", "label": 1}]},
     r"'.*img/b.png' is validation\[0\] and validation\[1\] again; it would be counted twice in the validation"),
    ({**GOOD, "train": [{"image": "img/a.png", "label": 0}, {"image": "img/a.png", "label": 1}]},
     r"'.*img/a.png' has two labels, 0 as train\[0\] and 1 as train\[1\]"),
    # a part under another name was passed over: no test part, or "no validation items" without a word about it
    ({"class_names": GOOD["class_names"], "train": GOOD["train"], "val": GOOD["validation"]},
     r"its part 'val' is read as no part \(did you mean 'validation'\?\); the parts are \['train', 'validation', 'test'\]"),
    ({**GOOD, "tset": GOOD["train"]}, r"its part 'tset' is read as no part \(did you mean 'test'\?\)"),
    ({"class_names": GOOD["class_names"], "training": GOOD["train"], "validation": GOOD["validation"]},
     r"its part 'training' is read as no part \(did you mean 'train'\?\)"),
    ({**GOOD, "train": [{"image": "img/a.png", "label": 0}, {"image": "img", "label": 1}]},
     r"train\[1\]: '.*img' is a folder, not a file"),
    ({**GOOD, "validation": [{"image": "img/b.png", "label": 0}, {"image": "img/gone.png", "label": 1}]},
     r"1 file\(s\) not found \(validation\[1\]: '.*img/gone.png'\); relative paths are read from the datalist's"),
])
def test_malformed_datalists_are_refused_naming_the_file_and_item(tmp_path, content, message) -> None:
    _files(tmp_path, "img/a.png", "img/b.png")
    path = tmp_path / "fold.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        _write(path, content)
    with pytest.raises(ValueError, match=message) as error:
        read_split(path)
    assert str(path) in str(error.value)


@pytest.mark.parametrize("label, message", [
    (0, r"train\[0\] needs 'label' as a mask file or a list of mask files, got 0"),
    ([], r"train\[0\] needs 'label' as a mask file"),
    (["masks/gone.png"], r"1 file\(s\) not found \(train\[0\]: '.*masks/gone.png'\)"),
    ("img/./a.png", r"train\[0\] gives its image 'img/a.png' as its own mask"),  # a copy-paste slip
])
def test_segmentation_labels_must_be_existing_mask_files(tmp_path, label, message) -> None:
    _files(tmp_path, "img/a.png", "img/b.png", "masks/b.png")
    path = _write(tmp_path / "seg.json", {"class_names": ["background", "lesion"],
                                          "train": [{"image": "img/a.png", "label": label}],
                                          "validation": [{"image": "img/b.png", "label": "masks/b.png"}]})
    with pytest.raises(ValueError, match=message):
        read_split(path, "segmentation")


def test_many_missing_files_are_counted_and_the_first_three_named(tmp_path) -> None:
    items = [{"image": f"gone{i}.png", "label": 0} for i in range(5)]
    path = _write(tmp_path / "fold.json", {"class_names": ["a", "b"], "train": items, "validation": []})
    with pytest.raises(ValueError, match=r"5 file\(s\) not found .*gone0.*gone1.*gone2.png', \.\.\.\)") as error:
        read_split(path)
    assert "gone3" not in str(error.value)


@pytest.mark.parametrize("make, message", [(lambda p: None, "datalist not found"),
                                           (os.mkdir, "is not a file")])
def test_a_missing_path_or_a_folder_is_refused(tmp_path, make, message) -> None:
    make(tmp_path / "fold.json")
    with pytest.raises(ValueError, match=message):
        read_split(tmp_path / "fold.json")


def test_task_is_validated(tmp_path) -> None:
    with pytest.raises(ValueError, match="task must be .* got 'detection'"):
        read_split(tmp_path / "fold.json", "detection")  # type: ignore[arg-type]


def test_whole_float_labels_are_indices_and_repeats_within_a_part_are_kept(tmp_path) -> None:
    """1.0 is what a spreadsheet or pandas export writes for class 1; the same image twice in training is
    oversampling, not leakage."""
    _files(tmp_path, "img/a.png", "img/b.png")
    train = [{"image": "img/a.png", "label": 1.0}, {"image": "img/a.png", "label": 1.0}]
    split = read_split(_write(tmp_path / "fold.json", {**GOOD, "train": train}))
    assert [it["label"] for it in split["train"]] == [1, 1] and all(type(it["label"]) is int for it in split["train"])


def test_a_datalist_written_relative_to_another_folder_says_so(tmp_path, monkeypatch) -> None:
    """Datalists that make-datalist wrote from a relative root before 0.6.5 hold paths relative to where it ran."""
    _files(tmp_path / "data", "a.png", "b.png")
    monkeypatch.chdir(tmp_path)
    old = {"class_names": ["x", "y"], "train": [{"image": "data/a.png", "label": 0}],
           "validation": [{"image": "data/b.png", "label": 1}]}
    with pytest.raises(ValueError, match=r"2 file\(s\) not found .*'data/a.png' exists from the current folder: .* "
                                         r"run make-datalist again"):
        read_split(_write(tmp_path / "folds" / "fold0.json", old))


def test_write_split_keeps_class_name_labels_and_expands_the_home_folder(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    _files(tmp_path, "img/a.png", "img/b.png")
    monkeypatch.chdir(tmp_path / "img")  # an unexpanded "~" would make a folder named "~" here, not in the repository
    split = {"train": [{"image": "~/img/a.png", "label": "malignant"}], "validation": [{"image": "~/img/b.png",
                                                                                         "label": 0}]}
    path = write_split(split, ["benign", "malignant"], "~/fold.json", "classification")
    assert path == tmp_path / "fold.json"
    written = json.loads((tmp_path / "fold.json").read_text())
    assert written["train"] == [{"image": str(tmp_path / "img/a.png"), "label": "malignant"}]
    assert read_split("~/fold.json")["train"][0]["label"] == 1


def test_a_relative_datalist_path_gives_absolute_items(tmp_path, monkeypatch) -> None:
    _files(tmp_path / "data", "img/a.png", "img/b.png")
    _write(tmp_path / "data" / "fold.json", GOOD)
    monkeypatch.chdir(tmp_path)
    split = read_split("data/fold.json")
    assert split["train"][0]["image"] == str(tmp_path / "data/img/a.png")


def test_the_relative_folder_hint_is_about_the_missing_file_itself(tmp_path, monkeypatch) -> None:
    """The image is found, its mask is missing: no hint about where make-datalist ran."""
    _files(tmp_path, "a.png", "b.png", "b_mask.png")
    monkeypatch.chdir(tmp_path)
    seg = {"class_names": ["background", "lesion"], "train": [{"image": "a.png", "label": "gone_mask.png"}],
           "validation": [{"image": "b.png", "label": "b_mask.png"}]}
    with pytest.raises(ValueError, match=r"1 file\(s\) not found \(train\[0\]: '.*gone_mask.png'\)") as error:
        read_split(_write(tmp_path / "seg.json", seg), "segmentation")
    assert "exists from the current folder" not in str(error.value)


@pytest.mark.parametrize("label, index", [("1", 1), (" 0", 0), ("malignant", 1), (1.0, 1)])
def test_labels_from_spreadsheets_are_read_as_the_class_they_spell(tmp_path, label, index) -> None:
    """CSV and spreadsheet exports give an index as text ("1") or as a float (1.0)."""
    _files(tmp_path, "img/a.png", "img/b.png")
    path = _write(tmp_path / "fold.json", {**GOOD, "train": [{"image": "img/a.png", "label": label}]})
    assert read_split(path)["train"][0]["label"] == index


def test_repeats_in_train_with_one_label_are_oversampling(tmp_path) -> None:
    _files(tmp_path, "img/a.png", "img/b.png")
    path = _write(tmp_path / "fold.json", {**GOOD, "train": [{"image": "img/a.png", "label": 0}] * 3})
    assert len(read_split(path)["train"]) == 3


def test_an_image_reached_through_a_linked_folder_is_still_the_same_image(tmp_path) -> None:
    """Trained on as img/a.png and tested on as link/a.png: one file, so the test figures would be inflated."""
    _files(tmp_path, "img/a.png", "img/b.png")
    (tmp_path / "link").symlink_to(tmp_path / "img", target_is_directory=True)
    path = _write(tmp_path / "fold.json", {**GOOD, "test": [{"image": "link/a.png", "label": 0}]})
    with pytest.raises(ValueError, match=r"link/a.png' is both train\[0\] and test\[0\]"):
        read_split(path)


def test_a_name_in_another_unicode_form_is_pointed_out(tmp_path) -> None:
    """macOS writes "é" decomposed (NFD); an editor may save the datalist composed (NFC): the names look alike."""
    import unicodedata

    composed, decomposed = unicodedata.normalize("NFC", "é.png"), unicodedata.normalize("NFD", "é.png")
    _files(tmp_path, "img/b.png", f"img/{decomposed}")
    path = _write(tmp_path / "fold.json", {**GOOD, "train": [{"image": f"img/{composed}", "label": 0}]})
    with pytest.raises(ValueError, match=r"is spelled in another Unicode form on disk \(NFD: '.*\\u0301"):
        read_split(path)


def test_a_test_only_datalist_is_read_for_evaluation(tmp_path) -> None:
    """The parts a run does not use may be left out; the bundle refuses an empty part only when it uses it."""
    _files(tmp_path, "img/a.png")
    path = _write(tmp_path / "fold.json", {"class_names": ["a", "b"], "test": [{"image": "img/a.png", "label": 1}]})
    split = read_split(path)
    assert (split["train"], split["validation"], len(split["test"])) == ([], [], 1)


@pytest.mark.parametrize("task, label, written", [
    ("classification", "Benign", "Benign"),  # a class name (or a typo of one) is kept, never made a path
    ("classification", "1", "1"),
    ("segmentation", "masks/a.png", "MASKS"),
])
def test_write_split_makes_only_segmentation_labels_paths(tmp_path, monkeypatch, task, label, written) -> None:
    monkeypatch.chdir(tmp_path)
    path = write_split({"train": [{"image": "a.png", "label": label}]}, ["benign", "malignant"],
                       tmp_path / "fold.json", task)
    item = json.loads(path.read_text())["train"][0]
    assert item["image"] == str(tmp_path / "a.png")
    assert item["label"] == (str(tmp_path / label) if written == "MASKS" else written)


@pytest.mark.parametrize("names", [["2", "3", "4"], ["1", "0", "2"]])
def test_class_names_made_of_digits_round_trip_from_what_the_writers_write(tmp_path, names) -> None:
    """Folder-per-class datasets named by BI-RADS category, or a CSV with labels 1/2: the writers store indices."""
    _files(tmp_path, "img/a.png", "img/b.png", "img/c.png")
    items = [{"image": str(tmp_path / f"img/{n}.png"), "label": i} for i, n in enumerate("abc")]
    path = write_split({"train": items[:2], "validation": items[2:]}, names, tmp_path / "fold.json", "classification")
    split = read_split(path)
    assert [it["label"] for it in split["train"] + split["validation"]] == [0, 1, 2]
    # written by hand: the name and the index of the same class
    by_name = _write(tmp_path / "named.json", {"class_names": names,
                                               "train": [{"image": "img/a.png", "label": names[2]}],
                                               "validation": [{"image": "img/b.png", "label": 2}]})
    named = read_split(by_name)
    assert (named["train"][0]["label"], named["validation"][0]["label"]) == (2, 2)


def test_one_mask_reached_two_ways_is_one_label(tmp_path) -> None:
    """A segmentation image repeated in train with its mask once as masks/a.png, once through a linked folder."""
    _files(tmp_path, "img/a.png", "img/b.png", "masks/a.png", "masks/b.png")
    (tmp_path / "linked").symlink_to(tmp_path / "masks", target_is_directory=True)
    train = [{"image": "img/a.png", "label": "masks/a.png"}, {"image": "img/a.png", "label": "linked/a.png"}]
    path = _write(tmp_path / "seg.json", {"class_names": ["background", "lesion"], "train": train,
                                          "validation": [{"image": "img/b.png", "label": "masks/b.png"}]})
    assert len(read_split(path, "segmentation")["train"]) == 2
    train[1]["label"] = "masks/b.png"
    _write(path, {"class_names": ["background", "lesion"], "train": train,
                  "validation": [{"image": "img/b.png", "label": "masks/b.png"}]})
    with pytest.raises(ValueError, match=r"img/a.png' has two labels, '.*masks/a.png' as train\[0\] and"):
        read_split(path, "segmentation")


def _several_frames(path: Path, kind: str) -> Path:
    """Write a small file of ``kind`` at ``path``: 3 frames, or 1 for the ``single_*`` kinds."""
    import numpy as np
    from PIL import Image

    from monai_ext.io.writers import write_dicom, write_dicom_frames

    frames = (np.arange(3 * 16 * 16) % 251).astype(np.uint8).reshape(3, 16, 16)
    if kind == "dicom":
        return write_dicom_frames(frames, path)
    if kind == "single_dicom":
        return write_dicom(frames[0], path)
    if kind in ("tiff", "gif"):
        pages = [Image.fromarray(frame) for frame in frames]
        pages[0].save(path, save_all=True, append_images=pages[1:])
        return path
    Image.fromarray(frames[0]).save(path)
    return path


@pytest.mark.parametrize("kind, name, warned", [
    ("dicom", "loop.dcm", True), ("tiff", "pages.tif", True), ("gif", "loop.gif", True),
    ("single_dicom", "still.dcm", False), ("png", "still.png", False),
])
def test_images_holding_several_frames_are_named_with_their_count(tmp_path, caplog, kind, name, warned) -> None:
    _several_frames(tmp_path / name, kind)
    _files(tmp_path, "b.png")
    path = _write(tmp_path / "list.json", {"class_names": ["a", "b"], "train": [{"image": name, "label": 0}],
                                           "validation": [{"image": "b.png", "label": 1}]})
    with caplog.at_level("WARNING", logger="monai_ext.data.datalists"):
        read_split(path)
    said = [r.getMessage() for r in caplog.records if "several frames" in r.getMessage()]
    if warned:
        assert len(said) == 1 and f"train[0] {name!r}: 3 frames" in said[0] and "1 of 2 image(s)" in said[0]
    else:
        assert said == []


def test_several_frames_are_said_for_a_protocol_without_a_test_part_and_not_by_check_split(tmp_path, caplog) -> None:
    """Writers of a protocol say it once (check_split runs for every fold, whose images are the same)."""
    from monai_ext.data.datalists import check_split, warn_of_several_frames

    loop = _several_frames(tmp_path / "loop.dcm", "dicom")
    _files(tmp_path, "b.png")
    split = {"train": [{"image": str(loop), "label": 0}], "validation": [{"image": str(tmp_path / "b.png"),
                                                                            "label": 1}]}
    with caplog.at_level("WARNING", logger="monai_ext.data.datalists"):
        check_split(split, ["a", "b"], tmp_path / "list.json", "classification")
        assert not [r for r in caplog.records if "several frames" in r.getMessage()]
        warn_of_several_frames(split, tmp_path / "list.json")
    assert [r.getMessage() for r in caplog.records if "loop.dcm': 3 frames" in r.getMessage()]


@pytest.mark.parametrize("rank, warned", [("0", True), ("1", False), ("", True)])
def test_the_several_frames_warning_comes_from_the_first_rank_alone(tmp_path, caplog, monkeypatch, rank,
                                                                    warned) -> None:
    """Every torchrun rank reads the datalist (before joining the group: the launcher's RANK tells them apart)."""
    monkeypatch.setenv("RANK", rank)
    _several_frames(tmp_path / "loop.dcm", "dicom")
    _files(tmp_path, "b.png")
    path = _write(tmp_path / "list.json", {"class_names": ["a", "b"], "train": [{"image": "loop.dcm", "label": 0}],
                                           "validation": [{"image": "b.png", "label": 1}]})
    with caplog.at_level("WARNING", logger="monai_ext.data.datalists"):
        read_split(path)
    assert any("several frames" in r.getMessage() for r in caplog.records) is warned


def _patients(tmp_path: Path, parts: dict[str, list[str]]) -> Path:
    data = {"class_names": ["benign", "malignant"]}
    for part, patients in parts.items():
        data[part] = [{"image": f"img/{part}{i}.png", "label": i % 2, "patient": p} for i, p in enumerate(patients)]
        _files(tmp_path, *(item["image"] for item in data[part]))
    return _write(tmp_path / "fold.json", data)


@pytest.mark.parametrize("part", ["train", "validation"])
def test_a_patient_in_test_and_in_training_or_validation_is_refused(tmp_path, part) -> None:
    """A hand-written list that split a patient's images was read without a word: tested on a patient trained on."""
    other = "validation" if part == "train" else "train"
    path = _patients(tmp_path, {part: ["P1", "P2"], other: ["P4"], "test": ["P3", "P2"]})
    with pytest.raises(ValueError, match=r"1 patient\(s\) have images in test and in " + part + r", e.g. 'P2' "
                                         r"\('.*test1.png' and '.*" + part + r"1.png'\)"):
        read_split(path)
    split = {p: [{"image": str(tmp_path / "img" / f"{p}{i}.png"), "label": i % 2, "patient": pt}
                 for i, pt in enumerate(pts)] for p, pts in {part: ["P1", "P2"], "test": ["P2"]}.items()}
    with pytest.raises(ValueError, match="have images in test and in"):
        check_split(split, ["benign", "malignant"], tmp_path / "out.json", "classification")



@pytest.mark.parametrize("bare, index", [("test", 0), ("train", 1)])
def test_a_patient_in_test_and_training_is_refused_where_a_part_gives_some_patients_only(tmp_path, bare,
                                                                                          index) -> None:
    """A merged list whose part gives ``patient`` for some items only had that key dropped (for MONAI's collate)
    before the parts were compared: a patient in test and in training was read with a warning about the key only."""
    path = _patients(tmp_path, {"train": ["P1", "P2"], "validation": ["P4"], "test": ["P3", "P1"]})
    data = json.loads(path.read_text())
    del data[bare][index]["patient"]  # another patient's: P1 stays in train and in test
    _write(path, data)
    with pytest.raises(ValueError, match=r"1 patient\(s\) have images in test and in train, e.g. 'P1'"):
        read_split(path)

def test_a_patient_in_train_and_validation_is_warned_of_and_apart_is_fine(tmp_path, caplog) -> None:
    with caplog.at_level("WARNING", logger="monai_ext.data.datalists"):
        read_split(_patients(tmp_path / "a", {"train": ["P1", "P2"], "validation": ["P3"], "test": ["P4"]}))
        assert not caplog.records
        read_split(_patients(tmp_path / "b", {"train": ["P1", "P2"], "validation": ["P2"], "test": ["P4"]}))
    assert "1 patient(s) have images in both train and validation, e.g. 'P2'" in caplog.text
