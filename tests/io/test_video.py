"""Cine loops (OpenCV): every frame as written; files OpenCV cannot read refused in one line naming the file."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest

from monai_ext.io.errors import UnreadableImageError
from monai_ext.io.video import iter_video_frames

FRAMES = np.random.default_rng(0).integers(0, 256, (3, 24, 32), np.uint8)


def write_avi(path: Path, frames: np.ndarray = FRAMES) -> Path:
    """(N, H, W) uint8 gray frames as a lossless (FFV1) AVI: decoded frames equal the written ones exactly."""
    height, width = frames.shape[1:]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"FFV1"), 5, (width, height), isColor=True)
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR))
    writer.release()
    return path


def non_utf8_name(folder: Path, suffix: str) -> Path:
    """A path whose name holds a byte that is not UTF-8 (a Windows archive unzipped on Linux: Latin-1 ``é``), as
    ``os.walk`` returns it (a surrogate escape); skipped where the filesystem refuses such names (macOS)."""
    name = os.fsencode(folder) + b"/cin\xe9" + suffix.encode()
    try:
        with open(name, "wb"):
            pass
    except OSError:
        pytest.skip("this filesystem refuses file names that are not UTF-8")
    return Path(os.fsdecode(name))


def test_every_frame_is_read_as_written(tmp_path) -> None:
    frames = [pixels for _, pixels in iter_video_frames(write_avi(tmp_path / "loop.avi"))]
    np.testing.assert_array_equal(np.stack(frames), FRAMES)


def textured_avi(path: Path, count: int) -> tuple[Path, np.ndarray]:
    """An MJPEG AVI of ``count`` gray 128 x 128 frames of fine structure, so that the frames and not the headers make
    up most of the file; the frames written, (count, 128, 128) uint8."""
    rows, cols = np.mgrid[0:128, 0:128]
    frames = np.stack([np.rint(127.5 + 100 * np.sin(rows / (2 + i / 4)) * np.cos(cols / 3)) for i in range(count)])
    frames = frames.astype(np.uint8)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (128, 128), isColor=True)
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR))
    writer.release()
    return path, frames


@pytest.mark.parametrize("stride", [1, 2, 3])
def test_a_video_cut_short_warns_and_leaves_out_its_last_decoded_frame(tmp_path, stride) -> None:
    """An MJPEG AVI cut in half (a copy interrupted): the decoder stops early, and the last frame it returns may be
    half decoded. It used to end silently, that frame included, while the header says how many there are."""
    path, frames = textured_avi(tmp_path / "clip.avi", 12)
    whole = [index for index, _ in iter_video_frames(path, stride)]
    assert whole == list(range(0, 12, stride))
    cut = tmp_path / "clip_cut.avi"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.warns(UserWarning, match=r"clip_cut.avi: the video ends after (\d+) of its 12 frames") as caught:
        read = list(iter_video_frames(cut, stride))
    decoded = int(re.search(r"after (\d+) of", str(caught[0].message)).group(1))
    assert 0 < decoded < 12
    assert [index for index, _ in read] == [i for i in range(0, decoded - 1, stride)]
    for index, pixels in read:
        assert np.abs(pixels.astype(int) - frames[index]).mean() < 4  # whole frames only


@pytest.mark.parametrize("count, cut", [(5, 16), (5, 4), (1, 16)])
def test_an_avi_cut_inside_its_index_keeps_every_frame_without_a_word(tmp_path, count, cut) -> None:
    """Cut after its frames, inside the idx1 index: every frame is whole, yet its RIFF chunk runs past the end of the
    file, and the last good frame was left out (a one-frame clip refused) as if cut inside it."""
    path, frames = textured_avi(tmp_path / "clip.avi", count)
    data = path.read_bytes()
    index = data.rfind(b"idx1")
    (tmp_path / "cut.avi").write_bytes(data[: index + cut])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        read = list(iter_video_frames(tmp_path / "cut.avi"))
    assert [i for i, _ in read] == list(range(count))
    for i, pixels in read:
        assert np.abs(pixels.astype(int) - frames[i]).mean() < 4


@pytest.mark.parametrize("kept", [0.3, 0.6, 0.9])
def test_an_avi_cut_inside_its_last_frame_leaves_it_out_saying_so(tmp_path, kept) -> None:
    """Cut inside the last frame's JPEG data (``kept`` of it on disk), an MJPEG AVI decodes all the frames its header
    counts, the last one partly: the count matched, so the file was never asked whether it was cut, and the partly
    decoded frame was kept without a word."""
    path, frames = textured_avi(tmp_path / "clip.avi", 6)
    data = path.read_bytes()
    last = data.rfind(b"00dc", 0, data.rfind(b"idx1"))  # the last frame's chunk in the movi list, not its index entry
    size = int.from_bytes(data[last + 4 : last + 8], "little")
    (tmp_path / "cut.avi").write_bytes(data[: last + 8 + int(size * kept)])
    capture = cv2.VideoCapture(str(tmp_path / "cut.avi"))
    decoded = 0
    while capture.read()[0]:
        decoded += 1
    capture.release()
    assert decoded == 6  # the case this test is about: as many frames as written
    with pytest.warns(UserWarning, match=r"cut.avi: the video is cut short \(its RIFF chunks run past the end"):
        read = list(iter_video_frames(tmp_path / "cut.avi"))
    assert [index for index, _ in read] == list(range(5))
    for index, pixels in read:
        assert np.abs(pixels.astype(int) - frames[index]).mean() < 4  # whole frames only


def test_a_name_that_is_not_utf8_is_read_not_a_crash(tmp_path) -> None:
    path = non_utf8_name(tmp_path, ".avi")
    write_avi(tmp_path / "loop.avi").replace(path)
    # In a child process: OpenCV used to end the whole process with SIGSEGV on such a name (a corpus run died with it)
    script = ("import sys, os, numpy as np; from monai_ext.io.video import iter_video_frames; "
              "frames = [p for _, p in iter_video_frames(os.fsdecode(sys.argv[1].encode('utf-8', 'surrogateescape')))]; "
              "print(len(frames), int(np.stack(frames).astype(np.int64).sum()))")
    result = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True, text=True,
                            errors="surrogateescape", cwd=Path(__file__).parents[2], timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == [str(len(FRAMES)), str(int(FRAMES.astype(np.int64).sum()))]


def test_without_opencv_streams_such_a_name_is_refused_in_one_line(tmp_path, monkeypatch) -> None:
    path = non_utf8_name(tmp_path, ".avi")
    monkeypatch.delattr(cv2, "IStreamReader", raising=False)  # an OpenCV before 4.11
    with pytest.raises(UnreadableImageError, match=r"cin.\.avi: the file name is not UTF-8.*rename the file"):
        next(iter_video_frames(path))


@pytest.mark.parametrize("content, reason", [(b"not a video at all" * 8, "OpenCV cannot open the video"),
                                             (None, "video has no decodable frames")])
def test_unreadable_videos_name_the_file_and_the_reason(tmp_path, content: bytes | None, reason: str) -> None:
    path = tmp_path / "bad.avi"
    if content is None:  # a loop with no frame: the writer is opened and closed
        write_avi(path, FRAMES[:0].reshape(0, 24, 32))
    else:
        path.write_bytes(content)
    with pytest.raises(UnreadableImageError, match=f"bad.avi: {reason}"):
        next(iter_video_frames(path))


@pytest.mark.parametrize("suffix, fourcc", [(".mov", "mp4v"), (".m4v", "mp4v"), (".mkv", "FFV1"), (".webm", "VP80"),
                                            (".wmv", "WMV2")])
def test_loops_in_other_containers_give_every_frame(tmp_path, suffix, fourcc):
    """QuickTime exports of phones and workstations, Matroska and WebM from web archives, Windows Media from older
    carts: OpenCV's FFmpeg decodes them all; they were not listed, so a corpus passed over them."""
    from monai_ext.io.images import source_kind

    path = tmp_path / f"loop{suffix}"
    levels = [40, 80, 120, 160, 200]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), 5, (64, 48), isColor=True)
    for level in levels:
        writer.write(np.full((48, 64, 3), level, np.uint8))
    writer.release()
    assert source_kind(path) == "video"
    read = [int(round(float(frame.mean()))) for _, frame in iter_video_frames(path)]
    assert len(read) == len(levels) and np.abs(np.array(read) - levels).max() <= 4


@pytest.mark.parametrize("suffix, fourcc, count", [(".wmv", "WMV2", 1), (".wmv", "WMV2", 2), (".mpg", "PIM1", 2),
                                                   (".mkv", "FFV1", 2)])
def test_a_short_loop_whose_container_only_estimates_its_count_keeps_every_frame(tmp_path, suffix, fourcc, count):
    """FFmpeg estimates the frame count of Windows Media, MPEG and Matroska files from their duration (80 for a 2-frame
    WMV): such a loop was taken for one cut short, lost its last frame, and a 1-frame one was lost whole."""
    path = tmp_path / f"short{suffix}"
    levels = [60, 180][:count]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), 25, (64, 48), isColor=True)
    for level in levels:
        writer.write(np.full((48, 64, 3), level, np.uint8))
    writer.release()
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "cut short" warning either
        read = [int(round(float(frame.mean()))) for _, frame in iter_video_frames(path)]
    assert len(read) == count and np.abs(np.array(read) - levels).max() <= 6


def test_an_avi_cut_after_its_first_frame_is_refused_saying_so(tmp_path) -> None:
    """Its one decoded frame may be half decoded: refused with that reason, not 'no frame could be read'."""
    rows, cols = np.mgrid[0:128, 0:128]
    frames = np.stack([np.rint(127.5 + 100 * np.sin(rows / (2 + i / 4)) * np.cos(cols / 3)) for i in range(6)])
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (128, 128), isColor=True)
    for frame in frames.astype(np.uint8):
        writer.write(cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR))
    writer.release()
    data = path.read_bytes()
    for size in range(len(data) // 6, len(data), 64):  # the first cut that decodes exactly one frame
        (tmp_path / "cut.avi").write_bytes(data[:size])
        decoded = cv2.VideoCapture(str(tmp_path / "cut.avi"))
        count = 0
        while decoded.read()[0]:
            count += 1
        decoded.release()
        if count == 1:
            break
    else:
        pytest.fail("no cut of the loop decodes exactly one frame")
    with pytest.raises(UnreadableImageError, match=r"cut.avi: the video ends after 1 of its 6 frames \(cut short\)"):
        list(iter_video_frames(tmp_path / "cut.avi"))


def _avi_with_a_dropped_frame(source: Path, target: Path) -> None:
    """``source`` rebuilt with its third frame an empty chunk, as variable-rate captures write a dropped frame: the
    header still counts it, FFmpeg decodes one frame fewer, and the file is whole (its RIFF size and index agree)."""
    import struct

    data = source.read_bytes()
    parts, position = [], 12
    while position < len(data):
        chunk, size = data[position:position + 4], struct.unpack("<I", data[position + 4:position + 8])[0]
        parts.append((chunk, data[position + 8:position + 8 + size]))
        position += 8 + size + (size & 1)
    out, index = [], b""
    for chunk, body in parts:
        if chunk == b"LIST" and body[:4] == b"movi":
            frames, p = [], 4
            while p < len(body):
                c, s = body[p:p + 4], struct.unpack("<I", body[p + 4:p + 8])[0]
                frames.append((c, body[p + 8:p + 8 + s]))
                p += 8 + s + (s & 1)
            video = [i for i, (c, _) in enumerate(frames) if c.endswith(b"dc")]
            frames[video[2]] = (frames[video[2]][0], b"")
            movi, offset = b"movi", 4
            for c, b in frames:
                index += c + struct.pack("<III", 0x10 if b else 0, offset, len(b))
                movi += c + struct.pack("<I", len(b)) + b + (b"\0" if len(b) & 1 else b"")
                offset += 8 + len(b) + (len(b) & 1)
            out.append((b"LIST", movi))
        elif chunk == b"idx1":
            out.append((b"idx1", index))
        else:
            out.append((chunk, body))
    body = b"AVI " + b"".join(c + struct.pack("<I", len(b)) + b + (b"\0" if len(b) & 1 else b"") for c, b in out)
    target.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)


def test_a_whole_avi_with_a_dropped_frame_is_not_taken_for_a_cut_one(tmp_path) -> None:
    """Its header counts the dropped frame: the loop was taken for one cut short and lost its last good frame."""
    source = tmp_path / "src.avi"
    writer = cv2.VideoWriter(str(source), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for i in range(6):
        writer.write(np.full((48, 64, 3), i * 40, np.uint8))
    writer.release()
    _avi_with_a_dropped_frame(source, tmp_path / "vfr.avi")
    capture = cv2.VideoCapture(str(tmp_path / "vfr.avi"))
    counted, decoded = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)), 0
    while capture.read()[0]:
        decoded += 1
    capture.release()
    assert (counted, decoded) == (6, 5)  # the case this test is about
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "cut short"
        levels = [int(round(frame.mean())) for _, frame in iter_video_frames(tmp_path / "vfr.avi")]
    assert len(levels) == 5 and abs(levels[-1] - 200) <= 6  # the last frame kept


def with_sample_aspect(path: Path, code: int) -> Path:
    """``path``, an MPEG-4 part 2 (mp4v) video, with the aspect_ratio_info of its VOL headers set to ``code`` (ISO
    14496-2 table 6-12: 1 square, 2 12:11, 3 10:11, 4 16:11, 5 40:33), as a frame grabber recording PAL or NTSC
    writes it; OpenCV's writer always says square."""
    data = bytearray(path.read_bytes())
    start = data.find(b"\x00\x00\x01\x20")
    assert start >= 0, "no VOL header: not an mp4v stream"
    while start >= 0:
        bit = (start + 4) * 8 + 1 + 8  # after random_accessible_vol and video_object_type_indication
        bit += 1 + (7 if data[bit // 8] >> (7 - bit % 8) & 1 else 0)  # is_object_layer_identifier (+ verid, priority)
        for k in range(4):
            byte, shift = (bit + k) // 8, 7 - (bit + k) % 8
            data[byte] = data[byte] & ~(1 << shift) & 0xFF | ((code >> (3 - k)) & 1) << shift
        start = data.find(b"\x00\x00\x01\x20", start + 4)
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize("code, shape", [(1, (120, 160)), (2, (120, 175)), (3, (132, 160)), (4, (120, 233))])
@pytest.mark.parametrize("colour", [False, True])
def test_non_square_pixels_of_a_video_are_made_square(tmp_path, code, shape, colour) -> None:
    """A grabber's anamorphic recording (SAR 12:11, 10:11, 16:11) was read as stored, every structure squeezed."""
    path = tmp_path / "grabbed.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 5, (160, 120))
    for _ in range(2):
        writer.write(np.full((120, 160, 3), 128, np.uint8))
    writer.release()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        frames = list(iter_video_frames(with_sample_aspect(path, code), colour=colour))
    assert [frame.shape[:2] for _, frame in frames] == [shape] * 2
    said = [str(w.message) for w in caught if "not square" in str(w.message)]
    assert said == ([] if code == 1 else [f"{path}: its pixels are not square (sample aspect ratio "
                                          f"{ {2: '12:11', 3: '10:11', 4: '16:11'}[code]}: "
                                          f"{ {2: 11 / 12, 3: 1.1, 4: 11 / 16}[code]:.4g} times as tall as wide); "
                                          f"its frames are resampled from 120x160 to {shape[0]}x{shape[1]} "
                                          "(rows x columns)"])


@pytest.mark.parametrize("code, shape", [(2, (175, 120)), (3, (160, 132))])
def test_non_square_pixels_of_a_turned_video_are_made_square_across_the_turn(tmp_path, code, shape) -> None:
    """The ratio is of the stored pixels: in a video turned by a quarter in its container (OpenCV gives it turned)
    their width is the frame's height."""
    import struct

    path = tmp_path / "turned.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 5, (160, 120))
    writer.write(np.full((120, 160, 3), 128, np.uint8))
    writer.release()
    data = bytearray(path.read_bytes())
    matrix = data.find(b"tkhd") - 4 + 48  # a version-0 track header's display matrix: a quarter turn
    data[matrix : matrix + 36] = struct.pack(">9i", 0, 65536, 0, -65536, 0, 0, 0, 0, 1 << 30)
    path.write_bytes(bytes(data))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        frames = list(iter_video_frames(with_sample_aspect(path, code)))
    assert [frame.shape for _, frame in frames] == [shape]
