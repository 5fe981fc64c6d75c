"""Settings of the shared trainer base, as YAML and a ``monai.bundle`` command line give them."""

from __future__ import annotations

import pytest

from monai_ext.engines.base import gradient_norm_limit


@pytest.mark.parametrize("given, limit", [
    (1.0, 1.0), ("3", 3.0), (None, None), ("null", None), ("None", None), (0, None), ("0", None),
])
def test_clip_grad_norm_from_yaml_or_the_command_line(given, limit) -> None:
    """``--clip_grad_norm null`` (no clipping) arrives as the text 'null': torch would fail to read it as a float."""
    assert gradient_norm_limit(given) == limit


@pytest.mark.parametrize("given, match", [("high", "must be a number"), (-1, "must be positive"),
                                          ([1.0], "must be a number")])
def test_other_clip_grad_norms_are_refused_naming_the_value(given, match) -> None:
    with pytest.raises(ValueError, match=f"clip_grad_norm {match}.*got {given!r}".replace("[", r"\[")):
        gradient_norm_limit(given)
