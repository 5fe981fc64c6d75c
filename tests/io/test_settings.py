"""Optional settings left empty, whether from YAML (null) or a command line (the text 'null', 'None', 'none')."""

from __future__ import annotations

from pathlib import Path

import pytest

from monai_ext.io.settings import (
    is_unset,
    number_list_setting,
    path_list_setting,
    path_setting,
    setting_text,
    typed_command_line,
)


@pytest.mark.parametrize("value, unset", [
    (None, True), ("", True), ("None", True), ("null", True), (" NULL ", True), ("none", True),
    ("models/model.pt", False), ("nullify.pt", False), (0, False), ("0", False), ([], False),
])
def test_unset_settings(value, unset) -> None:
    assert is_unset(value) is unset


@pytest.mark.parametrize("value, text", [
    ("scans", "scans"), (2024, "2024"), (0, "0"), (Path("a/b"), "a/b"),  # --input_dir 2024: fire makes it an int
    (("my", "data"), "my,data"), ([2024, "x"], "2024,x"),  # --input_dir my,data: fire makes it a tuple
])
def test_text_settings_come_back_as_typed(value, text) -> None:
    assert setting_text(value, "input_dir") == text
    assert path_setting(value, "input_dir") == text


@pytest.mark.parametrize("value", [2024.1, 1e3, True, False, {"a": 1}, 1j, [1, 2.5]])
def test_a_value_whose_text_is_lost_is_refused_naming_the_setting(value) -> None:
    """``--input_dir 2024.10`` arrives as 2024.1: reading the folder '2024.1' would be a wrong guess."""
    for read in (setting_text, path_setting, path_list_setting):
        with pytest.raises(ValueError, match=r"dataset_dir must be text .*got \w+ "):
            read(value, "dataset_dir")


@pytest.mark.parametrize("argv, value, text", [
    (["synthesize", "2024_01"], 202401, "2024_01"), (["run", "--input_dir", "0x10"], 16, "0x10"),
    (["run", "--input_dir=+5"], 5, "+5"), (["run", "--input_dir", "2024.10"], 2024.1, "2024.10"),
    (["run", "--input_dir", "a,2024_01"], ("a", 202401), "a,2024_01"), (["run", "--input_dir", "2024"], 2024, "2024"),
    (["run", "--epochs", "2"], 2024, "2024"),  # a number not on the command line (YAML) is written in decimal
])
def test_a_number_fire_made_of_a_path_comes_back_as_typed(argv, value, text) -> None:
    """fire reads ``2024_01`` as 202401 and ``0x10`` as 16: the folder is the one typed, not the number's decimal."""
    with typed_command_line(argv):
        assert setting_text(value, "input_dir") == text
        assert path_setting(value, "input_dir") == text


@pytest.mark.parametrize("argv, value, hint", [
    (["run", "--input_dir", "0x10", "--name", "16"], 16, "typed as 0x10 and 16 on the command line; quote it "
                                                         "on the command line to keep the text as typed, as \"'0x10'\" or \"'16'\""),
    (["run"], 1000.0, "quote it on the command line to keep the text as typed, as \"'1000.0'\""),
])
def test_a_number_whose_typed_text_cannot_be_told_is_refused_quoting_it(argv, value, hint) -> None:
    """Two texts for one number cannot be told apart; the hint quotes what was typed, not a fixed '2024.10'."""
    with typed_command_line(argv), pytest.raises(ValueError) as error:
        setting_text(value, "input_dir")
    assert str(error.value).endswith(hint), error.value


@pytest.mark.parametrize("value, paths", [
    (None, []), ("null", []), ([], []), ("scan.png", ["scan.png"]), (2024, ["2024"]), (Path("s.png"), ["s.png"]),
    (["a.png", 2024, "none"], ["a.png", "2024"]), (("a.png", "b.png"), ["a.png", "b.png"]),
])
def test_a_list_setting_reads_each_item_as_a_path(value, paths) -> None:
    assert path_list_setting(value, "input_files") == paths


@pytest.mark.parametrize("value", [None, "null", " None "])
def test_an_unset_path_setting_is_none(value) -> None:
    assert path_setting(value, "datalist_file") is None


@pytest.mark.parametrize("value, kind, numbers", [
    (0.1, float, (0.1,)), (5, int, (5,)), (5, float, (5.0,)), ((0.1, 1, 10), float, (0.1, 1.0, 10.0)),
    ("0.1, 1,10", float, (0.1, 1.0, 10.0)), ("3,6,9", int, (3, 6, 9)), ([3], int, (3,)), ([2.0, 5.0], int, (2, 5)),
    ("5.0,10", int, (5, 10)),  # a quoted YAML list: "5.0" was refused where the float 5.0 is taken
    (None, float, None), ("null", int, None), ([], float, None), ((), int, None),
])
def test_number_lists_from_yaml_or_the_command_line(value, kind, numbers) -> None:
    found = number_list_setting(value, "probe#cs", kind)
    assert found == numbers and (found is None or all(type(n) is kind for n in found))


@pytest.mark.parametrize("value, kind", [
    ("abc", float), ("0.1,x", float), (True, int), (2.5, int), ("2.5", int), ([1, None], int), ({"a": 1}, float),
    (float("nan"), float), ("inf", float), ([1, float("-inf")], float),
])
def test_number_lists_that_are_not_numbers_are_refused_naming_the_setting(value, kind) -> None:
    with pytest.raises(ValueError, match=r"^probe#ks must be a number or a list of (whole )?numbers, got "):
        number_list_setting(value, "probe#ks", kind)
    with pytest.raises(ValueError, match=r"^feature_blocks must be three block ids, got "):
        number_list_setting(value, "feature_blocks", kind, "three block ids")
