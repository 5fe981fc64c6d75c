"""Tinted gray displays (sepia and other colour-map presets): the map is found from the frame, tissue is not taken
for colour, and colour flow and coloured marks over a tint are still found. Ground truth from the simulator."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from monai_ext.data.synthetic import SimulatorConfig, simulate_frame
from monai_ext.transforms import colour_mask, deannotate
from monai_ext.transforms.deannotate import colour_flow
from monai_ext.transforms.tint import channel_spread, display_tint
from tests.transforms.helpers import TINTS, shown_through, tint_gains

SEEDS = range(4)


def doppler_frame(seed: int):
    return simulate_frame(seed, SimulatorConfig(size=256, screen_capture=True, doppler_probability=1.0))


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


@pytest.mark.parametrize("name", sorted(TINTS))
@pytest.mark.parametrize("seed", SEEDS)
def test_colour_flow_over_a_tint_is_found_and_the_tinted_tissue_is_not(name, seed):
    """Before, every bright tinted pixel was colour: the flow mask covered the tissue (IoU with the true flow about
    0.05) and a sepia frame was inpainted or dropped as Doppler."""
    frame = doppler_frame(seed)
    shown = shown_through(frame.screen, frame.flow_mask, name)
    assert display_tint(shown) is not None
    flow = colour_flow(colour_mask(shown)) & frame.fov_mask
    assert iou(flow, frame.flow_mask) >= 0.95


@pytest.mark.parametrize("name", sorted(TINTS))
def test_the_map_found_is_the_displays(name):
    frame = simulate_frame(2, SimulatorConfig(size=256, screen_capture=True))
    shown = shown_through(frame.screen, np.zeros_like(frame.fov_mask), name)
    tint = display_tint(shown)
    luma = cv2.cvtColor(shown, cv2.COLOR_RGB2GRAY)
    # levels that tissue fills: the map there is the preset's colour for the gray level that shows at that luma
    counts = np.bincount(luma[frame.fov_mask], minlength=256)
    levels = np.flatnonzero(counts >= 20)
    levels = levels[levels > 16]
    # gray level g shows as g * gains, whose BT.601 luma is g * (gains . weights)
    expected = levels[:, None] / float(tint_gains(name) @ np.array([0.299, 0.587, 0.114])) * tint_gains(name)
    assert len(levels) >= 100
    assert np.abs(tint[levels].astype(np.float32) - expected).max() <= 6


@pytest.mark.parametrize("seed", SEEDS)
def test_gray_b_mode_with_doppler_or_power_doppler_is_not_read_as_a_tint(seed):
    """Over gray B-mode, colour is what it was (channels differ): the estimate never explains flow away, even where
    flow outnumbers tissue at some levels (a power-Doppler scale, one hue over many levels)."""
    frame = doppler_frame(seed)
    power = frame.screen.copy()
    rows, cols = np.nonzero(frame.flow_mask)
    strength = np.random.default_rng(seed).uniform(0.2, 1.0, len(rows))
    power[rows, cols] = np.stack([np.full_like(strength, 255), 60 + 190 * strength, 40 * strength], -1).astype(np.uint8)
    for screen in (frame.screen, power):
        assert display_tint(screen) is None
        np.testing.assert_array_equal(colour_mask(screen), channel_spread(screen) > 40)


def test_marks_over_a_tint_are_still_removed():
    frame = simulate_frame(1, SimulatorConfig(size=256, screen_capture=True))
    shown = shown_through(frame.screen, np.zeros_like(frame.fov_mask), "sepia")
    found = deannotate(shown, fill="mean").annotations
    truth = frame.annotation_mask
    assert (found & truth).sum() / truth.sum() >= 0.95
    tissue = frame.fov_mask & ~truth
    assert (found & tissue).sum() / tissue.sum() <= 0.005


@pytest.mark.parametrize("pixels", [np.zeros((32, 32, 3), np.uint8), np.full((32, 32, 3), (200, 0, 0), np.uint8)],
                         ids=["black", "pure red"])
def test_frames_without_a_tint_to_find(pixels):
    assert display_tint(pixels) is None
