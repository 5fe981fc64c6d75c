"""Comparison overlays: where prediction and ground truth agree, both stay visible (the red prediction outline once
covered the green truth, so a perfect prediction looked like a false positive)."""

from __future__ import annotations

import numpy as np

from monai_ext.visualize.overlays import comparison_overlay


def _disc(size: int, centre: tuple[int, int], radius: int) -> np.ndarray:
    rows, cols = np.ogrid[:size, :size]
    return ((rows - centre[0]) ** 2 + (cols - centre[1]) ** 2 <= radius**2).astype(np.int64)


def _outlines(overlay: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(coloured, showing truth, showing prediction): the gray image has equal channels; truth is drawn with a
    strong green channel, the prediction with a strong red one (agreement, yellow, with both)."""
    r, g, b = (overlay[..., c].astype(int) for c in range(3))
    coloured = (r != g) | (g != b)
    return coloured, coloured & (g > 150), coloured & (r > 150)


def test_a_perfect_prediction_still_shows_the_ground_truth() -> None:
    image = np.linspace(0, 1, 48 * 48, dtype=np.float32).reshape(48, 48)
    truth = _disc(48, (24, 24), 10)
    overlay = comparison_overlay(image, truth, truth)[:, :48]
    coloured, shows_truth, shows_prediction = _outlines(overlay)
    assert coloured.sum() > 40 and not coloured[truth == 0].any()  # the lesion's outline
    # every outline pixel shows both: the prediction drawn over the truth once left only red
    assert np.array_equal(shows_truth, coloured) and np.array_equal(shows_prediction, coloured)


def test_a_shifted_prediction_shows_truth_only_prediction_only_and_shared_pixels() -> None:
    truth, prediction = _disc(48, (24, 24), 10), _disc(48, (24, 28), 10)
    overlay = comparison_overlay(np.zeros((48, 48), np.float32), prediction, truth)
    coloured, shows_truth, shows_prediction = _outlines(overlay[:, :48])
    assert (shows_truth & ~shows_prediction).sum() > 10 and (shows_prediction & ~shows_truth).sum() > 10
    assert (shows_truth & shows_prediction).any()
    assert not overlay[:, 48:].any()  # the image alone (black here) beside it
