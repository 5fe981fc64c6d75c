"""Optional settings left empty, whether from YAML (null) or a command line (the text 'null', 'None', 'none')."""

from __future__ import annotations

import pytest

from monai_ext.io.settings import is_unset


@pytest.mark.parametrize("value, unset", [
    (None, True), ("", True), ("None", True), ("null", True), (" NULL ", True), ("none", True),
    ("models/model.pt", False), ("nullify.pt", False), (0, False), ("0", False), ([], False),
])
def test_unset_settings(value, unset) -> None:
    assert is_unset(value) is unset
