"""PNG files (io/figures.py): save_png round-trips an array through cv2.imread, save_figure writes the figure and
closes it; both write atomically (nothing half-written left when encoding fails, an earlier file kept) and create
missing parent folders."""

from __future__ import annotations

import cv2
import matplotlib
import numpy as np
import pytest

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


def test_a_failed_encoding_leaves_nothing_and_keeps_an_earlier_file(tmp_path) -> None:
    path = tmp_path / "out.png"
    with pytest.raises((TypeError, ValueError)):
        save_png(np.zeros((4, 4, 7), np.uint8), path)  # 7 channels: no PNG mode
    assert list(tmp_path.iterdir()) == []
    path.write_bytes(b"earlier")
    with pytest.raises((TypeError, ValueError)):
        save_png(np.zeros((4, 4, 7), np.uint8), path)
    assert path.read_bytes() == b"earlier" and list(tmp_path.iterdir()) == [path]


def test_a_figure_is_written_and_closed(tmp_path) -> None:
    fig, ax = plt.subplots(figsize=(2, 1), dpi=50)
    ax.imshow(np.ones((4, 4)), cmap="gray")
    number = fig.number
    save_figure(fig, tmp_path / "figure.png")
    read = cv2.imread(str(tmp_path / "figure.png"))
    assert read is not None and read.shape == (50, 100, 3)
    assert not plt.fignum_exists(number)
    assert [p.name for p in tmp_path.iterdir()] == ["figure.png"]  # no temporary file left beside it


def test_missing_parent_folders_are_created(tmp_path) -> None:
    path = tmp_path / "run" / "figures" / "x.png"
    save_png(np.full((3, 3), 9, np.uint8), path)
    assert cv2.imread(str(path), cv2.IMREAD_UNCHANGED).tolist() == [[9] * 3] * 3
    fig = plt.figure(figsize=(1, 1), dpi=20)
    save_figure(fig, tmp_path / "more" / "fig.png")
    assert cv2.imread(str(tmp_path / "more" / "fig.png")) is not None
