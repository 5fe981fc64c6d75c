"""PNG files (io/figures.py): save_png round-trips an array through cv2.imread, save_figure writes the figure and
closes it; both write atomically (a failed replace keeps the earlier file and leaves no temporary file) and create
missing parent folders."""

from __future__ import annotations

import cv2
import matplotlib
import numpy as np
import pytest

from monai_ext.io import atomic
from monai_ext.io.figures import save_figure, save_png

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - after the headless backend is chosen


def test_a_gray_array_round_trips(tmp_path) -> None:
    image = np.arange(48 * 64, dtype=np.uint32).reshape(48, 64).astype(np.uint8)
    save_png(image, tmp_path / "gray.png")
    np.testing.assert_array_equal(cv2.imread(str(tmp_path / "gray.png"), cv2.IMREAD_UNCHANGED), image)


def test_an_rgb_array_round_trips_in_rgb_order(tmp_path) -> None:
    image = np.zeros((8, 10, 3), np.uint8)
    image[..., 0] = 200  # red: cv2 reads it back as BGR
    save_png(image, tmp_path / "red.png")
    np.testing.assert_array_equal(cv2.imread(str(tmp_path / "red.png"))[..., ::-1], image)


def _failing_replace(monkeypatch) -> None:
    def replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(atomic.os, "replace", replace)


def test_a_failed_write_keeps_the_earlier_png_and_leaves_no_temporary_file(tmp_path, monkeypatch) -> None:
    path = tmp_path / "out.png"
    path.write_bytes(b"earlier")
    _failing_replace(monkeypatch)
    with pytest.raises(OSError, match="disk full"):
        save_png(np.zeros((4, 4), np.uint8), path)
    assert path.read_bytes() == b"earlier" and list(tmp_path.iterdir()) == [path]


def test_a_failed_write_keeps_the_earlier_figure_and_leaves_no_temporary_file(tmp_path, monkeypatch) -> None:
    path = tmp_path / "figure.png"
    path.write_bytes(b"earlier")
    _failing_replace(monkeypatch)
    fig = plt.figure(figsize=(1, 1), dpi=20)
    with pytest.raises(OSError, match="disk full"):
        save_figure(fig, path)
    assert path.read_bytes() == b"earlier" and list(tmp_path.iterdir()) == [path]


def test_a_figure_is_written_and_closed(tmp_path) -> None:
    fig, ax = plt.subplots(figsize=(2, 1), dpi=50)
    ax.imshow(np.ones((4, 4)), cmap="gray")
    number = fig.number
    save_figure(fig, tmp_path / "figure.png")
    read = cv2.imread(str(tmp_path / "figure.png"))
    # cropped to what is drawn (bbox_inches="tight"): the 100x50 canvas less its empty margins, plus the padding
    assert read is not None and read.ndim == 3 and read.shape[0] <= 60 and read.shape[1] < 100
    assert not plt.fignum_exists(number)
    assert [p.name for p in tmp_path.iterdir()] == ["figure.png"]  # no temporary file left beside it


def test_missing_parent_folders_are_created(tmp_path) -> None:
    path = tmp_path / "run" / "figures" / "x.png"
    save_png(np.full((3, 3), 9, np.uint8), path)
    assert cv2.imread(str(path), cv2.IMREAD_UNCHANGED).tolist() == [[9] * 3] * 3
    fig = plt.figure(figsize=(1, 1), dpi=20)
    save_figure(fig, tmp_path / "more" / "fig.png")
    assert cv2.imread(str(tmp_path / "more" / "fig.png")) is not None
