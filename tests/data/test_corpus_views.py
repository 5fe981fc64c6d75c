"""prepare-corpus on scanner screens (issue #17): de-annotation at ingestion against the simulator's ground truth,
colour Doppler policies, several views per screen, dim sector edges, frames without signal."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from monai_ext.data.corpus import CorpusFrames, CorpusOptions, before_after_pairs, fit_square, prepare_corpus
from monai_ext.data.synthetic import SimulatorConfig, simulate_frame
from monai_ext.data.views import ViewOptions, locate_fov, prepare_views
from tests.transforms.helpers import shown_through

SIZE = 256
SCREENS = 6


def manifest(out: Path) -> dict[str, list[dict]]:
    """Manifest rows by source, in view order."""
    rows: dict[str, list[dict]] = {}
    with open(out / "manifest.csv", newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            rows.setdefault(row["source"], []).append(row)
    return rows


def on_screen(array: np.ndarray, left: int = 80) -> np.ndarray:
    """A 480 x 480 simulator array placed on a 480 x 640 screen, as scanners export."""
    out = np.zeros((480, 640, *array.shape[2:]), array.dtype)
    out[:, left : left + 480] = array
    return out


def write_rgb(path: Path, rgb: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


def doppler_frame(i: int):
    geometry = ("linear", "curvilinear")[i % 2]
    config = SimulatorConfig(size=480, geometry=geometry, screen_capture=True, doppler_probability=1.0)
    return simulate_frame(np.random.default_rng([17, i]), config)


def recoloured(frame) -> np.ndarray:
    """The screen with its flow shown in other colours (red and blue swapped): other luma, same flow pixels."""
    screen = frame.screen.copy()
    screen[frame.flow_mask] = screen[frame.flow_mask][:, ::-1]
    return screen


@pytest.fixture(scope="module")
def doppler_corpus(module_tmp):
    base = module_tmp("screens")
    frames = [doppler_frame(i) for i in range(SCREENS)]
    for i, frame in enumerate(frames):
        write_rgb(base / "root" / "doppler" / f"screen_{i}.png", on_screen(frame.screen))
        write_rgb(base / "root" / "recoloured" / f"screen_{i}.png", on_screen(recoloured(frame)))
    report = prepare_corpus(base / "root", base / "cache", CorpusOptions(size=SIZE, files_per_chunk=4))
    return base, frames, report


def cached(out: Path, row: dict) -> np.ndarray:
    return np.asarray(CorpusFrames(out, kept_only=False).frame(int(row["chunk"]), int(row["row"])))


def test_default_ingestion_removes_annotations_and_keeps_tissue(doppler_corpus):
    """Acceptance 1: ground truth pushed through the manifest's crop and the same resize."""
    base, frames, _ = doppler_corpus
    rows = manifest(base / "cache")
    annotation_pixels = annotation_cleared = 0
    for i, frame in enumerate(frames):
        (row,) = rows[f"doppler/screen_{i}.png"]
        x0, y0, x1, y1 = (int(v) for v in row["crop"].split())
        crop = (slice(y0, y1), slice(x0, x1))

        def square(array: np.ndarray, crop: tuple[slice, slice] = crop) -> np.ndarray:
            return fit_square(on_screen(array)[crop], SIZE).astype(np.int16)

        def coverage(mask: np.ndarray) -> np.ndarray:
            return square(mask.astype(np.uint8) * 255) / 255.0

        result = cached(base / "cache", row).astype(np.int16)
        as_annotated = square(frame.image)  # the screen's gray: what the cache held before de-annotation
        annotation = coverage(frame.annotation_mask & frame.fov_mask) >= 0.5
        tissue = coverage(frame.fov_mask & ~frame.annotation_mask & ~frame.flow_mask) >= 0.999
        assert annotation.sum() > 50 and tissue.sum() > 10_000
        annotation_pixels += int(annotation.sum())
        annotation_cleared += int((np.abs(result - as_annotated) > 10)[annotation].sum())
        tissue_changed = (np.abs(result - square(frame.bmode)) > 2)[tissue].mean()
        assert tissue_changed <= 0.01, (i, tissue_changed)
        assert float(row["annotation_fraction"]) > 0 and float(row["flow_fraction"]) > 0.005
    assert annotation_cleared / annotation_pixels >= 0.95


def test_colour_flow_never_reaches_the_cache_as_its_luma(doppler_corpus, tmp_path):
    """Flow shown in other colours (another luma) gives the same cached frame: the cache does not depend on the
    flow's colours at all. With --doppler keep it does, so the comparison can fail."""
    base, frames, _ = doppler_corpus
    rows = manifest(base / "cache")
    for i, frame in enumerate(frames):
        luma_a = cv2.cvtColor(frame.screen, cv2.COLOR_RGB2GRAY)[frame.flow_mask].astype(int)
        luma_b = cv2.cvtColor(recoloured(frame), cv2.COLOR_RGB2GRAY)[frame.flow_mask].astype(int)
        assert (np.abs(luma_a - luma_b) > 10).mean() > 0.5  # the two flows really differ in luma
        (a,), (b,) = rows[f"doppler/screen_{i}.png"], rows[f"recoloured/screen_{i}.png"]
        np.testing.assert_array_equal(cached(base / "cache", a), cached(base / "cache", b))
    keep = CorpusOptions(size=SIZE, doppler="keep", dedup_threshold=-1)
    prepare_corpus(base / "root", tmp_path / "keep", keep)
    kept_rows = manifest(tmp_path / "keep")
    a, b = kept_rows["doppler/screen_0.png"][0], kept_rows["recoloured/screen_0.png"][0]
    assert not np.array_equal(cached(tmp_path / "keep", a), cached(tmp_path / "keep", b))
    # without de-annotation (--deannotate false) the flow is still inpainted: it was kept as its luma, recorded as
    # no flow at all
    plain = CorpusOptions(size=SIZE, deannotate=False, dedup_threshold=-1)
    prepare_corpus(base / "root", tmp_path / "plain", plain)
    plain_rows = manifest(tmp_path / "plain")
    a, b = plain_rows["doppler/screen_0.png"][0], plain_rows["recoloured/screen_0.png"][0]
    np.testing.assert_array_equal(cached(tmp_path / "plain", a), cached(tmp_path / "plain", b))
    assert float(a["flow_fraction"]) == float(rows["doppler/screen_0.png"][0]["flow_fraction"]) > 0.005


def test_manifest_report_and_before_after_pairs_describe_the_cleaning(doppler_corpus):
    base, _, report = doppler_corpus
    entry = report["datasets"]["doppler"]
    assert entry["frames_with_flow"] == entry["frames_with_annotation"] == SCREENS
    assert 0 < entry["annotation_fraction_mean"] < 0.05 and 0.005 < entry["flow_fraction_mean"] < 0.2
    assert report["settings"]["deannotate"] is True and report["settings"]["doppler"] == "inpaint"
    rows = [r for rs in manifest(base / "cache").values() for r in rs]
    for r in rows:
        for key in ("frame", "view", "chunk", "row", "orig_height", "orig_width"):
            r[key] = int(r[key])
        r["keep"] = int(r["keep"])
    pairs = before_after_pairs(base / "root", base / "cache", rows, CorpusOptions(size=SIZE, files_per_chunk=4), 4)
    assert len(pairs) == 4
    for before, after, record in pairs:
        assert before.shape == after.shape == (SIZE, SIZE) and not np.array_equal(before, after)
        # "before" is the view as shown, its colour flow as gray: it showed the flow already inpainted
        screen = cv2.cvtColor(cv2.imread(str(base / "root" / record["source"])), cv2.COLOR_BGR2RGB)
        shown = prepare_views(screen, None, ViewOptions(size=SIZE, deannotate=False, doppler="keep"))
        np.testing.assert_array_equal(before, shown[record["view"]].pixels)
    assert cv2.imread(str(base / "cache" / "report.png")) is not None


@pytest.mark.parametrize("deannotate", [True, False])
def test_doppler_drop_leaves_out_frames_with_flow_with_the_reason(tmp_path, deannotate):
    """Also without de-annotation, which used to measure no flow and so drop nothing."""
    write_rgb(tmp_path / "root" / "mixed" / "flow.png", on_screen(doppler_frame(0).screen))
    plain = simulate_frame(np.random.default_rng([17, 99]), SimulatorConfig(size=480, screen_capture=True))
    write_rgb(tmp_path / "root" / "mixed" / "plain.png", on_screen(plain.screen))
    report = prepare_corpus(tmp_path / "root", tmp_path / "cache",
                            CorpusOptions(size=64, doppler="drop", deannotate=deannotate))
    rows = manifest(tmp_path / "cache")
    assert rows["mixed/flow.png"][0]["reason"] == "doppler_flow" and rows["mixed/flow.png"][0]["keep"] == "0"
    assert rows["mixed/plain.png"][0]["keep"] == "1"
    assert report["removed"] == {"doppler_flow": 1}


def side_by_side(seed: int):
    """A dual-view screen: two simulated screens next to each other (960 x 480), and their fields of view."""
    config = SimulatorConfig(size=480, screen_capture=True)
    left, right = (simulate_frame(np.random.default_rng([seed, k]), config) for k in range(2))
    return np.hstack([left.screen, right.screen]), np.hstack([left.fov_mask, np.zeros_like(left.fov_mask)]), \
        np.hstack([np.zeros_like(right.fov_mask), right.fov_mask])


def bbox(mask: np.ndarray) -> tuple[int, int, int, int]:
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def assert_crop_hugs(crop: str, truth: tuple[int, int, int, int], tolerance: int = 8) -> None:
    found = [int(v) for v in crop.split()]
    assert max(abs(a - b) for a, b in zip(found, truth)) <= tolerance, (found, truth)


def test_side_by_side_screen_gives_one_frame_per_view(tmp_path):
    """Acceptance 2 (screens without DICOM regions); a single-view screen still gives one frame."""
    screen, left_fov, right_fov = side_by_side(5)
    write_rgb(tmp_path / "root" / "dual" / "dual.png", screen)
    write_rgb(tmp_path / "root" / "dual" / "single.png", on_screen(doppler_frame(1).screen))
    prepare_corpus(tmp_path / "root", tmp_path / "cache", CorpusOptions(size=64))
    rows = manifest(tmp_path / "cache")
    assert [r["view"] for r in rows["dual/dual.png"]] == ["0", "1"]
    assert_crop_hugs(rows["dual/dual.png"][0]["crop"], bbox(left_fov))
    assert_crop_hugs(rows["dual/dual.png"][1]["crop"], bbox(right_fov))
    assert len(rows["dual/single.png"]) == 1
    off = prepare_corpus(tmp_path / "root", tmp_path / "off", CorpusOptions(size=64, split_views=False))
    assert off["frames"] == 2


def test_quad_screen_gives_one_frame_per_view(tmp_path):
    """A 2 x 2 quad-view screen (views 16 px apart): four frames, each crop holding its own view's whole field of
    view and no part of another's. Before, each column's box kept the screen's full height, so the two views of a
    column were cached as one frame."""
    config = SimulatorConfig(size=240, screen_capture=True)
    frames = [simulate_frame(np.random.default_rng([9, k]), config) for k in range(4)]
    cells = [np.pad(frame.screen, ((8, 8), (8, 8), (0, 0))) for frame in frames]
    write_rgb(tmp_path / "root" / "quad" / "quad.png", np.vstack([np.hstack(cells[:2]), np.hstack(cells[2:])]))
    prepare_corpus(tmp_path / "root", tmp_path / "cache", CorpusOptions(size=64))
    rows = manifest(tmp_path / "cache")["quad/quad.png"]
    assert [r["view"] for r in rows] == ["0", "1", "2", "3"]
    truths = []  # each view's field of view on the screen, in the manifest's order: column by column, top to bottom
    for k in (0, 2, 1, 3):
        x0, y0, x1, y1 = bbox(frames[k].fov_mask)
        dx, dy = 8 + 256 * (k % 2), 8 + 256 * (k // 2)
        truths.append((x0 + dx, y0 + dy, x1 + dx, y1 + dy))
    for index, row in enumerate(rows):
        cx0, cy0, cx1, cy1 = (int(v) for v in row["crop"].split())
        x0, y0, x1, y1 = truths[index]
        assert cx0 <= x0 + 2 and cy0 <= y0 + 2 and cx1 >= x1 - 2 and cy1 >= y1 - 2, (row["crop"], truths[index])
        for other, (ox0, oy0, ox1, oy1) in enumerate(truths):
            overlap = min(cx1, ox1) > max(cx0, ox0) and min(cy1, oy1) > max(cy0, oy0)
            assert other == index or not overlap, (row["crop"], other)


def test_two_region_dicom_gives_one_frame_per_tissue_region(tmp_path):
    """Acceptance 2: two B-mode regions and a spectral-Doppler strip in SequenceOfUltrasoundRegions."""
    import pydicom
    from pydicom.dataset import Dataset

    from monai_ext.io.writers import write_dicom_frames

    screen, left_fov, right_fov = side_by_side(9)
    gray = cv2.cvtColor(screen, cv2.COLOR_RGB2GRAY)
    path = tmp_path / "root" / "echo" / "dual.dcm"
    path.parent.mkdir(parents=True)
    write_dicom_frames(gray[None], path, region_box=(0, 0, 480, 480))
    ds = pydicom.dcmread(path)
    for (x0, x1), spatial, data_type in (((480, 960), 1, 1), ((0, 960), 3, 3)):
        region = Dataset()
        region.RegionSpatialFormat, region.RegionDataType, region.RegionFlags = spatial, data_type, 0
        region.RegionLocationMinX0, region.RegionLocationMinY0 = x0, 0 if spatial == 1 else 400
        region.RegionLocationMaxX1, region.RegionLocationMaxY1 = x1 - 1, 479
        ds.SequenceOfUltrasoundRegions.append(region)
    ds.save_as(path)
    prepare_corpus(tmp_path / "root", tmp_path / "cache", CorpusOptions(size=64))
    rows = manifest(tmp_path / "cache")["echo/dual.dcm"]
    assert [r["view"] for r in rows] == ["0", "1"]
    assert_crop_hugs(rows[0]["crop"], bbox(left_fov))
    assert_crop_hugs(rows[1]["crop"], bbox(right_fov))


def test_a_region_off_the_frame_does_not_stop_the_ingestion(tmp_path):
    """A de-identification tool cropped the pixels but kept SequenceOfUltrasoundRegions: the region lies right of the
    frame. The empty crop it gave crashed the process inside OpenCV (no file named, nothing cached); now the view is
    detected on the whole frame and the report names the file and the region."""
    from monai_ext.io.writers import write_dicom_frames

    frame = simulate_frame(np.random.default_rng(5), SimulatorConfig(size=128)).image
    root = tmp_path / "root" / "site"
    root.mkdir(parents=True)
    write_dicom_frames(frame[None], root / "cropped.dcm", region_box=(200, 10, 300, 100))
    cv2.imwrite(str(root / "plain.png"), frame)
    prepare_corpus(tmp_path / "root", tmp_path / "cache", CorpusOptions(size=64))
    rows = manifest(tmp_path / "cache")
    assert sorted(rows) == ["site/cropped.dcm", "site/plain.png"]
    assert rows["site/cropped.dcm"][0]["crop"] == rows["site/plain.png"][0]["crop"]  # the same field of view found
    report = json.loads((tmp_path / "cache" / "report.json").read_text())
    notes = {entry["source"]: entry["warnings"] for entry in report["reader_warnings"]}
    assert list(notes) == ["site/cropped.dcm"]
    assert "ultrasound region (200, 10, 300, 100) lies outside the 128x128 frame" in notes["site/cropped.dcm"][0]
    # named under the root, as skip reasons are: the report travels with the cache (it held the absolute path)
    assert notes["site/cropped.dcm"][0].startswith("site/cropped.dcm: ") and str(tmp_path) not in str(notes)


def test_a_failure_on_one_file_is_a_named_skip_and_the_batch_goes_on(tmp_path, monkeypatch):
    """An error no reader foresaw (here OpenCV's, on one file's pixels) skips that file with the reason and keeps
    the rest; raised, it stopped the run."""
    import monai_ext.data.corpus as corpus

    images = {name: simulate_frame(np.random.default_rng(seed), SimulatorConfig(size=96)).image
              for seed, name in enumerate(("a.png", "b.png", "c.png"))}
    root = tmp_path / "root" / "site"
    root.mkdir(parents=True)
    for name, image in images.items():
        cv2.imwrite(str(root / name), image)
    prepare = corpus.prepare_views

    def fails_on_b(pixels, region_box, options):
        if not np.isclose(pixels.mean(), images["b.png"].mean()):
            return prepare(pixels, region_box, options)
        raise cv2.error("OpenCV(4.x) error: (-215:Assertion failed) !_src.empty()")

    monkeypatch.setattr(corpus, "prepare_views", fails_on_b)
    prepare_corpus(tmp_path / "root", tmp_path / "cache", CorpusOptions(size=64, dedup_threshold=-1))
    assert sorted(manifest(tmp_path / "cache")) == ["site/a.png", "site/c.png"]
    report = json.loads((tmp_path / "cache" / "report.json").read_text())
    assert report["skipped_files"] == [{"source": "site/b.png", "reason": "site/b.png: error: OpenCV(4.x) error: "
                                        "(-215:Assertion failed) !_src.empty()"}]


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


def test_frames_without_signal_are_dropped_with_the_reason(tmp_path):
    folder = tmp_path / "root" / "blank"
    folder.mkdir(parents=True)
    cv2.imwrite(str(folder / "black.png"), np.zeros((240, 320), np.uint8))
    flat = np.full((240, 320), 128, np.uint8) + np.random.default_rng(0).integers(0, 2, (240, 320), np.uint8)
    cv2.imwrite(str(folder / "flat.png"), flat)
    cv2.imwrite(str(folder / "scan.png"), simulate_frame(3, SimulatorConfig(size=240)).image)
    report = prepare_corpus(tmp_path / "root", tmp_path / "cache", CorpusOptions(size=64))
    rows = manifest(tmp_path / "cache")
    assert rows["blank/black.png"][0]["reason"] == rows["blank/flat.png"][0]["reason"] == "no_signal"
    assert rows["blank/scan.png"][0]["keep"] == "1"
    assert report["removed"] == {"no_signal": 2}
    assert json.loads((tmp_path / "cache" / "report.json").read_text())["kept"] == 1


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


@pytest.mark.parametrize("gap", [2, 6])
def test_a_full_height_dark_column_with_noise_inside_a_view_does_not_split_it(gap):
    """A shadow or a dead element down the whole view is dark, not the screen's black: it keeps its gain's noise,
    and two 'views' cut at it would be halves of one."""
    screen, _ = dual_screen((960, 480), gap)
    top, height, left = 480 // 8, 480 * 3 // 4, 40 + (960 - gap - 80) // 2
    noise = np.random.default_rng(3).integers(3, 10, (height, gap)).astype(np.uint8)  # under the FOV threshold
    screen[top : top + height, left : left + gap] = noise
    assert len(prepare_views(screen, None, ViewOptions(size=64))) == 1
