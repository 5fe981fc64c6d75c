"""Physics-inspired B-mode ultrasound simulator: the embedded default data of the bundles.

The image formation follows the textbook chain, in beam space (rows = depth samples, columns = scan lines):

1. a tissue model gives each location an echogenicity (scatterer amplitude) and an attenuation coefficient:
   skin and fat layers, muscle with striations, an organ, vessels, cysts, solid lesions and specular fascia;
2. point scatterers (Gaussian amplitudes on a fine grid, scaled by echogenicity) are convolved with a point-spread
   function: a Gaussian-windowed cosine pulse axially times a Gaussian beam laterally (the RF signal);
3. round-trip attenuation accumulates with depth (posterior shadowing and enhancement emerge from it), and an
   imperfect time-gain compensation curve partly undoes it;
4. envelope detection by the analytic signal (Hilbert transform);
5. log compression to a dynamic range in dB;
6. scan conversion to a linear (rectangle) or curvilinear (sector) field of view;
7. optionally, rendering as a scanner screen capture with burned-in text, calipers, a colour bar and a depth scale,
   keeping the ground-truth mask of what is annotation (for the de-annotation tests), and a colour-Doppler box whose
   flow replaces the B-mode beneath it (ground-truth flow mask kept as well).

No library simulates ultrasound at this level of cost (Field II and k-Wave are far slower and not on PyPI), so it is
written here with NumPy, SciPy and OpenCV. Everything is deterministic given the seed.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
from scipy.signal import fftconvolve, hilbert

from monai_ext.io.atomic import atomic_write_bytes, atomic_write_text

Geometry = Literal["linear", "curvilinear"]
LesionStyle = Literal["oval", "irregular", "cyst"]
GEOMETRIES: tuple[str, ...] = ("linear", "curvilinear")
LESION_STYLES: tuple[str, ...] = ("oval", "irregular", "cyst")
#: The record a generated folder holds beside its frames; the folder is complete once it exists.
GENERATION_RECORD = "synthetic.json"
#: Bumped whenever the simulator's image formation changes (what a seed and a config draw): every generated folder's
#: record holds it, so a folder cached by an older simulator is made again rather than served as this one's frames.
SIMULATOR_VERSION = 1


@dataclass(frozen=True)
class SimulatorConfig:
    """Parameters of the simulator.

    Args:
        size: output image side in pixels (square).
        beam_shape: (depth samples, scan lines) of the beam-space image.
        geometry: "linear", "curvilinear", or None to draw one per image.
        pulse_period: carrier period of the pulse in axial samples.
        axial_sigma: Gaussian pulse envelope width in samples.
        lateral_sigma: Gaussian beam width in scan lines.
        attenuation: mean round-trip attenuation per depth sample (nepers).
        tgc_compensation: fraction of the mean attenuation undone by time-gain compensation.
        dynamic_range_db: log-compression dynamic range; a (low, high) pair draws one per image.
        screen_capture: render burned-in text, calipers, colour bar and depth scale.
        lesion_probability: chance of a random lesion when no lesion style is asked for.
        lesion_scale: multiplier of the lesion size (1 = 8-14 % of the smaller beam-space side).
        doppler_probability: chance of a colour-Doppler box (white outline, colour flow inside) over the image.
        edge_gain_db: gain lost towards the outer scan lines (0 at the centre, this many dB at the edge lines), as
            on scanners with low-gain sector edges; 0 keeps the gain flat.
    """

    size: int = 256
    beam_shape: tuple[int, int] = (256, 192)
    geometry: Geometry | None = None
    pulse_period: float = 4.0
    axial_sigma: float = 2.0
    lateral_sigma: float = 1.2
    attenuation: float = 0.012
    tgc_compensation: float = 0.9
    dynamic_range_db: tuple[float, float] = (45.0, 65.0)
    screen_capture: bool = False
    lesion_probability: float = 0.5
    lesion_scale: float = 1.0
    doppler_probability: float = 0.0
    edge_gain_db: float = 0.0

    def __post_init__(self) -> None:
        if self.size < 32:
            raise ValueError(f"size must be at least 32 pixels, got {self.size!r}")
        if self.geometry is not None and self.geometry not in GEOMETRIES:
            raise ValueError(f"geometry must be one of {GEOMETRIES} or None (none on a command line), got "
                             f"{self.geometry!r}")
        if not 0.0 <= self.lesion_probability <= 1.0:
            raise ValueError(f"lesion_probability must be in [0, 1], got {self.lesion_probability!r}")
        if not 0.0 <= self.doppler_probability <= 1.0:
            raise ValueError(f"doppler_probability must be in [0, 1], got {self.doppler_probability!r}")
        if self.edge_gain_db < 0:
            raise ValueError(f"edge_gain_db must be >= 0, got {self.edge_gain_db!r}")
        # Each of these divides somewhere, and none failed: 0 gave a black field of view (NaN pixels of the PSF or
        # of the dynamic range) or a lesion of no pixel that the metadata still reported (lesion_scale); a negative
        # value a white field (dynamic range) or, for lesion_scale, ovals drawn as if positive but irregular lesions
        # never (an empty mask again).
        for name in ("pulse_period", "axial_sigma", "lateral_sigma", "lesion_scale"):
            if not getattr(self, name) > 0:  # "not >" refuses NaN as well
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")
        low, high = _dynamic_range_pair(self.dynamic_range_db)
        if not 0 < low <= high:  # a reversed pair failed in numpy as "high - low < 0", naming no option
            raise ValueError(f"dynamic_range_db must be an increasing (low, high) pair of positive dB, got "
                             f"{self.dynamic_range_db!r}")


def _dynamic_range_pair(value: Any) -> tuple[float, float]:
    """``SimulatorConfig.dynamic_range_db`` as a (low, high) pair of floats, or ``ValueError`` quoting it (as
    :func:`monai_ext.transforms.intensity.as_pair`, which is not imported: the simulator needs no torch)."""
    try:  # a string iterates as characters
        pair = () if isinstance(value, (str, bytes)) else tuple(float(v) for v in value)
    except (TypeError, ValueError):
        pair = ()
    if len(pair) != 2:
        raise ValueError(f"dynamic_range_db must be a (low, high) pair of dB (equal values for a fixed range), got "
                         f"{value!r}")
    return pair[0], pair[1]


@dataclass
class SimulatedFrame:
    """One simulated frame.

    Attributes:
        image: uint8 (H, W) grayscale as shown on screen (annotations burned in when rendered as a screen capture).
        screen: uint8 (H, W, 3) RGB screen capture (equal to the gray image replicated without annotations).
        bmode: uint8 (H, W) the clean scan-converted B-mode image, zero outside the field of view.
        fov_mask: bool (H, W) field of view.
        annotation_mask: bool (H, W) pixels overwritten by annotations (all False without screen capture).
        lesion_mask: bool (H, W) the lesion, if any.
        envelope: float32 (depth, lines) detected envelope before log compression, in beam space.
        meta: geometry and lesion parameters.
        flow_mask: bool (H, W) pixels showing colour-Doppler flow instead of B-mode (all False without Doppler); the
            B-mode beneath them is in ``bmode``.
    """

    image: np.ndarray
    screen: np.ndarray
    bmode: np.ndarray
    fov_mask: np.ndarray
    annotation_mask: np.ndarray
    lesion_mask: np.ndarray
    envelope: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)
    flow_mask: np.ndarray | None = None


# ---------------------------------------------------------------------------------------------------- tissue model
def _ellipse_mask(shape: tuple[int, int], center: tuple[float, float], axes: tuple[float, float], angle: float) -> np.ndarray:
    """Boolean ellipse in array coordinates: center (row, col), semi-axes (rows, cols), rotation in radians."""
    rows, cols = (a.astype(np.float32) for a in np.ogrid[0 : shape[0], 0 : shape[1]])
    dr, dc = rows - center[0], cols - center[1]
    cos, sin = np.cos(angle), np.sin(angle)
    u, v = dr * cos + dc * sin, -dr * sin + dc * cos
    return (u / axes[0]) ** 2 + (v / axes[1]) ** 2 <= 1.0


def _irregular_mask(
    rng: np.random.Generator, shape: tuple[int, int], center: tuple[float, float], radius: float, spiculated: bool
) -> np.ndarray:
    """A lesion with an irregular (optionally spiculated) margin, taller than wide (not parallel to the skin)."""
    rows, cols = (a.astype(np.float32) for a in np.ogrid[0 : shape[0], 0 : shape[1]])
    dr, dc = (rows - center[0]) / 1.3, cols - center[1]  # taller than wide
    theta, r = np.arctan2(dr, dc), np.hypot(dr, dc)
    boundary = np.ones_like(theta)
    for k in range(2, 7):  # low-order lobulation
        boundary += rng.uniform(0.04, 0.12) * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    if spiculated:
        spikes = rng.integers(8, 16)
        boundary += 0.35 * np.maximum(0.0, np.cos(spikes * theta + rng.uniform(0, 2 * np.pi))) ** 6
    return r <= radius * boundary


def lesion_model(
    rng: np.random.Generator, shape: tuple[int, int], style: LesionStyle, scale: float = 1.0
) -> tuple[np.ndarray, float, float, dict[str, Any]]:
    """Lesion mask with its echogenicity and attenuation, carrying BI-RADS-like cues.

    * ``oval``: benign-like, circumscribed, wider than tall (parallel), mildly hypoechoic, low attenuation
      (posterior enhancement);
    * ``irregular``: malignant-like, irregular or spiculated, taller than wide, markedly hypoechoic, high
      attenuation (posterior shadowing);
    * ``cyst``: anechoic, very low attenuation (strong enhancement).

    Returns:
        (mask (depth, lines) bool, echogenicity, attenuation per sample, parameters).
    """
    if style not in LESION_STYLES:
        raise ValueError(f"lesion style must be one of {LESION_STYLES}, got {style!r}")
    depth, lines = shape
    center = (rng.uniform(0.35, 0.6) * depth, rng.uniform(0.3, 0.7) * lines)
    size = rng.uniform(0.08, 0.14) * min(depth, lines) * scale
    if style == "irregular":
        mask = _irregular_mask(rng, shape, center, size, spiculated=bool(rng.random() < 0.6))
        echo, atten = rng.uniform(0.12, 0.3), rng.uniform(0.04, 0.06)
    else:
        axes = (size * rng.uniform(0.55, 0.8), size * rng.uniform(1.1, 1.5))  # wider than tall
        mask = _ellipse_mask(shape, center, axes, rng.uniform(-0.2, 0.2))
        echo, atten = (rng.uniform(0.25, 0.45), 0.002) if style == "oval" else (0.02, 0.0)
    if not mask.any():  # else the frame's metadata reports a lesion that neither its image nor its mask holds
        raise ValueError(f"the {style} lesion (size {size:.3g} samples) covers no sample of the {shape!r} beam: raise "
                         f"lesion_scale (got {scale!r}) or beam_shape")
    params = {"style": style, "center": [float(c) for c in center], "size": float(size)}
    return mask, float(echo), float(atten), params


def tissue_model(
    rng: np.random.Generator, shape: tuple[int, int], base_attenuation: float, lesion: LesionStyle | None,
    lesion_scale: float = 1.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
    """Echogenicity and attenuation maps of a random soft-tissue scene.

    Returns:
        echo (depth, lines) float32 scatterer amplitude; atten (depth, lines) float32 per-sample attenuation;
        lesion mask (depth, lines) bool; lesion parameters (empty without a lesion).
    """
    depth, lines = shape
    rows = np.arange(depth, dtype=np.float32)[:, None]
    cols = np.arange(lines, dtype=np.float32)[None, :]
    echo = np.full(shape, rng.uniform(0.8, 1.2), np.float32)
    # Layers with gently tilted, wavy interfaces: skin (bright), fat (dark), muscle (striated).
    tilt = rng.uniform(-0.08, 0.08)
    wave = 3.0 * np.sin(cols / lines * np.pi * rng.uniform(1, 3) + rng.uniform(0, 6))
    skin = depth * rng.uniform(0.03, 0.05) + tilt * cols + wave * 0.3
    fat = skin + depth * rng.uniform(0.08, 0.18) + wave
    muscle = fat + depth * rng.uniform(0.15, 0.3) + wave
    echo = np.where(rows < skin, 1.8, echo)
    echo = np.where((rows >= skin) & (rows < fat), rng.uniform(0.4, 0.7), echo)
    striation = 1.0 + 0.35 * np.sin((rows - tilt * cols) * rng.uniform(0.35, 0.6))
    in_muscle = (rows >= fat) & (rows < muscle)
    echo = np.where(in_muscle, rng.uniform(0.7, 1.0) * striation, echo).astype(np.float32)
    # Specular fascia: thin bright lines at the interfaces (genuine bright tissue, must survive de-annotation).
    for boundary in (fat, muscle):
        echo[np.abs(rows - boundary) < 1.2] = rng.uniform(2.5, 3.5)
    # A deeper organ and a few vessels (anechoic with bright walls).
    organ = _ellipse_mask(shape, (depth * rng.uniform(0.75, 0.9), lines * rng.uniform(0.3, 0.7)),
                          (depth * rng.uniform(0.15, 0.25), lines * rng.uniform(0.25, 0.45)), rng.uniform(-0.4, 0.4))
    echo[organ] *= rng.uniform(0.6, 1.4)
    for _ in range(rng.integers(0, 3)):
        center = (rng.uniform(0.3, 0.9) * depth, rng.uniform(0.1, 0.9) * lines)
        axes = (rng.uniform(3, 8), rng.uniform(10, 40))
        angle = rng.uniform(-0.3, 0.3)
        wall = _ellipse_mask(shape, center, (axes[0] + 1.5, axes[1] + 1.5), angle)
        lumen = _ellipse_mask(shape, center, axes, angle)
        echo[wall & ~lumen] = 2.2
        echo[lumen] = 0.03
    atten = np.full(shape, base_attenuation, np.float32)
    lesion_mask, params = np.zeros(shape, bool), {}
    if lesion is not None:
        lesion_mask, lesion_echo, lesion_atten, params = lesion_model(rng, shape, lesion, lesion_scale)
        echo[lesion_mask] = lesion_echo * np.clip(echo[lesion_mask], 0.5, 1.5)
        atten[lesion_mask] = lesion_atten
    return echo, atten, lesion_mask, params


# ------------------------------------------------------------------------------------------------ image formation
def point_spread_function(pulse_period: float, axial_sigma: float, lateral_sigma: float) -> np.ndarray:
    """Separable PSF (axial, lateral): a Gaussian-windowed cosine pulse times a Gaussian beam profile."""
    za = np.arange(-int(4 * axial_sigma) - 1, int(4 * axial_sigma) + 2, dtype=np.float64)
    xl = np.arange(-int(4 * lateral_sigma) - 1, int(4 * lateral_sigma) + 2, dtype=np.float64)
    axial = np.exp(-0.5 * (za / axial_sigma) ** 2) * np.cos(2 * np.pi * za / pulse_period)
    lateral = np.exp(-0.5 * (xl / lateral_sigma) ** 2)
    return np.outer(axial, lateral)


def beamform_envelope(
    rng: np.random.Generator, echo: np.ndarray, atten: np.ndarray, psf: np.ndarray, tgc_per_sample: float
) -> np.ndarray:
    """RF formation and envelope detection in beam space.

    Args:
        rng: random generator for the scatterers.
        echo: (depth, lines) scatterer amplitude.
        atten: (depth, lines) round-trip attenuation per sample (nepers); accumulates with depth.
        psf: (axial, lateral) point-spread function.
        tgc_per_sample: time-gain compensation in nepers per sample (0 for none).

    Returns:
        float32 (depth, lines) envelope. With constant ``echo`` and no attenuation it is Rayleigh distributed
        (fully developed speckle): mean / std = sqrt(pi / (4 - pi)) ~ 1.913.
    """
    scatterers = rng.standard_normal(echo.shape) * echo
    rf = fftconvolve(scatterers, psf, mode="same")
    depth = np.arange(echo.shape[0], dtype=np.float64)[:, None]
    gain = np.exp(-np.cumsum(atten, axis=0, dtype=np.float64) + tgc_per_sample * depth)
    rf *= gain
    return np.abs(hilbert(rf, axis=0)).astype(np.float32)


def log_compress(envelope: np.ndarray, dynamic_range_db: float, gain_db: float = 26.0) -> np.ndarray:
    """Map the envelope (any shape) to uint8 of the same shape over ``dynamic_range_db``; 0 dB (white) lies
    ``gain_db`` above the median echo."""
    ref = np.median(envelope) * 10 ** (gain_db / 20.0) + 1e-12
    db = 20.0 * np.log10(envelope / ref + 1e-12)
    return np.clip((db + dynamic_range_db) / dynamic_range_db * 255.0, 0, 255).astype(np.uint8)


# ------------------------------------------------------------------------------------------------ scan conversion
def linear_geometry(rng: np.random.Generator, size: int) -> dict[str, Any]:
    """A rectangle field of view under the probe at the top of the screen."""
    width = int(size * rng.uniform(0.55, 0.75))
    height = int(size * rng.uniform(0.75, 0.85))
    left = (size - width) // 2 + int(rng.integers(-size // 20, size // 20 + 1))
    top = int(size * rng.uniform(0.06, 0.1))
    return {"kind": "linear", "top": top, "left": left, "height": height, "width": width}


def curvilinear_geometry(rng: np.random.Generator, size: int) -> dict[str, Any]:
    """A sector (fan) with its apex above the top of the screen, symmetric about the vertical axis."""
    half_angle = float(rng.uniform(0.45, 0.65))
    r_outer = size * rng.uniform(0.85, 0.95)
    r_inner = size * rng.uniform(0.12, 0.25)
    apex_row = int(size * 0.06) - r_inner
    return {"kind": "curvilinear", "apex_row": float(apex_row), "apex_col": size / 2.0, "r_inner": float(r_inner),
            "r_outer": float(r_outer), "half_angle": half_angle}


def scan_maps(geometry: dict[str, Any], size: int, beam_shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Source coordinates in beam space of every screen pixel, for ``cv2.remap``.

    Returns:
        (map_cols, map_rows), each float32 (size, size): scan-line and depth-sample coordinates.
    """
    depth, lines = beam_shape
    rows, cols = np.mgrid[0:size, 0:size].astype(np.float32)
    g = geometry
    if g["kind"] == "linear":
        map_r = (rows - g["top"]) / g["height"] * depth - 0.5
        map_c = (cols - g["left"]) / g["width"] * lines - 0.5
    else:
        dr, dc = rows - g["apex_row"], cols - g["apex_col"]
        radius, theta = np.hypot(dr, dc), np.arctan2(dc, dr)  # theta = 0 straight down
        map_r = (radius - g["r_inner"]) / (g["r_outer"] - g["r_inner"]) * depth - 0.5
        map_c = (theta + g["half_angle"]) / (2 * g["half_angle"]) * lines - 0.5
    return map_c.astype(np.float32), map_r.astype(np.float32)


def scan_convert(beam: np.ndarray, maps: tuple[np.ndarray, np.ndarray], fov: np.ndarray) -> np.ndarray:
    """Map a beam-space image (depth, lines) onto the screen (size, size) by bilinear remapping; zero outside ``fov``."""
    image = cv2.remap(beam, maps[0], maps[1], interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    image[~fov] = 0
    return image


def fov_mask_from_geometry(geometry: dict[str, Any], size: int) -> np.ndarray:
    """Analytic field-of-view mask (size, size) of a geometry: the rectangle, or the annular sector."""
    rows, cols = (a.astype(np.float32) for a in np.ogrid[0:size, 0:size])
    g = geometry
    if g["kind"] == "linear":
        return (rows >= g["top"]) & (rows < g["top"] + g["height"]) & (cols >= g["left"]) & (cols < g["left"] + g["width"])
    dr, dc = rows - g["apex_row"], cols - g["apex_col"]
    radius, theta = np.hypot(dr, dc), np.arctan2(dc, dr)
    return (radius >= g["r_inner"]) & (radius < g["r_outer"]) & (np.abs(theta) <= g["half_angle"])


# ------------------------------------------------------------------------------------------------- screen capture
_TEXTS = ("LOGIQ E9", "ACUSON S2000", "EPIQ 7G", "ML6-15", "C1-5", "L12-3", "MI 1.1", "TIs 0.4", "GEN", "RES",
          "FR 28Hz", "Gn 52", "DR 66", "BREAST", "THYROID", "LIVER", "ABD", "2D", "HD", "P 70%")


def _random_text(rng: np.random.Generator) -> str:
    choice = rng.integers(0, 4)
    if choice == 0:
        return f"{rng.integers(1, 29):02d}/{rng.integers(1, 13):02d}/20{rng.integers(10, 26):02d}"
    if choice == 1:
        return f"{rng.integers(0, 24):02d}:{rng.integers(0, 60):02d}:{rng.integers(0, 60):02d}"
    if choice == 2:
        return "".join(chr(int(c)) for c in rng.integers(65, 91, size=int(rng.integers(4, 9))))  # a fake name
    return str(_TEXTS[rng.integers(0, len(_TEXTS))])


def render_screen(
    rng: np.random.Generator, bmode: np.ndarray, fov: np.ndarray, geometry: dict[str, Any]
) -> tuple[np.ndarray, np.ndarray]:
    """Burn annotations into an RGB screen capture of ``bmode``.

    Draws text in the margins, a depth scale beside the field of view, a colour bar, and calipers with a dotted
    measurement line inside the field of view. Every shape is drawn twice with the same geometry: in colour on
    the screen and in white on the annotation mask, so the mask is exactly the set of pixels written.

    Returns:
        (screen (H, W, 3) uint8, annotation mask (H, W) bool).
    """
    size = bmode.shape[0]
    screen = np.repeat(bmode[:, :, None], 3, axis=2)
    ann = np.zeros((size, size), np.uint8)
    white = (235, 235, 235)

    def text(value: str, row: int, col: int) -> None:
        # OpenCV blends Hershey glyph edges even with LINE_8, so render the glyphs once, keep the pixels at least
        # half covered and write those: crisp text, as scanners' bitmap fonts are, and an exact mask.
        glyphs = np.zeros_like(ann)
        cv2.putText(glyphs, value, (col, row), cv2.FONT_HERSHEY_SIMPLEX, size / 700.0, 255, 1, cv2.LINE_8)
        written = glyphs >= 128
        screen[written] = white
        ann[written] = 255

    def line(p: tuple[int, int], q: tuple[int, int], colour: tuple[int, int, int]) -> None:
        for canvas, c in ((screen, colour), (ann, 255)):
            cv2.line(canvas, p, q, c, 1, cv2.LINE_8)

    step = int(size * 0.035)
    for i in range(int(rng.integers(2, 5))):  # text in the top-left and top-right margins
        text(_random_text(rng), step + (i // 2) * step, int(size * 0.01) if i % 2 == 0 else int(size * 0.72))
    for i in range(int(rng.integers(1, 4))):  # text at the bottom
        text(_random_text(rng), size - int(size * 0.02) - i * step, int(size * 0.02))
    # Depth scale: ticks beside the right edge of the field of view.
    fov_cols, fov_rows = np.where(fov.any(axis=0))[0], np.where(fov.any(axis=1))[0]
    right = min(int(fov_cols.max()) + 4, size - 6)
    for row in range(int(fov_rows.min()), int(fov_rows.max()), max(4, size // 16)):
        line((right, row), (right + 3, row), white)
    # Colour (or gray) bar in the left margin, beside the image and never over it, as scanners place it: the
    # highest rows where the strip is clear of the field of view, shortened where a wide fan leaves less room.
    height, left = int(size * 0.3), int(size * 0.02)
    clear = ~fov[:, max(left - 2, 0) : left + 8].any(axis=1)
    top = int(size * 0.15)
    while top < size and not clear[top]:
        top += 1
    height = int(np.argmin(np.append(clear[top : top + height], False))) if top < size else 0
    if height >= 8:
        level = np.linspace(255, 0, height)[:, None]
        if rng.random() < 0.5:
            bar = np.concatenate([level, 128 + 127 * np.sin(np.arange(height)[:, None] / 7), 255 - level], axis=1)
        else:
            bar = np.repeat(level, 3, axis=1)
        screen[top : top + height, left : left + 5] = bar.astype(np.uint8)[:, None, :]
        ann[top : top + height, left : left + 5] = 255
    # Calipers: two '+' marks inside the field of view joined by a dotted line.
    inside = np.argwhere(cv2.erode(fov.astype(np.uint8), np.ones((15, 15), np.uint8)) > 0)
    if len(inside) and rng.random() < 0.85:
        p1, p2 = inside[rng.integers(0, len(inside), size=2)]
        caliper = (255, 255, 0) if rng.random() < 0.5 else white
        for r, c in (p1, p2):
            line((int(c) - 3, int(r)), (int(c) + 3, int(r)), caliper)
            line((int(c), int(r) - 3), (int(c), int(r) + 3), caliper)
        for t in np.linspace(0.15, 0.85, max(2, int(np.hypot(*(p2 - p1)) // 6))):
            r, c = (p1 + t * (p2 - p1)).astype(int)
            line((int(c), int(r)), (int(c), int(r)), caliper)
    return screen, ann > 0


def velocity_colours(velocity: np.ndarray) -> np.ndarray:
    """Colour-Doppler scale: (N,) velocities in [-1, 1] -> (N, 3) uint8 RGB, red to yellow towards the probe, blue
    to cyan away from it. Every colour has a channel spread of at least 150 levels (never gray)."""
    speed = np.clip(np.abs(velocity), 0.0, 1.0)
    strong = 150.0 + 105.0 * speed
    weak = 230.0 * np.clip((speed - 0.4) / 0.6, 0.0, 1.0)
    towards = velocity >= 0
    rgb = np.zeros((len(velocity), 3), np.float32)
    rgb[:, 0] = np.where(towards, strong, 0.0)
    rgb[:, 1] = weak
    rgb[:, 2] = np.where(towards, 0.0, strong)
    return rgb.astype(np.uint8)


def render_doppler(rng: np.random.Generator, screen: np.ndarray, ann: np.ndarray, fov: np.ndarray) -> np.ndarray:
    """Paint a colour-Doppler box over the field of view, in place: a white one-pixel outline (an annotation, added
    to ``ann``) and inside it a vessel whose flow, in the velocity colour scale with a parabolic profile and
    estimator noise, replaces the B-mode pixels.

    Args:
        rng: random generator.
        screen: (H, W, 3) uint8 screen capture, modified.
        ann: (H, W) bool annotation mask, modified.
        fov: (H, W) bool field of view.

    Returns:
        (H, W) bool flow mask (empty when no box fits inside the field of view).
    """
    inner = cv2.erode(fov.astype(np.uint8), np.ones((9, 9), np.uint8)) > 0
    rows, cols = np.flatnonzero(inner.any(1)), np.flatnonzero(inner.any(0))
    flow = np.zeros(fov.shape, bool)
    if len(rows) < 16 or len(cols) < 16:
        return flow
    for _ in range(20):  # a box with all four corners inside the (eroded) field of view
        h = int((rows[-1] - rows[0]) * rng.uniform(0.3, 0.45))
        w = int((cols[-1] - cols[0]) * rng.uniform(0.3, 0.45))
        top, left = int(rng.integers(rows[0], rows[-1] - h)), int(rng.integers(cols[0], cols[-1] - w))
        if inner[top, left] and inner[top, left + w] and inner[top + h, left] and inner[top + h, left + w]:
            break
    else:
        return flow
    center = (top + h / 2, left + w / 2)
    axes = (max(2.0, h * rng.uniform(0.12, 0.2)), w * rng.uniform(0.35, 0.48))
    vessel = _ellipse_mask(fov.shape, center, axes, rng.uniform(-0.3, 0.3))
    flow[top + 1 : top + h, left + 1 : left + w] = vessel[top + 1 : top + h, left + 1 : left + w]
    rr, cc = np.nonzero(flow)
    radial = np.clip(np.abs(rr - center[0]) / axes[0], 0.0, 1.0)
    velocity = (1.0 - radial**2) * rng.choice([-1.0, 1.0]) + rng.normal(0.0, 0.1, len(rr))
    screen[rr, cc] = velocity_colours(velocity)
    ann &= ~flow  # marks drawn earlier where the flow now shows are no longer on the screen
    cv2.rectangle(screen, (left, top), (left + w, top + h), (235, 235, 235), 1, cv2.LINE_8)
    outline = np.zeros(fov.shape, np.uint8)
    cv2.rectangle(outline, (left, top), (left + w, top + h), 255, 1, cv2.LINE_8)
    ann |= outline > 0
    return flow


def edge_gain(lines: int, edge_gain_db: float) -> np.ndarray:
    """(lines,) amplitude gain falling quadratically from 1 over the outer 20% of the scan lines to -edge_gain_db dB
    at the outermost line on each side."""
    distance = np.minimum(np.arange(lines), np.arange(lines)[::-1]) / max(0.2 * lines, 1.0)
    loss_db = edge_gain_db * (1.0 - np.clip(distance, 0.0, 1.0)) ** 2
    return (10.0 ** (-loss_db / 20.0)).astype(np.float32)


# ------------------------------------------------------------------------------------------------------ top level
def simulate_frame(
    seed: int | np.random.Generator, config: SimulatorConfig = SimulatorConfig(), lesion: LesionStyle | None | str = "random"
) -> SimulatedFrame:
    """Simulate one frame.

    Args:
        seed: integer seed or a generator; the same seed gives the same frame.
        config: simulator parameters.
        lesion: a style from ``LESION_STYLES``, None for no lesion, or "random" (``config.lesion_probability``).

    Returns:
        A :class:`SimulatedFrame`.
    """
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    if lesion == "random":
        lesion = str(rng.choice(LESION_STYLES)) if rng.random() < config.lesion_probability else None
    geometry_kind = config.geometry or str(rng.choice(GEOMETRIES))
    echo, atten, lesion_beam, lesion_params = tissue_model(
        rng, config.beam_shape, config.attenuation, lesion, config.lesion_scale
    )
    psf = point_spread_function(config.pulse_period, config.axial_sigma * rng.uniform(0.9, 1.1), config.lateral_sigma)
    envelope = beamform_envelope(rng, echo, atten, psf, config.attenuation * config.tgc_compensation)
    low, high = config.dynamic_range_db
    dynamic_range, gain_db = float(rng.uniform(low, high)), float(rng.uniform(22.0, 30.0))
    if config.edge_gain_db:
        # the log-compression reference is the median echo: taken before the edge loss, so the centre is unchanged
        ref_envelope = envelope
        envelope = envelope * edge_gain(envelope.shape[1], config.edge_gain_db)[None, :]
        beam = log_compress(envelope, dynamic_range, gain_db + 20.0 * np.log10(np.median(ref_envelope) / np.median(envelope)))
    else:
        beam = log_compress(envelope, dynamic_range, gain_db)
    make = linear_geometry if geometry_kind == "linear" else curvilinear_geometry
    geometry = make(rng, config.size)
    maps = scan_maps(geometry, config.size, config.beam_shape)
    fov = fov_mask_from_geometry(geometry, config.size)
    bmode = scan_convert(beam, maps, fov)
    lesion_img = scan_convert(lesion_beam.astype(np.uint8) * 255, maps, fov)
    if config.screen_capture:
        screen, ann = render_screen(rng, bmode, fov, geometry)
    else:
        screen, ann = np.repeat(bmode[:, :, None], 3, axis=2), np.zeros_like(fov)
    flow = np.zeros_like(fov)
    # drawn last and only when asked for, so frames without Doppler are the same as before the option existed
    if config.doppler_probability and rng.random() < config.doppler_probability:
        flow = render_doppler(rng, screen, ann, fov)
    image = cv2.cvtColor(screen, cv2.COLOR_RGB2GRAY)
    meta = {"geometry": geometry, "lesion": lesion_params or None}
    return SimulatedFrame(image, screen, bmode, fov, ann, lesion_img > 127, envelope, meta, flow)


def iter_frames(
    num: int, seed: int, config: SimulatorConfig = SimulatorConfig(), lesion: LesionStyle | None | str = "random"
) -> Iterator[SimulatedFrame]:
    """Yield ``num`` frames; frame i uses seed ``(seed, i)``, so any subset can be regenerated independently."""
    for i in range(num):
        yield simulate_frame(np.random.default_rng([seed, i]), config, lesion)


#: The file formats :func:`write_frame` writes.
FRAME_FORMATS = ("png", "dcm", "nii")


def write_frame(frame: SimulatedFrame, path: Path, fmt: str = "png") -> Path:
    """Write a frame's screen image as PNG (gray, or RGB for screen captures), DICOM or NIfTI, atomically (a
    reader never sees a partial file). Returns the path."""
    if fmt == "png":
        path = path.with_suffix(".png")
        colour = bool(frame.annotation_mask.any() or (frame.flow_mask is not None and frame.flow_mask.any()))
        data = cv2.cvtColor(frame.screen, cv2.COLOR_RGB2BGR) if colour else frame.image
        ok, encoded = cv2.imencode(".png", data)
        if not ok:
            raise OSError(f"could not encode {str(path)!r} as PNG")
        return atomic_write_bytes(path, encoded.tobytes())
    if fmt == "dcm":
        from monai_ext.io.writers import write_dicom

        return write_dicom(frame.image, path.with_suffix(".dcm"))
    if fmt == "nii":
        from monai_ext.io.writers import write_nifti

        return write_nifti(frame.image, path.with_suffix(".nii.gz"))
    raise ValueError(f"format must be one of {FRAME_FORMATS}, got {fmt!r}")


def _write_range(args: tuple[str, int, int, int, SimulatorConfig, str, Any]) -> list[str]:
    """Worker: simulate and write frames ``start..stop``."""
    out_dir, start, stop, seed, config, fmt, lesion = args
    out, names = Path(out_dir), []
    for i in range(start, stop):
        frame = simulate_frame(np.random.default_rng([seed, i]), config, lesion)
        # Atomic writes: several processes (torchrun ranks) may generate the same folder at once; the frames are
        # identical by seed, so whichever write lands last is as good as the first.
        names.append(write_frame(frame, out / f"us_{i:06d}", fmt).name)
    return names


def generate_dataset(
    out_dir: str | os.PathLike,
    num: int,
    seed: int = 0,
    config: SimulatorConfig = SimulatorConfig(),
    fmt: str = "png",
    lesion: LesionStyle | None | str = "random",
    workers: int | None = None,
) -> dict[str, Any]:
    """Write ``num`` frames into ``out_dir`` and a ``synthetic.json`` record of how they were made.

    The folder is complete only once ``synthetic.json`` exists; a folder with the same record is reused as is,
    so a second call costs nothing. Frame i always comes from seed ``(seed, i)``, whatever the number of workers.

    Args:
        out_dir: destination folder.
        num: number of frames.
        seed: base seed.
        config: simulator parameters.
        fmt: "png", "dcm" or "nii".
        lesion: lesion style for every frame, None, or "random".
        workers: processes (default: all cores).

    Returns:
        The record: parameters, file names, seconds taken and images per second.
    """
    if num < 1:
        raise ValueError(f"num must be at least 1, got {num!r}")
    if seed < 0:  # numpy's SeedSequence refuses it deep inside a worker, without naming the option
        raise ValueError(f"seed must be >= 0, got {seed!r}")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ValueError(f"workers must be at least 1 (or None: all cores), got {workers!r}")
    # checked here too, before the folder is made: the workers' own checks would surface from the process pool
    if fmt not in FRAME_FORMATS:
        raise ValueError(f"format must be one of {FRAME_FORMATS}, got {fmt!r}")
    if lesion is not None and lesion not in ("random", *LESION_STYLES):
        raise ValueError(f"lesion must be 'random', None (none on a command line) or one of {LESION_STYLES}, got "
                         f"{lesion!r}")
    out = Path(out_dir)
    record_path = out / GENERATION_RECORD
    wanted = json.loads(json.dumps({"num": num, "seed": seed, "config": asdict(config), "format": fmt, "lesion": lesion,
                                    "simulator": SIMULATOR_VERSION}))
    if record_path.is_file():
        record = json.loads(record_path.read_text())
        if all(record.get(k) == v for k, v in wanted.items()):
            return record
    out.mkdir(parents=True, exist_ok=True)
    workers = max(1, min(workers or os.cpu_count() or 1, num))
    bounds = np.linspace(0, num, workers * 4 + 1).astype(int) if workers > 1 else np.array([0, num])
    jobs = [(str(out), int(a), int(b), seed, config, fmt, lesion) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]
    start = time.perf_counter()
    if workers == 1:
        files = [name for job in jobs for name in _write_range(job)]
    else:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(workers) as pool:
            files = [name for names in pool.map(_write_range, jobs) for name in names]
    elapsed = time.perf_counter() - start
    record = {**wanted, "files": files, "seconds": elapsed, "images_per_second": num / max(elapsed, 1e-9)}
    atomic_write_text(record_path, json.dumps(record, indent=1))
    return record


#: Class folders of the synthetic downstream benchmark and the lesion style each is drawn from.
LESION_CLASSES = {"benign": "oval", "malignant": "irregular"}
LESION_CLASSES_MULTI = {"benign": "oval", "cyst": "cyst", "malignant": "irregular"}


def synthetic_lesion_dataset(
    cache_dir: str | os.PathLike, per_class: int = 60, multiclass: bool = False, seed: int = 0
) -> Path:
    """A labelled benchmark with BI-RADS-like cues: one folder per class of simulated screen captures.

    benign: oval, circumscribed, parallel, mildly hypoechoic, posterior enhancement; malignant: irregular or
    spiculated, taller than wide, markedly hypoechoic, posterior shadowing; (multiclass) cyst: anechoic, strong
    enhancement. Seeds differ from the pretraining default's, so no image is shared with it.

    Returns:
        The folder (``cache_dir/lesions_{binary|multiclass}_{per_class}_seed{seed}``), generated once.
    """
    if per_class < 1:  # else generate_dataset's check refused it as "num", an option the caller never gave
        raise ValueError(f"per_class must be at least 1, got {per_class!r}")
    classes = LESION_CLASSES_MULTI if multiclass else LESION_CLASSES
    root = Path(cache_dir) / f"lesions_{'multiclass' if multiclass else 'binary'}_{per_class}_seed{seed}"
    config = SimulatorConfig(screen_capture=True, lesion_scale=1.6)
    for offset, (name, style) in enumerate(classes.items()):
        generate_dataset(root / name, per_class, seed=10_000 + 1000 * offset + seed, config=config, lesion=style)
    return root
