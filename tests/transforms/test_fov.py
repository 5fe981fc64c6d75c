"""Field of view (transforms/fov.py) against the simulator's ground truth: DICOM regions, blank and empty images,
side-by-side, stacked and duplex views, views closer than the closing bridges (issues #5, #17), spectral and M-mode
strips larger than the image, vendor side panels, smaller views parted by an empty gap, text blocks told from
tissue by their strokes."""

from __future__ import annotations

import re

import cv2
import numpy as np
import pytest

from monai_ext.data.synthetic import SimulatorConfig, simulate_frame
from monai_ext.transforms import FieldOfViewMaskd, deannotate, detect_fov
from tests.transforms.helpers import PANELS, STRIPS, duplex_screen, iou, screens, side_panel_screen


def test_dicom_region_restricts_detection():
    frame = simulate_frame(7, SimulatorConfig(size=256, geometry="linear", screen_capture=True))
    rows, cols = np.flatnonzero(frame.fov_mask.any(1)), np.flatnonzero(frame.fov_mask.any(0))
    box = (int(cols[0]) - 2, int(rows[0]) - 2, int(cols[-1]) + 3, int(rows[-1]) + 3)  # (x0, y0, x1, y1)
    fov = detect_fov(frame.screen, region_box=box)
    assert iou(fov.mask, frame.fov_mask) >= 0.97
    assert not fov.mask[:, : box[0]].any() and not fov.mask[: box[1]].any()
    with pytest.raises(ValueError, match=r"region_box \(300, 0, 999, 10\) does not overlap the image"):
        detect_fov(frame.screen, region_box=(300, 0, 999, 10))


@pytest.mark.parametrize("overshoot", [1, 5])
def test_dicom_region_reaching_past_the_image_is_clipped_as_ingestion_clips_it(overshoot):
    """Some scanners write RegionLocationMaxX1/Y1 as exclusive (one past the last pixel), so the box read from the
    standard's inclusive coordinates reaches one pixel outside. Before, FieldOfViewMaskd raised on such files while
    corpus ingestion (data/views.py) clipped them."""
    frame = simulate_frame(7, SimulatorConfig(size=256, geometry="linear", screen_capture=True))
    rows, cols = np.flatnonzero(frame.fov_mask.any(1)), np.flatnonzero(frame.fov_mask.any(0))
    inside = (int(cols[0]) - 2, int(rows[0]) - 2, 256, 256)
    past = (inside[0], inside[1], 256 + overshoot, 256 + overshoot)
    expected = detect_fov(frame.screen, region_box=inside)
    found = FieldOfViewMaskd("image")({"image": np.moveaxis(frame.screen, -1, 0), "us_region": past})
    np.testing.assert_array_equal(found["fov"][0], expected.mask)
    assert found["fov_bbox"] == expected.bbox


def test_blank_image_has_no_fov():
    fov = detect_fov(np.zeros((64, 64), np.uint8))
    assert fov.kind == "none" and not fov.mask.any()


@pytest.mark.parametrize("views", [1, 2, 3])
def test_side_by_side_views_are_found(views):
    from monai_ext.transforms.fov import detect_views

    frames = [simulate_frame(np.random.default_rng([41, k]), SimulatorConfig(size=160, screen_capture=True))
              for k in range(views)]
    screen = np.hstack([f.image for f in frames])
    boxes = detect_views(screen, threshold=5)
    assert len(boxes) == views
    for k, (x0, y0, x1, y1) in enumerate(boxes):
        cols = np.flatnonzero(frames[k].fov_mask.any(0)) + 160 * k
        assert x0 <= cols[0] and cols[-1] < x1 and (y0, y1) == (0, 160)


@pytest.mark.parametrize("geometry", ["linear", "curvilinear"])
def test_single_view_screens_are_detected_as_before(geometry):
    from monai_ext.transforms.fov import detect_screen_fov

    for frame in screens(256, geometry)[:4]:
        alone, screen = detect_fov(frame.screen), detect_screen_fov(frame.screen)
        np.testing.assert_array_equal(screen.mask, alone.mask)
        assert (screen.kind, screen.bbox) == (alone.kind, alone.bbox)


def test_duplex_screen_spectral_strip_below_the_image_stays_outside():
    """A single column (B-mode above a spectral Doppler strip of similar area) is not split into stacked views:
    the strip is not tissue and stays outside the field of view, as before; only grids (quad screens) split rows."""
    from monai_ext.transforms.fov import detect_screen_fov

    frame = simulate_frame(np.random.default_rng([7, 0]), SimulatorConfig(size=160, screen_capture=True))
    strip = np.zeros((70, 160, 3), np.uint8)
    strip[10:60, 5:155] = np.random.default_rng(1).integers(30, 200, (50, 150, 1), np.uint8)  # 7500 px: 84% of the image
    screen = np.vstack([frame.screen, strip])
    alone = detect_fov(screen)
    assert not alone.mask[160:].any()
    np.testing.assert_array_equal(detect_screen_fov(screen).mask, alone.mask)
    assert (deannotate(np.moveaxis(screen, -1, 0)).image[160:] == 0).all()


def test_dual_view_duplex_screen_keeps_each_spectral_strip_outside():
    """Two duplex views side by side (each B-mode over its spectral Doppler strip): the columns are views, the strips
    under them are not (before, each column was split into two stacked 'views' and the strips kept as tissue);
    a quad screen's stacked views are still split (test_multi_view_screens_keep_every_view)."""
    from monai_ext.transforms.fov import detect_screen_fov, detect_view_boxes, solid_components, to_gray_uint8

    cells = []
    for k in range(2):
        frame = simulate_frame(np.random.default_rng([7, k]), SimulatorConfig(size=160, screen_capture=True))
        strip = np.zeros((70, 160, 3), np.uint8)
        strip[10:60, 5:155] = np.random.default_rng(k).integers(30, 200, (50, 150, 1), np.uint8)
        cells.append(np.pad(np.vstack([frame.screen, strip]), ((0, 0), (8, 8), (0, 0))))
    screen = np.hstack(cells)
    gray = to_gray_uint8(screen)
    boxes = detect_view_boxes(gray, 10, solid_components(gray, 10))
    assert len(boxes) == 2 and all(y0 == 0 and y1 == screen.shape[0] for _, y0, _, y1 in boxes)
    fov = detect_screen_fov(screen, 10)
    assert fov.mask[:160].any() and not fov.mask[160:].any()


@pytest.mark.parametrize("geometry", ["linear", "curvilinear"])
@pytest.mark.parametrize("strip", STRIPS)
def test_a_strip_larger_than_the_image_stays_outside_and_alone_is_a_strip(strip, geometry):
    """Duplex and M-mode screens whose spectral or M-mode strip is larger than the B-mode image above it: the largest
    solid region was taken for the field of view, so the strip was kept as tissue and the image blanked as
    annotation. The image is the field of view; a strip alone is kind "strip" (left out of training by ingestion)."""
    from monai_ext.transforms.fov import detect_screen_fov

    screen, truth, top = duplex_screen(strip, geometry)
    assert np.count_nonzero(screen[top:, :, 0]) > 2 * truth.sum()
    fov = detect_fov(screen)
    assert fov.kind == ("linear" if geometry == "linear" else "sector")
    assert iou(fov.mask, truth) >= 0.95 and not fov.mask[top:].any()
    np.testing.assert_array_equal(detect_screen_fov(screen).mask, fov.mask)
    cleaned = deannotate(np.moveaxis(screen, -1, 0)).image
    assert (cleaned[truth] > 0).mean() >= 0.9 and (cleaned[top:] == 0).all()
    alone, _, _ = duplex_screen(strip, geometry, with_image=False)
    assert detect_fov(alone).kind == "strip"


@pytest.mark.parametrize("rows", [0.3, 0.45])
def test_a_wide_shallow_linear_image_is_not_a_strip(rows):
    """A linear image 2.2-3.3 times as wide as deep (a shallow preset) is wide like a strip: its speckle is not
    streaked and it has no drawn line, so it stays the field of view."""
    frame = simulate_frame(np.random.default_rng([75, 0]), SimulatorConfig(size=480, geometry="linear"))
    band = frame.fov_mask.any(1)
    keep = np.zeros_like(frame.fov_mask)
    first = int(np.flatnonzero(band)[0])
    keep[first : first + int(rows * 480 * 0.55)] = True
    truth = frame.fov_mask & keep
    screen = np.where(truth, frame.bmode, 0).astype(np.uint8)
    fov = detect_fov(screen)
    assert fov.kind == "linear" and iou(fov.mask, truth) >= 0.95


@pytest.mark.parametrize("panel", PANELS)
def test_a_vendor_side_panel_is_not_a_second_view(panel):
    """A UI panel down the screen's edge (a flat fill, a smooth gradient, button icons) of about the image's area was
    kept as a second view: every solid region of 40% of the largest's area was one. A view has speckle."""
    from monai_ext.transforms.fov import detect_screen_fov, detect_view_boxes, solid_components, to_gray_uint8

    screen, truth, left = side_panel_screen(panel)
    gray = to_gray_uint8(screen)
    assert len(detect_view_boxes(gray, 10, solid_components(gray, 10))) == 1
    for fov in (detect_screen_fov(screen), detect_fov(screen)):
        assert fov.kind == "sector" and iou(fov.mask, truth) >= 0.95 and not fov.mask[:, left:].any()


@pytest.mark.parametrize("shape", [(0, 40), (40, 0), (0, 0)])
def test_an_empty_image_is_refused_before_opencv(shape):
    """OpenCV's morphology on an empty array crashes the process without a Python error."""
    from monai_ext.transforms.fov import solid_components

    with pytest.raises(ValueError, match=re.escape(f"empty image of shape {shape!r}")):
        solid_components(np.zeros(shape, np.uint8), 10)


def views_apart(gap: int, stripe: bool = False) -> tuple[np.ndarray, list[np.ndarray]]:
    """Two simulated linear views (fields of view resized to 367 x 304) side by side on a black 440-row screen, ``gap`` columns
    apart: (H, W) uint8 screen and each view's true mask. With ``stripe``, the gap holds tissue in the views' top
    tenth: one view with a dark stripe down from there (an acoustic shadow), not two."""
    views = []
    for k in range(2):
        frame = simulate_frame(np.random.default_rng([43, k]), SimulatorConfig(size=480, geometry="linear"))
        rows, cols = np.flatnonzero(frame.fov_mask.any(1)), np.flatnonzero(frame.fov_mask.any(0))
        inside = frame.bmode[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
        views.append(cv2.resize(inside, (304, 367), interpolation=cv2.INTER_LINEAR))
    screen = np.zeros((440, 2 * 304 + gap + 40), np.uint8)
    truths = []
    for k, view in enumerate(views):
        left = 20 + k * (304 + gap)
        screen[36:403, left : left + 304] = view
        truth = np.zeros(screen.shape, bool)
        truth[36:403, left : left + 304] = True
        truths.append(truth)
    if stripe:
        screen[36:73, 324 : 324 + gap] = views[0][:37, -gap:]
    return screen, truths


@pytest.mark.parametrize("gap", [2, 6])
def test_views_closer_than_the_closing_bridges_are_parted_a_dark_stripe_is_not(gap):
    """The closing of a 440-row screen (a 9 px disk) bridged gaps up to 8 px: the two views were one "linear" field of
    view over both and the gap. A gap is a run of empty columns over the views' whole height."""
    from monai_ext.transforms.fov import detect_screen_fov

    screen, truths = views_apart(gap)
    fov = detect_screen_fov(screen)
    assert fov.kind == "views"
    assert iou(fov.mask, truths[0] | truths[1]) >= 0.97
    assert not fov.mask[:, 324 : 324 + gap].any()
    striped, _ = views_apart(gap, stripe=True)
    assert detect_screen_fov(striped).kind == "linear"


@pytest.mark.parametrize("gap", [4, 40])
def test_a_smaller_view_parted_by_an_empty_gap_is_a_view(gap):
    """A 300 x 240 view beside a 540 x 400 one (0.33 of its area, under ``MIN_VIEW_AREA``) was left out of the
    screen's field of view; a band as small without speckle (a gray bar) still is."""
    from monai_ext.transforms.fov import detect_screen_fov

    screen = np.zeros((480, 620 + gap + 300), np.uint8)
    truths = []
    for k, (x0, y0, x1, y1) in enumerate([(40, 40, 580, 440), (580 + gap, 40, 880 + gap, 280)]):
        frame = simulate_frame(np.random.default_rng([61, k]), SimulatorConfig(size=480, geometry="linear"))
        rows, cols = np.flatnonzero(frame.fov_mask.any(1)), np.flatnonzero(frame.fov_mask.any(0))
        inside = frame.bmode[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
        screen[y0:y1, x0:x1] = cv2.resize(inside, (x1 - x0, y1 - y0))
        truths.append(np.zeros(screen.shape, bool))
        truths[-1][y0:y1, x0:x1] = True
    fov = detect_screen_fov(screen, 10)
    assert fov.kind == "views" and iou(fov.mask, truths[0] | truths[1]) >= 0.97
    barred = screen.copy()
    barred[:, 580:] = 0
    barred[60:420, 620:680] = np.linspace(255, 0, 360).astype(np.uint8)[:, None]
    fov = detect_screen_fov(barred, 10)
    assert fov.kind == "linear" and iou(fov.mask, truths[0]) >= 0.97


def _widen_over_every_pixel(gray, apex, slopes, radii, level):
    """widen_to_dim_edges as first written: the angles of every pixel of the frame (the reference)."""
    rows, cols = np.nonzero(gray >= 0)
    dr, dc = rows - apex[0], cols - apex[1]
    radius = np.hypot(dr, dc)
    inside_ring = (dr > 0) & (radius >= radii[0]) & (radius <= radii[1])
    angle = np.arctan2(dc[inside_ring], dr[inside_ring])
    bright = gray.ravel()[inside_ring] > level
    step = 1.0 / max(radii[1], 1.0)
    widened = []
    for slope, sign in ((slopes[0], -1.0), (slopes[1], 1.0)):
        beyond = (angle - np.arctan(slope)) * sign
        band = np.floor(beyond[beyond > 0] / step).astype(np.int64)
        counts = np.bincount(band, minlength=1)
        hits = np.bincount(band, weights=bright[beyond > 0], minlength=1)
        full = (counts > 0) & (hits >= 0.6 * counts)
        extra = int(np.argmin(full)) if not full.all() else len(full)
        widened.append(float(np.tan(np.arctan(slope) + sign * max(extra - 0.5, 0.0) * step)))
    return widened[0], widened[1]


def test_widening_over_dim_edges_looks_at_the_pixels_that_matter_with_the_same_result():
    """The angles of only the pixels that can lie outside a side (no longer of the whole frame, which cost as much
    as the rest of the detection) give exactly the same sides: on simulated sectors, bright frames where the sides
    widen far, and sectors partly or wholly off the frame."""
    from monai_ext.transforms.fov import widen_to_dim_edges

    rng = np.random.default_rng(0)
    cases = []
    for i, frame in enumerate(screens(256, "curvilinear")[:4]):
        gray = cv2.cvtColor(frame.screen, cv2.COLOR_RGB2GRAY)
        cases.append((gray, (-40.0 - i, 128.3), (-0.55, 0.6), (50.0, 300.0), 10))
    for k in range(60):
        height, width = int(rng.integers(8, 160)), int(rng.integers(8, 200))
        gray = np.full((height, width), 200, np.uint8) if k % 2 else \
            (rng.random((height, width)) < 0.8).astype(np.uint8) * 200
        apex = (float(rng.uniform(-2 * height, height)), float(rng.uniform(-width, 2 * width)))
        left, right = sorted(rng.uniform(-3, 3, 2).tolist())
        inner = float(rng.uniform(0, height))
        radii = (inner, inner + float(rng.uniform(0, 2 * height)))
        cases += [(gray, apex, (left, right), radii, 100),
                  (gray, (float(round(apex[0])), float(round(apex[1]))), (left, right), (round(inner), 2 * height), 100)]
    widened = 0
    for case in cases:
        assert widen_to_dim_edges(*case) == _widen_over_every_pixel(*case), case[1:]
        widened += widen_to_dim_edges(*case)[0] < np.tan(np.arctan(case[2][0])) - 1e-9
    assert widened >= 10  # the cases widen sides, not only keep them


@pytest.mark.parametrize("geometry", ["linear", "curvilinear"])
def test_blocks_of_text_are_strokes_and_scans_are_not(geometry):
    """A block of text, whose letters the closing joins into one region, is strokes (it is no tissue, nor the texture
    a view is measured against); a simulated scan with its overlays (text, calipers, colour bar, depth scale), at its
    gain or a sixth of it, JPEG or not, is not."""
    from monai_ext.transforms.fov import region_strokes

    for frame in screens(256, geometry)[:3]:
        gray = cv2.cvtColor(frame.screen, cv2.COLOR_RGB2GRAY)
        jpeg = cv2.imdecode(cv2.imencode(".jpg", gray, [cv2.IMWRITE_JPEG_QUALITY, 75])[1], cv2.IMREAD_GRAYSCALE)
        for shown in (gray, gray // 6, jpeg):
            assert region_strokes(shown, [frame.fov_mask]) == [False]
    for thickness in (1, 2):
        page = np.zeros((240, 340), np.uint8)
        for row in range(10):
            cv2.putText(page, "MEASURE 12.3 45.6 78.9", (20, 30 + 20 * row), cv2.FONT_HERSHEY_PLAIN, 1.2, 230, thickness)
        block = np.zeros_like(page, bool)
        block[15:225, 15:325] = True
        halved = cv2.resize(page, (170, 120), interpolation=cv2.INTER_AREA)  # detection's copy: strokes on the screen
        assert region_strokes(page, [block]) == region_strokes(halved, [block[::2, ::2]], page) == [True]


@pytest.mark.parametrize("axes", [(85, 70), (95, 80)])  # fluid over about half, and most, of the image
def test_a_scan_full_of_fluid_beside_a_flat_panel_is_the_field_of_view(axes) -> None:
    """Echo-free fluid (a bladder, amniotic fluid) is noise near the floor, which measures as strokes of text: the
    scan was left out as text, and the flat side panel beside it, the only region left, became the field of view."""
    screen, truth, left = side_panel_screen("flat")
    fluid = np.zeros(truth.shape, np.uint8)
    cv2.ellipse(fluid, (180, 170), axes, 0, 0, 360, 1, -1)
    fluid = (fluid > 0) & truth
    noise = np.clip(np.random.default_rng(0).normal(9, 5, truth.shape), 0, 255).astype(np.uint8)
    screen[fluid] = noise[fluid][:, None]
    fov = detect_fov(screen)
    assert not fov.mask[:, left:].any() and iou(fov.mask, truth) > 0.95


def narrow_sector_screen(half_angle_deg: float) -> tuple[np.ndarray, np.ndarray]:
    """(160, 200) uint8 screen of a phased-array sector, its sides meeting at an apex at the top of the image (row
    6), speckle down to the apex; and its (160, 200) bool field of view."""
    rng = np.random.default_rng(11)
    rows, cols = np.mgrid[0:160, 0:200].astype(np.float64)
    radius, angle = np.hypot(rows - 6, cols - 100), np.degrees(np.arctan2(cols - 100, rows - 6))
    fov = (rows > 6) & (radius < 145) & (np.abs(angle) < half_angle_deg)
    speckle = cv2.GaussianBlur(rng.uniform(0, 1, fov.shape).astype(np.float32), (0, 0), 1.2)
    gray = np.where(fov, np.interp(speckle, (speckle.min(), speckle.max()), (30, 230)), 0).astype(np.uint8)
    return gray, fov


@pytest.mark.parametrize("half_angle_deg", [15, 25, 45])
def test_a_narrow_sector_keeps_its_tip(half_angle_deg):
    """The opening that removes strokes ate a phased-array sector's narrow tip, and the inner radius fitted to what
    was left cut the near field off (15 degrees: 21 of 153 rows). The fitted sector is taken up to its apex over the
    tissue there."""
    gray, fov = narrow_sector_screen(half_angle_deg)
    found = detect_fov(gray)
    assert found.kind == "sector"
    first_row = int(np.flatnonzero(fov.any(1))[0])
    assert found.bbox[0] <= first_row + 3, f"the field of view begins at row {found.bbox[0]}, the sector at {first_row}"
    assert (found.mask & fov).sum() / fov.sum() >= 0.98
