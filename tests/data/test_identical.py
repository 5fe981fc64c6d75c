"""Byte-identical images: found by content whatever their names, refused across classes, kept once within one."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from monai_ext.data.identical import identical_sets, keep_one_copy, warn_of_copies_across_parts


def _files(folder: Path, contents: dict[str, bytes]) -> dict[str, str]:
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in contents.items():
        (folder / name).write_bytes(data)
    return {name: str(folder / name) for name in contents}


def test_identical_sets_group_by_content_not_by_name(tmp_path) -> None:
    paths = _files(tmp_path, {"a.png": b"1", "b.png": b"2", "copy of a.png": b"1", "c.png": b"3", "b (2).png": b"2",
                              "a again.png": b"1"})
    order = ["a.png", "b.png", "copy of a.png", "c.png", "b (2).png", "a again.png"]
    assert identical_sets([paths[n] for n in order]) == [[0, 2, 5], [1, 4]]


def test_no_copies_no_sets(tmp_path) -> None:
    paths = _files(tmp_path, {f"{i}.png": bytes([i]) for i in range(5)})
    assert identical_sets(list(paths.values())) == []


def test_a_copy_in_its_own_class_is_kept_once_and_named(tmp_path, caplog) -> None:
    paths = _files(tmp_path, {"b0.png": b"0", "b1.png": b"1", "m0.png": b"m", "b0 copy.png": b"0"})
    items = [{"image": paths[n], "label": int(n.startswith("m")), "id": n} for n in paths]
    with caplog.at_level(logging.WARNING, logger="monai_ext.data.identical"):
        kept = keep_one_copy(items, ["benign", "malignant"], "'data'")
    assert [it["id"] for it in kept] == ["b0.png", "b1.png", "m0.png"]
    assert "'data': 1 image(s) are byte-identical copies" in caplog.text
    assert f"{paths['b0 copy.png']!r} (a copy of {paths['b0.png']!r})" in caplog.text


def test_nothing_to_drop_says_nothing(tmp_path, caplog) -> None:
    paths = _files(tmp_path, {"a.png": b"a", "b.png": b"b"})
    items = [{"image": p, "label": i, "id": n} for i, (n, p) in enumerate(paths.items())]
    with caplog.at_level(logging.WARNING, logger="monai_ext.data.identical"):
        assert keep_one_copy(items, ["x", "y"], "'d'") == items
    assert not caplog.records


def test_copies_under_different_classes_are_all_left_out_and_named_with_their_classes(tmp_path, caplog) -> None:
    """Either class could be wrong: keeping one would train or test a wrong label, refusing would stop the set."""
    paths = _files(tmp_path, {"b0.png": b"0", "b1.png": b"1", "m0.png": b"0", "m1.png": b"m"})
    items = [{"image": paths[n], "label": int(n.startswith("m")), "id": n} for n in paths]
    with caplog.at_level(logging.WARNING, logger="monai_ext.data.identical"):
        kept = keep_one_copy(items, ["benign", "malignant"], "'data'")
    assert [it["id"] for it in kept] == ["b1.png", "m1.png"]
    assert "'data': 1 set(s) of byte-identical images have different classes and are left out, every copy" \
        in caplog.text
    assert f"{paths['b0.png']!r} (benign), {paths['m0.png']!r} (malignant)" in caplog.text


def test_one_file_listed_twice_is_refused_as_a_repeat_not_taken_for_a_copy(tmp_path) -> None:
    paths = _files(tmp_path, {"a.png": b"a", "b.png": b"b"})
    items = [{"image": paths["a.png"], "label": 0}, {"image": paths["b.png"], "label": 1},
             {"image": str(tmp_path / "." / "a.png"), "label": 1}]
    with pytest.raises(ValueError, match=f"'l.csv' lists 1 file\\(s\\) more than once, e.g. '{paths['a.png']}'"):
        keep_one_copy(items, ["x", "y"], "'l.csv'")


@pytest.mark.parametrize("linked_label, kept_ids", [(0, ["b0.png", "m0.png"]), (1, ["m0.png"])])
def test_a_link_to_another_file_of_the_set_is_a_copy_not_a_file_listed_twice(tmp_path, linked_label,
                                                                              kept_ids) -> None:
    """A symbolic link beside its target (an export's ``latest scan.png``) was refused as a repeated row: a folder
    set, whose list no one wrote, stopped. It is a copy: kept once in its class, left out under two."""
    paths = _files(tmp_path, {"b0.png": b"0", "m0.png": b"m"})
    (tmp_path / "latest scan.png").symlink_to(tmp_path / "b0.png")
    items = [{"image": paths["b0.png"], "label": 0, "id": "b0.png"}, {"image": paths["m0.png"], "label": 1, "id": "m0.png"},
             {"image": str(tmp_path / "latest scan.png"), "label": linked_label, "id": "latest scan.png"}]
    assert [it["id"] for it in keep_one_copy(items, ["benign", "malignant"], "'data'")] == kept_ids


def test_copies_across_a_split_are_warned_of_once_per_split(tmp_path, caplog) -> None:
    paths = _files(tmp_path, {"t0.png": b"0", "t1.png": b"1", "v0.png": b"v", "x0.png": b"0", "x1.png": b"x"})
    item = {n: {"image": p, "label": 0, "id": n} for n, p in paths.items()}
    splits = [{"train": [item["t0.png"], item["t1.png"]], "validation": [item["v0.png"]], "test": [item["x0.png"]]},
              {"train": [item["t1.png"], item["x0.png"]], "validation": [item["v0.png"]], "test": [item["x1.png"]]}]
    with caplog.at_level(logging.WARNING, logger="monai_ext.data.identical"):
        warn_of_copies_across_parts(splits, "DS lists")
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 1 and said[0].startswith("DS lists, split 0: 1 test image(s) are byte-identical"), said
    assert f"{paths['x0.png']!r} = {paths['t0.png']!r}" in said[0]
