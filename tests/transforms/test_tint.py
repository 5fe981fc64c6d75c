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


#: Pale power-Doppler and velocity scales (strength 0..1 -> RGB at these stops): their bright end is nearly white,
#: so it is not "saturated", and over dark B-mode it outnumbers the tissue at the brightest levels.
PALE_SCALES = {
    "orange_to_white": ([0, 0.3, 0.6, 0.85, 1], [[110, 30, 0], [200, 80, 10], [250, 170, 60], [255, 225, 150],
                                                 [255, 250, 215]]),
    "light_cyan": ([0, 0.5, 1], [[0, 40, 140], [60, 150, 230], [170, 230, 255]]),
}


def dark_gray_with_flow(seed: int, scale: str, box_share: float) -> tuple[np.ndarray, np.ndarray]:
    """Gray B-mode at half brightness with a flow box over ``box_share`` of the field of view's bounding box, 70%
    of it flow in the ``scale`` colours: (H, W, 3) uint8 frame, (H, W) bool flow."""
    frame = simulate_frame(seed, SimulatorConfig(size=256))
    rng = np.random.default_rng(seed)
    rows, cols = np.nonzero(frame.fov_mask)
    half_h, half_w = (np.ptp(rows) * np.sqrt(box_share) / 2), (np.ptp(cols) * np.sqrt(box_share) / 2)
    centre_r, centre_c = (rows.min() + rows.max()) // 2, (cols.min() + cols.max()) // 2
    box = np.zeros_like(frame.fov_mask)
    box[int(centre_r - half_h) : int(centre_r + half_h), int(centre_c - half_w) : int(centre_c + half_w)] = True
    blobs = cv2.GaussianBlur(rng.random(box.shape).astype(np.float32), (0, 0), 4)
    flow = box & frame.fov_mask & (blobs > np.quantile(blobs[box & frame.fov_mask], 0.3))
    shown = np.repeat((frame.image // 2)[..., None], 3, -1)
    stops, colours = PALE_SCALES[scale]
    strength = rng.beta(2, 2, int(flow.sum()))
    shown[flow] = np.stack([np.interp(strength, stops, np.array(colours)[:, c]) for c in range(3)], -1).astype(np.uint8)
    return shown, flow & frame.fov_mask


@pytest.mark.parametrize("scale", sorted(PALE_SCALES))
@pytest.mark.parametrize("box_share", [0.3, 0.6])
def test_pale_flow_over_dark_gray_b_mode_is_flow_not_a_tint(scale, box_share):
    """A per-level map of such a frame is gray below and the flow's colour above: it explained the flow away
    (none of it found) until the tint had to colour the bulk of the tissue all over the frame."""
    for seed in range(2):
        shown, flow = dark_gray_with_flow(seed, scale, box_share)
        assert display_tint(shown) is None
        assert iou(colour_flow(colour_mask(shown)), flow) >= 0.95


@pytest.mark.parametrize("colour", [(150, 255, 150), (255, 255, 140)], ids=["pale green", "pale yellow"])
def test_pale_coloured_text_over_gray_b_mode_is_still_removed(colour):
    frame = simulate_frame(0, SimulatorConfig(size=256))
    gray = np.repeat((frame.image // 2)[..., None], 3, -1)
    text = np.zeros(frame.image.shape, np.uint8)
    rows, cols = np.nonzero(frame.fov_mask)
    for line, words in enumerate(["D1 2.34cm", "D2 1.07cm", "A 3.1cm2"]):
        cv2.putText(text, words, (int(np.percentile(cols, 20)), int(np.percentile(rows, 30)) + 25 * line),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.6, 255, 2, cv2.LINE_AA)
    alpha = text[..., None] / 255.0
    shown = (gray * (1 - alpha) + np.array(colour) * alpha).astype(np.uint8)
    assert display_tint(shown) is None
    result = deannotate(shown, fill="mean")
    drawn = (text > 128) & frame.fov_mask
    assert (result.annotations | result.flow)[drawn].mean() >= 0.99


@pytest.mark.parametrize("curve", [
    lambda g: (g, 0.78 * g, 0.18 * g),                                           # amber: blue nearly off
    lambda g: (g**0.8, g, g**1.4),                                               # gamma-shaped sepia
    lambda g: tuple(1 / (1 + np.exp(-8 * (g - c))) for c in (0.45, 0.5, 0.6)),  # S-shaped per channel
    lambda g: (np.minimum(1, 1.3 * g), np.minimum(1, 1.1 * g), np.maximum(0, 1.6 * g - 0.6)),  # blue off, to white
], ids=["amber", "gamma", "s-curve", "to-white"])
def test_curved_and_strong_tints_are_recognised(curve):
    frame = simulate_frame(4, SimulatorConfig(size=256, screen_capture=True))
    levels = np.arange(256) / 255.0
    lut = np.clip(np.round(np.stack(curve(levels), -1) * 255), 0, 255).astype(np.uint8)
    gray = cv2.cvtColor(frame.screen, cv2.COLOR_RGB2GRAY)
    through = channel_spread(frame.screen) <= 40
    shown = frame.screen.copy()
    shown[through] = lut[gray[through]]
    assert display_tint(shown) is not None
    tissue = frame.fov_mask & ~frame.annotation_mask
    assert colour_mask(shown)[tissue].mean() <= 0.01


@pytest.mark.parametrize("seed", SEEDS)
def test_a_dim_tinted_frame_keeps_its_bright_reflector(seed):
    """On a dim sepia frame only the brightest echoes looked coloured, too few to count as a tint: the frame was
    taken for gray and a bright reflector (bone, a stone) was inpainted away as colour flow."""
    frame = simulate_frame(seed, SimulatorConfig(size=256, screen_capture=False, doppler_probability=0.0))
    tissue = cv2.cvtColor(frame.screen, cv2.COLOR_RGB2GRAY).astype(np.float32)
    gray = np.clip(tissue * 80 / np.percentile(tissue[frame.fov_mask], 99), 0, 255).astype(np.uint8)  # a dim gain
    ys, xs = np.nonzero(frame.fov_mask)
    y, x = int(ys.mean()), int(xs.mean())
    gray[y:y + 6, x:x + 20] = 210
    shown = shown_through(np.repeat(gray[..., None], 3, -1), np.zeros(gray.shape, bool), "sepia")
    luma = cv2.cvtColor(shown, cv2.COLOR_RGB2GRAY)
    result = deannotate(shown)
    assert display_tint(shown) is not None and not result.flow[y:y + 6, x:x + 20].any()
    assert np.abs(result.image[y:y + 6, x:x + 20].astype(int) - luma[y:y + 6, x:x + 20]).max() <= 2
