"""Non-square pixels (PixelAspectRatio, unequal PixelSpacing or ultrasound region deltas) are resampled to square
ones, and the ultrasound regions with them, against OpenCV's linear resize of the frames as written."""

from __future__ import annotations

import json
import subprocess
import warnings
from pathlib import Path

import cv2
import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset

from monai_ext.data.frames import iter_frames
from monai_ext.io.dicom import iter_dicom_frames, read_dicom, ultrasound_region_box, ultrasound_region_boxes
from monai_ext.io.images import read_image
from monai_ext.io.writers import write_dicom_frames, write_dicom_values

REPO = Path(__file__).resolve().parents[2]
ROWS, COLS = 40, 60  # JPEG 2000's encoder needs 32 pixels a side
REGION = (4, 6, 28, 18)  # (x0, y0, x1, y1), exclusive ends, on the stored 60x40 grid


def scene(count: int = 3, colour: bool = False) -> np.ndarray:
    """(N, 40, 60) uint8 frames with detail on both axes and a bright block inside :data:`REGION` (N, 40, 60, 3
    where ``colour``), each frame other than the one before."""
    rng = np.random.default_rng(7)
    frames = rng.integers(0, 200, (count, ROWS, COLS, 3) if colour else (count, ROWS, COLS)).astype(np.uint8)
    frames[:, 8:14, 10:20] = 255
    return frames


def with_attributes(path: Path, **attributes: object) -> Path:
    """Set DICOM attributes of the file at ``path`` (a value of None deletes one)."""
    ds = pydicom.dcmread(path)
    for name, value in attributes.items():
        if value is None:
            delattr(ds, name)
        else:
            setattr(ds, name, value)
    ds.save_as(path)
    return path


def reference(frames: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Each frame resized by OpenCV to rows x cols with linear interpolation (half-pixel centres, as the reader)."""
    return np.stack([cv2.resize(frame, (cols, rows), interpolation=cv2.INTER_LINEAR) for frame in frames])


def read_quietly(path: Path) -> tuple[list[np.ndarray], list[tuple[int, int, int, int]], list[str]]:
    """(frames, region boxes, warnings) as :func:`read_dicom` and :func:`iter_dicom_frames` give them."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = read_dicom(path)
        frames = [pixels for _, pixels in iter_dicom_frames(ds, str(path))]
        boxes = ultrasound_region_boxes(ds)
    return frames, boxes, [str(w.message) for w in caught]


# (PixelAspectRatio, resampled rows x cols, region box on the resampled grid: worked out by hand)
TALL = ([2, 1], (80, 60), (4, 12, 28, 36))   # pixels twice as tall as wide: twice the rows
WIDE = ([1, 2], (40, 120), (8, 6, 56, 18))    # twice as wide as tall: twice the columns


@pytest.mark.filterwarnings("ignore:.*its pixels are not square")
@pytest.mark.parametrize("syntax", ["explicit", "rle", "jpeg2000"])
@pytest.mark.parametrize("ratio, shape, box", [TALL, WIDE], ids=["2-1", "1-2"])
def test_non_square_pixels_are_resampled_along_the_coarser_axis_with_their_region(tmp_path, syntax, ratio, shape,
                                                                                  box) -> None:
    """A 2\\1 image was drawn and fed to the model squashed to half its height, its region box with it."""
    frames = scene()
    path = with_attributes(write_dicom_frames(frames, tmp_path / "loop.dcm", transfer_syntax=syntax,
                                              region_box=REGION), PixelAspectRatio=ratio)
    got, boxes, _ = read_quietly(path)
    expected = reference(frames, *shape)
    assert [frame.shape for frame in got] == [shape] * 3
    assert np.abs(np.stack(got).astype(int) - expected).max() <= 1  # OpenCV rounds uint8 in fixed point
    assert boxes == [box]
    x0, y0, x1, y1 = box  # the bright block stays inside the region, as on the stored grid
    assert np.stack(got)[:, y0:y1, x0:x1].max() == 255 and (np.stack(got)[:, :y0] < 255).all()
    # the single-image loaders and corpus ingestion take the same pixels and box
    image = read_image(path)
    assert image.pixels.shape == shape and image.region_box == box == ultrasound_region_box(read_dicom(path))
    np.testing.assert_array_equal(image.pixels, got[0])
    corpus = list(iter_frames(path))
    assert [(frame.index, frame.region_box, frame.pixels.shape) for frame in corpus] == [(k, box, shape)
                                                                                         for k in range(3)]


def test_colour_frames_are_resampled_by_a_ratio_that_is_no_whole_number(tmp_path) -> None:
    frames = scene(2, colour=True)
    path = with_attributes(write_dicom_frames(frames, tmp_path / "colour.dcm", "RGB", region_box=REGION),
                           PixelAspectRatio=[4, 5])  # a pixel 4 high, 5 wide: 60 columns become 75
    got, boxes, _ = read_quietly(path)
    assert [frame.shape for frame in got] == [(40, 75, 3)] * 2
    assert np.abs(np.stack(got).astype(int) - reference(frames, 40, 75)).max() <= 1
    assert boxes == [(5, 6, 35, 18)]  # 4 * 1.25 = 5, 28 * 1.25 = 35


def test_deep_frames_keep_their_float_display_values(tmp_path) -> None:
    values = (np.arange(ROWS * COLS, dtype=np.uint16).reshape(ROWS, COLS) * 6) % 4096
    path = with_attributes(write_dicom_values(values, tmp_path / "deep.dcm", bits_stored=12), PixelAspectRatio=[2, 1])
    got, _, _ = read_quietly(path)
    shown = (values - values.min()) / float(values.max() - values.min())  # a 12-bit frame over the values it holds
    assert got[0].dtype == np.float32
    np.testing.assert_allclose(got[0], reference(shown.astype(np.float32)[None], 80, 60)[0], atol=1e-5)


def test_the_resampling_is_said_once_naming_the_file(tmp_path) -> None:
    path = with_attributes(write_dicom_frames(scene(), tmp_path / "said.dcm"), PixelAspectRatio=[2, 1])
    _, _, caught = read_quietly(path)
    assert caught == [f"{path}: its pixels are not square (PixelAspectRatio 2\\1: 2 times as tall as wide); its frames "
                      "are resampled from 40x60 to 80x60 (rows x columns), its ultrasound regions with them"]


def non_numeric(path: Path) -> Path:
    """The file with PixelAspectRatio "ab\\cd" (pydicom refuses to write it, so its bytes are edited)."""
    with_attributes(path, PixelAspectRatio=[97, 97])
    data = path.read_bytes()
    path.write_bytes(data.replace(b"97\\97", b"ab\\cd"))
    return path


@pytest.mark.parametrize("value, said", [
    ([0, 4], "PixelAspectRatio 0\\4 is not two positive numbers (row \\ column); ignored"),
    ([-1, 2], "PixelAspectRatio -1\\2 is not two positive numbers (row \\ column); ignored"),
    (5, "PixelAspectRatio 5 is not two positive numbers (row \\ column); ignored"),
    ("non-numeric", "PixelAspectRatio ab\\cd is not two positive numbers (row \\ column); ignored"),
    ([20, 1], "PixelAspectRatio 20\\1 makes pixels 20 times as tall as wide, beyond 10 either way: taken for a "
              "writer's error, the frames are kept as stored"),
])
def test_a_malformed_ratio_is_ignored_with_a_warning_naming_the_file(tmp_path, value, said) -> None:
    frames = scene()
    path = write_dicom_frames(frames, tmp_path / "bad.dcm", region_box=REGION)
    path = non_numeric(path) if value == "non-numeric" else with_attributes(path, PixelAspectRatio=value)
    got, boxes, caught = read_quietly(path)
    np.testing.assert_array_equal(np.stack(got), frames)
    assert boxes == [REGION]
    assert f"{path}: {said}" in caught


def ultrasound_region(dy: float, dx: float, units: int = 3) -> Dataset:
    """A 2-D tissue region over :data:`REGION` calibrated dy (rows) by dx (columns) in ``units`` (3: cm)."""
    region = Dataset()
    region.RegionSpatialFormat, region.RegionDataType, region.RegionFlags = 1, 1, 0
    region.RegionLocationMinX0, region.RegionLocationMinY0 = REGION[0], REGION[1]
    region.RegionLocationMaxX1, region.RegionLocationMaxY1 = REGION[2] - 1, REGION[3] - 1
    region.PhysicalUnitsXDirection = region.PhysicalUnitsYDirection = units
    region.PhysicalDeltaX, region.PhysicalDeltaY = dx, dy
    return region


@pytest.mark.parametrize("attributes, shape, said", [
    ({"PixelSpacing": [0.2, 0.1]}, (80, 60), "PixelSpacing 0.2\\0.1"),
    ({"SequenceOfUltrasoundRegions": [ultrasound_region(0.01, 0.02)]}, (40, 120),
     "ultrasound region PhysicalDeltaY\\X 0.01\\0.02"),
    # two regions calibrated alike (a dual view): one aspect
    ({"SequenceOfUltrasoundRegions": [ultrasound_region(0.02, 0.01), ultrasound_region(0.04, 0.02)]}, (80, 60),
     "ultrasound region PhysicalDeltaY\\X 0.02\\0.01"),
])
def test_pixel_spacing_or_region_deltas_give_the_aspect_where_no_ratio_does(tmp_path, attributes, shape, said) -> None:
    frames = scene()
    path = with_attributes(write_dicom_frames(frames, tmp_path / "spacing.dcm"), **attributes)
    got, _, caught = read_quietly(path)
    np.testing.assert_allclose(np.stack(got), reference(frames, *shape), atol=1)
    assert any(message.startswith(f"{path}: its pixels are not square ({said}:") for message in caught), caught


@pytest.mark.parametrize("attributes, note", [
    # PixelSpacing first (the physical spacing, as viewers read it); the contradiction is said
    ({"PixelSpacing": [0.1, 0.1], "PixelAspectRatio": [2, 1]},
     "PixelSpacing 0.1\\0.1 and PixelAspectRatio 2\\1 disagree on the pixels' aspect; PixelSpacing 0.1\\0.1 is used"),
    # dual-view regions of different aspects: one resampling of the frame cannot square both
    ({"SequenceOfUltrasoundRegions": [ultrasound_region(0.02, 0.01), ultrasound_region(0.01, 0.01)]},
     "its ultrasound regions differ in their pixels' aspect (ultrasound region PhysicalDeltaY\\X 0.02\\0.01, "
     "ultrasound region PhysicalDeltaY\\X 0.01\\0.01); none is used"),
    ({"SequenceOfUltrasoundRegions": [ultrasound_region(0.0, 0.01)]},
     "an ultrasound region's PhysicalDeltaY\\X 0.0\\0.01 is not two positive numbers; ignored"),
])
def test_contradicting_or_unusable_aspects_leave_the_frames_as_stored_and_say_why(tmp_path, attributes, note) -> None:
    frames = scene()
    path = with_attributes(write_dicom_frames(frames, tmp_path / "contradiction.dcm"), **attributes)
    got, _, caught = read_quietly(path)
    np.testing.assert_array_equal(np.stack(got), frames)
    assert f"{path}: {note}" in caught


@pytest.mark.parametrize("attributes", [
    {"PixelAspectRatio": [1, 1]}, {"PixelAspectRatio": [3, 3]}, {"PixelSpacing": [0.1, 0.1]},
    {"PixelAspectRatio": [101, 100]},  # 40 rows * 1.01 = 40.4: within half a pixel of square
    {"PixelSpacing": [0.1015, 0.1]},  # 40.6 rows, but 1.5 % off square: a calibration's rounding, not a shape
    {"SequenceOfUltrasoundRegions": [ultrasound_region(0.02, 0.01, units=4)]},  # seconds (M-mode-like): no spacing
])
def test_square_pixels_are_left_as_stored_without_a_word(tmp_path, attributes) -> None:
    frames = scene()
    path = with_attributes(write_dicom_frames(frames, tmp_path / "square.dcm", region_box=REGION), **attributes)
    got, boxes, caught = read_quietly(path)
    np.testing.assert_array_equal(np.stack(got), frames)
    assert caught == [] and (boxes == [REGION] or "SequenceOfUltrasoundRegions" in attributes)


RESAMPLED_SHAPES = """
import json, sys, warnings
from monai_ext.io.images import read_image
warnings.simplefilter("ignore")
image = read_image(sys.argv[1])
print(json.dumps([list(image.pixels.shape), list(image.region_box), float(image.pixels.astype(float).sum())]))
"""


@pytest.mark.slow
def test_monai_label_environment_resamples_alike(label_python, tmp_path) -> None:
    """MONAI Label (pydicom 2.4) serves the model the same square pixels and region as training read."""
    path = with_attributes(write_dicom_frames(scene(), tmp_path / "served.dcm", transfer_syntax="rle",
                                              region_box=REGION), PixelAspectRatio=[2, 1])
    result = subprocess.run([str(label_python), "-c", RESAMPLED_SHAPES, str(path)], check=False, cwd=REPO,
                            env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        main = read_image(path)
    assert json.loads(result.stdout) == [[80, 60], [4, 12, 28, 36], float(main.pixels.astype(float).sum())]


def test_an_ultrasound_images_regions_outrank_a_placeholder_pixel_spacing(tmp_path) -> None:
    """Converters write PixelSpacing 1\\1 into ultrasound files, where the regions' deltas are the calibration: the
    placeholder outranked them and the frames were kept stretched. Attributes that agree within the square tolerance
    are not said to disagree."""
    frames = scene()
    path = with_attributes(write_dicom_frames(frames, tmp_path / "us.dcm"), PixelSpacing=[1, 1],
                           SequenceOfUltrasoundRegions=[ultrasound_region(0.02, 0.01)])
    got, _, caught = read_quietly(path)
    np.testing.assert_allclose(np.stack(got), reference(frames, 80, 60), atol=1)
    assert any("ultrasound region PhysicalDeltaY\\X 0.02\\0.01 and PixelSpacing 1.0\\1.0 disagree" in m for m in caught)
    near = with_attributes(write_dicom_frames(frames, tmp_path / "near.dcm"), PixelSpacing=[0.1, 0.1],
                           SequenceOfUltrasoundRegions=[ultrasound_region(0.01015, 0.01)])
    got, _, caught = read_quietly(near)
    np.testing.assert_array_equal(np.stack(got), frames)
    assert caught == []
