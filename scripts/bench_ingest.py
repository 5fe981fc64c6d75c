"""Ingestion and cached-reading throughput per CPU core.

1. Ingest: 640x480 PNG screen captures through the whole per-file path of ``prepare-corpus`` (decode, field of view,
   crop, resize, content and perceptual hashes) on one core, in frames/s; baseline in the same run: decoding the
   same PNGs alone with OpenCV. Also the whole ``prepare_corpus`` run on one worker, fixed costs included.
2. Training reader: random access to the memory-mapped cache (``CorpusFrames``), in images/s on one core; baseline
   in the same run: reading the source PNGs with OpenCV.

    python scripts/bench_ingest.py [--images 120] [--size 224]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch


def write_screens(folder: Path, count: int) -> list[Path]:
    from monai_ext.data.synthetic import SimulatorConfig, simulate_frame

    folder.mkdir(parents=True)
    config = SimulatorConfig(size=480, screen_capture=True)
    paths = []
    for i in range(count):
        screen = np.zeros((480, 640, 3), np.uint8)
        screen[:, 80:560] = simulate_frame(np.random.default_rng([7, i]), config).screen
        path = folder / f"frame_{i:04d}.png"
        cv2.imwrite(str(path), cv2.cvtColor(screen, cv2.COLOR_RGB2BGR))
        paths.append(path)
    return paths


def per_second(fn, items) -> float:
    start = time.perf_counter()
    for item in items:
        fn(item)
    return len(items) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=120)
    parser.add_argument("--size", type=int, default=224)
    args = parser.parse_args()
    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    from monai_ext.data.corpus import CorpusFrames, CorpusOptions, prepare_corpus, process_file

    work = Path(tempfile.mkdtemp(prefix="bench_ingest_"))
    try:
        paths = write_screens(work / "root" / "screens", args.images)
        options = CorpusOptions(size=args.size, files_per_chunk=32)
        decode = per_second(lambda p: cv2.imread(str(p), cv2.IMREAD_COLOR), paths)
        ingest = per_second(lambda p: process_file(p, work / "root", options), paths)
        print(f"ingest 640x480 PNG, 1 core:  {ingest:8.1f} frames/s   (goal >= 150)")
        print(f"PNG decode alone, 1 core:    {decode:8.1f} frames/s   ingest / decode = {ingest / decode:.2f}")
        start = time.perf_counter()
        prepare_corpus(work / "root", work / "cache", options, workers=1)
        whole = len(paths) / (time.perf_counter() - start)
        print(f"whole prepare-corpus run:    {whole:8.1f} frames/s   (1 worker; adds chunk writes, dedup, manifest,"
              f" report PNG)")
        data = CorpusFrames(work / "cache")
        order = np.random.default_rng(0).integers(0, len(data), size=20 * len(data))
        data[0]  # open the shard
        cached = per_second(lambda i: data[int(i)], order)
        source = per_second(lambda p: cv2.imread(str(p), cv2.IMREAD_GRAYSCALE), paths)
        print(f"cached reader, 1 core:       {cached:8.1f} images/s   (goal >= 5000)")
        print(f"source PNG reads, 1 core:    {source:8.1f} images/s   cached / PNG = {cached / source:.1f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
