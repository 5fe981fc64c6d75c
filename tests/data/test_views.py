"""Views of one frame (data/views.py: prepare_views, locate_fov, ViewOptions): dim sector edges kept, tinted frames
kept whole, crops inside the frame, pages of text left out, spectral strips and fluid-filled scans kept, views too
thin left out, bold coloured tables not taken for flow, views a narrow gap apart split (in rows too, on quad screens)
and dark stripes not, separator lines in no view, smaller views kept and text, logos and bars still no views, report
panels beside a view neither the view nor a second one, wide duplex screens shrunk for detection keeping their
image, on enough rows to part it from the strip."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from monai_ext.data.synthetic import SimulatorConfig, simulate_frame
from monai_ext.data.views import ViewOptions, fit_square, halve_until, locate_fov, prepare_views
from monai_ext.transforms.black_level import black_level, restore_black
from tests.data.screens import assert_crop_hugs, on_screen
from tests.transforms.helpers import PANELS, STRIPS, duplex_screen, shown_through, side_panel_screen


@pytest.mark.parametrize("edge_gain_db", [20, 25])
def test_sector_crop_keeps_dim_edges(edge_gain_db):
    """Low-gain outer scan lines: the field of view still holds at least 99% of the sector's signal pixels."""
    for seed in range(4):
        config = SimulatorConfig(size=480, geometry="curvilinear", screen_capture=True, edge_gain_db=edge_gain_db)
        frame = simulate_frame(np.random.default_rng([31, seed]), config)
        (x0, y0, x1, y1), mask = locate_fov(frame.image, ViewOptions().fov_threshold)
        found = np.zeros_like(frame.fov_mask)
        found[y0:y1, x0:x1] = mask
        signal = frame.fov_mask & (frame.bmode > 0)
        edges = signal & (np.abs(np.arange(480)[None, :] - 240) > 0.8 * np.abs(np.arange(480)[None, :] - 240).max())
        assert (signal & ~found).sum() / signal.sum() <= 0.01
        assert (edges & found).sum() / max(edges.sum(), 1) >= 0.9


@pytest.mark.parametrize("doppler", ["inpaint", "drop"])
def test_a_tinted_frame_is_kept_whole_by_ingestion(doppler):
    """A sepia-tinted B-mode frame was 89% "flow": inpainted from its edges, or dropped as Doppler."""
    frame = simulate_frame(3, SimulatorConfig(size=256, screen_capture=True))
    shown = shown_through(frame.screen, np.zeros_like(frame.fov_mask), "sepia")
    for pixels in (shown, frame.screen):
        (view,) = prepare_views(pixels, None, ViewOptions(size=128, doppler=doppler))
        assert view.drop == "" and view.flow_fraction == 0.0
        assert view.annotation_fraction <= 0.05


@pytest.mark.parametrize("shape", [(16, 2500, 3), (2500, 17), (300, 4001, 3), (999, 1001)])
def test_the_crop_of_a_shrunk_frame_stays_inside_the_frame(shape):
    """Crops found on a frame shrunk for speed are scaled back; rounding put an end a pixel past the frame's edge."""
    pixels = np.random.default_rng(0).integers(0, 256, shape, np.uint8)
    for view in prepare_views(pixels, None, ViewOptions(size=64)):
        x0, y0, x1, y1 = view.crop
        assert 0 <= x0 < x1 <= shape[1] and 0 <= y0 < y1 <= shape[0], (view.crop, shape)


def text_page(lines: list[str], ink: int, paper: int, thickness: int) -> np.ndarray:
    """(480, 640) a page of text as scanners export it: a patient-data screen or a measurement worksheet."""
    page = np.full((480, 640), paper, np.uint8)
    for row, line in enumerate(lines):
        cv2.putText(page, line, (30, 60 + 50 * row), cv2.FONT_HERSHEY_SIMPLEX, 1.0, ink, thickness, cv2.LINE_AA)
    return page


PATIENT_SCREEN = ["PATIENT: DOE, JANE", "ID: 12345678", "DOB: 1970-01-01", "EXAM: OB 2ND TRIM", "ACC: A99887766"]


WORKSHEET = [f"BPD {40 + i}.0 mm  HC {170 + i} mm  AC {150 + i} mm" for i in range(8)]


@pytest.mark.parametrize("lines, ink, paper, thickness", [
    (PATIENT_SCREEN, 255, 0, 2),  # white on black, letters 3 px wide: more than de-annotation removes
    (PATIENT_SCREEN, 230, 0, 1),
    (WORKSHEET, 0, 255, 2),  # black on white
    (PATIENT_SCREEN, 255, 128, 2),  # on gray: the fixed mid-tone test let these through
    (PATIENT_SCREEN, 255, 64, 2),
    (WORKSHEET, 0, 200, 2),
])
@pytest.mark.parametrize("deannotate", [True, False])
def test_pages_of_text_are_left_out_not_cached_with_the_patients_name(lines, ink, paper, thickness, deannotate):
    """A patient-data screen passed the signal check and reached the cache whole, its name and ID legible."""
    views = prepare_views(text_page(lines, ink, paper, thickness), None, ViewOptions(size=64, deannotate=deannotate))
    assert [view.drop for view in views] == ["text_page"] * len(views) and views


@pytest.mark.parametrize("lines, ink, paper", [(PATIENT_SCREEN, 255, 0), (WORKSHEET, 0, 255)])
@pytest.mark.parametrize("deannotate", [True, False])
def test_a_page_of_text_leaves_black_pixels_not_its_letters(lines, ink, paper, deannotate):
    """The page was dropped, but its view's pixels, written to the chunks like every view's, held it legible."""
    views = prepare_views(text_page(lines, ink, paper, 2), None, ViewOptions(size=64, deannotate=deannotate))
    assert views and all(view.drop == "text_page" and not view.pixels.any() for view in views)
    assert all(view.pixels.shape == (64, 64) and view.pixels.dtype == np.uint8 for view in views)


def test_a_patient_screen_on_a_coloured_background_is_left_out():
    page = np.zeros((480, 640, 3), np.uint8)
    page[:] = (30, 40, 110)  # a scanner's dark blue
    for row, line in enumerate(PATIENT_SCREEN):
        cv2.putText(page, line, (30, 60 + 50 * row), cv2.FONT_HERSHEY_SIMPLEX, 1.0, (255, 255, 255), 2, cv2.LINE_AA)
    assert [view.drop for view in prepare_views(page, None, ViewOptions(size=64))] == ["text_page"]


@pytest.mark.parametrize("crop_fov", [True, False])
def test_a_spectral_doppler_strip_with_its_scale_is_kept(crop_fov):
    """Black, with a bright trace over a few rows and a scale's digits: the two-tone test took it for a page."""
    strip = np.zeros((300, 800), np.uint8)
    for x in range(760):  # a gray trace over a twelfth of the strip: two tones far apart, few mid-tones
        strip[150 - int(15 + 25 * np.sin(x / 40) ** 2) : 150, x] = 160
    strip[150, :] = 255  # the baseline
    for i, label in enumerate(["-40", "-20", "0", "20", "40", "cm/s"]):
        cv2.putText(strip, label, (762, 30 + 50 * i), cv2.FONT_HERSHEY_SIMPLEX, 0.4, 255, 1)
    views = prepare_views(strip, (0, 0, 800, 300), ViewOptions(size=64, crop_fov=crop_fov))
    assert [view.drop for view in views] == [""]


@pytest.mark.parametrize("fluid", [0.0, 0.6, 0.85])
def test_a_scan_mostly_of_fluid_with_its_measurements_is_kept(fluid):
    """Anechoic fluid (near black) over most of the field of view, and burned-in text: still a scan."""
    frame = simulate_frame(4, SimulatorConfig(size=480, geometry="linear", screen_capture=True))
    image = frame.image.copy()
    rows = np.flatnonzero(frame.fov_mask.any(1))
    image[rows[0] : rows[0] + int(fluid * len(rows))] //= 12  # a full bladder: dark, its speckle faint
    views = prepare_views(image, None, ViewOptions(size=64))
    assert [view.drop for view in views] == [""]


@pytest.mark.parametrize("height, width, drop", [(40, 1200, "extreme_aspect"), (1200, 40, "extreme_aspect"),
                                                 (112, 1024, "")])  # an M-mode strip (9:1) stays
def test_a_view_too_thin_to_fit_the_square_is_left_out(height, width, drop):
    """A 40 x 12000 image was cached as one row of pixels in an empty frame."""
    strip = cv2.resize(simulate_frame(5, SimulatorConfig(size=256, geometry="linear")).bmode, (width, height))
    views = prepare_views(strip, None, ViewOptions(size=64, crop_fov=False))
    assert [view.drop for view in views] == [drop]


def with_measurement_table(screen: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A yellow measurement table in text three pixels wide over the field of view of an :func:`on_screen` linear
    frame: (H, W, 3) screen, (H, W) bool table pixels."""
    drawn = np.zeros(screen.shape[:2], np.uint8)
    for i, line in enumerate(("AC 25.1cm", "HC 31.2cm", "FL 6.1cm", "EFW 1234g")):
        cv2.putText(drawn, line, (190, 200 + 28 * i), cv2.FONT_HERSHEY_SIMPLEX, 0.7, 255, 2, cv2.LINE_8)
    marked = screen.copy()
    marked[drawn > 0] = (255, 255, 0)
    return marked, drawn > 0


@pytest.mark.parametrize("doppler,deannotate", [("drop", True), ("drop", False), ("keep", True)])
def test_a_bold_coloured_measurement_table_is_not_colour_flow(doppler, deannotate):
    """A B-mode frame with a yellow table was dropped as doppler_flow (flow fraction 0.05), and with --doppler keep
    the text reached the cache: strokes three pixels wide survive the opening that parts flow from marks."""
    frame = simulate_frame(np.random.default_rng([17, 98]), SimulatorConfig(size=480, geometry="linear",
                                                                             screen_capture=True))
    clean = on_screen(frame.screen)
    marked, table = with_measurement_table(clean)
    assert on_screen(frame.fov_mask)[table].all()  # the table is over the tissue
    options = ViewOptions(size=128, doppler=doppler, deannotate=deannotate)
    (view,) = prepare_views(marked, None, options)
    if doppler == "keep":
        (plain,) = prepare_views(clean, None, options)
        x0, y0, x1, y1 = view.crop
        assert view.crop == plain.crop
        covered = fit_square(table[y0:y1, x0:x1].astype(np.uint8) * 255, 128) >= 128
        assert np.abs(view.pixels.astype(int) - plain.pixels)[covered].mean() < 20  # filled, not the text's luma
    assert view.flow_fraction == 0.0 and view.drop == ""


def dual_screen(size: tuple[int, int], gap: int, stripe: bool = False) -> tuple[np.ndarray, list[tuple[int, ...]]]:
    """Two simulated linear views side by side, ``gap`` columns apart, on a black (width, height) ``size`` screen:
    (H, W) uint8 screen and each view's (x0, y0, x1, y1). With ``stripe``, the gap holds tissue in the views' top
    tenth: one view with a dark stripe down from there (an acoustic shadow), not two."""
    width, height = size
    view_w, view_h, top = (width - gap - 80) // 2, height * 3 // 4, height // 8
    screen = np.zeros((height, width), np.uint8)
    boxes = []
    for k in range(2):
        frame = simulate_frame(np.random.default_rng([61, k]), SimulatorConfig(size=480, geometry="linear"))
        rows, cols = np.flatnonzero(frame.fov_mask.any(1)), np.flatnonzero(frame.fov_mask.any(0))
        inside = frame.bmode[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
        left = 40 + k * (view_w + gap)
        screen[top : top + view_h, left : left + view_w] = cv2.resize(inside, (view_w, view_h))
        boxes.append((left, top, left + view_w, top + view_h))
    if stripe:
        screen[top : top + view_h // 10, 40 + view_w : 40 + view_w + gap] = 60
    return screen, boxes


@pytest.mark.parametrize("size,gap", [((960, 480), 2), ((960, 480), 6), ((960, 480), 16), ((1920, 1080), 20),
                                      ((1920, 1080), 40)], ids=lambda value: "x".join(map(str, value))
                         if isinstance(value, tuple) else f"gap{value}")
def test_views_a_narrow_gap_apart_give_one_frame_each_a_dark_stripe_does_not_split(size, gap):
    """Detection runs on a copy halved to under 320 px, whose closing bridged gaps under about 3% of the screen's
    width (16 px of 960, 40 of 1920): the two views were cached as one frame. A gap is looked for on the frame; a dark
    stripe with tissue above it is not one."""
    screen, boxes = dual_screen(size, gap)
    views = prepare_views(screen, None, ViewOptions(size=64))
    assert len(views) == 2
    for view, box in zip(views, boxes):
        assert_crop_hugs(" ".join(str(v) for v in view.crop), box, tolerance=4)
    striped, _ = dual_screen(size, gap, stripe=True)
    assert len(prepare_views(striped, None, ViewOptions(size=64))) == 1


@pytest.mark.parametrize("gap", [4, 16])
@pytest.mark.parametrize("region, views", [((0, 0, 960, 480), [0, 1]), ((20, 30, 940, 460), [0, 1]),
                                           ((0, 0, 470, 480), [0]), ((490, 0, 960, 480), [1])])
def test_a_dicom_region_holding_two_views_gives_both(region, views, gap):
    """A SequenceOfUltrasoundRegions region spanning a whole two-view screen was taken as one view: the larger field
    of view was cached and the other dropped without a word. A region holding one view is that view, as before (and
    a view the detection cuts into pieces without a gap between them stays whole: the spectral strip test above)."""
    screen, boxes = dual_screen((960, 480), gap)
    prepared = prepare_views(screen, region, ViewOptions(size=64))
    assert [view.view for view in prepared] == list(range(len(views)))
    for view, k in zip(prepared, views):
        assert_crop_hugs(" ".join(str(v) for v in view.crop), boxes[k])
        assert view.drop == ""


def test_a_region_whose_views_are_found_stacked_is_not_split_without_a_gap(monkeypatch):
    """Views found one above the other inside a declared region have no left edge past 0 to check against a column
    gap: all() of no edges split the region where nothing showed the views apart."""
    from monai_ext.data import views

    stacked = [(0, 0, 100, 40), (0, 50, 100, 100)]
    reduced = views.ReducedCopy(np.zeros((100, 100), np.uint8), 1, 0, (np.zeros(0), np.zeros(0)))
    monkeypatch.setattr(views, "_screen_views", lambda gray, options: (stacked, reduced, []))
    gray = np.zeros((100, 100), np.uint8)
    assert views.view_boxes(gray, (0, 0, 100, 100), ViewOptions(size=64))[0] == [(0, 0, 100, 100)]


@pytest.mark.parametrize("gap", [5, 8, 16])
def test_a_separator_line_between_views_is_in_neither_view(gap):
    """A thin gray line down the middle of the gap between two views (as some scanners draw it) went to the box of the
    view beside it, and the field of view took it in: the cached view had a bright stripe down one side."""
    screen, boxes = dual_screen((960, 480), gap)
    line = boxes[0][2] + gap // 2
    screen[:, line] = 160
    views = prepare_views(screen, None, ViewOptions(size=64))
    assert len(views) == 2
    for view, box in zip(views, boxes):
        assert_crop_hugs(" ".join(str(v) for v in view.crop), box, tolerance=1)
        assert not view.crop[0] <= line < view.crop[2]


def beside_a_view(width: int, height: int, gap: int, geometry: str = "linear") -> tuple[np.ndarray, list[tuple]]:
    """A 540 x 400 simulated view and a smaller ``width`` x ``height`` one ``gap`` columns right of it, top-aligned,
    on a black screen: (H, W) uint8 screen and each view's (x0, y0, x1, y1)."""
    screen = np.zeros((480, 620 + gap + width), np.uint8)
    boxes = [(40, 40, 580, 440), (580 + gap, 40, 580 + gap + width, 40 + height)]
    for k, (x0, y0, x1, y1) in enumerate(boxes):
        frame = simulate_frame(np.random.default_rng([61, k]), SimulatorConfig(size=480, geometry=geometry))
        rows, cols = np.flatnonzero(frame.fov_mask.any(1)), np.flatnonzero(frame.fov_mask.any(0))
        inside = frame.bmode[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
        screen[y0:y1, x0:x1] = cv2.resize(inside, (x1 - x0, y1 - y0))
    return screen, boxes


@pytest.mark.parametrize("quality", [None, 85])
@pytest.mark.parametrize("gap", [6, 40])
@pytest.mark.parametrize("width, height", [(300, 240), (200, 200)])
def test_a_smaller_view_beside_a_larger_one_is_kept(width, height, gap, quality):
    """A view under ``MIN_VIEW_AREA`` (0.4) of the largest's area (a 300 x 240 view beside a 540 x 400 one: 0.33) was
    no view: dropped without a word, or (a narrow gap apart) cached as one view with the larger, over the gap. A view
    with speckle that an empty gap parts from it is one; 300 x 300 (0.42) was kept already."""
    screen, boxes = beside_a_view(width, height, gap)
    views = prepare_views(as_jpeg(screen, quality), None, ViewOptions(size=64))
    assert len(views) == 2
    for view, box in zip(views, boxes):
        assert_crop_hugs(" ".join(str(v) for v in view.crop), box, tolerance=4)
        assert view.drop == ""


def not_a_view(kind: str) -> np.ndarray:
    """(H, W, 3) what scanners put beside the image, drawn on a black 480 x 340 panel: a block of text (its letters
    joined by the closing into one region with texture), a logo, or a colour bar (gray or jet, smooth or dithered)."""
    panel = np.zeros((480, 340, 3), np.uint8)
    if kind == "text":
        for row in range(8):
            cv2.putText(panel, "MEASURE 12.3 45.6 78.9", (20, 60 + 20 * row), cv2.FONT_HERSHEY_PLAIN, 1.2,
                        (230, 230, 230), 2)
    elif kind == "logo":
        cv2.rectangle(panel, (20, 60), (240, 180), (235, 235, 235), -1)
        cv2.putText(panel, "ACME", (40, 145), cv2.FONT_HERSHEY_DUPLEX, 2.0, (20, 40, 120), 5)
    elif kind == "round_logo":
        cv2.circle(panel, (130, 160), 100, (30, 90, 200), -1)
        cv2.putText(panel, "US", (80, 190), cv2.FONT_HERSHEY_DUPLEX, 2.5, (255, 255, 255), 6)
    else:
        ramp = np.linspace(255, 0, 360)[:, None].repeat(120 if kind == "wide_bar" else 60, 1)
        if kind == "dithered_bar":  # noise that passes for faint speckle: 0.17 of the view's texture
            ramp = ramp + np.random.default_rng(0).normal(0, 6, ramp.shape)
        ramp = np.clip(ramp, 0, 255).astype(np.uint8)
        bar = cv2.applyColorMap(ramp, cv2.COLORMAP_JET)[..., ::-1] if kind == "jet_bar" else ramp[..., None]
        panel[60:420, 20 : 20 + ramp.shape[1]] = bar
        for y in range(60, 420, 40):
            cv2.putText(panel, str(y), (30 + ramp.shape[1], y + 5), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1)
    return panel


@pytest.mark.parametrize("kind, geometry", [
    *[(kind, geometry) for kind in ("logo", "round_logo", "gray_bar", "jet_bar", "dithered_bar", "wide_bar")
      for geometry in ("linear", "curvilinear")],
    # the text's strokes have five times the linear image's texture: choose_region dropped the image as too flat
    # beside it, and cached the text as the view
    ("text", "curvilinear"), ("text", "linear"),
])
def test_text_logos_and_colour_bars_beside_a_view_are_still_no_views(kind, geometry):
    """What a screen shows beside its image, of 0.1-0.35 of its area (the range of smaller views) and an empty gap
    apart, is still no view: the screen gives the view it gives without them."""
    screen, _ = beside_a_view(1, 1, 0, geometry)
    screen = np.repeat(screen[:, :580, None], 3, axis=2)
    (expected,) = prepare_views(screen, None, ViewOptions(size=64))
    (view,) = prepare_views(np.hstack([screen, not_a_view(kind)]), None, ViewOptions(size=64))
    assert_crop_hugs(" ".join(str(v) for v in view.crop), expected.crop, tolerance=4)  # a wider screen: a coarser copy
    assert view.drop == expected.drop == ""


def report_panel(lines: int, thickness: int) -> np.ndarray:
    """(480, 340, 3) a report panel or measurements table as scanners show it beside the image: ``lines`` lines of
    text on black, letters ``thickness`` pixels wide."""
    panel = np.zeros((480, 340, 3), np.uint8)
    for row in range(lines):
        cv2.putText(panel, "MEASURE 12.3 45.6 78.9", (20, 40 + 20 * row), cv2.FONT_HERSHEY_PLAIN, 1.2, (230, 230, 230),
                    thickness)
    return panel


@pytest.mark.parametrize("quality", [None, 85])
@pytest.mark.parametrize("left", [False, True])
@pytest.mark.parametrize("lines, thickness", [(8, 2), (20, 1), (20, 2)])
@pytest.mark.parametrize("geometry", ["linear", "curvilinear"])
def test_a_report_panel_beside_a_view_is_neither_the_view_nor_a_second_one(geometry, lines, thickness, left,
                                                                           quality):
    """A block of text beside the image (its letters joined by the closing into one region, whose strokes have some
    five times a scan's texture) was the reference texture: the image was dropped as flat and the text cached as the
    view, or a column of the text cached as a second view. Strokes are no tissue: the screen gives its image."""
    screen, _ = beside_a_view(1, 1, 0, geometry)
    screen = np.repeat(screen[:, :580, None], 3, axis=2)
    (expected,) = prepare_views(screen, None, ViewOptions(size=64))
    panel = report_panel(lines, thickness)
    shown = as_jpeg(cv2.cvtColor(np.hstack([panel, screen] if left else [screen, panel]), cv2.COLOR_RGB2GRAY), quality)
    (view,) = prepare_views(shown, None, ViewOptions(size=64))
    x0, y0, x1, y1 = expected.crop
    shift = panel.shape[1] if left else 0
    assert_crop_hugs(" ".join(str(v) for v in view.crop), (x0 + shift, y0, x1 + shift, y1), tolerance=4)
    assert view.drop == ""


def test_a_dim_view_beside_a_bright_one_is_still_a_view():
    """Speckle at a quarter of the gain has more dark pixels between its tissue than a bright view, but is no strokes
    of text: both views are kept."""
    screen, boxes = dual_screen((960, 480), 16)
    screen[:, 480:] //= 4
    views = prepare_views(screen, None, ViewOptions(size=64))
    assert len(views) == 2
    for view, box in zip(views, boxes):
        assert_crop_hugs(" ".join(str(v) for v in view.crop), box, tolerance=4)
        assert view.drop == ""


def quad_screen(gap: int, separator: bool) -> tuple[np.ndarray, list[tuple[int, int, int, int]]]:
    """Four simulated linear views in a 2 x 2 grid filling a 640 x 480 screen, ``gap`` pixels apart (with a one-pixel
    gray ``separator`` line down the middle of each gap): (H, W) uint8 screen and each view's (x0, y0, x1, y1),
    column by column and top to bottom."""
    view_w, view_h = (640 - gap) // 2, (480 - gap) // 2
    screen = np.zeros((480, 640), np.uint8)
    boxes = []
    for column in range(2):
        for row in range(2):
            frame = simulate_frame(np.random.default_rng([62, column, row]), SimulatorConfig(size=240, geometry="linear"))
            rows, cols = np.flatnonzero(frame.fov_mask.any(1)), np.flatnonzero(frame.fov_mask.any(0))
            left, top = column * (view_w + gap), row * (view_h + gap)
            screen[top : top + view_h, left : left + view_w] = cv2.resize(
                frame.bmode[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1], (view_w, view_h))
            boxes.append((left, top, left + view_w, top + view_h))
    if separator:
        screen[:, view_w + gap // 2] = screen[view_h + gap // 2, :] = 160
    return screen, boxes


@pytest.mark.parametrize("separator", [False, True])
@pytest.mark.parametrize("gap", [6, 12])
def test_a_quad_screen_a_narrow_gap_apart_gives_four_views_not_two_columns(gap, separator):
    """Only the gaps between columns were looked for at the screen's resolution: on a quad screen filling the screen
    with views a few pixels apart (a separator line or not), each column was cached as one view of two scans stacked
    and squeezed into the square."""
    screen, boxes = quad_screen(gap, separator)
    views = prepare_views(screen, None, ViewOptions(size=64))
    assert len(views) == 4
    for view, box in zip(views, boxes):
        assert_crop_hugs(" ".join(str(v) for v in view.crop), box, tolerance=4)
        assert view.drop == ""


def as_jpeg(screen: np.ndarray, quality: int | None) -> np.ndarray:
    """(H, W) uint8 screen saved as a JPEG of ``quality`` and decoded (unchanged for None)."""
    if quality is None:
        return screen
    return cv2.imdecode(cv2.imencode(".jpg", screen, [cv2.IMWRITE_JPEG_QUALITY, quality])[1], cv2.IMREAD_GRAYSCALE)


@pytest.mark.parametrize("quality", [95, 85])
@pytest.mark.parametrize("gap", [3, 6, 10])
def test_views_a_narrow_gap_apart_on_a_jpeg_screen_give_one_frame_each(gap, quality):
    """JPEG ringing beside the views lifts a narrow gap's black to 4-21: a gap was a column with no pixel above 2, so
    a dual-view JPEG screen was cached as one frame. A gap is black at its median, with next to no tissue."""
    screen, boxes = dual_screen((960, 480), gap)
    views = prepare_views(as_jpeg(screen, quality), None, ViewOptions(size=64))
    assert len(views) == 2
    for view, box in zip(views, boxes):
        assert_crop_hugs(" ".join(str(v) for v in view.crop), box, tolerance=4)
    striped, _ = dual_screen((960, 480), gap, stripe=True)
    assert len(prepare_views(as_jpeg(striped, quality), None, ViewOptions(size=64))) == 1


@pytest.mark.parametrize("quality", [None, 95, 85])
@pytest.mark.parametrize("gap", [2, 6])
def test_a_full_height_dark_column_with_noise_inside_a_view_does_not_split_it(gap, quality):
    """A shadow or a dead element down the whole view is dark, not the screen's black: it keeps its gain's noise,
    and two 'views' cut at it would be halves of one (in a JPEG too, whose gaps are told by their median)."""
    screen, _ = dual_screen((960, 480), gap)
    top, height, left = 480 // 8, 480 * 3 // 4, 40 + (960 - gap - 80) // 2
    noise = np.random.default_rng(3).integers(3, 10, (height, gap)).astype(np.uint8)  # under the FOV threshold
    screen[top : top + height, left : left + gap] = noise
    assert len(prepare_views(as_jpeg(screen, quality), None, ViewOptions(size=64))) == 1


@pytest.mark.parametrize("geometry", ["linear", "curvilinear"])
@pytest.mark.parametrize("strip", STRIPS)
def test_a_duplex_or_m_mode_strip_is_not_the_view_and_alone_is_left_out(strip, geometry):
    """The spectral or M-mode strip under a B-mode image, larger than it, was cached as the view (the image blanked
    as annotation), and a strip alone was cached as tissue. The view is the image; a strip alone is left out
    (reason ``spectral``), unless a DICOM region names it."""
    screen, truth, top = duplex_screen(strip, geometry, scale=2)
    (view,) = prepare_views(screen, None, ViewOptions(size=64))
    rows, cols = np.flatnonzero(truth.any(1)), np.flatnonzero(truth.any(0))
    assert_crop_hugs(" ".join(str(v) for v in view.crop), (cols[0], rows[0], cols[-1] + 1, rows[-1] + 1), tolerance=6)
    assert view.drop == ""
    alone, _, _ = duplex_screen(strip, geometry, scale=2, with_image=False)
    assert [view.drop for view in prepare_views(alone, None, ViewOptions(size=64))] == ["spectral"]
    height, width = alone.shape[:2]
    assert [view.drop for view in prepare_views(alone, (0, 0, width, height), ViewOptions(size=64))] == [""]


@pytest.mark.parametrize("geometry", ["linear", "curvilinear"])
@pytest.mark.parametrize("width", [2048, 2464])
def test_a_wide_duplex_screen_shrunk_for_detection_keeps_its_image_not_the_strip(width, geometry):
    """Screens wider than 1024 px are shrunk first (here by 0.5 and 0.42), which smoothed the spectral baseline, one
    pixel thick, into two rows of mixed levels: the strip test missed it, and the strip was cached as the view, the
    B-mode image lost, with no drop reason (at 2048 and 2464 px wide, by the row the baseline falls on). The view is the
    one found on the same screen without the strip."""
    screen, _, top = duplex_screen("spectral_on_noise", geometry, scale=2)
    for shift in (0, 1):  # where the baseline falls in the shrink's blocks
        margins = ((shift, 1 - shift), ((width - 1200) // 2, width - 1200 - (width - 1200) // 2), (0, 0))
        (view,) = prepare_views(np.pad(screen, margins), None, ViewOptions(size=256))
        image_only = screen.copy()
        image_only[top:] = 0
        (expected,) = prepare_views(np.pad(image_only, margins), None, ViewOptions(size=256))
        assert (view.crop, view.drop) == (expected.crop, "") and expected.crop[3] <= top + shift


@pytest.mark.parametrize("width", [3000, 4000])
@pytest.mark.parametrize("geometry", ["linear", "curvilinear"])
@pytest.mark.parametrize("strip", STRIPS)
def test_a_very_wide_duplex_screen_is_detected_on_enough_rows_to_part_image_and_strip(strip, geometry, width):
    """A 600 x 3000 duplex screen at ``--size 700`` was halved for detection until its long side was small: 37 rows
    (26 at 4000 px), where the image and the strip under it merged into one region, cached as one view or left out
    as a strip. The detection copy keeps ``MIN_DETECT_SHORT_SIDE`` rows: the view is the image."""
    screen, truth, top = duplex_screen(strip, geometry, scale=2)
    pad = (width - screen.shape[1]) // 2
    wide = np.pad(screen, ((0, 0), (pad, width - screen.shape[1] - pad), (0, 0)))
    (view,) = prepare_views(wide, None, ViewOptions(size=700))
    rows, cols = np.flatnonzero(truth.any(1)), np.flatnonzero(truth.any(0))
    assert_crop_hugs(" ".join(str(v) for v in view.crop), (cols[0] + pad, rows[0], cols[-1] + 1 + pad, rows[-1] + 1),
                     tolerance=12)
    assert view.drop == "" and view.crop[3] <= top


def test_halving_keeps_the_short_side_asked_for_and_refuses_none():
    gray = np.zeros((600, 3000), np.uint8)
    assert halve_until(gray, 160)[0].shape == (37, 187)  # the copy a wide duplex screen was detected on
    assert halve_until(gray, 160, 64)[0].shape == (75, 375)
    with pytest.raises(ValueError, match="least must be at least 1, got 0"):
        halve_until(gray, 160, 0)


@pytest.mark.parametrize("panel", PANELS)
def test_a_vendor_side_panel_is_not_cached_as_a_second_view(panel):
    """A UI panel (flat, gradient, gradient with icons) down the screen's edge was a second view, cached whole."""
    screen, truth, _ = side_panel_screen(panel)
    screen = cv2.resize(screen, None, fx=2, fy=2, interpolation=cv2.INTER_NEAREST)  # reduced for detection, as most are
    truth = cv2.resize(truth.astype(np.uint8), None, fx=2, fy=2, interpolation=cv2.INTER_NEAREST) > 0
    (view,) = prepare_views(screen, None, ViewOptions(size=64))
    rows, cols = np.flatnonzero(truth.any(1)), np.flatnonzero(truth.any(0))
    assert_crop_hugs(" ".join(str(v) for v in view.crop), (cols[0], rows[0], cols[-1] + 1, rows[-1] + 1))


def with_colour_overlay(screen: np.ndarray, fov: np.ndarray, side: float) -> np.ndarray:
    """An elastography-style overlay: a jet colour map blended half and half over a centred square box of ``side``
    times the (H, W) bool field of view's width, on an (H, W, 3) screen."""
    rows, cols = np.flatnonzero(fov.any(1)), np.flatnonzero(fov.any(0))
    half = int(side * len(cols)) // 2
    cy, cx = (rows[0] + rows[-1]) // 2, (cols[0] + cols[-1]) // 2
    box = np.zeros_like(fov)
    box[cy - half : cy + half, cx - half : cx + half] = True
    box &= fov
    stiffness = cv2.GaussianBlur(np.random.default_rng(9).random(fov.shape).astype(np.float32), (0, 0), 15)
    stiffness = (stiffness - stiffness.min()) / (np.ptp(stiffness) + 1e-6)
    jet = cv2.applyColorMap((stiffness * 255).astype(np.uint8), cv2.COLORMAP_JET)[..., ::-1]
    shown = screen.copy()
    shown[box] = (0.5 * screen[box] + 0.5 * jet[box]).astype(np.uint8)
    return shown


@pytest.mark.parametrize("side, doppler, drop", [(0.3, "inpaint", ""), (0.75, "inpaint", "colour_overlay"),
                                                 (0.75, "keep", "")])
def test_a_colour_overlay_over_much_of_the_image_is_left_out_not_inpainted(side, doppler, drop):
    """A semi-transparent elastography box over a third of the field of view was 'flow' flattened by inpainting and
    cached; only --doppler drop had a limit. Above ``MAX_INPAINT_FLOW`` the frame is left out; a small box, and any
    box with --doppler keep, stays."""
    frame = simulate_frame(np.random.default_rng([17, 5]), SimulatorConfig(size=480, geometry="linear"))
    screen = with_colour_overlay(on_screen(np.repeat(frame.bmode[..., None], 3, axis=2)), on_screen(frame.fov_mask),
                                 side)
    (view,) = prepare_views(screen, None, ViewOptions(size=64, doppler=doppler))
    assert view.drop == drop
    assert (view.flow_fraction > 0.25) == (side > 0.5)


@pytest.mark.parametrize("seed", range(4))
def test_colour_doppler_boxes_are_still_inpainted_and_kept(seed):
    """The simulator's colour-Doppler boxes (a vessel's flow) stay far under ``MAX_INPAINT_FLOW``: inpainted, kept."""
    config = SimulatorConfig(size=480, screen_capture=True, doppler_probability=1.0)
    frame = simulate_frame(np.random.default_rng([19, seed]), config)
    (view,) = prepare_views(on_screen(frame.screen), None, ViewOptions(size=64))
    assert view.drop == "" and 0.0 < view.flow_fraction < 0.25


# ------------------------------------------------------------------------------------------ raised black, video range
def raised_black(screen: np.ndarray, black: int | str, quality: int | None = None) -> np.ndarray:
    """(H, W[, 3]) uint8 ``screen`` as a frame grabber gives it: ``black`` added to every channel (clipped), or
    "video" for limited range (black 16, white 235); JPEG-compressed at ``quality`` when given."""
    values = screen.astype(np.float64)
    values = values * 219 / 255 + 16 if black == "video" else values + black
    shown = np.clip(np.round(values), 0, 255).astype(np.uint8)
    return shown if quality is None else jpeg_round_trip(shown, quality)


def jpeg_round_trip(image: np.ndarray, quality: int) -> np.ndarray:
    """(H, W[, 3]) uint8 RGB or gray through a JPEG at ``quality``."""
    bgr = image[..., ::-1] if image.ndim == 3 else image
    _, data = cv2.imencode(".jpg", np.ascontiguousarray(bgr), [cv2.IMWRITE_JPEG_QUALITY, quality])
    decoded = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    return decoded[..., ::-1].copy() if decoded.ndim == 3 else decoded


def assert_same_view(view, base, crop_tolerance: int = 3, level_tolerance: float = 1.5) -> None:
    """``view`` of a raised-black screen is ``base``'s of the black-0 screen: the crop within ``crop_tolerance``
    pixels, the drop and the cached frame's mean within ``level_tolerance`` (a black left raised shows in it)."""
    assert max(abs(a - b) for a, b in zip(view.crop, base.crop)) <= crop_tolerance, (view.crop, base.crop)
    assert view.drop == base.drop
    assert abs(float(view.pixels.mean()) - float(base.pixels.mean())) <= level_tolerance


@pytest.mark.parametrize("quality", [None, 75])
@pytest.mark.parametrize("black", [4, 8, 12, 16, "video"])
@pytest.mark.parametrize("geometry", ["linear", "curvilinear"])
def test_a_raised_black_screen_gives_the_view_of_its_black_screen(geometry, black, quality):
    """A frame grabber's raised black (or video range, black 16) was taken for signal: the crop widened over it
    (+8) or was the whole screen (+12, +16), text and bars included. The black is brought to 0 first, recorded."""
    frame = simulate_frame(np.random.default_rng([41, len(geometry)]),
                           SimulatorConfig(size=256, geometry=geometry, screen_capture=True))
    black_screen = frame.screen if quality is None else jpeg_round_trip(frame.screen, quality)
    (base,) = prepare_views(black_screen, None, ViewOptions(size=64))
    (view,) = prepare_views(raised_black(frame.screen, black, quality), None, ViewOptions(size=64))
    assert_same_view(view, base)
    assert (view.black_level, view.video_range) == ((16, True) if black == "video" else (black, False))
    assert (base.black_level, base.video_range) == (0, False)
    if quality is None:  # the cached frame itself: black 0, the tissue's levels back (video range: within rounding)
        assert np.abs(view.pixels.astype(int) - base.pixels).mean() <= (0.5 if black == "video" else 0.0)


@pytest.mark.parametrize("black", [8, 16, "video"])
def test_a_raised_black_colour_doppler_screen_keeps_its_view_and_flow(black):
    """Colour frames: the black comes off every channel, so flow is still told from tissue and inpainted alike."""
    config = SimulatorConfig(size=256, geometry="curvilinear", screen_capture=True, doppler_probability=1.0)
    frame = simulate_frame(np.random.default_rng([43, 1]), config)
    (base,) = prepare_views(frame.screen, None, ViewOptions(size=64))
    (view,) = prepare_views(raised_black(frame.screen, black, 90), None, ViewOptions(size=64))
    assert base.flow_fraction > 0 and abs(view.flow_fraction - base.flow_fraction) <= 0.005
    assert_same_view(view, prepare_views(jpeg_round_trip(frame.screen, 90), None, ViewOptions(size=64))[0])


@pytest.mark.parametrize("black", [12, "video"])  # +16 with nothing above 240: taken for video range, by design
@pytest.mark.parametrize("strip", STRIPS)
def test_a_raised_black_duplex_screen_keeps_its_image_not_the_strip(strip, black):
    """Duplex and M-mode screens with a raised black: the B-mode image is still the view, the strip not."""
    screen, _, _ = duplex_screen(strip, "curvilinear")
    base = prepare_views(screen, None, ViewOptions(size=64))
    views = prepare_views(raised_black(screen, black), None, ViewOptions(size=64))
    assert len(views) == len(base)
    for view, expected in zip(views, base):
        assert_same_view(view, expected)


def whole_screen_linear(dark: bool) -> np.ndarray:
    """(H, W) a linear image cropped to its field of view: no background at all; ``dark``: mostly dark tissue
    (levels 4-40) with a thin band of true black (0) down one side."""
    frame = simulate_frame(np.random.default_rng([47, 0]), SimulatorConfig(size=256, geometry="linear"))
    rows, cols = np.flatnonzero(frame.fov_mask.any(1)), np.flatnonzero(frame.fov_mask.any(0))
    image = frame.bmode[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    if dark:
        image = (image * 0.25 + 4).astype(np.uint8)
        image[:, :6] = 0
    return image


def unchanged_frames() -> dict[str, np.ndarray]:
    """Frames whose black is not raised, or that have no background to tell it from."""
    frame = simulate_frame(np.random.default_rng([49, 0]), SimulatorConfig(size=256, screen_capture=True))
    linear = whole_screen_linear(dark=False)
    return {"black screen": frame.screen, "black screen, JPEG": jpeg_round_trip(frame.screen, 50),
            "whole-screen linear": linear, "whole-screen linear +8": raised_black(linear, 8),
            "dark tissue, a little black": whole_screen_linear(dark=True), "all black": np.zeros((64, 64), np.uint8)}


@pytest.mark.parametrize("name", list(unchanged_frames()))
def test_frames_without_a_raised_black_are_left_as_they_are(name):
    """No false black level: a black-0 screen (JPEG too), a linear image filling the frame (no background to
    measure: its darkest tissue is no black), dark tissue over a little true black, a black frame."""
    pixels = unchanged_frames()[name]
    gray = pixels if pixels.ndim == 2 else cv2.cvtColor(pixels, cv2.COLOR_RGB2GRAY)
    assert black_level(gray) == 0
    restored, restored_gray, level, video_range = restore_black(pixels, gray)
    assert restored is pixels and restored_gray is gray and (level, video_range) == (0, False)
