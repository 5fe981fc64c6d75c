"""Spectral Doppler and M-mode strips, and speckle texture: monai_ext/transforms/strips.py, on the strips and panels
of tests/transforms/helpers.py and on simulated B-mode images (the whole screens: tests/transforms/test_fov.py)."""

from __future__ import annotations

import numpy as np
import pytest

from monai_ext.data.synthetic import SimulatorConfig, simulate_frame
from monai_ext.transforms.strips import (
    MAX_STREAK_RATIO,
    drawn_line,
    is_strip,
    speckle_texture,
    straight_side,
    streak_ratio,
)
from tests.transforms.helpers import duplex_screen, side_panel_screen


def strip_of(kind: str) -> tuple[np.ndarray, np.ndarray]:
    """(H, W) uint8 screen of a strip alone and (H, W) bool the strip's region (its nonzero pixels' box rows)."""
    screen, _, top = duplex_screen(kind, "linear", with_image=False)
    gray = screen[..., 0]
    region = np.zeros(gray.shape, bool)
    region[top : top + 100, 40:-40] = gray[top : top + 100, 40:-40] > 0
    return gray, region


def bmode(geometry: str, size: int = 160) -> tuple[np.ndarray, np.ndarray]:
    frame = simulate_frame(np.random.default_rng([5, size]), SimulatorConfig(size=size, geometry=geometry))
    return frame.bmode, frame.fov_mask


@pytest.mark.parametrize("geometry", ["linear", "curvilinear"])
def test_speckle_has_texture_and_a_side_panel_has_next_to_none(geometry) -> None:
    gray, mask = bmode(geometry)
    screen, _, left = side_panel_screen("gradient_icons")
    panel = np.zeros(screen.shape[:2], bool)
    panel[:, left:] = True
    tissue, flat = speckle_texture(gray, mask), speckle_texture(screen[..., 0], panel)
    assert tissue > 10 and flat < 0.05 * tissue


def test_speckle_texture_of_an_empty_region_is_zero() -> None:
    assert speckle_texture(np.zeros((40, 40), np.uint8), np.zeros((40, 40), bool)) == 0.0


@pytest.mark.parametrize("geometry", ["linear", "curvilinear"])
def test_an_mmode_trace_streaks_along_time_and_speckle_does_not(geometry) -> None:
    gray, region = strip_of("mmode")
    tissue, mask = bmode(geometry)
    assert streak_ratio(gray, region) <= MAX_STREAK_RATIO < 0.8 < streak_ratio(tissue, mask)


def test_a_spectrums_baseline_is_a_straight_side_and_a_sectors_edge_is_not() -> None:
    _, spectrum = strip_of("spectral")
    _, sector = bmode("curvilinear")
    assert straight_side(spectrum) and not straight_side(sector)


@pytest.mark.parametrize("with_line", [True, False])
def test_a_baseline_drawn_over_the_noise_floor_is_found(with_line) -> None:
    rng = np.random.default_rng(3)
    gray = np.clip(rng.normal(18, 7, (100, 400)), 0, 255).astype(np.uint8)
    if with_line:
        gray[80] = 200
    assert drawn_line(gray, np.ones(gray.shape, bool)) is with_line


@pytest.mark.parametrize("kind, freeform", [("mmode", False), ("spectral", True), ("spectral_on_noise", False)])
def test_strips_are_strips(kind, freeform) -> None:
    gray, region = strip_of(kind)
    assert is_strip(gray, region, freeform)


@pytest.mark.parametrize("geometry", ["linear", "curvilinear"])
def test_a_tissue_image_is_no_strip_even_when_wide(geometry) -> None:
    gray, mask = bmode(geometry, 320)
    wide = np.ascontiguousarray(gray[100:220])  # a 320 x 120 band of speckle: wide enough to be asked
    band = np.ascontiguousarray(mask[100:220])
    assert not is_strip(gray, mask, freeform=False) and not is_strip(wide, band, freeform=False)


def layered_band(width: int, height: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """(H, W) uint8 horizontally layered tissue (a tendon's fibres: layers over faint speckle) and its (H, W) mask."""
    rng = np.random.default_rng(9)
    layers = 130 + 100 * np.sin(np.arange(height) / 2.0)[:, None]
    band = np.clip(layers + rng.normal(0, 6, (height, width)), 0, 255).astype(np.uint8)
    return band, np.ones(band.shape, bool)


@pytest.mark.parametrize("width, strip", [(220, False), (250, False), (400, True)])
def test_layered_tissue_shown_wide_is_no_strip_unless_as_wide_as_a_trace(width, strip) -> None:
    """Tendon or muscle layers streak along the rows as an M-mode trace does: a linear image 2-2.5 times as wide as
    deep was dropped as 'spectral'. Streaks count from 3 times as wide as tall, as M-mode strips are."""
    band, mask = layered_band(width)
    assert streak_ratio(band, mask) <= MAX_STREAK_RATIO
    assert is_strip(band, mask, freeform=False) is strip


@pytest.mark.parametrize("fluid_share", [0.5, 0.6, 0.7])
def test_a_view_mostly_of_anechoic_fluid_keeps_its_tissues_texture(fluid_share) -> None:
    """The median over every pixel fell to the fluid's noise, and a real view (a full bladder) was dropped as a side
    panel."""
    gray, mask = bmode("linear")
    rows = np.flatnonzero(mask.any(1))
    cut = rows[0] + int(fluid_share * (rows[-1] - rows[0]))
    fluid = gray.copy()
    fluid[rows[0] : cut] = np.random.default_rng(4).normal(6, 3, (cut - rows[0], gray.shape[1])).clip(0, 255)
    assert speckle_texture(fluid, mask) >= 0.5 * speckle_texture(gray, mask)
