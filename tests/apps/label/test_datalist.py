"""Class labels from a MONAI Label datastore to the classification bundle's datalist (no MONAI Label needed)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from monai_ext.apps.label.datalist import labelled_datalist, read_class_label
from monai_ext.data.datalists import read_split

CLASSES = ["benign", "malignant"]


@pytest.mark.parametrize("content, expected", [('{"class": "malignant"}', 1), ('{"label": "benign"}', 0),
                                               ("malignant\n", 1), ("1", 1), ('{"class": 0}', 0)])
def test_label_file_formats(tmp_path, content, expected) -> None:
    (tmp_path / "label.json").write_text(content)
    assert read_class_label(tmp_path / "label.json", CLASSES) == expected


@pytest.mark.parametrize("content", ['{"class": "cyst"}', "2", "true", '{"other": 1}', ""])
def test_unknown_classes_are_refused_naming_the_file(tmp_path, content) -> None:
    (tmp_path / "label.json").write_text(content)
    with pytest.raises(ValueError, match="label.json"):
        read_class_label(tmp_path / "label.json", CLASSES)


@pytest.mark.parametrize("content, expected", [('{"class": "1"}', 1), ('{"label": 1.0}', 1), ("0.0", 0)])
def test_indices_written_as_text_or_float_are_read(tmp_path, content, expected) -> None:
    (tmp_path / "label.json").write_text(content)
    assert read_class_label(tmp_path / "label.json", CLASSES) == expected


BIRADS = ["2", "3", "4"]


@pytest.mark.parametrize("content, expected", [("3", 1), ("4\n", 2), ('{"class": "2"}', 0), ('{"class": 2}', 2),
                                               ('"2"', 0), ("1", 1)])
def test_class_names_made_of_digits_are_read_as_names_or_indices(tmp_path, content, expected) -> None:
    (tmp_path / "label.json").write_text(content)
    assert read_class_label(tmp_path / "label.json", BIRADS) == expected


def test_a_bare_number_naming_one_class_and_indexing_another_is_refused(tmp_path) -> None:
    (tmp_path / "label.json").write_text("2")  # class "2" (index 0), or index 2 (class "4")?
    with pytest.raises(ValueError, match="label.json: label '2' is both the class named '2' and the index of "
                                         "class '4'"):
        read_class_label(tmp_path / "label.json", BIRADS)


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16", "utf-16-le-bom", "utf-16-be-bom"])
@pytest.mark.parametrize("content, expected", [('{"class": "malignant"}', 1), ("benign\r\n", 0)])
def test_label_files_with_a_byte_order_mark_are_read(tmp_path, encoding, content, expected) -> None:
    """Windows PowerShell's Out-File writes UTF-16 with a mark, Set-Content -Encoding UTF8 and Excel UTF-8 with one:
    the mark was read as part of the class name (a valid class refused as unknown) or not decoded at all."""
    data = {"utf-8-sig": lambda t: t.encode("utf-8-sig"), "utf-16": lambda t: t.encode("utf-16"),
            "utf-16-le-bom": lambda t: b"\xff\xfe" + t.encode("utf-16-le"),
            "utf-16-be-bom": lambda t: b"\xfe\xff" + t.encode("utf-16-be")}[encoding](content)
    (tmp_path / "label.json").write_bytes(data)
    assert read_class_label(tmp_path / "label.json", CLASSES) == expected


def test_binary_label_file_is_refused(tmp_path) -> None:
    (tmp_path / "mask.nii.gz").write_bytes(b"\x1f\x8b\x08\x00\xff\xfe")
    with pytest.raises(ValueError, match="mask.nii.gz: cannot read"):
        read_class_label(tmp_path / "mask.nii.gz", CLASSES)


def make_items(tmp_path, names: list[str]) -> list[dict[str, str]]:
    items = []
    for index, name in enumerate(names):
        label = tmp_path / f"label{index}.json"
        label.write_text(json.dumps({"class": name}))
        cv2.imwrite(str(tmp_path / f"image{index}.png"), np.full((8, 12), 40 + index, np.uint8))
        items.append({"image": str(tmp_path / f"image{index}.png"), "label": str(label)})
    return items


def test_datalist_is_stratified_and_reports_skipped_labels(tmp_path) -> None:
    items = make_items(tmp_path, ["benign"] * 6 + ["malignant"] * 4 + ["cyst"])
    path, skipped = labelled_datalist(items, CLASSES, tmp_path / "datalist.json", val_fraction=0.25)
    split = read_split(path)
    assert split["class_names"] == CLASSES
    assert len(split["train"]) + len(split["validation"]) == 10
    assert {it["label"] for it in split["validation"]} == {0, 1}  # every class in validation
    assert set(skipped) == {str(tmp_path / "label10.json")} and "cyst" in skipped[str(tmp_path / "label10.json")]
    images = [it["image"] for it in split["train"] + split["validation"]]
    assert len(set(images)) == 10


def test_too_few_labels_per_class_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(ValueError, match=r"too few: \{'malignant': 1\}"):
        labelled_datalist(make_items(tmp_path, ["benign", "benign", "malignant"]), CLASSES, tmp_path / "d.json")


def test_too_few_labels_says_which_labels_were_skipped_and_why(tmp_path) -> None:
    # "Benign" and "malignant." are labels an annotator typed: the error must say why they did not count
    items = make_items(tmp_path, ["benign", "Benign", "malignant", "malignant."])
    with pytest.raises(ValueError, match=r"too few: \{'benign': 1, 'malignant': 1\}; 2 label\(s\) skipped: "
                                         r".*label1.json: label 'Benign' is not one of .*label3.json: label 'malignant.'"):
        labelled_datalist(items, CLASSES, tmp_path / "d.json")


@pytest.mark.parametrize("damage", ["empty", "cut", "missing"])
def test_labelled_images_that_cannot_be_read_are_skipped_with_their_reason(tmp_path, damage) -> None:
    """An upload cut off (0 bytes or part of a PNG) or an image deleted since it was labelled: skipped with its
    reason before the split. It was split first and the bundle dropped it later, so its class could be missing from
    validation, the model chosen on what was left, and the summary counted the image as trained on."""
    items = make_items(tmp_path, ["benign"] * 3 + ["malignant"] * 3)
    bad = Path(items[0]["image"])
    if damage == "missing":
        bad.unlink()
    else:
        bad.write_bytes(b"" if damage == "empty" else bad.read_bytes()[:20])
    path, skipped = labelled_datalist(items, CLASSES, tmp_path / "d.json", val_fraction=0.25)
    split = read_split(path)
    assert sorted(Path(it["image"]).name for it in split["train"] + split["validation"]) == \
        [f"image{i}.png" for i in range(1, 6)]
    assert list(skipped) == [items[0]["label"]] and "image0.png" in skipped[items[0]["label"]]
    assert {it["label"] for it in split["validation"]} == {0, 1}
    items[1]["image"] = items[0]["image"]  # two of the three benign images unreadable: too few, and why
    with pytest.raises(ValueError, match=r"too few: \{'benign': 1\}; 2 label\(s\) skipped: .*image0.png"):
        labelled_datalist(items, CLASSES, tmp_path / "d.json")


@pytest.mark.parametrize("count, shown", [(1, "; 1 label(s) skipped: r0"), (7, "r4; and 2 more")])
def test_skipped_text_lists_the_first_reasons(count, shown) -> None:
    from monai_ext.apps.label.datalist import skipped_text

    text = skipped_text({f"f{i}": f"r{i}" for i in range(count)})
    assert shown in text and "r5" not in text
    assert skipped_text({}) == ""
