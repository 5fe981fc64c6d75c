"""Cine loops (AVI, MP4, MOV, MKV, WebM, WMV, MPEG) as display-ready frames, decoded by OpenCV's FFmpeg."""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from typing import BinaryIO

import cv2
import numpy as np

from monai_ext.io.dicom import MAX_PIXEL_ASPECT, SQUARE_TOLERANCE
from monai_ext.io.errors import UnreadableImageError
from monai_ext.io.once import warn_once

__all__ = ["VIDEO_SUFFIXES", "iter_video_frames", "square_pixel_shape", "video_frame_count"]

VIDEO_SUFFIXES = (".avi", ".mp4", ".m4v", ".mov", ".mkv", ".webm", ".wmv", ".mpg", ".mpeg")
#: Containers whose frame count FFmpeg reads from the file (AVI's header, MP4/QuickTime's sample table): a loop that
#: decodes fewer frames was cut short. Matroska, WebM, Windows Media and MPEG streams give a count estimated from the
#: duration and frame rate, often several frames off (80 for a 2-frame WMV), which says nothing about a cut.
EXACT_COUNT_SUFFIXES = (".avi", ".mp4", ".m4v", ".mov")


def iter_video_frames(path: str | os.PathLike, frame_stride: int = 1,
                      colour: bool = False) -> Iterator[tuple[int, np.ndarray]]:
    """(index, (H, W) uint8 BT.601 luma frame) for every ``frame_stride``-th frame, or (H, W, 3) uint8 RGB with
    ``colour``; raises UnreadableImageError when OpenCV cannot open the file or it has no decodable frame.
    (OpenCV's BGR-to-gray is the luma that :func:`monai_ext.io.display.to_gray_uint8` takes of RGB, done in one
    step.)"""
    if frame_stride < 1:
        raise ValueError(f"frame_stride must be at least 1, got {frame_stride!r}")
    capture, stream = _open_capture(path)
    try:
        if not capture.isOpened():
            raise UnreadableImageError(f"{path}: OpenCV cannot open the video")
        expected = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))  # from the container; 0 or less where it gives none
        index, pending, shape = 0, None, None
        while True:
            ok, bgr = capture.read()
            if not ok:
                break
            if pending is not None:
                yield pending
                pending = None
            if index % frame_stride == 0:
                if index == 0:
                    shape = square_pixel_shape(capture, path, bgr.shape[0], bgr.shape[1])
                # held back one read: in a file cut short the last frame that decodes can be partly decoded
                pending = index, _on_square_pixels(
                    cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB if colour else cv2.COLOR_BGR2GRAY), shape)
            index += 1
        if index == 0:
            raise UnreadableImageError(f"{path}: video has no decodable frames")
        counted_short = 0 < index < expected and os.fsdecode(path).lower().endswith(EXACT_COUNT_SUFFIXES)
        # an AVI cut inside its last frame decodes as many frames as it counts (the cut one partly decoded, or the
        # last good one again): its RIFF chunks tell (None: no AVI, the count decides), and where the count matched
        # only a cut inside the frame data counts (one inside the index after them leaves every frame whole)
        riff_cut = _riff_cut_short(path)
        cut_short = (counted_short and riff_cut is not False) or (riff_cut is True and _frame_data_cut_short(path))
        ends = f"ends after {index} of its {expected} frames (cut short)" if counted_short else \
            f"is cut short (its RIFF chunks run past the end of the file; {index} frame(s) decoded)"
        if cut_short and index == 1:
            raise UnreadableImageError(f"{path}: the video {ends}, and that frame may be partly decoded")
        if cut_short:
            warnings.warn(f"{path}: the video {ends}; its last decoded frame is left out, as it may be partly "
                          "decoded", UserWarning, stacklevel=2)
        if pending is not None and not (cut_short and pending[0] == index - 1):
            yield pending
    finally:
        capture.release()
        if stream is not None:
            stream.close()


def _chunks(f: BinaryIO, start: int, end: int) -> Iterator[tuple[int, bytes, int, bytes]]:
    """(position, id, length, list type) of the RIFF chunks of open file ``f`` from ``start``, while a chunk's header
    begins 8 bytes or more before ``end``: the walk of both cut checks (the list type is ``b""`` where cut off)."""
    position = start
    while position + 8 <= end:
        f.seek(position)
        header = f.read(12)
        length = int.from_bytes(header[4:8], "little")
        yield position, header[:4], length, header[8:12]
        position += 8 + length + (length & 1)


def _riff_cut_short(path: str | os.PathLike) -> bool | None:
    """Whether an AVI's RIFF chunks (OpenDML's ``AVIX`` ones too) run past the end of the file: True cut, False whole,
    None where the file is no RIFF (the frame count decides then).

    An AVI's header counts the frames a capture dropped as empty chunks, which FFmpeg does not decode: a whole
    variable-rate loop decodes fewer frames than it counts, and was taken for one cut short (its last good frame
    left out, a 2-frame loop refused). The chunk sizes tell a cut from that.
    """
    if not os.fsdecode(path).lower().endswith(".avi"):
        return None
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        for position, name, length, _ in _chunks(f, 0, size):
            if name != b"RIFF":
                return None if position == 0 else False  # past the RIFF chunks: padding or junk, not frames
            if position + 8 + length + (length & 1) > size + 1:  # an odd last chunk may lack its pad byte
                return True
    return False


def _frame_data_cut_short(path: str | os.PathLike) -> bool:
    """Whether the frame data of an AVI (the ``movi`` list of any of its RIFF chunks) runs past the end of the file.

    A file cut after its frames, inside the ``idx1`` index that follows them (or whose writer left the RIFF size too
    large), has every frame whole although its RIFF chunk runs past the end (:func:`_riff_cut_short`).
    """
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        for riff, name, riff_length, _ in list(_chunks(f, 0, size)):
            if name != b"RIFF":
                return False
            for position, chunk, length, form in _chunks(f, riff + 12, min(riff + 8 + riff_length, size)):
                if chunk == b"LIST" and form == b"movi" and position + 8 + length > size:
                    return True
    return False


def square_pixel_shape(capture: cv2.VideoCapture, path: str | os.PathLike, rows: int,
                       columns: int) -> tuple[int, int] | None:
    """(rows, columns) at which the frames of ``capture`` are given so that their pixels are square, as players show
    them; None where they are square already or the stream says nothing (the frames are then given as stored).

    The stream's sample aspect ratio (SAR: a pixel's width over its height; FFmpeg's, from the codec's header or the
    container's) is applied as the DICOM reader applies ``PixelSpacing``
    (:func:`monai_ext.io.dicom.square_pixel_shape`): the coarser axis is resampled to the finer one, no stored
    sample is lost, and an aspect within
    :data:`~monai_ext.io.dicom.SQUARE_TOLERANCE` of 1:1 is left alone. Frame grabbers record an ultrasound
    machine's video output anamorphic: PAL 720x576 at SAR 16:15 and NTSC 720x480 at 8:9 (7 and 11 % off), which
    OpenCV decodes as stored, every structure stretched. A warning names the file, once per job.

    Args:
        capture: an opened capture of the video.
        path: the file, named in the warning.
        rows: the height of its frames as OpenCV gives them (turned where the container says so).
        columns: their width, likewise.
    """
    numerator, denominator = capture.get(cv2.CAP_PROP_SAR_NUM), capture.get(cv2.CAP_PROP_SAR_DEN)
    if not (numerator > 0 and denominator > 0):  # 0:1 or 0:0 is FFmpeg's "unknown": players show such pixels square
        return None
    sar = numerator / denominator
    said = f"sample aspect ratio {numerator:g}:{denominator:g}"
    if capture.get(cv2.CAP_PROP_ORIENTATION_AUTO) and round(capture.get(cv2.CAP_PROP_ORIENTATION_META)) % 180 == 90:
        # the ratio is of the stored pixels; OpenCV gives the frames turned by a quarter (a rotation in the
        # container), so the pixels' width is the frame's height
        sar = 1 / sar
    if not 1 / MAX_PIXEL_ASPECT <= sar <= MAX_PIXEL_ASPECT:  # a broken header, not a recording: kept as stored
        warn_once(f"{path}: its {said} is beyond {MAX_PIXEL_ASPECT:g}:1 either way and is not used; its frames are "
                  "given as stored", UserWarning, stacklevel=3)
        return None
    if abs(sar - 1) <= SQUARE_TOLERANCE:
        return None
    # pixels wider than tall: more columns, as many rows; else more rows (halves rounded up, as DICOM's are)
    shape = (rows, int(np.floor(columns * sar + 0.5))) if sar > 1 else (int(np.floor(rows / sar + 0.5)), columns)
    if shape == (rows, columns):
        return None
    warn_once(f"{path}: its pixels are not square ({said}: {1 / sar:.4g} times as tall as wide); its frames are "
              f"resampled from {rows}x{columns} to {shape[0]}x{shape[1]} (rows x columns)", UserWarning, stacklevel=3)
    return shape


def _on_square_pixels(frame: np.ndarray, shape: tuple[int, int] | None) -> np.ndarray:
    """A (H, W) or (H, W, 3) uint8 ``frame`` linearly resampled to ``shape`` (rows, columns); as it is where
    ``shape`` is None. Linear, as the DICOM reader's: it stays within the values of its neighbours."""
    if shape is None or frame.shape[:2] == shape:
        return frame
    return cv2.resize(frame, (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)


def video_frame_count(path: str | os.PathLike) -> int:
    """The number of frames the container says the video holds (a file cut short may decode fewer, see
    :func:`iter_video_frames`); 1 where it says none or OpenCV cannot open it (then reading its frames says why)."""
    capture, stream = _open_capture(path)
    try:
        return max(1, int(capture.get(cv2.CAP_PROP_FRAME_COUNT))) if capture.isOpened() else 1
    finally:
        capture.release()
        if stream is not None:
            stream.close()


def _open_capture(path: str | os.PathLike) -> tuple[cv2.VideoCapture, BinaryIO | None]:
    """An OpenCV capture of ``path``, and the open file it reads from when it reads from one (to close after it).

    OpenCV takes a file name as UTF-8 and ends the whole process with SIGSEGV on a name holding bytes that are not
    UTF-8 (``os.walk`` returns them as surrogate escapes: a Windows archive unzipped on Linux names ``é`` as the
    byte 0xE9). Such a file is opened here and handed to OpenCV as a stream (``VideoCapture`` streams, OpenCV 4.11
    and later); an older OpenCV cannot read it at all, which is said in one line instead of crashing.
    """
    name = os.fsdecode(path)
    try:
        name.encode("utf-8")  # fails on surrogate escapes only
    except UnicodeEncodeError:
        pass
    else:
        return cv2.VideoCapture(name), None
    if not hasattr(cv2, "IStreamReader"):
        raise UnreadableImageError(f"{path}: the file name is not UTF-8, which OpenCV {cv2.__version__} cannot open "
                                   "(4.11 or later can); rename the file")
    stream = open(name, "rb")  # noqa: SIM115 - closed by the caller once the capture is released
    try:
        return cv2.VideoCapture(stream, cv2.CAP_FFMPEG, []), stream  # a stream needs a named backend
    except BaseException:
        stream.close()  # the caller never receives it
        raise
