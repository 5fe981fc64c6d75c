"""Settings of the shared trainer base, as YAML and a ``monai.bundle`` command line give them."""

from __future__ import annotations

import re

import numpy as np
import pytest

from monai_ext.engines.base import gradient_norm_limit


@pytest.mark.parametrize("given, limit", [
    (1.0, 1.0), ("3", 3.0), (2, 2.0), (np.float32(0.5), 0.5), (None, None), ("null", None), ("None", None),
    (0, None), ("0", None), (0.0, None),          # 0 is no clipping, as documented: not refused as "not positive"
])
def test_clip_grad_norm_from_yaml_or_the_command_line(given, limit) -> None:
    """``--clip_grad_norm null`` (no clipping) arrives as the text 'null': torch would fail to read it as a float."""
    assert gradient_norm_limit(given) == limit


@pytest.mark.parametrize("given, match", [
    ("high", "must be a number"), ([1.0], "must be a number"),
    (-1, "must be at least 0"), (float("nan"), "must be at least 0"),
    (True, "must be a gradient-norm limit, not true or false"),    # YAML `clip_grad_norm: true` once clipped at 1.0
    (False, "must be a gradient-norm limit, not true or false"),
    (np.bool_(True), "must be a gradient-norm limit, not true or false"),
])
def test_other_clip_grad_norms_are_refused_naming_the_value(given, match) -> None:
    with pytest.raises(ValueError, match=re.escape(f"clip_grad_norm {match}") + f".*got {re.escape(repr(given))}$"):
        gradient_norm_limit(given)

