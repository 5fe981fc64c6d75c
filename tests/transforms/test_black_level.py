"""Raised black levels: monai_ext/transforms/black_level.py on hand-made frames (whole screens through the corpus:
tests/data/test_views.py and tests/data/test_corpus_views.py)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from monai_ext.transforms.black_level import black_level, black_lut, is_video_range, restore_black


def screen(black: int, tissue_share: float = 0.5, top: int = 235, seed: int = 0) -> np.ndarray:
    """(120, 160) uint8: a flat black of ``black`` around a block of tissue (levels black+20 to ``top``) covering
    ``tissue_share`` of the rows."""
    rng = np.random.default_rng(seed)
    gray = np.full((120, 160), black, np.uint8)
    rows = int(120 * tissue_share)
    gray[:rows, 20:140] = rng.integers(black + 20, top + 1, (rows, 120))
    return gray


def jpeg(gray: np.ndarray, quality: int) -> np.ndarray:
    return cv2.imdecode(cv2.imencode(".jpg", gray, [cv2.IMWRITE_JPEG_QUALITY, quality])[1], cv2.IMREAD_GRAYSCALE)


@pytest.mark.parametrize("black", [0, 4, 8, 16, 20])
def test_a_flat_black_is_found_at_its_level(black) -> None:
    assert black_level(screen(black)) == black


@pytest.mark.parametrize("black, quality", [(8, 75), (16, 60), (16, 95)])
def test_a_jpeg_black_spread_over_a_few_levels_is_found_near_its_level(black, quality) -> None:
    assert abs(black_level(jpeg(screen(black), quality)) - black) <= 1


@pytest.mark.parametrize("frame", [
    np.random.default_rng(1).integers(4, 41, (120, 160)).astype(np.uint8),  # dark tissue: a slope, not one level
    screen(24),  # brighter than a black: a vendor's gray interface
    np.zeros((0, 0), np.uint8),
])
def test_no_black_level_where_there_is_no_flat_dark_background(frame) -> None:
    """A gray interface at 24 or 30 was taken for a raised black and subtracted: the tissue lost a third of its level
    and the cysts' edges went to 0."""
    assert black_level(frame) == 0


@pytest.mark.parametrize("black, top, expected", [(16, 235, True), (16, 255, False), (17, 230, True), (8, 200, False)])
def test_video_range_is_black_16_with_nothing_above_its_white(black, top, expected) -> None:
    frame = screen(black, top=top)
    frame[0, 20] = top  # the brightest level present
    assert is_video_range(frame, black) is expected


def test_the_lookup_tables_bring_black_to_0_and_video_white_to_255() -> None:
    video, raised = black_lut(16, True), black_lut(8, False)
    assert (video[16], video[235], video[255]) == (0, 255, 255) and video[125] == round((125 - 16) * 255 / 219)
    assert (raised[8], raised[0], raised[255]) == (0, 0, 247)


def test_restore_black_treats_every_channel_alike_and_reports_what_it_did() -> None:
    gray = screen(16)
    rgb = np.stack([gray, gray, gray], -1)
    rgb[5:10, 30:40] = (200, 40, 40)  # a red mark keeps its colour
    restored, restored_gray, level, video_range = restore_black(rgb, cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))
    lut = black_lut(16, True)
    assert (level, video_range) == (16, True) and np.array_equal(restored, lut[rgb])
    assert np.array_equal(restored_gray, cv2.cvtColor(restored, cv2.COLOR_RGB2GRAY)) and restored_gray.max() <= 255
