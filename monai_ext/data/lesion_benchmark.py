"""A few-label synthetic lesion benchmark that random frozen features do not solve.

The easy benchmark (:func:`monai_ext.data.synthetic.synthetic_lesion_dataset`) separates lesions by gross cues
(shape, mean echogenicity, strong shadowing) that a random ViT's features already capture (AUC about 0.97). Here
every class is the same kind of lesion: a hypoechoic mass, wider than tall, with a half-width of 8-13 % of the
beam's smaller side (a 6-10 mm lesion on a 4 cm linear view; 1-2 patches of 16 px across at 128 px), at a random
position, with the same distribution of size, aspect, tilt and mean echogenicity in every class. The classes
differ by one subtle BI-RADS-like descriptor each, drawn with a random strength so that they overlap:

* ``circumscribed``: smooth margin, homogeneous interior, no posterior feature;
* ``microlobulated``: a margin with small high-frequency undulations (the strength is the undulation amplitude);
* ``heterogeneous``: coarse internal echotexture (a smoothed log-normal modulation of scatterer strength) with a
  few echogenic foci (microcalcification-like points);
* ``shadowing``: mildly higher attenuation inside the lesion, hence a faint posterior acoustic shadow.

Image formation (speckle, attenuation, log compression, scan conversion, burned-in annotations) is the simulator's
(:mod:`monai_ext.data.synthetic`); only the lesion model is new. Everything is deterministic given the seed.
"""

from __future__ import annotations

import concurrent.futures
import functools
import json
import math
import multiprocessing
import os
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from monai_ext.data.synthetic import (
    GEOMETRIES,
    SIMULATOR_VERSION,
    SimulatedFrame,
    SimulatorConfig,
    beamform_envelope,
    curvilinear_geometry,
    fov_mask_from_geometry,
    linear_geometry,
    log_compress,
    point_spread_function,
    render_screen,
    scan_convert,
    scan_maps,
    tissue_model,
    write_frame,
)

#: Class names of the benchmark, in label order.
SUBTLE_CLASSES: tuple[str, ...] = ("circumscribed", "microlobulated", "heterogeneous", "shadowing")
#: Bumped whenever the lesion model changes, so cached folders of an older model are regenerated (the records also
#: hold the simulator's own :data:`~monai_ext.data.synthetic.SIMULATOR_VERSION`, for changes of the image formation).
BENCHMARK_VERSION = 1


def check_strength(strength: float) -> None:
    """Refuse a cue strength that is not a finite number of at least 0.

    NaN passed a plain ``strength < 0`` check, and NaN or inf then gave black heterogeneous and shadowing frames and
    lesion-free microlobulated ones (a NaN margin holds no pixel), written to the cache as a benchmark.

    Raises:
        ValueError: quoting ``strength``.
    """
    number = isinstance(strength, (int, float, np.integer, np.floating)) and not isinstance(strength, bool)
    if not number or not math.isfinite(strength) or strength < 0:
        raise ValueError(f"strength must be a finite number of at least 0, got {strength!r}")


def subtle_lesion(
    rng: np.random.Generator, shape: tuple[int, int], kind: str, strength: float = 1.0
) -> tuple[np.ndarray, np.ndarray, float, dict[str, Any]]:
    """One lesion of class ``kind`` in beam space.

    Args:
        rng: random generator.
        shape: (depth samples, scan lines).
        kind: one of :data:`SUBTLE_CLASSES`.
        strength: scales the class cue (1 = the benchmark's default subtlety; larger is easier).

    Returns:
        (mask (depth, lines) bool, relative echogenicity map (depth, lines) float32 to multiply the tissue's
        scatterer amplitude with inside the mask, attenuation per sample inside the mask, parameters).
    """
    if kind not in SUBTLE_CLASSES:
        raise ValueError(f"lesion kind must be one of {SUBTLE_CLASSES}, got {kind!r}")
    check_strength(strength)
    depth, lines = shape
    center = (rng.uniform(0.3, 0.6) * depth, rng.uniform(0.25, 0.75) * lines)
    size = rng.uniform(0.08, 0.13) * min(depth, lines)
    axes = np.array([size * rng.uniform(0.6, 0.85), size])  # wider than tall (parallel), in every class
    angle = rng.uniform(-0.25, 0.25)
    rows, cols = (a.astype(np.float32) for a in np.ogrid[0:depth, 0:lines])
    dr, dc = rows - center[0], cols - center[1]
    u, v = dr * np.cos(angle) + dc * np.sin(angle), -dr * np.sin(angle) + dc * np.cos(angle)
    radius, theta = np.hypot(u / axes[0], v / axes[1]), np.arctan2(u / axes[0], v / axes[1])
    boundary = np.ones_like(theta)
    cue = float(rng.uniform(0.5, 1.0) * strength)  # each image's cue strength: classes overlap near the low end
    if kind == "microlobulated":
        lobes = int(rng.integers(9, 15))
        boundary = boundary + 0.16 * cue * np.cos(lobes * theta + rng.uniform(0, 2 * np.pi))
    mask = radius <= boundary
    echo = np.full(shape, rng.uniform(0.15, 0.35), np.float32)
    if kind == "heterogeneous":
        field = cv2.GaussianBlur(rng.standard_normal(shape).astype(np.float32), (0, 0), 1.5)
        field /= field.std() + 1e-6
        echo *= np.exp(0.45 * cue * field).astype(np.float32)
        inside = np.argwhere(mask)
        for r, c in inside[rng.integers(0, len(inside), size=int(rng.integers(2, 5)))]:
            echo[max(r - 1, 0) : r + 1, max(c - 1, 0) : c + 1] *= 1.0 + 5.0 * cue  # echogenic foci
    atten = 0.012 + (0.018 * cue if kind == "shadowing" else 0.0)
    params = {"kind": kind, "cue": cue, "center": [float(x) for x in center], "size": float(size)}
    return mask, echo, float(atten), params


def simulate_subtle_frame(seed: int | np.random.Generator, kind: str, config: SimulatorConfig | None = None,
                          strength: float = 1.0) -> SimulatedFrame:
    """A frame with one :func:`subtle_lesion` of class ``kind``, formed as :func:`simulate_frame` forms images."""
    config = config or SimulatorConfig(screen_capture=True)
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    echo, atten, _, _ = tissue_model(rng, config.beam_shape, config.attenuation, None)
    mask, lesion_echo, lesion_atten, params = subtle_lesion(rng, config.beam_shape, kind, strength)
    echo[mask] = lesion_echo[mask] * np.clip(echo[mask], 0.5, 1.5)
    atten[mask] = lesion_atten
    psf = point_spread_function(config.pulse_period, config.axial_sigma * rng.uniform(0.9, 1.1), config.lateral_sigma)
    envelope = beamform_envelope(rng, echo, atten, psf, config.attenuation * config.tgc_compensation)
    low, high = config.dynamic_range_db
    beam = log_compress(envelope, float(rng.uniform(low, high)), float(rng.uniform(22.0, 30.0)))
    kind_of_view = config.geometry or str(rng.choice(GEOMETRIES))
    geometry = (linear_geometry if kind_of_view == "linear" else curvilinear_geometry)(rng, config.size)
    maps = scan_maps(geometry, config.size, config.beam_shape)
    fov = fov_mask_from_geometry(geometry, config.size)
    bmode = scan_convert(beam, maps, fov)
    lesion_img = scan_convert(mask.astype(np.uint8) * 255, maps, fov) > 127
    if config.screen_capture:
        screen, ann = render_screen(rng, bmode, fov, geometry)
    else:
        screen, ann = np.repeat(bmode[:, :, None], 3, axis=2), np.zeros_like(fov)
    image = cv2.cvtColor(screen, cv2.COLOR_RGB2GRAY)
    return SimulatedFrame(image, screen, bmode, fov, ann, lesion_img, envelope,
                          {"geometry": geometry, "lesion": params})


def subtle_lesion_dataset(
    cache_dir: str | os.PathLike, per_class: int = 60, seed: int = 0, strength: float = 1.0, size: int = 256
) -> Path:
    """The benchmark as one folder per class of simulated screen captures (PNG), generated once.

    Image i of class c comes from seed ``(20_000 + 1000 c + seed, i)``: no image is shared with the pretraining
    default or the easy benchmark, and any subset can be regenerated alone. The folder is complete once its
    ``benchmark.json`` record exists; a folder with the same record is reused as is.

    Args:
        cache_dir: parent folder.
        per_class: images per class.
        seed: data seed.
        strength: cue strength (see :func:`subtle_lesion`).
        size: image side in pixels.

    Returns:
        ``cache_dir/subtle_lesions_{per_class}_seed{seed}[_s{strength}]``.
    """
    from monai_ext.io.atomic import atomic_write_text

    if per_class < 1:
        raise ValueError(f"per_class must be at least 1, got {per_class!r}")
    check_strength(strength)  # before the folder is named after it (``_snan``) and made
    # a plain float in the record: numpy's float32 or int64, taken by check_strength, failed json.dumps after every
    # frame was written, and the folder was left without its record
    strength = float(strength)
    suffix = "" if strength == 1.0 else f"_s{strength:g}"
    suffix += "" if size == 256 else f"_{size}px"
    root = Path(cache_dir) / f"subtle_lesions_{per_class}_seed{seed}{suffix}"
    record = {"version": BENCHMARK_VERSION, "simulator": SIMULATOR_VERSION, "classes": list(SUBTLE_CLASSES),
              "per_class": per_class, "seed": seed, "strength": strength, "size": size}
    record_path = root / "benchmark.json"
    if record_path.is_file() and json.loads(record_path.read_text()) == record:
        return root
    config = SimulatorConfig(size=size, screen_capture=True)
    for c, kind in enumerate(SUBTLE_CLASSES):
        folder = root / kind
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            frame = simulate_subtle_frame(np.random.default_rng([20_000 + 1000 * c + seed, i]), kind, config, strength)
            write_frame(frame, folder / f"us_{i:06d}")  # atomic: a killed run leaves no partial PNG
    atomic_write_text(record_path, json.dumps(record, indent=1))
    return root


def subtle_pretraining_frames(cache_dir: str | os.PathLike, num: int = 1000, seed: int = 0, size: int = 256,
                              workers: int = 1) -> Path:
    """Unlabelled frames of the benchmark's domain for pretraining: each with one lesion of a random class (kept in
    no label), from seeds ``(30_000 + seed, i)``, disjoint from the benchmark's. Generated once.

    Args:
        cache_dir: where the folder is made.
        num: frames.
        seed: the draw.
        size: side of the square frames.
        workers: processes that simulate in parallel; each frame has its own seed, so the files do not depend on it.

    Returns:
        ``cache_dir/subtle_unlabelled_{num}_seed{seed}`` (a flat folder of PNGs).
    """
    from monai_ext.io.atomic import atomic_write_text

    if num < 1:
        raise ValueError(f"num must be at least 1, got {num!r}")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be an integer >= 1, got {workers!r}")
    root = Path(cache_dir) / (f"subtle_unlabelled_{num}_seed{seed}" + ("" if size == 256 else f"_{size}px"))
    record = {"version": BENCHMARK_VERSION, "simulator": SIMULATOR_VERSION, "num": num, "seed": seed, "size": size}
    record_path = root / "frames.json"
    if record_path.is_file() and json.loads(record_path.read_text()) == record:
        return root
    root.mkdir(parents=True, exist_ok=True)
    step = max(16, min(256, -(-num // workers)))  # every worker busy, chunks large enough to amortise a task
    chunks = [(start, min(start + step, num)) for start in range(0, num, step)]
    write = functools.partial(_write_pretraining_frames, root, seed, size)
    if workers == 1:
        for chunk in chunks:
            write(chunk)
    else:
        # spawn, not fork: the caller may hold torch / OpenCV thread pools, which a forked child can deadlock on
        context = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(min(workers, len(chunks)), mp_context=context,
                                                    initializer=cv2.setNumThreads, initargs=(1,)) as pool:
            list(pool.map(write, chunks))
    atomic_write_text(record_path, json.dumps(record, indent=1))
    return root


def _write_pretraining_frames(root: Path, seed: int, size: int, chunk: tuple[int, int]) -> None:
    """Simulate and write frames ``chunk[0] .. chunk[1] - 1`` of :func:`subtle_pretraining_frames`."""
    config = SimulatorConfig(size=size, screen_capture=True)
    for i in range(*chunk):
        rng = np.random.default_rng([30_000 + seed, i])
        frame = simulate_subtle_frame(rng, SUBTLE_CLASSES[int(rng.integers(len(SUBTLE_CLASSES)))], config)
        write_frame(frame, root / f"us_{i:06d}")
