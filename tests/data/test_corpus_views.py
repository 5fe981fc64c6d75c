"""prepare-corpus on scanner screens (issue #17): de-annotation at ingestion against the simulator's ground truth,
colour Doppler policies, several views per screen, frames without signal, one file's failure a named skip. The views
of one frame (data/views.py) are tested in test_views.py."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from monai_ext.data.corpus import (
    MANIFEST_COLUMNS,
    CorpusFrames,
    CorpusOptions,
    before_after_pairs,
    fit_square,
    prepare_corpus,
    process_file,
)
from monai_ext.data.synthetic import SimulatorConfig, simulate_frame
from monai_ext.data.views import ViewOptions, prepare_views
from tests.data.screens import assert_crop_hugs, on_screen

SIZE = 256
SCREENS = 6


def manifest(out: Path) -> dict[str, list[dict]]:
    """Manifest rows by source, in view order."""
    rows: dict[str, list[dict]] = {}
    with open(out / "manifest.csv", newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            rows.setdefault(row["source"], []).append(row)
    return rows


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


def test_a_video_range_capture_is_cached_as_its_full_range_screen(tmp_path):
    """A frame grabber's limited-range capture (black 16, white 235) was cropped to the whole screen: its records
    now name the black level brought to 0, and its crop and cached frame are those of the full-range screen."""
    frame = simulate_frame(np.random.default_rng([53, 0]), SimulatorConfig(size=SIZE, screen_capture=True))
    video = np.clip(np.round(frame.screen * (219 / 255) + 16), 0, 255).astype(np.uint8)
    for name, screen in (("full.png", frame.screen), ("video.png", video)):
        write_rgb(tmp_path / "root" / "grabber" / name, screen)
    options = CorpusOptions(size=64)
    (full,), (full_record,), _ = process_file(tmp_path / "root" / "grabber" / "full.png", tmp_path / "root", options)
    (cached,), (record,), _ = process_file(tmp_path / "root" / "grabber" / "video.png", tmp_path / "root", options)
    assert (record["black_level"], record["video_range"]) == (16, True)
    assert (full_record["black_level"], full_record["video_range"]) == (0, False)
    assert {"black_level", "video_range"} <= set(MANIFEST_COLUMNS)
    assert record["crop"] == full_record["crop"]
    assert np.abs(cached.astype(int) - full).mean() <= 0.5
