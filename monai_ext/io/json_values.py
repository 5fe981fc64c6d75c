"""Numbers as strict JSON holds them, for the reports and histories this package writes."""

from __future__ import annotations

import math
from typing import SupportsFloat


def json_number(value: SupportsFloat) -> float | None:
    """``value`` as a float, or None (JSON ``null``) where it is NaN or infinite.

    Python's ``json`` writes ``NaN`` and ``Infinity``, which are not JSON: jq, browsers and strict readers refuse
    the whole file. Takes Python and NumPy numbers and one-element tensors.
    """
    number = float(value)
    return number if math.isfinite(number) else None
