"""Class labels from a MONAI Label datastore to the classification bundle's datalist (no MONAI Label needed)."""

from __future__ import annotations

import json

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


def test_binary_label_file_is_refused(tmp_path) -> None:
    (tmp_path / "mask.nii.gz").write_bytes(b"\x1f\x8b\x08\x00\xff\xfe")
    with pytest.raises(ValueError, match="mask.nii.gz: cannot read"):
        read_class_label(tmp_path / "mask.nii.gz", CLASSES)


def make_items(tmp_path, names: list[str]) -> list[dict[str, str]]:
    items = []
    for index, name in enumerate(names):
        label = tmp_path / f"label{index}.json"
        label.write_text(json.dumps({"class": name}))
        (tmp_path / f"image{index}.png").write_bytes(b"\x89PNG")  # the datalist reader checks that images exist
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


@pytest.mark.parametrize("count, shown", [(1, "; 1 label(s) skipped: r0"), (7, "r4; and 2 more")])
def test_skipped_text_lists_the_first_reasons(count, shown) -> None:
    from monai_ext.apps.label.datalist import skipped_text

    text = skipped_text({f"f{i}": f"r{i}" for i in range(count)})
    assert shown in text and "r5" not in text
    assert skipped_text({}) == ""
