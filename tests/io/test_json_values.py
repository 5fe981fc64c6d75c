"""json_number: numbers as strict JSON holds them."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from monai_ext.io.json_values import json_number, json_tree


@pytest.mark.parametrize("value, expected", [
    (0.25, 0.25), (3, 3.0), (np.float32(0.5), 0.5), (torch.tensor(0.75), 0.75), (np.int64(2), 2.0),
    (math.nan, None), (np.float64("inf"), None), (torch.tensor(-math.inf), None),
])
def test_finite_numbers_are_floats_and_the_rest_null(value, expected) -> None:
    number = json_number(value)
    assert number == expected and (number is None or type(number) is float)
    json.dumps(number, allow_nan=False)  # strict JSON either way


def test_a_report_tree_loses_every_nan_and_keeps_the_rest() -> None:
    tree = {"auc": {"mean": float("nan"), "folds": [0.5, float("nan"), np.float64("inf")], "n": 3},
            "names": ("a", "b"), "table": "| NaN |", "ok": True, "none": None}
    cleaned = json_tree(tree)
    assert cleaned == {"auc": {"mean": None, "folds": [0.5, None, None], "n": 3}, "names": ["a", "b"],
                       "table": "| NaN |", "ok": True, "none": None}
    json.dumps(cleaned, allow_nan=False)  # strict JSON now
    with pytest.raises(ValueError):
        json.dumps(tree, allow_nan=False)


def test_numpy_numbers_and_arrays_become_json() -> None:
    """json refused np.float32 and arrays, and a float32 NaN went through as NaN."""
    import json

    import numpy as np

    tree = {"a": np.float32("nan"), "b": np.float32(0.5), "c": np.int64(3), "d": np.bool_(True),
            "e": np.array([[1.0, np.inf], [2.0, 3.0]], np.float32)}
    text = json.dumps(json_tree(tree), allow_nan=False)
    assert json.loads(text) == {"a": None, "b": 0.5, "c": 3, "d": True, "e": [[1.0, None], [2.0, 3.0]]}
