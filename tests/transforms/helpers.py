"""Shared by the transform tests and the ingestion tests: frames as a tinted display shows them, simulated screen
captures and the overlap of two masks."""

from __future__ import annotations

import cv2
import numpy as np

from monai_ext.data.synthetic import SimulatorConfig, simulate_frame
from monai_ext.transforms.tint import channel_spread

#: Per-channel gains of a few display presets: warm (sepia), cool (blue) and green.
TINTS = {"sepia": (1.0, 0.85, 0.62), "cool": (0.7, 0.85, 1.0), "green": (0.75, 1.0, 0.8)}


def tint_gains(name: str) -> np.ndarray:
    return np.array(TINTS[name], np.float32)


def shown_through(screen: np.ndarray, keep: np.ndarray, name: str) -> np.ndarray:
    """The screen as a tinted display shows it: gray pixels (B-mode, white text and outlines) through the map, the
    ``keep`` pixels (colour flow) as they are. (H, W, 3) uint8 -> (H, W, 3) uint8."""
    gray = cv2.cvtColor(screen, cv2.COLOR_RGB2GRAY).astype(np.float32)
    tinted = np.clip(gray[..., None] * tint_gains(name), 0, 255).astype(np.uint8)
    shown = screen.copy()
    through = (channel_spread(screen) <= 40) & ~keep
    shown[through] = tinted[through]
    return shown


FRAMES_PER_CASE = 12


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def screens(size: int, geometry: str):
    config = SimulatorConfig(size=size, geometry=geometry, screen_capture=True)
    return [simulate_frame(np.random.default_rng([size, i]), config) for i in range(FRAMES_PER_CASE)]


#: Strips a duplex or M-mode screen shows under its B-mode image (see :func:`duplex_screen`).
STRIPS = ("spectral", "spectral_on_noise", "mmode")


def duplex_screen(strip: str, geometry: str, scale: int = 1,
                  with_image: bool = True) -> tuple[np.ndarray, np.ndarray, int]:
    """A simulated B-mode image over a strip two to four times its area, as duplex and M-mode screens show them.

    Args:
        strip: "spectral" (a Doppler spectrum growing from a baseline, on black: a freeform region),
            "spectral_on_noise" (the same over the spectrum's noise floor, with its baseline inside: a rectangle)
            or "mmode" (one scan line of the image repeated over time, moving).
        geometry: the simulator's probe geometry.
        scale: screen pixels per pixel of a 300 x 600 screen (1 or 2).
        with_image: leave the B-mode image out when False (a strip alone).

    Returns:
        (H, W, 3) uint8 screen, (H, W) bool the image's true field of view, first row of the strip.
    """
    size, width, top = 160 * scale, 600 * scale, 170 * scale
    frame = simulate_frame(np.random.default_rng([71, scale]), SimulatorConfig(size=size, geometry=geometry))
    screen = np.zeros((300 * scale, width), np.uint8)
    truth = np.zeros(screen.shape, bool)
    left = (width - size) // 2
    if with_image:
        screen[5 * scale : 5 * scale + size, left : left + size] = frame.bmode
        truth[5 * scale : 5 * scale + size, left : left + size] = frame.fov_mask
    rng = np.random.default_rng(5)
    x0, x1, height = 40 * scale, width - 40 * scale, 100 * scale
    band = np.zeros((height, x1 - x0), np.float32)
    if strip == "mmode":
        line = frame.bmode[size // 8 : size, size // 2].astype(np.float32)
        rows = np.arange(height)[:, None] * len(line) / height + 4 * scale * np.sin(np.arange(x1 - x0) / (20.0 * scale))
        band = line[np.clip(rows, 0, len(line) - 1).astype(int)] + rng.normal(0, 6, band.shape)
    else:
        baseline = height - 10 * scale if strip == "spectral" else height * 4 // 5
        if strip == "spectral_on_noise":
            band = rng.normal(18, 7, band.shape)
        for x in range(x1 - x0):
            peak = int((35 + 40 * abs(np.sin(x / (25.0 * scale))) ** 3) * scale)
            band[baseline - peak : baseline, x] = rng.normal(150, 50, peak)
        band[baseline] = 200
        if strip == "spectral":
            band[baseline + 1 :] = 0
    screen[top : top + height, x0:x1] = np.clip(band, 0, 255).astype(np.uint8)
    return np.repeat(screen[..., None], 3, axis=2), truth, top


#: Vendor side panels at a screen's edge (see :func:`side_panel_screen`).
PANELS = ("flat", "gradient", "gradient_icons")


def side_panel_screen(panel: str) -> tuple[np.ndarray, np.ndarray, int]:
    """A simulated sector image on a 300 x 450 screen with a vendor's UI panel down its right edge, of about the
    image's area: a flat fill, a smooth gradient, or a gradient with button icons.

    Returns:
        (H, W, 3) uint8 screen, (H, W) bool the image's true field of view, first column of the panel.
    """
    frame = simulate_frame(np.random.default_rng([73, 0]), SimulatorConfig(size=240, geometry="curvilinear"))
    screen = np.zeros((300, 450, 3), np.uint8)
    screen[30:270, 60:300] = frame.bmode[..., None]
    truth = np.zeros(screen.shape[:2], bool)
    truth[30:270, 60:300] = frame.fov_mask
    left = 380
    if panel == "flat":
        screen[:, left:] = (50, 50, 55)
    else:
        screen[:, left:] = np.linspace(90, 30, 300).astype(np.uint8)[:, None, None]
    if panel == "gradient_icons":
        for i in range(6):
            cv2.rectangle(screen, (left + 8, 10 + i * 48), (left + 62, 48 + i * 48), (120, 130, 150), -1)
            cv2.circle(screen, (left + 35, 29 + i * 48), 10, (200, 200, 210), 2)
    return screen, truth, left
