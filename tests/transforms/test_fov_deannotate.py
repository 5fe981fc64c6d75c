"""Field of view and de-annotation against the simulator's ground truth (issue #5, acceptance 2)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from monai_ext.data.synthetic import SimulatorConfig, simulate_frame
from monai_ext.transforms import (
    Deannotate,
    Deannotated,
    DopplerToGray,
    DopplerToGrayd,
    FieldOfViewMask,
    FieldOfViewMaskd,
    deannotate,
    detect_fov,
)

FRAMES_PER_CASE = 12


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def screens(size: int, geometry: str):
    config = SimulatorConfig(size=size, geometry=geometry, screen_capture=True)
    return [simulate_frame(np.random.default_rng([size, i]), config) for i in range(FRAMES_PER_CASE)]


@pytest.mark.parametrize("size", [256, 480])
@pytest.mark.parametrize("geometry", ["linear", "curvilinear"])
def test_fov_iou_and_annotation_recall_precision_and_tissue_kept(size, geometry):
    for frame in screens(size, geometry):
        result = deannotate(np.moveaxis(frame.screen, -1, 0))
        assert iou(result.fov.mask, frame.fov_mask) >= 0.95
        assert result.fov.kind == ("linear" if geometry == "linear" else "sector")
        truth, found = frame.annotation_mask, result.annotations
        hits = (truth & found).sum()
        assert hits / truth.sum() >= 0.95, "annotation recall"
        assert hits / found.sum() >= 0.9, "annotation precision"
        tissue = frame.fov_mask & ~truth
        changed = (result.image != frame.bmode) & tissue
        assert changed.sum() / tissue.sum() <= 0.01


def test_specular_reflector_survives():
    """A bright, PSF-thick interface inside the field (no annotations) is not mistaken for a caliper."""
    frame = simulate_frame(3, SimulatorConfig(size=256, geometry="linear", screen_capture=False))
    image = frame.bmode.copy()
    rows = slice(120, 124)  # 4 px thick: thicker than any 1-2 px stroke
    cols = np.flatnonzero(frame.fov_mask[122])[10:-10]
    image[rows, cols[0] : cols[-1]] = 250
    result = deannotate(image)
    reflector = np.zeros_like(frame.fov_mask)
    reflector[rows, cols[0] : cols[-1]] = True
    assert (result.image[reflector] == 250).mean() >= 0.99
    assert not (result.annotations & reflector).any()


def test_white_caliper_on_tissue_is_found_and_filled():
    frame = simulate_frame(5, SimulatorConfig(size=256, geometry="linear", screen_capture=False))
    image = frame.bmode.copy()
    r, c = np.argwhere(frame.fov_mask)[len(np.argwhere(frame.fov_mask)) // 2]
    image[r, c - 3 : c + 4] = 235
    image[r - 3 : r + 4, c] = 235
    result = deannotate(image)
    assert result.annotations[r, c - 3 : c + 4].mean() >= 0.8
    assert abs(float(result.image[r, c]) - float(frame.bmode[r - 2 : r + 3, c - 2 : c + 3].mean())) < 60


def test_dicom_region_restricts_detection():
    frame = simulate_frame(7, SimulatorConfig(size=256, geometry="linear", screen_capture=True))
    rows, cols = np.flatnonzero(frame.fov_mask.any(1)), np.flatnonzero(frame.fov_mask.any(0))
    box = (int(cols[0]) - 2, int(rows[0]) - 2, int(cols[-1]) + 3, int(rows[-1]) + 3)  # (x0, y0, x1, y1)
    fov = detect_fov(frame.screen, region_box=box)
    assert iou(fov.mask, frame.fov_mask) >= 0.97
    assert not fov.mask[:, : box[0]].any() and not fov.mask[: box[1]].any()
    with pytest.raises(ValueError, match=r"region_box \(0, 0, 999, 10\)"):
        detect_fov(frame.screen, region_box=(0, 0, 999, 10))


def test_blank_image_has_no_fov():
    fov = detect_fov(np.zeros((64, 64), np.uint8))
    assert fov.kind == "none" and not fov.mask.any()


@pytest.mark.parametrize("as_tensor", [False, True])
@pytest.mark.parametrize("as_float", [False, True])
def test_array_and_dict_versions_keep_type_range_and_agree(as_tensor, as_float):
    frame = simulate_frame(11, SimulatorConfig(size=128, screen_capture=True))
    screen = np.moveaxis(frame.screen, -1, 0)
    screen = screen.astype(np.float32) / 255.0 if as_float else screen
    img = torch.as_tensor(screen) if as_tensor else screen
    out = Deannotate()(img)
    assert isinstance(out, torch.Tensor) == as_tensor and tuple(out.shape) == (1, 128, 128)
    assert float(out.max()) <= (1.0 if as_float else 255)
    d = Deannotated("image", annotation_key="ann", fov_key="fov")({"image": img})
    np.testing.assert_array_equal(np.asarray(d["image"]), np.asarray(out))
    assert d["ann"].shape == (1, 128, 128) and d["fov"].shape == (1, 128, 128)
    mask = FieldOfViewMask()(img)
    assert isinstance(mask, torch.Tensor) == as_tensor and mask.shape == (1, 128, 128)
    md = FieldOfViewMaskd("image")({"image": img})
    np.testing.assert_array_equal(np.asarray(md["fov"]), np.asarray(mask))
    assert len(md["fov_bbox"]) == 4


def doppler_frame():
    """A B-mode frame with a colour-flow blob painted over part of it (the gray beneath is known)."""
    frame = simulate_frame(13, SimulatorConfig(size=128, geometry="linear"))
    rgb = np.repeat(frame.bmode[:, :, None], 3, axis=2)
    rr, cc = np.ogrid[:128, :128]
    blob = ((rr - 64) ** 2 + (cc - 64) ** 2 < 36) & frame.fov_mask
    rgb[blob] = (200, 20, 30)
    return frame.bmode, blob, np.moveaxis(rgb, -1, 0)


def test_doppler_inpaint_estimates_the_bmode_beneath_better_than_luma():
    bmode, blob, rgb = doppler_frame()
    estimate = DopplerToGray("inpaint")(rgb)[0]
    luma = DopplerToGray("mask", chroma=255)(rgb)[0]  # chroma 255: nothing counts as colour, plain luma
    error = np.abs(estimate[blob].astype(float) - bmode[blob].mean())
    assert error.mean() < np.abs(luma[blob].astype(float) - bmode[blob].mean()).mean()
    np.testing.assert_array_equal(estimate[~blob], bmode[~blob])  # gray pixels untouched
    masked = DopplerToGray("mask")(rgb)[0]
    assert (masked[blob] == 0).all()
    d = DopplerToGrayd("image", colour_key="colour")({"image": rgb})
    np.testing.assert_array_equal(d["colour"][0], blob)


@pytest.mark.parametrize("kwargs,message", [
    ({"margin": -1}, "margin must be >= 0, got -1"),
    ({"dilate_marks": -2}, "dilate_marks must be >= 0, got -2"),
])
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        deannotate(np.zeros((32, 32), np.uint8), **kwargs)
    with pytest.raises(ValueError, match="mode must be 'inpaint' or 'mask', got 'blur'"):
        DopplerToGray("blur")
