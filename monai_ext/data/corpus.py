"""A pretraining corpus from a tree of ultrasound datasets: frames split into views, cropped to the field of view,
de-annotated on their colour pixels, resized, hashed, deduplicated, cleared of evaluation images and of frames
without signal, and stored as memory-mapped uint8 shards (how one frame becomes views: :mod:`monai_ext.data.views`).

Layout of ``ROOT``: one folder per dataset (``ROOT/<dataset>/...``, any depth below; symbolic links to folders are
followed, each real folder once); files directly under ``ROOT`` form one dataset named after ``ROOT``. Layout of
the cache:

- ``chunks/chunk_NNNNNN.npy``: (n, S, S) uint8 frames of one chunk of source files, and ``chunk_NNNNNN.json``: their
  records, the files skipped with reasons and the readers' warnings about files (not printed). The JSON is
  written after the array, both atomically, so a chunk with a JSON is complete; a rerun skips those (resumable).
- ``manifest.csv``: every frame view (kept or not, with the reason; its crop on the source frame; the fractions of
  its field of view found as annotation and as colour flow; the raised black level brought to 0, and whether it was
  limited-range video expanded to full), ``kept.npy``: (K, 2) int32 (chunk, row) of the
  training frames, ``report.json`` (counts per dataset, removals, skipped files, readers' warnings per file) and
  ``report.png`` (counts per dataset, before/after de-annotation pairs).

Only pixels and pixel-describing attributes are read from DICOM files (see :mod:`monai_ext.data.frames`); the
manifest holds paths relative to ``ROOT``, never header values.
"""

from __future__ import annotations

import csv
import hashlib
import itertools
import json
import logging
import math
import multiprocessing
import os
import signal
import sys
from collections.abc import Hashable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from contextlib import closing, contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform

from monai_ext.data.folders import (  # walk: symbolic links followed, each real folder once
    count_by_suffix,
    counts_text,
    walk_files,
)
from monai_ext.data.frames import FrameOptions, SkippedSource, iter_frames, source_kind
from monai_ext.data.isolation import files_that_kill_their_reader, started_marker
from monai_ext.data.views import (
    DOPPLER_POLICIES,
    ViewOptions,
    crop_to_view,
    fit_square,
    halve_until,
    prepare_views,
)
from monai_ext.io.atomic import atomic_open, atomic_write_bytes
from monai_ext.io.errors import UnreadableImageError, collected_reader_warnings, one_line
from monai_ext.io.settings import path_setting, setting_text
from monai_ext.io.signals import StopSignal, end_with_the_launcher, stop_signals_raise
from monai_ext.io.volumes import without_metaimage_data_files

__all__ = ["DOPPLER_POLICIES", "CorpusFrames", "CorpusOptions", "LoadCorpusFramed", "NearDuplicateIndex",
           "RootSurvey", "crop_to_view", "fit_square", "halve_until", "is_corpus_cache", "perceptual_hash",
           "prepare_corpus", "process_file", "survey_root"]

logger = logging.getLogger(__name__)
MANIFEST_COLUMNS = ("frame_id", "dataset", "source", "frame", "view", "orig_height", "orig_width", "crop",
                    "annotation_fraction", "flow_fraction", "black_level", "video_range", "sha256", "phash", "chunk",
                    "row", "keep", "reason")
#: Test-only hook, not a user setting: when this environment variable is N, a run kills itself with SIGKILL right
#: after its N-th chunk is on disk, so the resume test (tests/data/test_corpus.py) interrupts at a known point
#: instead of racing the wall clock. Unset (the normal case) it costs one environment lookup per run.
KILL_AFTER_CHUNKS_ENV = "MONAI_EXT_TEST_KILL_AFTER_CHUNKS"
#: What a cache's chunks hold, stored in ``plan.json``: a run resumed by another version must not finish a cache
#: in other rules. 2: hidden folders left out, every page of a multi-page TIFF, 4-D NIfTI as time series, quad
#: screens split into views, readers' warnings kept per file (1: caches before these, whose plan names no format).
#: 3: colour flow inpainted without de-annotation too, JFIF streams labelled RGB read as YCbCr, a cine loop cut
#: short without its last decoded frame, DICOM regions off the frame ignored, the root stored in the plan.
#: 4: tinted displays recognised (tissue no longer flow), EXIF orientation applied, DICOM frames counted from the
#: pixel data, GIF, WebP and more video containers listed and read.
#: 5: volumes' slices shown as viewers show them (NIfTI affine, ITK direction), colour volumes kept in colour, 4-D
#: NRRD/MHA read as time series; DICOM fixes (big-endian high bits, slope 0, JPEG colour markers, 8-bit palettes).
#: 6: perceptual hashes of the field of view only (the chunks' ``phash`` values of format 5 hashed the fan's outline,
#: and would be compared with the new ones), DICOM files whose ultrasound regions are all spectral, M-mode or
#: traces skipped; screens: a duplex or M-mode screen's strip not taken for the image (alone: dropped as
#: ``spectral``), side panels no views, JPEG dual views split, colour over a quarter of the field dropped as
#: ``colour_overlay``.
#: 7: a raised black (frame grabbers' video range, black 16) brought to 0 before detection and caching, recorded in
#: the records' ``black_level`` and ``video_range``.
#: 8: DICOM frames of non-square pixels resampled to square ones, their ultrasound regions with them (a cache of 7
#: resumed or rerun kept their frames stretched beside resampled ones).
#: 9: pages of text dropped as ``text_page`` stored black (format 8 kept their letters, names and IDs legible in the
#: chunks), video of non-square pixels (the stream's sample aspect ratio) resampled to square ones, a narrow
#: phased-array sector's tip kept in its crop (:func:`~monai_ext.transforms.fov.is_eaten_tip`; format 8 cut it off).
CACHE_FORMAT = 9


#: Default near-duplicate distance (bits of 64). Measured on 300 distinct simulated frames, 150 of each of two fixed
#: probe geometries, and on 550 copies prepared again (JPEG q60 and q85, resized by 0.75 to 1.1, tissue 8 levels
#: brighter or darker, gain x1.1, calipers drawn): at 6 bits 1% of the distinct frames were dropped and 3% of the
#: copies kept, at 4 bits 0.7% and 7%, at 8 bits 4% and 1.5%; the hash of cache format 5 at its 4 bits, 6% and 14%.
#: tests/data/test_corpus.py holds both sides on a few frames.
DEDUP_THRESHOLD = 6


@dataclass(frozen=True)
class CorpusOptions:
    """Settings of :func:`prepare_corpus` (stored in the cache; a rerun with other settings is refused).

    Args:
        size: side of the cached square frames.
        min_size: frames smaller than this on either side are skipped.
        crop_fov: crop to the DICOM B-mode region or the detected field of view.
        files_per_chunk: source files per chunk (the unit of work, of atomic writing and of resuming).
        frames: how sources are cut into frames.
        dedup_threshold: perceptual-hash Hamming distance at or below which frames are near-duplicates (-1: only
            exact duplicates are removed). 6: see :data:`DEDUP_THRESHOLD`.
        fov_threshold: gray level at or below which a pixel is background for field-of-view detection (above 0 so
            that JPEG noise around the image does not count as image).
        deannotate, doppler, doppler_threshold, split_views, min_signal_std: how frames become views, see
            :class:`monai_ext.data.views.ViewOptions` (de-annotation on, colour flow inpainted, side-by-side views
            split, frames without signal left out, by default).
    """

    size: int = 256
    min_size: int = 16
    crop_fov: bool = True
    files_per_chunk: int = 64
    frames: FrameOptions = field(default_factory=FrameOptions)
    dedup_threshold: int = DEDUP_THRESHOLD
    fov_threshold: int = 10
    deannotate: bool = True
    doppler: str = "inpaint"
    doppler_threshold: float = 0.02
    split_views: bool = True
    min_signal_std: float = 2.0

    def __post_init__(self) -> None:
        _ = self.views  # the property validates the view settings
        if self.files_per_chunk < 1:
            raise ValueError(f"files_per_chunk must be at least 1, got {self.files_per_chunk!r}")
        if not -1 <= self.dedup_threshold <= 16:
            raise ValueError(f"dedup_threshold must be in [-1, 16], got {self.dedup_threshold!r}")
        if self.min_size < 1:
            raise ValueError(f"min_size must be at least 1, got {self.min_size!r}")

    @property
    def views(self) -> ViewOptions:
        """The settings of :func:`monai_ext.data.views.prepare_views`."""
        return ViewOptions(self.size, self.crop_fov, self.fov_threshold, self.deannotate, self.doppler,
                           self.doppler_threshold, self.split_views, self.min_signal_std)


# ----------------------------------------------------------------------------------------------------- per frame
#: Gray level at or below which a pixel joined to the edge of a cached view counts as outside its field of view
#: for the perceptual hash. Outside is 0 in a cached view, but dark speckle touching the fan's edge is 0 in one copy
#: and JPEG noise (1 to 6) in another, and joins the outside in one only: at 0 a JPEG q60 copy of a simulated frame
#: moved up to 14 bits, at 10 up to 8 (the copies measured for :data:`DEDUP_THRESHOLD`). 10 is also the default
#: ``fov_threshold``, the level below which field-of-view detection calls a pixel background.
HASH_OUTSIDE_LEVEL = 10


def perceptual_hash(gray: np.ndarray) -> int:
    """64-bit DCT perceptual hash (pHash) of the field of view: sign of the 8x8 low-frequency DCT of a 32x32
    reduction against its median, the outside first filled with the mean inside (:func:`fov_filled`). Written here
    because the ``imagehash`` package would pull a second image stack for ten lines.

    Args:
        gray: (H, W) uint8 view as cached (black outside its field of view).
    """
    small = cv2.resize(fov_filled(gray), (32, 32), interpolation=cv2.INTER_AREA).astype(np.float32)
    low = cv2.dct(small)[:8, :8].flatten()
    bits = low > np.median(low[1:])
    return int(np.packbits(bits).view(">u8")[0])


def fov_filled(gray: np.ndarray) -> np.ndarray:
    """(H, W) uint8 -> (H, W) uint8 with the pixels outside the field of view set to the mean of those inside.

    Outside is what is at most :data:`HASH_OUTSIDE_LEVEL` and joined to the edge. Left black, the outline of the
    fan (the same for every frame of one probe and depth) dominated the hash's low frequencies: distinct frames of
    one geometry hashed within 4 bits of each other and were dropped as near-duplicates. A view with nothing
    outside, or nothing inside, is returned as it is. Found on the view as cached: on a copy reduced to 128 or 64
    pixels (a half or a quarter of the flooding), the edge's blend kept part of the outline and 1.6 or 3.3 times as
    many copies were missed at 6 bits.
    """
    dark = cv2.threshold(gray, HASH_OUTSIDE_LEVEL, 1, cv2.THRESH_BINARY_INV)[1]
    padded = cv2.copyMakeBorder(dark, 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=1)
    cv2.floodFill(padded, None, (0, 0), 2)  # 4-connected from the padding: every dark pixel joined to the edge
    outside = padded[1:-1, 1:-1] == 2
    inside = np.logical_not(outside).astype(np.uint8)
    if not inside.any() or inside.all():
        return gray
    return np.where(outside, np.uint8(round(cv2.mean(gray, mask=inside)[0])), gray)


def process_file(path: Path, root: Path, options: CorpusOptions) -> tuple[list[np.ndarray], list[dict], str | None]:
    """Views of every frame of one file, cache-ready: (views (S, S) uint8, their records, reason or None).

    A file that fails part way (a corrupt frame in a cine loop, a damaged last page) keeps the views of the frames
    read before the failure: the reason is then a warning about the rest, not a skip. A file that gives no frame
    always has a reason.

    Args:
        path: the source file.
        root: the corpus root (records hold paths relative to it; files directly in it belong to the dataset named
            after it).
        options: corpus settings.
    """
    relative = path.relative_to(root).as_posix()
    dataset = relative.split("/")[0] if "/" in relative else root.name
    frames, records = [], []
    try:
        for frame in iter_frames(path, options.frames):
            h, w = frame.pixels.shape[:2]
            if min(h, w) < options.min_size:
                raise SkippedSource(f"{relative}: frame {frame.index} is {h}x{w}, smaller than {options.min_size}")
            views = prepare_views(frame.pixels, frame.region_box, options.views)
            frame_records = [{"dataset": dataset, "source": relative, "frame": frame.index,
                              "view": getattr(frame, "view", 0) + view.view, "orig_height": h, "orig_width": w,
                              "crop": " ".join(str(v) for v in view.crop),
                              "annotation_fraction": view.annotation_fraction, "flow_fraction": view.flow_fraction,
                              "black_level": view.black_level, "video_range": view.video_range,
                              "drop": view.drop, "sha256": hashlib.sha256(view.pixels.tobytes()).hexdigest(),
                              "phash": f"{perceptual_hash(view.pixels):016x}"} for view in views]
            # a frame's views join together, once all are done: a failure inside a frame leaves no view of it, and
            # the views and their records (rows of the chunk) stay aligned
            frames += [view.pixels for view in views]
            records += frame_records
    except (UnreadableImageError, SkippedSource) as e:
        return _partly_read(frames, records, _relative_message(e, path, relative))
    except MemoryError:
        return _partly_read(frames, records, f"{relative}: too large to decode in memory")
    # Any other failure on one odd file (an OpenCV or codec error) skips it, named, and the batch goes on: raised in
    # a worker, it would stop the run and lose the files of the chunks in flight.
    except Exception as e:  # noqa: BLE001
        return _partly_read(frames, records, f"{relative}: {type(e).__name__}: {one_line(str(e))}")
    if not records:  # a header claiming no frames, a video whose one frame was held back: said, not dropped unseen
        return [], [], f"{relative}: no frame could be read from it"
    return frames, records, None


def _partly_read(frames: list[np.ndarray], records: list[dict],
                 reason: str) -> tuple[list[np.ndarray], list[dict], str]:
    """The views read before a failure, with the failure's reason saying that they were kept."""
    if records:
        last = records[-1]["frame"]
        reason = f"{reason} (read up to it: the views of frames 0-{last} are kept)"
    return frames, records, reason


def _relative_message(error: Exception, path: Path, relative: str) -> str:
    """The error message with the absolute path replaced by the path under the corpus root."""
    return str(error).replace(str(path), relative)


# ------------------------------------------------------------------------------------------------------- chunks
def _settings_differences(before: Mapping[str, Any], now: Mapping[str, Any], prefix: str = "") -> str:
    """``size 64 there, 128 here; frames.frame_stride 1 there, 2 here``: the settings that differ, nested ones
    dotted (a cache's whole settings record said nothing of which one a rerun changed)."""
    parts = []
    for key in sorted(set(before) | set(now)):
        a, b = before.get(key), now.get(key)
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            inner = _settings_differences(a, b, f"{prefix}{key}.")
            parts += [inner] if inner else []
        elif a != b:
            parts.append(f"{prefix}{key} {a!r} there, {b!r} here")
    return "; ".join(parts)


def _chunk_paths(out: Path, index: int) -> tuple[Path, Path]:
    base = out / "chunks" / f"chunk_{index:06d}"
    return base.with_suffix(".npy"), base.with_suffix(".json")


def _next(path: Path) -> Path:
    """Where the new version of a chunk's file is written before it replaces ``path`` (:func:`_commit_chunk`)."""
    return path.with_name(path.name + ".next")


def _commit_chunk(array_path: Path, json_path: Path) -> None:
    """Put a chunk's new pair (both whole, as ``*.next``) in place of its old one: the array, then the JSON. A run cut
    between the two renames has them finished by the next (:func:`_finish_chunk_commits`)."""
    os.replace(_next(array_path), array_path)
    os.replace(_next(json_path), json_path)


def _finish_chunk_commits(folder: Path) -> None:
    """Finish, or drop, the chunk writes a killed run left half done in ``folder``. A new JSON (``chunk_N.json.next``)
    is written only after its array: both are whole, so both are put in place (the array may be in place already). A
    new array without its JSON is dropped: the chunk's old pair, still whole, stands (a chunk without one is read
    again)."""
    for new_json in sorted(folder.glob("chunk_*.json.next")):
        array = new_json.with_name(new_json.name.removesuffix(".json.next") + ".npy")
        if _next(array).exists():
            os.replace(_next(array), array)
        os.replace(new_json, new_json.with_name(new_json.name.removesuffix(".next")))
    for new_array in folder.glob("chunk_*.npy.next"):
        new_array.unlink()


def _write_chunk(args: tuple[int, list[str], str, str, CorpusOptions, dict[str, str]]) -> tuple[int, int, int]:
    """Worker: process the files of one chunk and write the chunk atomically. Returns (index, frames, skipped).

    Readers' warnings about a file are kept in the chunk under its name (``warnings``), not printed. The last
    argument, {file: reason}, names files known to kill their reader: skipped unread. A marker file is there while
    the chunk is read, so that a process killed on it is known to the next attempt.
    """
    index, files, root, out, options, killers = args
    cv2.setNumThreads(1)  # one process per core already
    marker = started_marker(_chunk_paths(Path(out), index)[1])
    died_on_before = marker.exists()
    marker.touch()
    try:
        stats = source_stats(Path(root), files)  # before reading: a file changed while it is read is read again
        frames, records, skipped, warned = _read_chunk_files(index, files, Path(root), Path(out), options, stats,
                                                             killers)
        array_path, json_path = _chunk_paths(Path(out), index)
        # the new pair beside the old one, then in its place (_commit_chunk): the old pair stays whole until the new
        # one is. A chunk read again for a changed file, cut between its new array and its new JSON, kept the old
        # JSON over the new frames (trusted again once the file was changed back); dropping the old JSON first lost
        # the frames kept from files gone from the root where a stop came during the new array's write
        _write_frames(_next(array_path), frames, options.size)
        chunk = {"files": files, "records": records, "skipped": skipped, "warnings": warned, "stats": stats}
        atomic_write_bytes(_next(json_path), json.dumps(chunk).encode())
        _commit_chunk(array_path, json_path)
    except BaseException:
        # the marker outlives a process killed on the chunk only (an exception or Ctrl-C is no crash), unless a
        # process died on it before: removed when a stop came while its files were read in the end, the next run
        # read it as any chunk, and its killer killed the run (--workers 1) or a pool's worker again
        if not died_on_before:
            marker.unlink(missing_ok=True)
        raise
    marker.unlink(missing_ok=True)
    return index, len(frames), len(skipped)


def _read_chunk_files(index: int, files: list[str], root: Path, out: Path, options: CorpusOptions,
                      stats: Mapping[str, list[int] | None],
                      killers: Mapping[str, str]) -> tuple[list[np.ndarray], list[dict], list[dict], list[dict]]:
    """(views (S, S) uint8, their records, skip entries, readers' warnings) of a chunk's files, in order."""
    cached = _cached_views(out, index)  # a chunk read again: what its files that are gone since gave
    frames, records, skipped, warned = [], [], [], []
    for name in files:
        if name in killers:
            skipped.append({"source": name, "reason": f"{name}: {killers[name]}"})
            continue
        if stats[name] is None and name in cached:  # gone since it was cached: its frames stay, as the plan says
            old_frames, old_records, old_skipped, old_warned = cached[name]
            frames, records, skipped, warned = (frames + old_frames, records + old_records, skipped + old_skipped,
                                                warned + old_warned)
            continue
        with collected_reader_warnings() as notes:
            f, r, reason = process_file(root / name, root, options)
        if reason and not f:
            skipped.append({"source": name, "reason": reason})
        elif reason:  # partly read: its good frames are in the cache, the failure is a warning about the file
            notes = [*notes, reason]
        if notes:  # under the corpus root, as the skip reasons are: the report can travel with the cache
            warned.append({"source": name, "warnings": [note.replace(str(root / name), name) for note in notes]})
        frames += f
        records += r
    return frames, records, skipped, warned


def _cached_views(out: Path, index: int) -> dict[str, tuple[list[np.ndarray], list[dict], list[dict], list[dict]]]:
    """Per source file of chunk ``index`` as cached: (its views (S, S) uint8, their records, its skip entries, its
    readers' warnings); empty where the chunk was never written."""
    array_path, json_path = _chunk_paths(out, index)
    if not (json_path.exists() and array_path.exists()):
        return {}
    chunk = json.loads(json_path.read_text())
    array = np.load(array_path, mmap_mode="r")
    cached: dict[str, tuple[list[np.ndarray], list[dict], list[dict], list[dict]]] = {
        name: ([], [], [], []) for name in chunk["files"]}
    for row, record in enumerate(chunk["records"]):
        if record["source"] in cached:
            cached[record["source"]][0].append(np.array(array[row]))  # a copy: the file is about to be replaced
            cached[record["source"]][1].append(record)
    for key, position in (("skipped", 2), ("warnings", 3)):
        for entry in chunk.get(key, []):
            if entry["source"] in cached:
                cached[entry["source"]][position].append(entry)
    return cached


def _write_frames(path: Path, frames: list[np.ndarray], size: int) -> None:
    """Write (n, size, size) uint8 ``frames`` as one ``.npy`` atomically, a frame at a time: stacking them and
    serialising the stack held three copies of a chunk of cine loops in memory (gigabytes per worker)."""
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.uint8)), "fortran_order": False,
              "shape": (len(frames), size, size)}
    with atomic_open(path) as file:
        np.lib.format.write_array_header_1_0(file, header)
        for frame in frames:
            file.write(np.ascontiguousarray(frame, dtype=np.uint8).tobytes())


def source_stats(root: Path, files: Sequence[str]) -> dict[str, list[int] | None]:
    """``[size, mtime_ns]`` of each file under ``root`` (None for one that is gone): what a rerun compares to find the
    files changed since their chunk was cached."""
    stats: dict[str, list[int] | None] = {}
    for name in files:
        try:
            stat = os.stat(root / name)
        except OSError:
            stats[name] = None
        else:
            stats[name] = [stat.st_size, stat.st_mtime_ns]
    return stats


def _npy_bytes(array: np.ndarray) -> bytes:
    import io

    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


@dataclass(frozen=True)
class RootSurvey:
    """What one walk of a corpus root found.

    Attributes:
        sources: supported files (relative POSIX paths, sorted): ``<dataset>/...``, or a bare file name for files
            directly under the root (their dataset is named after the root). Supported by suffix, or DICOM by
            content where the name has no image suffix (``IM0001`` of a DICOMDIR export, ``US0001.IMA``; see
            ``monai_ext.io.images.source_kind``).
        not_read: how many files are of no type the corpus reads, by lower-case suffix (``""`` for none), most
            first: label sheets and notes are expected there, MATLAB or HDF5 arrays and unlisted video formats are
            images the corpus leaves out, which the report says rather than passing over them. A MetaImage
            header's voxel file (``sweep.raw`` beside ``sweep.mhd``, or the file its ``ElementDataFile`` names) is
            read through the header, not counted.
    """

    sources: list[str]
    not_read: dict[str, int]

    def datasets(self, root: Path) -> list[str]:
        """The dataset names the sources belong to, sorted."""
        return sorted({source.split("/")[0] if "/" in source else root.name for source in self.sources})


def survey_root(root: Path, out: Path | None = None) -> RootSurvey:
    """Walk ``root`` once, leaving out the cache folder ``out`` where it lies inside. An archive of 370K files on a
    network share takes minutes to walk, and telling a suffix-less DICOM from a note opens the file, so the run
    walks it once, not once per question it asks."""
    sources, others = [], []
    for path in walk_files(root, exclude=[out] if out is not None else []):
        (sources if source_kind(path) else others).append(path)
    others = without_metaimage_data_files(others, sources)
    return RootSurvey(sorted(path.relative_to(root).as_posix() for path in sources), count_by_suffix(others))


def _plan(root: Path, out: Path, options: CorpusOptions, sources: list[str]) -> list[list[str]]:
    """Chunks of source files; the plan is stored so that a resumed run cuts the same chunks.

    A rerun into the same ``out`` continues that plan: it must come from the same root and settings, and files
    added under the root since are appended as new chunks (an archive that grows is ingested incrementally).
    """
    plan_path = out / "plan.json"
    settings = json.loads(json.dumps(asdict(options)))
    if plan_path.exists():
        plan = json.loads(plan_path.read_text())
        if plan.get("format", 1) != CACHE_FORMAT:
            raise ValueError(f"{out} was prepared by another version of prepare-corpus (cache format "
                             f"{plan.get('format', 1)}, this version writes {CACHE_FORMAT}: it lists and reads files "
                             "by other rules); use a new --out folder")
        if plan["settings"] != settings:
            differences = _settings_differences(plan["settings"], settings)
            raise ValueError(f"{out} was prepared with other settings ({differences}); "
                             "use a new --out folder, or the settings it was prepared with")
        if plan["root"] != str(root):
            raise ValueError(f"{out} was prepared from {plan['root']!r}, not {str(root)!r}; use a new --out folder")
        return _extend_plan(plan, sources, plan_path, root, options)
    if not sources:
        raise ValueError(f"no supported files under {str(root)!r} (expected images, DICOM, volumes or videos in "
                         f"ROOT/<dataset>/... or directly in ROOT)")
    chunks = _chunked(sources, options.files_per_chunk)
    plan = {"format": CACHE_FORMAT, "settings": settings, "root": str(root), "chunks": chunks}
    atomic_write_bytes(plan_path, json.dumps(plan).encode())
    return chunks


def _chunked(files: list[str], size: int) -> list[list[str]]:
    return [files[i : i + size] for i in range(0, len(files), size)]


def _extend_plan(plan: dict[str, Any], sources: list[str], plan_path: Path, root: Path,
                 options: CorpusOptions) -> list[list[str]]:
    """The stored chunks, with the files now under ``root`` that they lack appended as new chunks."""
    planned = {name for chunk in plan["chunks"] for name in chunk}
    added = [name for name in sources if name not in planned]
    gone = len(planned - set(sources))
    if gone:
        logger.warning("%d planned file(s) are no longer under %s; frames cached from them stay (use a new --out "
                       "folder to leave them out)", gone, root)
    if added:
        logger.info("%d file(s) added under %s since the cache was planned; ingesting them", len(added), root)
        plan["chunks"] = plan["chunks"] + _chunked(added, options.files_per_chunk)
        atomic_write_bytes(plan_path, json.dumps(plan).encode())
    return plan["chunks"]


def ingest(root: Path, out: Path, options: CorpusOptions, sources: list[str], workers: int = 1) -> None:
    """Process every chunk that has no complete result yet, in parallel, with a progress bar.

    A chunk whose reading killed its process (here, or in an earlier run that died with it) is read again file by
    file in a process of its own (a fresh one after each file that kills it), and such files are skipped, named
    (:mod:`monai_ext.data.isolation`). A stop signal (SIGTERM, SIGHUP) ends the run as Ctrl-C does
    (:func:`~monai_ext.io.signals.stop_signals_raise`): the chunks written are kept, those in flight are
    dropped, and a rerun resumes.

    Args:
        sources: the supported files now under ``root`` (:attr:`RootSurvey.sources`).

    Raises:
        ValueError: another run is writing to ``out`` (:func:`_sole_writer`).
    """
    chunks = _plan(root, out, options, sources)  # first: a refused plan leaves no folder in the user's tree
    (out / "chunks").mkdir(parents=True, exist_ok=True)
    with _sole_writer(out):
        _finish_chunk_commits(out / "chunks")
        _remove_unfinished_writes(out / "chunks")
        _ingest_chunks(root, out, options, chunks, workers)


@contextmanager
def _sole_writer(out: Path) -> Iterator[None]:
    """Within the block this process is the only ``prepare-corpus`` run writing to ``out``: an exclusive lock on
    ``out/.ingest.lock`` (released when the block ends, or with the process). A second run on the same cache (the
    command started twice, a requeued job while the first is in its grace period) would remove the first's chunk
    writes in flight as a killed run's leftovers, and the first then failed on its rename. Where the system has no
    ``fcntl`` (Windows), no lock.

    Raises:
        ValueError: another run holds the lock, naming the cache.
    """
    try:
        import fcntl
    except ImportError:
        yield
        return
    with open(out / ".ingest.lock", "a+b") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ValueError(f"another prepare-corpus run is writing to {str(out)!r}: wait for it to end (or stop it), "
                             "then rerun to resume") from None
        yield


def _ingest_chunks(root: Path, out: Path, options: CorpusOptions, chunks: list[list[str]], workers: int) -> None:
    """:func:`ingest`'s chunks, written by the only run on ``out``."""
    from tqdm import tqdm

    todo = [i for i in range(len(chunks)) if not _chunk_paths(out, i)[1].exists()]
    todo = sorted(todo + _chunks_with_changed_files(root, out, chunks, set(todo)))
    bar = tqdm(total=len(chunks), initial=len(chunks) - len(todo), desc="ingest (chunks)", unit="chunk")
    kill_after = int(os.environ.get(KILL_AFTER_CHUNKS_ENV, "0") or 0)
    written: set[int] = set()  # by this run: a chunk queued for its changed files still has its old result
    try:
        with stop_signals_raise():
            while todo:
                suspects = [i for i in todo if _chunk_started(out, i)]
                # in this process, once its killers are known: progress whatever the pool does
                for index in suspects:
                    written.add(_write_chunk(_job_of_suspect(index, chunks[index], root, out, options))[0])
                    bar.update()
                jobs = [(i, chunks[i], str(root), str(out), options, {}) for i in todo if i not in suspects]
                try:
                    # closed on any way out of the loop: an interrupt between two chunks stops the pool too
                    with closing(_run_chunks(jobs, workers, out)) as results:
                        for index, _, _ in results:
                            written.add(index)
                            bar.update()
                            _kill_hook(len(written), kill_after)
                except BrokenProcessPool:
                    if not any(_chunk_started(out, i) for i in todo):
                        raise RuntimeError(f"a worker process died before it read any chunk of {root}: rerun with "
                                           "--workers 1 to see why") from None
                    logger.warning("a reader process died; the chunks it was reading are read again file by file")
                todo = [i for i in todo if i not in written]
    except StopSignal as stop:  # the one line the CLI says at Ctrl-C; the exit status is 128 + signal, a shell's
        bar.close()
        print(f"monai_ext prepare-corpus: {stop}; the chunks already written are kept: rerun the same command to "
              "resume", file=sys.stderr, flush=True)
        raise
    bar.close()


def _remove_unfinished_writes(folder: Path) -> None:
    """Remove the temporary files of chunk writes that a killed run left in ``folder`` (SIGKILL or a power cut
    mid-write: no handler removes them), said in a log line. Never a chunk's data (a chunk is written in full, then
    renamed), but a chunk's size each (gigabytes for cine loops), and a run killed again and again (a scheduler's
    time limit) piled them up."""
    leftovers = sorted(folder.glob(".chunk_*.tmp"))
    size = 0
    for path in leftovers:
        try:
            size += path.stat().st_size
            path.unlink()
        except FileNotFoundError:
            pass
    if leftovers:
        logger.info("removed %d unfinished chunk write(s) of an earlier run that was killed (%.1f MB)",
                    len(leftovers), size / 1e6)


def _chunk_started(out: Path, index: int) -> bool:
    """Whether reading chunk ``index`` began and its process died on it (its marker outlived it)."""
    return started_marker(_chunk_paths(out, index)[1]).exists()


def _run_chunks(jobs: list[tuple], workers: int, out: Path) -> Iterator[tuple[int, int, int]]:
    """Write the chunks, here or in a pool of ``workers`` processes; yields as each is written.

    Chunks are yielded as they are written, not in order: a chunk's error is raised when it happens. Interrupted
    (Ctrl-C, a stop signal, closed early) or a chunk failed (a full disk, a cache folder not writable), the pool's
    queued chunks are cancelled and its workers ended at once: shutting down as usual would first read every chunk
    already handed to the pool (minutes of cine loops each) before the error was seen, and the workers caught
    Ctrl-C's ``KeyboardInterrupt`` per chunk and went on to the next. The chunks in flight lose their started
    markers: they were stopped, not killed by one of their files. A worker that died (``BrokenProcessPool``) leaves
    them: its chunk's files are read one by one next.
    """
    if workers <= 1:
        yield from map(_write_chunk, jobs)
        return
    # spawn, not fork: forking a process that already runs OpenMP / OpenCV threads can deadlock the children.
    # Each worker ends with this process (SIGKILL or SIGTERM here left them reading the queue, then idle for ever).
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_start_worker)
    unwritten = {job[0] for job in jobs}
    try:
        for future in as_completed([pool.submit(_write_chunk, job) for job in jobs]):
            result = future.result()
            unwritten.discard(result[0])
            yield result
    except BrokenProcessPool:
        raise
    except BaseException:  # SystemExit: a stop signal's StopSignal; Exception: a chunk's own error
        _end_workers(pool)
        for index in unwritten:
            started_marker(_chunk_paths(out, index)[1]).unlink(missing_ok=True)
        raise
    finally:
        pool.shutdown(wait=True)  # at once where the workers were ended


def _start_worker() -> None:
    """Pool initializer: the worker ends with its parent (Linux; a no-op elsewhere), and leaves Ctrl-C to it.

    A terminal's Ctrl-C reaches the whole process group; a worker raised ``KeyboardInterrupt`` in the chunk it was
    reading, which the pool hands back as that chunk's result, and read the next. The parent stops the pool instead
    (:func:`_run_chunks`).
    """
    end_with_the_launcher()
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _end_workers(pool: ProcessPoolExecutor) -> None:
    """Cancel ``pool``'s queued work and end its worker processes now, as Python 3.14's ``terminate_workers``
    does (its process table is private before that)."""
    terminate = getattr(pool, "terminate_workers", None)
    if terminate is not None:
        terminate()
        return
    processes = list((pool._processes or {}).values())  # shutdown() forgets them
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        if process.is_alive():
            process.terminate()
    for process in processes:
        process.join()


def _job_of_suspect(index: int, files: list[str], root: Path, out: Path, options: CorpusOptions) -> tuple:
    """The job of a chunk whose reading killed its process: its files read one by one in a process of their own
    first, and those that kill it skipped with the reason."""
    logger.warning("chunk %d (%d files, e.g. %s) was being read when its process died: reading its files one by "
                   "one in a separate process", index, len(files), files[0] if files else "-")
    killers = files_that_kill_their_reader(_read_file_only, files, lambda name: (name, str(root), options))
    return index, files, str(root), str(out), options, killers


def _read_file_only(args: tuple[str, str, CorpusOptions]) -> None:
    """Read one file as a chunk would, keeping nothing: does its reading kill the process?"""
    name, root, options = args
    cv2.setNumThreads(1)
    with collected_reader_warnings():
        process_file(Path(root) / name, Path(root), options)


def _chunks_with_changed_files(root: Path, out: Path, chunks: list[list[str]], todo: set[int]) -> list[int]:
    """Cached chunks holding a file whose size or modification time changed since it was read (a file still being
    copied was skipped or cut short, a study re-exported in place): they are read again, said in a warning. Chunks
    cached before sizes and times were recorded (``stats`` absent) are kept as they are."""
    changed, names = [], []
    for index in range(len(chunks)):
        if index in todo:
            continue
        stored = json.loads(_chunk_paths(out, index)[1].read_text()).get("stats")
        if stored is None:
            continue
        now = source_stats(root, list(stored))
        moved = [name for name, stat in stored.items() if now[name] is not None and now[name] != stat]
        if moved:
            changed.append(index)
            names += moved
    if changed:
        logger.warning("%d file(s) changed since they were cached (e.g. %s); reading their %d chunk(s) again",
                       len(names), ", ".join(names[:3]), len(changed))
    return changed


def _kill_hook(done: int, kill_after: int) -> None:
    """Test-only (``MONAI_EXT_TEST_KILL_AFTER_CHUNKS``): SIGKILL this process once ``kill_after`` chunks are written."""
    if kill_after and done >= kill_after:
        os.kill(os.getpid(), signal.SIGKILL)


# ------------------------------------------------------------------------------------------- dedup and exclusion
def hamming(a: int, b: int) -> int:
    """Number of bits in which the 64-bit hashes ``a`` and ``b`` differ."""
    return (a ^ b).bit_count()


#: Number of stored hashes for which :class:`NearDuplicateIndex` plans its bands: a million views (an archive of cine
#: loops). The plan's cost grows slowly past it; planned for a few thousand, a 9-bit threshold would split the hash
#: into ten 6-bit bands whose buckets each hold a sixty-fourth of a large corpus.
INDEX_PLANNED_SIZE = 2**20


class NearDuplicateIndex:
    """Finds a stored hash within ``threshold`` bits of a query, exactly, by the pigeonhole principle: with the 64
    bits split into ``bands``, two hashes that close differ by at most ``threshold // bands`` bits on at least one
    band, so a query looks up every key within that radius of each of its bands (multi-index hashing).

    The number of bands is the one with the least expected work per query (:func:`_band_plan`): a band per bit of
    threshold (exact keys) made buckets of 7 bits at 8 bits of threshold, each holding 1/128 of the corpus.
    """

    def __init__(self, threshold: int) -> None:
        self.threshold = threshold
        bands, radius = _band_plan(threshold)
        edges = [int(v) for v in np.linspace(0, 64, bands + 1).astype(int)]  # Python ints: masks reach 2**64
        self.masks = [((1 << (hi - lo)) - 1) << lo for lo, hi in zip(edges[:-1], edges[1:])]
        # the keys within ``radius`` bits of a band's key: the key XOR each of these
        self.flips = [_bit_flips(lo, hi, radius) for lo, hi in zip(edges[:-1], edges[1:])]
        self.tables: list[dict[int, list[tuple[int, str]]]] = [{} for _ in self.masks]

    def find(self, value: int) -> str | None:
        """Name of a stored hash within ``threshold`` bits of ``value`` (the first added, per band), or None."""
        for mask, flips, table in zip(self.masks, self.flips, self.tables):
            # map and filter run the hundreds of key lookups of a wide radius in C, not in a Python loop
            for bucket in filter(None, map(table.get, map((value & mask).__xor__, flips))):
                for stored, name in bucket:
                    if hamming(stored, value) <= self.threshold:
                        return name
        return None

    def add(self, value: int, name: str) -> None:
        """Store the 64-bit hash ``value`` under ``name``."""
        for mask, table in zip(self.masks, self.tables):
            table.setdefault(value & mask, []).append((value, name))


def _band_plan(threshold: int, stored: int = INDEX_PLANNED_SIZE) -> tuple[int, int]:
    """(bands, radius per band) of the 64 bits with the least expected work per query for ``stored`` hashes: its
    key lookups plus the hashes compared in the buckets they find (uniform hashes assumed)."""
    def work(bands: int) -> float:
        width, radius = 64 // bands, threshold // bands
        lookups = bands * sum(math.comb(width, k) for k in range(radius + 1))
        return lookups * (1 + stored / 2.0**width)

    bands = min(range(1, max(threshold, 0) + 2), key=work)
    return bands, max(threshold, 0) // bands


def _bit_flips(lo: int, hi: int, radius: int) -> list[int]:
    """Every mask of at most ``radius`` set bits among bits ``lo`` to ``hi - 1``, 0 (the key itself) first."""
    return [sum(1 << bit for bit in bits) for count in range(radius + 1)
            for bits in itertools.combinations(range(lo, hi), count)]


#: Perceptual-hash bits within which a corpus frame matches an evaluation image. The leak guard stays on when
#: ``dedup_threshold`` turns near-duplicate removal inside the corpus off (-1, to keep every cine frame). Wider than
#: :data:`DEDUP_THRESHOLD`: an evaluation image leaked costs the evaluation, a training frame left out next to nothing
#: (at 8 bits 1.5% of the copies measured for :data:`DEDUP_THRESHOLD` were missed, 14% by the format-5 hash at 4).
EVALUATION_NEAR_BITS = 8


def evaluation_hashes(folders: Iterable[str | os.PathLike],
                      options: CorpusOptions) -> tuple[dict[str, str], NearDuplicateIndex, list[dict[str, str]]]:
    """Hashes of every frame of the evaluation folders, prepared as the corpus frames are, and the evaluation files
    that could not be read (``{"source", "reason"}``: their frames could still be in the corpus).

    Every frame and slice and every DICOM whatever its modality is hashed: the corpus's own strides and modality
    filter say what to train on, not what must stay out of training.
    """
    every_frame = replace(options, frames=replace(options.frames, frame_stride=1, slice_stride=1, modality=None))
    exact, near = {}, NearDuplicateIndex(max(options.dedup_threshold, EVALUATION_NEAR_BITS))
    unread = []
    for folder in folders:
        folder = Path(folder).resolve()
        for path in walk_files(folder):
            if source_kind(path) is None:
                continue
            with collected_reader_warnings():  # not corpus files: their readers' notes are not the report's
                _, records, reason = process_file(path, folder.parent, every_frame)
            if reason:
                unread.append({"source": path.relative_to(folder.parent).as_posix(), "reason": reason})
            for record in records:
                exact.setdefault(record["sha256"], record["source"])
                near.add(int(record["phash"], 16), record["source"])
    return exact, near, unread


def decide(records: list[dict], options: CorpusOptions, exclude_datasets: Sequence[str],
           eval_exact: dict[str, str], eval_near: NearDuplicateIndex | None) -> None:
    """Set ``keep`` and ``reason`` of every record, in manifest order (the first of a duplicate group is kept).

    A frame of an excluded dataset keeps its copies in other datasets out too (``matches_excluded`` when exact,
    ``near_excluded`` within ``dedup_threshold`` bits and at least :data:`EVALUATION_NEAR_BITS`): exclusion is how
    an evaluation set is kept out of pretraining, and the same image filed under a second dataset would leak it back.
    """
    excluded = {name.lower() for name in exclude_datasets}
    excluded_exact, excluded_near = _excluded_frames(records, excluded, options)
    seen: dict[str, str] = {}
    near = NearDuplicateIndex(options.dedup_threshold) if options.dedup_threshold >= 0 else None
    for r in records:
        phash = int(r["phash"], 16)
        reason = r.get("drop", "")
        if reason:
            pass  # left out while the view was prepared (no_signal, extreme_aspect, text_page, doppler_flow,
            #       colour_overlay, spectral)
        elif r["dataset"].lower() in excluded:
            reason = "excluded_dataset"
        elif r["sha256"] in excluded_exact:
            reason = f"matches_excluded:{excluded_exact[r['sha256']]}"
        elif excluded_exact and (match := excluded_near.find(phash)):
            reason = f"near_excluded:{match}"
        elif r["sha256"] in eval_exact:
            reason = f"matches_evaluation:{eval_exact[r['sha256']]}"
        elif eval_near is not None and (match := eval_near.find(phash)):
            reason = f"near_evaluation:{match}"
        elif r["sha256"] in seen:
            reason = f"duplicate_of:{seen[r['sha256']]}"
        elif near is not None and (match := near.find(phash)):
            reason = f"near_duplicate_of:{match}"
        r["keep"], r["reason"] = (0, reason) if reason else (1, "")
        if not reason:
            seen[r["sha256"]] = r["frame_id"]
            if near is not None:
                near.add(phash, r["frame_id"])


def _excluded_frames(records: list[dict], excluded: set[str],
                     options: CorpusOptions) -> tuple[dict[str, str], NearDuplicateIndex]:
    """Exact (sha256 -> frame id) and near (pHash) indexes of the frames of the excluded datasets (lower-case
    names), gathered before any frame is decided: a copy listed before its excluded original is caught too."""
    exact: dict[str, str] = {}
    near = NearDuplicateIndex(max(options.dedup_threshold, EVALUATION_NEAR_BITS))
    for r in records:
        if r["dataset"].lower() in excluded and not r.get("drop"):
            exact.setdefault(r["sha256"], r["frame_id"])
            near.add(int(r["phash"], 16), r["frame_id"])
    return exact, near


# --------------------------------------------------------------------------------------------------- top level
def check_dataset_names(root: Path, survey: RootSurvey, names: Sequence[str]) -> None:
    """Refuse, before hours of ingestion, a dataset to exclude that is not under ``root``: a misspelt name
    (``BUSBRA`` for ``BUS-BRA``) would otherwise let an evaluation set leak into the pretraining corpus unnoticed.

    Raises:
        ValueError: naming the unknown names and the datasets found (compared case-insensitively, as excluded).
    """
    if not names:
        return
    found = survey.datasets(root)
    unknown = [name for name in names if name.lower() not in {d.lower() for d in found}]
    if unknown:
        raise ValueError(f"exclude_datasets {unknown!r} match no dataset under {str(root)!r}; its datasets: {found!r}")


def check_out_folder(root: Path, out: Path) -> None:
    """Refuse a cache folder that is the root, holds it, or is a folder of the root already holding other files (a
    dataset): the walk leaves the cache out, so the data would be ingested without those files, or not at all, and
    the cache's chunks would be written among the user's data.

    Raises:
        ValueError: naming the folder and what to do.
    """
    real = Path(os.path.realpath(out))
    if real == root or root.is_relative_to(real):
        raise ValueError(f"--out {str(out)!r} is (or holds) the corpus root {str(root)!r}; choose a folder for the "
                         "cache outside the data")
    if real.is_relative_to(root) and real.is_dir() and not (real / "plan.json").exists() and any(real.iterdir()):
        raise ValueError(f"--out {str(out)!r} lies inside the corpus root and already holds files that are no corpus "
                         "cache (a dataset?); choose a new folder for the cache")


def prepare_corpus(root: str | os.PathLike, out: str | os.PathLike, options: CorpusOptions = CorpusOptions(),
                   workers: int = 1, exclude_datasets: Sequence[str] = (),
                   evaluation_folders: Sequence[str | os.PathLike] = ()) -> dict[str, Any]:
    """Ingest ``root`` into the cache ``out`` (resumable), then deduplicate, exclude, and write the manifest,
    ``kept.npy`` and the report. Returns the report."""
    root, out = Path(root).resolve(), Path(out)
    for folder, role in [(root, "corpus root"), *((Path(f), "evaluation folder") for f in evaluation_folders)]:
        if not Path(folder).exists():
            raise FileNotFoundError(f"{role} {str(folder)!r} does not exist")
        if not Path(folder).is_dir():
            raise NotADirectoryError(f"{role} {str(folder)!r} is not a folder")
    if workers < 0:  # 0 and 1 both ingest in this process
        raise ValueError(f"workers must be >= 0, got {workers!r}")
    check_out_folder(root, out)
    survey = survey_root(root, out)
    check_dataset_names(root, survey, exclude_datasets)
    ingest(root, out, options, survey.sources, workers)
    chunks = json.loads((out / "plan.json").read_text())["chunks"]  # as ingest() planned and finished them
    records, skipped, warned = [], [], []
    for index in range(len(chunks)):
        result = json.loads(_chunk_paths(out, index)[1].read_text())
        skipped += result["skipped"]
        warned += result.get("warnings", [])  # chunks written before readers' warnings were kept have none
        for row, record in enumerate(result["records"]):
            records.append({**record, "frame_id": f"{index}:{row}", "chunk": index, "row": row})
    eval_exact, eval_near, eval_unread = evaluation_hashes(evaluation_folders, options) if evaluation_folders \
        else ({}, None, [])
    for entry in eval_unread:
        logger.warning("evaluation file not read, so not checked against the corpus: %s", entry["reason"])
    decide(records, options, exclude_datasets, eval_exact, eval_near)
    _write_manifest(out / "manifest.csv", records)
    kept = np.array([[r["chunk"], r["row"]] for r in records if r["keep"]], np.int32).reshape(-1, 2)
    atomic_write_bytes(out / "kept.npy", _npy_bytes(kept))
    report = build_report(records, skipped, warned, options, eval_unread)
    report["files_not_read"] = survey.not_read
    if report["files_not_read"]:
        logger.warning("%d file(s) under %s are of types the corpus does not read, left out (by suffix: %s)",
                       sum(report["files_not_read"].values()), root,
                       counts_text(report["files_not_read"]))
    atomic_write_bytes(out / "report.json", json.dumps(report, indent=2).encode())
    write_report_png(out, root, records, report, options)
    return report


def _write_manifest(path: Path, records: list[dict]) -> None:
    import io

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=MANIFEST_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(records)
    # A source name holding bytes that are not UTF-8 (a Windows archive unzipped on Linux) comes from os.walk as
    # surrogate escapes, which strict UTF-8 refuses after the whole ingestion; "backslashreplace" keeps the CSV
    # UTF-8 and writes such a byte as \udcXX, the escape report.json (json.dumps) gives the same name.
    atomic_write_bytes(path, buffer.getvalue().encode("utf-8", "backslashreplace"))


def build_report(records: list[dict], skipped: list[dict], warned: list[dict], options: CorpusOptions,
                 evaluation_unread: Sequence[dict] = ()) -> dict[str, Any]:
    """Counts per dataset, removals by cause, skipped files with reasons, files read with readers' warnings (each
    ``{"source", "warnings"}``), evaluation files that could not be checked against the corpus (each ``{"source",
    "reason"}``), and per dataset the mean fractions of the field of view found as annotation and as colour flow
    with the number of frames that had any."""
    per_dataset: dict[str, dict[str, Any]] = {}
    removed: dict[str, int] = {}
    for r in records:
        entry = per_dataset.setdefault(r["dataset"], {"frames": 0, "kept": 0, "annotation_fraction_mean": 0.0,
                                                      "frames_with_annotation": 0, "flow_fraction_mean": 0.0,
                                                      "frames_with_flow": 0})
        entry["frames"] += 1
        entry["kept"] += r["keep"]
        entry["annotation_fraction_mean"] += float(r.get("annotation_fraction", 0.0))
        entry["flow_fraction_mean"] += float(r.get("flow_fraction", 0.0))
        entry["frames_with_annotation"] += int(float(r.get("annotation_fraction", 0.0)) > 0)
        entry["frames_with_flow"] += int(float(r.get("flow_fraction", 0.0)) > 0)
        if not r["keep"]:
            cause = r["reason"].split(":")[0]
            removed[cause] = removed.get(cause, 0) + 1
    for entry in per_dataset.values():
        for key in ("annotation_fraction_mean", "flow_fraction_mean"):
            entry[key] = round(entry[key] / entry["frames"], 5)
    return {"frames": len(records), "kept": sum(r["keep"] for r in records), "removed": removed,
            "datasets": per_dataset, "skipped_files": skipped, "reader_warnings": warned,
            "evaluation_files_unread": list(evaluation_unread),
            "settings": json.loads(json.dumps(asdict(options)))}


def before_after_pairs(root: Path, out: Path, records: list[dict], options: CorpusOptions,
                       count: int = 8) -> list[tuple[np.ndarray, np.ndarray, dict]]:
    """(before, after, record) for up to ``count`` kept frames, those with the most annotation and flow first: the
    same view prepared again as shown, without de-annotation and with its colour flow as gray (the cache does not
    keep it), and the cached frame."""
    kept = [r for r in records if r["keep"]]
    kept.sort(key=lambda r: -(float(r["annotation_fraction"]) + float(r["flow_fraction"])))
    chosen = kept[:count]
    cache = CorpusFrames(out, kept_only=False)
    plain = replace(options, deannotate=False, doppler="keep")  # "before" showed the flow already inpainted
    pairs = []
    for source in dict.fromkeys(r["source"] for r in chosen):
        with collected_reader_warnings():  # read before: its notes are in the report already
            frames, again, _ = process_file(root / source, root, plain)
        before = {(a["frame"], a["view"]): f for f, a in zip(frames, again)}
        for r in (r for r in chosen if r["source"] == source):
            if (r["frame"], r["view"]) in before:
                pairs.append((before[(r["frame"], r["view"])], cache.frame(r["chunk"], r["row"]), r))
    return pairs


def write_report_png(out: Path, root: Path, records: list[dict], report: dict[str, Any], options: CorpusOptions,
                     pairs: int = 8) -> None:
    """``report.png``: kept and removed frames per dataset, and before/after de-annotation pairs for the kept frames
    with the most annotation and colour flow, each titled with its source, frame and view."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from monai_ext.io.figures import save_figure

    chosen = before_after_pairs(root, out, records, options, pairs)
    columns = 2  # pairs per row
    rows = max(1, int(np.ceil(len(chosen) / columns)))
    # tall enough for one readable bar per dataset too (46 datasets in the height of 4 pair rows overlapped)
    fig = plt.figure(figsize=(6 + 5.2 * columns, max(4.5, 2.9 * rows, 1.5 + 0.22 * len(report["datasets"]))), dpi=100)
    grid = fig.add_gridspec(rows, 1 + columns, width_ratios=[1.2] + [1.0] * columns)
    _draw_dataset_bars(fig.add_subplot(grid[:, 0]), report)
    state = "on" if options.deannotate else "off"
    for i, (before, after, record) in enumerate(chosen):
        axis = fig.add_subplot(grid[i // columns, 1 + i % columns])
        gap = np.full((before.shape[0], max(2, before.shape[1] // 32)), 255, np.uint8)
        axis.imshow(np.hstack([before, gap, after]), cmap="gray", vmin=0, vmax=255)
        axis.set_title(f"{_shortened(record['source'])} f{record['frame']} v{record['view']}", fontsize=8)
        axis.axis("off")
    if not chosen:
        fig.text(0.7, 0.5, "no kept frame to show", ha="center")
    fig.suptitle(f"left: kept and removed frames; pairs: as shown | as cached (de-annotation {state}, "
                 f"doppler {options.doppler})", fontsize=10)
    fig.tight_layout()
    save_figure(fig, out / "report.png")


def _draw_dataset_bars(bars: Any, report: dict[str, Any]) -> None:
    from matplotlib.ticker import MaxNLocator

    names = sorted(report["datasets"])
    kept = [report["datasets"][n]["kept"] for n in names]
    removed = [report["datasets"][n]["frames"] - report["datasets"][n]["kept"] for n in names]
    bars.barh(names, kept, label="kept")
    bars.barh(names, removed, left=kept, label="removed")
    bars.invert_yaxis()  # the first name at the top: barh stacks upwards, which read Z to A
    bars.set_xlabel("frames")
    bars.xaxis.set_major_locator(MaxNLocator(integer=True))  # frames are counted: a few of them were ticked at 0.5
    bars.legend()
    bars.set_title(f"{report['kept']} of {report['frames']} frames kept")


def _shortened(source: str, length: int = 40) -> str:
    """A source path fit for a title: its end, where the file name is; bytes of a name that are not UTF-8 (kept
    by Python as lone surrogates, which no font draws) as the replacement character."""
    source = source.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return source if len(source) <= length else "..." + source[-(length - 3):]


# ------------------------------------------------------------------------------------------------ training reader
def is_corpus_cache(path: str | os.PathLike | None) -> bool:
    """Whether ``path`` is a folder written by ``prepare-corpus`` (``kept.npy`` and ``chunks/``)."""
    folder = path_setting(path, "dataset_dir")
    return folder is not None and (Path(folder) / "kept.npy").is_file() and (Path(folder) / "chunks").is_dir()


class CorpusFrames(torch.utils.data.Dataset):
    """The kept frames of a prepared cache as a dataset of ``{"image": (1, S, S) uint8 tensor, "frame_id": str}``.

    Shards are opened with ``np.load(mmap_mode="r")`` on first use in each worker process, so reading a frame is a
    page-cache copy of S * S bytes, not a decode.

    Args:
        cache_dir: a folder written by :func:`prepare_corpus`.
        indices: positions into the kept frames to expose (a split); None exposes all.
        kept_only: False exposes every cached frame through :meth:`frame` (used by the report).
    """

    def __init__(self, cache_dir: str | os.PathLike, indices: Sequence[int] | None = None, kept_only: bool = True) -> None:
        self.root = Path(setting_text(cache_dir, "dataset_dir"))
        if kept_only and not is_corpus_cache(self.root):
            raise ValueError(f"{str(self.root)!r} is not a prepared corpus cache (no kept.npy / chunks)")
        self.kept = np.load(self.root / "kept.npy") if kept_only else np.zeros((0, 2), np.int32)
        if indices is not None:
            self.kept = self.kept[np.asarray(indices, dtype=np.int64)]
        self._shards: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.kept)

    def frame(self, chunk: int, row: int) -> np.ndarray:
        """(S, S) uint8 view of one cached frame."""
        if chunk not in self._shards:
            self._shards[chunk] = np.load(_chunk_paths(self.root, chunk)[0], mmap_mode="r")
        return self._shards[chunk][row]

    def __getitem__(self, index: int) -> dict[str, Any]:
        chunk, row = (int(v) for v in self.kept[index])
        return {"image": torch.from_numpy(np.array(self.frame(chunk, row)))[None], "frame_id": f"{chunk}:{row}"}


def kept_sources(cache_dir: str | os.PathLike) -> list[tuple[str, int]]:
    """(source file, its path under the corpus root; frame number in it) of each kept frame of a prepared cache, in
    ``kept.npy``'s order: frames of one cine loop, multi-frame DICOM or volume share the file."""
    root = Path(setting_text(cache_dir, "dataset_dir"))
    kept = np.load(root / "kept.npy")
    records: dict[int, list[dict]] = {}
    for chunk in sorted({int(c) for c in kept[:, 0]}):
        records[chunk] = json.loads(_chunk_paths(root, chunk)[1].read_text())["records"]
    return [(str(records[c][r]["source"]), int(records[c][r]["frame"])) for c, r in kept.tolist()]


class LoadCorpusFramed(MapTransform):
    """``{"image": index of a kept frame}`` -> ``{"image": (1, S, S) uint8 tensor}`` from a prepared cache.

    The dataset keeps one memory map per shard (opened lazily, so each DataLoader worker maps its own).
    """

    def __init__(self, keys: KeysCollection, cache_dir: str | os.PathLike, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.frames = CorpusFrames(cache_dir)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.frames[int(d[key])]["image"]
        return d
