"""Ingestion and cached-reading throughput per CPU core.

1. Ingest: 640x480 RGB PNG screen captures (text, calipers, colour bars; a colour-Doppler box on a third of them)
   through the whole per-file path of ``prepare-corpus`` (decode, views, field of view, crop, de-annotation on the
   colour frame, gray, no-signal check, resize, content and perceptual hashes) on one core, in frames/s, with
   de-annotation on (the default) and off; baseline in the same run: the project's decoder alone on the same files
   (``iter_frames``). Also the whole ``prepare_corpus`` run on one worker, fixed costs included, against the same
   decoding baseline.
2. Training reader: random access to the memory-mapped cache (``CorpusFrames``), in images/s on one core; baseline
   in the same run: reading the source PNGs with OpenCV. The cache, just written and a few MB at the default sizes,
   is read 20 times over: a hot page cache, not disk reads.
3. Chunk writing memory: the peak Python memory (``tracemalloc``) of writing one chunk of ``--chunk_frames`` cached
   frames (a chunk of cine loops) the way ``prepare-corpus`` writes it (a frame at a time), against the baseline
   in the same run of stacking the frames and serialising the stack (how chunks were written before).
4. A suspect chunk read again: after a reader process died on a chunk, ``prepare-corpus`` reads its
   ``--suspect_files`` files in turn in one fresh process (``files_that_kill_their_reader``), in wall-clock seconds;
   baseline in the same run: each file in a process of its own (how it was done before). 0 leaves it out.

    python scripts/bench_ingest.py [--images 120] [--size 224] [--repeats 3] [--chunk_frames 1200] [--suspect_files 8]

Each rate is the best of ``--repeats`` passes, given twice: per second of wall-clock time, and per second of CPU time
of this (single-threaded) process, which is frames per core-second even when other jobs share the cores (note the
load with ``uptime`` next to the numbers; on an idle machine the two agree).
"""

from __future__ import annotations

import os

for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):  # one core: no BLAS thread pools
    os.environ.setdefault(_name, "1")

import argparse
import itertools
import shutil
import tempfile
from pathlib import Path

import cv2
import numpy as np
import torch
from _bench import Rate, per_second, whole_number


def write_screens(folder: Path, count: int) -> list[Path]:
    from monai_ext.data.synthetic import SimulatorConfig, simulate_frame

    folder.mkdir(parents=True)
    config = SimulatorConfig(size=480, screen_capture=True, doppler_probability=1 / 3)
    paths = []
    for i in range(count):
        screen = np.zeros((480, 640, 3), np.uint8)
        screen[:, 80:560] = simulate_frame(np.random.default_rng([7, i]), config).screen
        path = folder / f"frame_{i:04d}.png"
        cv2.imwrite(str(path), cv2.cvtColor(screen, cv2.COLOR_RGB2BGR))
        paths.append(path)
    return paths


def chunk_write_memory(work: Path, count: int, size: int) -> None:
    """Print the peak memory of writing ``count`` (size, size) frames as one chunk, streamed and stacked."""
    import io
    import tracemalloc

    from monai_ext.data.corpus import _write_frames
    from monai_ext.io.atomic import atomic_write_bytes

    def stacked(path: Path, frames: list[np.ndarray]) -> None:  # the baseline: stack, serialise, write
        buffer = io.BytesIO()
        np.save(buffer, np.stack(frames))
        atomic_write_bytes(path, buffer.getvalue())

    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (size, size), np.uint8) for _ in range(count)]
    data_mb = count * size * size / 2**20
    peaks = {}
    for name, write in (("streamed", lambda path: _write_frames(path, frames, size)), ("stacked", lambda path:
                                                                                     stacked(path, frames))):
        tracemalloc.start()
        write(work / f"{name}.npy")
        peaks[name] = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
    same = np.array_equal(np.load(work / "streamed.npy"), np.load(work / "stacked.npy"))
    print(f"chunk write, {count} frames of {size}x{size} ({data_mb:.0f} MB held as the chunk's frames): peak memory "
          f"beyond them streamed {peaks['streamed']:.1f} MB, stacked {peaks['stacked']:.1f} MB, stacked / streamed = "
          f"{peaks['stacked'] / max(peaks['streamed'], 1e-3):.0f}; files identical: {same}")


def suspect_chunk(root: Path, paths: list[Path], options) -> None:
    """Print the wall-clock seconds of reading ``paths`` again as a suspect chunk: in turn in one process, and (the
    baseline) each in a process of its own. Spawned processes: their imports, not this process's CPU, dominate."""
    import multiprocessing
    import time
    from concurrent.futures import ProcessPoolExecutor

    from monai_ext.data.corpus import _read_file_only
    from monai_ext.data.isolation import files_that_kill_their_reader

    arguments = {p.relative_to(root).as_posix(): (p.relative_to(root).as_posix(), str(root), options) for p in paths}
    start = time.perf_counter()
    killers = files_that_kill_their_reader(_read_file_only, list(arguments), arguments.__getitem__)
    in_turn = time.perf_counter() - start
    start = time.perf_counter()
    for argument in arguments.values():
        with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
            pool.submit(_read_file_only, argument).result()
    apart = time.perf_counter() - start
    print(f"suspect chunk of {len(paths)} files read again: in turn in one process {in_turn:.1f} s, a process per "
          f"file {apart:.1f} s, per file / in turn = {apart / in_turn:.1f} (files that killed it: {len(killers)})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=whole_number(1), default=120)
    parser.add_argument("--size", type=whole_number(1), default=224)
    parser.add_argument("--repeats", type=whole_number(1), default=3)
    parser.add_argument("--chunk_frames", type=whole_number(1), default=1200)
    parser.add_argument("--suspect_files", type=whole_number(0), default=8)
    args = parser.parse_args()
    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    from monai_ext.data.corpus import CorpusFrames, CorpusOptions, prepare_corpus, process_file
    from monai_ext.data.frames import iter_frames

    work = Path(tempfile.mkdtemp(prefix="bench_ingest_"))
    try:
        paths = write_screens(work / "root" / "screens", args.images)
        options = CorpusOptions(size=args.size, files_per_chunk=32)
        plain = CorpusOptions(size=args.size, files_per_chunk=32, deannotate=False)
        colour = sum(next(iter_frames(p)).pixels.ndim == 3 for p in paths)
        decode = per_second(lambda p: list(iter_frames(p)), paths, args.repeats)
        ingest = per_second(lambda p: process_file(p, work / "root", options), paths, args.repeats)
        ingest_plain = per_second(lambda p: process_file(p, work / "root", plain), paths, args.repeats)
        print(f"{len(paths)} screens 640x480 RGB PNG, {colour} decoded as colour frames")
        print(f"ingest, de-annotation on:     {ingest:8.1f} frames/s  (goal >= 80 per core)   "
              f"ingest / decode = {ingest.cpu / decode.cpu:.2f}")
        print(f"ingest, de-annotation off:    {ingest_plain:8.1f} frames/s  (goal >= 150 per core)  "
              f"ingest / decode = {ingest_plain.cpu / decode.cpu:.2f}")
        print(f"decoding alone (iter_frames): {decode:8.1f} frames/s  1 core")
        # a fresh cache each pass: a second run into the same one resumes it, with nothing left to do
        caches = (work / f"cache_{run}" for run in itertools.count())
        whole = per_second(lambda _: prepare_corpus(work / "root", next(caches), options, workers=1), [None],
                           args.repeats)
        whole, whole.cpu = Rate(len(paths) * whole), len(paths) * whole.cpu
        print(f"whole prepare-corpus run:     {whole:8.1f} frames/s  (1 worker; adds chunk writes, dedup, "
              f"manifest, report PNG)  whole / decode = {whole.cpu / decode.cpu:.2f}")
        data = CorpusFrames(work / "cache_0")
        order = np.random.default_rng(0).integers(0, len(data), size=20 * len(data))
        data[0]  # open the shard
        cached = per_second(lambda i: data[int(i)], order, args.repeats)
        source = per_second(lambda p: cv2.imread(str(p), cv2.IMREAD_GRAYSCALE), paths, args.repeats)
        # the cache (a few MB) is read 20 times over right after it was written: every read hits the page cache, so
        # this is the reader's own cost, not a disk read
        print(f"cached reader, 1 core:        {cached:8.1f} images/s  (goal >= 5000; hot page cache, not disk)")
        print(f"source PNG reads, 1 core:     {source:8.1f} images/s  cached / PNG = {cached.cpu / source.cpu:.1f}")
        chunk_write_memory(work, args.chunk_frames, args.size)
        if args.suspect_files:
            suspect_chunk(work / "root", paths[: args.suspect_files], options)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
