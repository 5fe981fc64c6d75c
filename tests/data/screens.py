"""Simulated scanner screens shared by the corpus and view tests: a frame placed on a screen, and a check that a
crop hugs a known box."""

from __future__ import annotations

import numpy as np


def on_screen(array: np.ndarray, left: int = 80) -> np.ndarray:
    """A 480 x 480 simulator array placed on a 480 x 640 screen, as scanners export."""
    out = np.zeros((480, 640, *array.shape[2:]), array.dtype)
    out[:, left : left + 480] = array
    return out


def assert_crop_hugs(crop: str, truth: tuple[int, int, int, int], tolerance: int = 8) -> None:
    found = [int(v) for v in crop.split()]
    assert max(abs(a - b) for a, b in zip(found, truth)) <= tolerance, (found, truth)
