"""Cine loops (AVI, MP4) as display-ready frames, decoded by OpenCV."""

from __future__ import annotations

import os
from collections.abc import Iterator

import cv2
import numpy as np

from monai_ext.io.errors import UnreadableImageError

__all__ = ["VIDEO_SUFFIXES", "iter_video_frames"]

VIDEO_SUFFIXES = (".avi", ".mp4")


def iter_video_frames(path: str | os.PathLike, frame_stride: int = 1,
                      colour: bool = False) -> Iterator[tuple[int, np.ndarray]]:
    """(index, (H, W) uint8 BT.601 luma frame) for every ``frame_stride``-th frame, or (H, W, 3) uint8 RGB with
    ``colour``; raises UnreadableImageError when OpenCV cannot open the file or it has no decodable frame.
    (OpenCV's BGR-to-gray is the luma that :func:`monai_ext.io.display.to_gray_uint8` takes of RGB, done in one
    step.)"""
    if frame_stride < 1:
        raise ValueError(f"frame_stride must be at least 1, got {frame_stride!r}")
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise UnreadableImageError(f"{path}: OpenCV cannot open the video")
    try:
        index = 0
        while True:
            ok, bgr = capture.read()
            if not ok:
                break
            if index % frame_stride == 0:
                yield index, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB if colour else cv2.COLOR_BGR2GRAY)
            index += 1
        if index == 0:
            raise UnreadableImageError(f"{path}: video has no decodable frames")
    finally:
        capture.release()
