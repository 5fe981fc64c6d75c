"""Numbers as strict JSON holds them, for the reports and histories this package writes."""

from __future__ import annotations

import math
from typing import Any, SupportsFloat

import numpy as np


def json_number(value: SupportsFloat) -> float | None:
    """``value`` as a float, or None (JSON ``null``) where it is NaN or infinite.

    Python's ``json`` writes ``NaN`` and ``Infinity``, which are not JSON: jq, browsers and strict readers refuse
    the whole file. Takes Python and NumPy numbers and one-element tensors.
    """
    number = float(value)
    return number if math.isfinite(number) else None


def json_tree(value: Any) -> Any:
    """``value`` with every NaN or infinite float inside dicts, lists and tuples made ``None`` (see
    :func:`json_number`), NumPy numbers and arrays made Python's (``json`` refuses ``np.float32`` and arrays, and
    passed a float32 NaN through); other values as they are."""
    if isinstance(value, np.ndarray):
        return json_tree(value.tolist())
    if isinstance(value, np.generic) and not isinstance(value, (np.floating, np.integer, np.bool_)):
        return value
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return json_number(value)
    if isinstance(value, dict):
        return {key: json_tree(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_tree(item) for item in value]
    return value
