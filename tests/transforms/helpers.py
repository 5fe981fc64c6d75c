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
