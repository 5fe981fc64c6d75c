"""A pretraining corpus from a tree of ultrasound datasets: frames cropped to the field of view, resized, hashed,
deduplicated, cleared of evaluation images, and stored as memory-mapped uint8 shards.

Layout of ``ROOT``: one folder per dataset (``ROOT/<dataset>/...``, any depth below). Layout of the cache:

- ``chunks/chunk_NNNNNN.npy``: (n, S, S) uint8 frames of one chunk of source files, and ``chunk_NNNNNN.json``: their
  records and the files skipped with reasons. The JSON is written after the array, both atomically, so a chunk
  with a JSON is complete; a rerun skips those (resumable).
- ``manifest.csv``: every frame (kept or not, with the reason), ``kept.npy``: (K, 2) int32 (chunk, row) of the
  training frames, ``report.json`` and ``report.png``.

Only pixels and pixel-describing attributes are read from DICOM files (see :mod:`monai_ext.data.frames`); the
manifest holds paths relative to ``ROOT``, never header values.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import multiprocessing
import os
from collections.abc import Hashable, Iterable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform

from monai_ext.data.frames import FrameOptions, SkippedSource, iter_frames, source_kind
from monai_ext.io.atomic import atomic_write_bytes
from monai_ext.io.errors import UnreadableImageError

logger = logging.getLogger(__name__)
MANIFEST_COLUMNS = ("frame_id", "dataset", "source", "frame", "orig_height", "orig_width", "sha256", "phash",
                    "chunk", "row", "keep", "reason")


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
            exact duplicates are removed).
        fov_threshold: gray level at or below which a pixel is background for field-of-view detection (above 0 so
            that JPEG noise around the image does not count as image).
    """

    size: int = 256
    min_size: int = 16
    crop_fov: bool = True
    files_per_chunk: int = 64
    frames: FrameOptions = field(default_factory=FrameOptions)
    dedup_threshold: int = 4
    fov_threshold: int = 10

    def __post_init__(self) -> None:
        if self.size < 16:
            raise ValueError(f"size must be at least 16, got {self.size!r}")
        if self.files_per_chunk < 1:
            raise ValueError(f"files_per_chunk must be at least 1, got {self.files_per_chunk!r}")
        if not -1 <= self.dedup_threshold <= 16:
            raise ValueError(f"dedup_threshold must be in [-1, 16], got {self.dedup_threshold!r}")


# ----------------------------------------------------------------------------------------------------- per frame
def fit_square(gray: np.ndarray, size: int) -> np.ndarray:
    """Resize (H, W) uint8 keeping the aspect ratio, then pad to (size, size): centred across, padded below (the
    probe stays at the top)."""
    h, w = gray.shape
    scale = size / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(gray, (nw, nh), interpolation=interpolation)
    out = np.zeros((size, size), np.uint8)
    left = (size - nw) // 2
    out[:nh, left : left + nw] = resized
    return out


def perceptual_hash(gray: np.ndarray) -> int:
    """64-bit DCT perceptual hash (pHash): sign of the 8x8 low-frequency DCT of a 32x32 reduction against its
    median. Written here because the ``imagehash`` package would pull a second image stack for ten lines."""
    small = cv2.resize(gray, (32, 32), interpolation=cv2.INTER_AREA).astype(np.float32)
    low = cv2.dct(small)[:8, :8].flatten()
    bits = low > np.median(low[1:])
    return int(np.packbits(bits).view(">u8")[0])


def shrink_large(gray: np.ndarray, region_box: Sequence[int] | None, size: int) -> tuple[np.ndarray, Any]:
    """Frames far larger than the cache resolution are reduced to ``max(1024, 4 * size)`` on their long side first:
    field-of-view detection then costs the same on a 12000 x 12000 scan as on a screen capture."""
    limit = max(1024, 4 * size)
    h, w = gray.shape
    if max(h, w) <= limit:
        return gray, region_box
    scale = limit / max(h, w)
    small = cv2.resize(gray, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    box = None if region_box is None else tuple(int(round(v * scale)) for v in region_box)
    return small, box


def halve_until(gray: np.ndarray, side: int) -> tuple[np.ndarray, int]:
    """Halve (H, W) uint8 with 2x2 means while its long side stays at least ``side``: (reduced, total factor).

    Exact halvings take OpenCV's integer-factor INTER_AREA path, over ten times faster than an arbitrary scale (an
    odd last row or column is dropped, which detection does not notice).
    """
    factor = 1
    while max(gray.shape) >= 2 * side and min(gray.shape) >= 4:
        h, w = gray.shape[0] // 2 * 2, gray.shape[1] // 2 * 2
        gray = cv2.resize(gray[:h, :w], (w // 2, h // 2), interpolation=cv2.INTER_AREA)
        factor *= 2
    return gray, factor


def crop_to_view(gray: np.ndarray, region_box: Sequence[int] | None, threshold: int = 10,
                 detect_side: int = 160) -> np.ndarray:
    """Crop to the DICOM region if given, else to the detected field of view (unchanged if none is found); pixels
    outside the view inside the crop are set to black.

    Detection runs on a copy halved until its long side is below ``2 * detect_side``: the view is a large, smooth
    shape, and detection at full size would cost more than decoding the file. The reduced mask is scaled back up
    over the crop only, bilinearly, so its edges are smooth rather than blocky.
    """
    from monai_ext.transforms.fov import detect_fov

    if region_box is not None:
        x0, y0, x1, y1 = (int(v) for v in region_box)
        gray = gray[max(y0, 0) : y1, max(x0, 0) : x1]
    small, factor = halve_until(gray, detect_side)
    fov = detect_fov(small, threshold)
    if fov.kind == "none":
        return gray
    top, left, bottom, right = fov.bbox
    h, w = gray.shape
    # the reduced copy dropped odd last rows/columns: a box reaching its edge reaches the full image's edge
    bottom = h if bottom == small.shape[0] else bottom * factor
    right = w if right == small.shape[1] else right * factor
    top, left = top * factor, left * factor
    view = gray[top:bottom, left:right]
    mask = fov.mask[fov.bbox[0] : fov.bbox[2], fov.bbox[1] : fov.bbox[3]]
    if factor > 1:
        mask = cv2.resize(mask.astype(np.float32), (view.shape[1], view.shape[0]), interpolation=cv2.INTER_LINEAR) >= 0.5
    return np.where(mask, view, 0).astype(np.uint8)


def process_file(path: Path, root: Path, options: CorpusOptions) -> tuple[list[np.ndarray], list[dict], str | None]:
    """Frames of one file, cached-ready: (frames (S, S) uint8, their records, skip reason or None)."""
    relative = path.relative_to(root).as_posix()
    frames, records = [], []
    try:
        for frame in iter_frames(path, options.frames):
            h, w = frame.pixels.shape
            if min(h, w) < options.min_size:
                raise SkippedSource(f"{relative}: frame {frame.index} is {h}x{w}, smaller than {options.min_size}")
            pixels, box = shrink_large(frame.pixels, frame.region_box, options.size)
            view = crop_to_view(pixels, box, options.fov_threshold) if options.crop_fov else pixels
            square = fit_square(view, options.size)
            frames.append(square)
            records.append({"dataset": relative.split("/")[0], "source": relative, "frame": frame.index,
                            "orig_height": h, "orig_width": w, "sha256": hashlib.sha256(square.tobytes()).hexdigest(),
                            "phash": f"{perceptual_hash(square):016x}"})
    except (UnreadableImageError, SkippedSource) as e:
        return [], [], _relative_message(e, path, relative)
    except MemoryError:
        return [], [], f"{relative}: too large to decode in memory"
    return frames, records, None


def _relative_message(error: Exception, path: Path, relative: str) -> str:
    """The error message with the absolute path replaced by the path under the corpus root."""
    return str(error).replace(str(path), relative)


# ------------------------------------------------------------------------------------------------------- chunks
def _chunk_paths(out: Path, index: int) -> tuple[Path, Path]:
    base = out / "chunks" / f"chunk_{index:06d}"
    return base.with_suffix(".npy"), base.with_suffix(".json")


def _write_chunk(args: tuple[int, list[str], str, str, CorpusOptions]) -> tuple[int, int, int]:
    """Worker: process the files of one chunk and write the chunk atomically. Returns (index, frames, skipped)."""
    index, files, root, out, options = args
    cv2.setNumThreads(1)  # one process per core already
    frames, records, skipped = [], [], []
    for name in files:
        f, r, reason = process_file(Path(root) / name, Path(root), options)
        if reason:
            skipped.append({"source": name, "reason": reason})
        frames += f
        records += r
    array_path, json_path = _chunk_paths(Path(out), index)
    stack = np.stack(frames) if frames else np.zeros((0, options.size, options.size), np.uint8)
    buffer = _npy_bytes(stack)
    atomic_write_bytes(array_path, buffer)
    atomic_write_bytes(json_path, json.dumps({"files": files, "records": records, "skipped": skipped}).encode())
    return index, len(frames), len(skipped)


def _npy_bytes(array: np.ndarray) -> bytes:
    import io

    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def list_sources(root: Path) -> list[str]:
    """Supported files under ``root`` (relative POSIX paths, sorted), at least one folder deep (the dataset)."""
    found = []
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            path = Path(dirpath) / name
            relative = path.relative_to(root).as_posix()
            if "/" in relative and not name.startswith(".") and source_kind(path):
                found.append(relative)
    return sorted(found)


def _plan(root: Path, out: Path, options: CorpusOptions) -> list[list[str]]:
    """Chunks of source files; the plan is stored so that a resumed run cuts the same chunks."""
    plan_path = out / "plan.json"
    settings = json.loads(json.dumps(asdict(options)))
    if plan_path.exists():
        plan = json.loads(plan_path.read_text())
        if plan["settings"] != settings:
            raise ValueError(f"{out} was prepared with other settings {plan['settings']!r}; use a new --out folder")
        return plan["chunks"]
    sources = list_sources(root)
    if not sources:
        raise ValueError(f"no supported files under {str(root)!r} (expected ROOT/<dataset>/...)")
    chunks = [sources[i : i + options.files_per_chunk] for i in range(0, len(sources), options.files_per_chunk)]
    atomic_write_bytes(plan_path, json.dumps({"settings": settings, "chunks": chunks}).encode())
    return chunks


def ingest(root: Path, out: Path, options: CorpusOptions, workers: int = 1) -> None:
    """Process every chunk that has no complete result yet, in parallel, with a progress bar."""
    from tqdm import tqdm

    (out / "chunks").mkdir(parents=True, exist_ok=True)
    chunks = _plan(root, out, options)
    todo = [i for i in range(len(chunks)) if not _chunk_paths(out, i)[1].exists()]
    jobs = [(i, chunks[i], str(root), str(out), options) for i in todo]
    bar = tqdm(total=len(chunks), initial=len(chunks) - len(todo), desc="ingest (chunks)", unit="chunk")
    if workers <= 1:
        for job in jobs:
            _write_chunk(job)
            bar.update()
    else:
        # spawn, not fork: forking a process that already runs OpenMP / OpenCV threads can deadlock the children.
        with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            for _ in pool.map(_write_chunk, jobs):
                bar.update()
    bar.close()


# ------------------------------------------------------------------------------------------- dedup and exclusion
def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()


class NearDuplicateIndex:
    """Finds a stored hash within ``threshold`` bits of a query, exactly, by the pigeonhole principle: split the
    64 bits into ``threshold + 1`` bands; two hashes that close agree on at least one band."""

    def __init__(self, threshold: int) -> None:
        self.threshold = threshold
        bands = threshold + 1
        edges = [int(v) for v in np.linspace(0, 64, bands + 1).astype(int)]  # Python ints: masks reach 2**64
        self.masks = [(((1 << (hi - lo)) - 1) << lo, lo) for lo, hi in zip(edges[:-1], edges[1:])]
        self.tables: list[dict[int, list[tuple[int, str]]]] = [{} for _ in self.masks]

    def find(self, value: int) -> str | None:
        for (mask, _), table in zip(self.masks, self.tables):
            for stored, name in table.get(value & mask, ()):
                if hamming(stored, value) <= self.threshold:
                    return name
        return None

    def add(self, value: int, name: str) -> None:
        for (mask, _), table in zip(self.masks, self.tables):
            table.setdefault(value & mask, []).append((value, name))


def evaluation_hashes(folders: Iterable[str | os.PathLike], options: CorpusOptions) -> tuple[dict[str, str], NearDuplicateIndex]:
    """Hashes of every frame of the evaluation folders, prepared exactly as the corpus frames are."""
    exact, near = {}, NearDuplicateIndex(max(options.dedup_threshold, 0))
    for folder in folders:
        folder = Path(folder)
        for dirpath, _, names in os.walk(folder):
            for name in sorted(names):
                path = Path(dirpath) / name
                if source_kind(path) is None:
                    continue
                _, records, _ = process_file(path, folder.parent, options)
                for record in records:
                    exact.setdefault(record["sha256"], record["source"])
                    near.add(int(record["phash"], 16), record["source"])
    return exact, near


def decide(records: list[dict], options: CorpusOptions, exclude_datasets: Sequence[str],
           eval_exact: dict[str, str], eval_near: NearDuplicateIndex | None) -> None:
    """Set ``keep`` and ``reason`` of every record, in manifest order (the first of a duplicate group is kept)."""
    excluded = {name.lower() for name in exclude_datasets}
    seen: dict[str, str] = {}
    near = NearDuplicateIndex(options.dedup_threshold) if options.dedup_threshold >= 0 else None
    for r in records:
        phash = int(r["phash"], 16)
        reason = ""
        if r["dataset"].lower() in excluded:
            reason = "excluded_dataset"
        elif r["sha256"] in eval_exact:
            reason = f"matches_evaluation:{eval_exact[r['sha256']]}"
        elif eval_near is not None and options.dedup_threshold >= 0 and (match := eval_near.find(phash)):
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


# --------------------------------------------------------------------------------------------------- top level
def prepare_corpus(root: str | os.PathLike, out: str | os.PathLike, options: CorpusOptions = CorpusOptions(),
                   workers: int = 1, exclude_datasets: Sequence[str] = (),
                   evaluation_folders: Sequence[str | os.PathLike] = ()) -> dict[str, Any]:
    """Ingest ``root`` into the cache ``out`` (resumable), then deduplicate, exclude, and write the manifest,
    ``kept.npy`` and the report. Returns the report."""
    root, out = Path(root).resolve(), Path(out)
    if not root.is_dir():
        raise ValueError(f"corpus root {str(root)!r} is not a folder")
    ingest(root, out, options, workers)
    chunks = _plan(root, out, options)
    records, skipped = [], []
    for index in range(len(chunks)):
        result = json.loads(_chunk_paths(out, index)[1].read_text())
        skipped += result["skipped"]
        for row, record in enumerate(result["records"]):
            records.append({**record, "frame_id": f"{index}:{row}", "chunk": index, "row": row})
    eval_exact, eval_near = evaluation_hashes(evaluation_folders, options) if evaluation_folders else ({}, None)
    decide(records, options, exclude_datasets, eval_exact, eval_near)
    _write_manifest(out / "manifest.csv", records)
    kept = np.array([[r["chunk"], r["row"]] for r in records if r["keep"]], np.int32).reshape(-1, 2)
    atomic_write_bytes(out / "kept.npy", _npy_bytes(kept))
    report = build_report(records, skipped, options)
    atomic_write_bytes(out / "report.json", json.dumps(report, indent=2).encode())
    write_report_png(out, records, report)
    return report


def _write_manifest(path: Path, records: list[dict]) -> None:
    import io

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=MANIFEST_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(records)
    atomic_write_bytes(path, buffer.getvalue().encode("utf-8"))


def build_report(records: list[dict], skipped: list[dict], options: CorpusOptions) -> dict[str, Any]:
    """Counts per dataset, removals by cause, skipped files with reasons."""
    per_dataset: dict[str, dict[str, int]] = {}
    removed: dict[str, int] = {}
    for r in records:
        entry = per_dataset.setdefault(r["dataset"], {"frames": 0, "kept": 0})
        entry["frames"] += 1
        entry["kept"] += r["keep"]
        if not r["keep"]:
            cause = r["reason"].split(":")[0]
            removed[cause] = removed.get(cause, 0) + 1
    return {"frames": len(records), "kept": sum(r["keep"] for r in records), "removed": removed,
            "datasets": per_dataset, "skipped_files": skipped, "settings": json.loads(json.dumps(asdict(options)))}


def write_report_png(out: Path, records: list[dict], report: dict[str, Any], montage: int = 16) -> None:
    """``report.png``: kept and removed frames per dataset, and a montage of kept frames."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from monai_ext.io.figures import save_figure

    names = sorted(report["datasets"])
    kept = [report["datasets"][n]["kept"] for n in names]
    removed = [report["datasets"][n]["frames"] - report["datasets"][n]["kept"] for n in names]
    fig, (bars, tiles) = plt.subplots(1, 2, figsize=(12, max(3.5, 0.35 * len(names) + 1.5)), dpi=100)
    bars.barh(names, kept, label="kept")
    bars.barh(names, removed, left=kept, label="removed")
    bars.set_xlabel("frames")
    bars.legend()
    bars.set_title(f"{report['kept']} of {report['frames']} frames kept")
    samples = [r for r in records if r["keep"]][:: max(1, report["kept"] // montage)][:montage]
    side = int(np.ceil(np.sqrt(max(len(samples), 1))))
    grid = np.zeros((side * 64, side * 64), np.uint8)
    cache = CorpusFrames(out, kept_only=False)
    for i, r in enumerate(samples):
        frame = cache.frame(r["chunk"], r["row"])
        grid[(i // side) * 64 : (i // side + 1) * 64, (i % side) * 64 : (i % side + 1) * 64] = cv2.resize(frame, (64, 64))
    tiles.imshow(grid, cmap="gray")
    tiles.axis("off")
    tiles.set_title("kept frames (sample)")
    fig.tight_layout()
    save_figure(fig, out / "report.png")


# ------------------------------------------------------------------------------------------------ training reader
def is_corpus_cache(path: str | os.PathLike | None) -> bool:
    return path is not None and (Path(path) / "kept.npy").is_file() and (Path(path) / "chunks").is_dir()


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
        self.root = Path(cache_dir)
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
