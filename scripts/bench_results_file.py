"""Cost of keeping a batch inference's results file while the batch runs, against the old rule, in the same run.

``predictions.json`` (and the segmentation bundle's ``masks.json``) holds every result so far and the list of outputs
the run may write, so that a run killed outright keeps what it did. It was rewritten in full every 50 images: the
writing grew with the square of the archive (about 40 GB over 10^5 images). Now it is rewritten at growing intervals
with a one-minute bound (:func:`monai_ext.engines.inference.save_due`). Both rules are timed here on the same
simulated batch (results as ``predict_files`` records them, heat maps listed, no model), through the same
``kept_results`` and atomic writer:

    python scripts/bench_results_file.py [--images 20000]

Prints, per rule, the writes, the megabytes written and the CPU seconds spent writing, then the ratio of the old
rule's seconds to the new one's.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from _bench import whole_number

from monai_ext.engines import inference

#: The old rule: a write every this many images, whatever the file's size.
OLD_EVERY = 50


def every_fifty(done: int, saved: int, seconds_since: float, write_seconds: float, save_every: int = OLD_EVERY) -> bool:
    """The rule before: rewritten every :data:`OLD_EVERY` images."""
    return done - saved >= OLD_EVERY


def simulated_batch(count: int, rule) -> tuple[int, float, float]:
    """(writes, MB written, CPU seconds writing) of a batch of ``count`` images kept under ``rule`` (``save_due``'s
    signature)."""
    writes, megabytes, seconds = 0, 0.0, 0.0
    real_write, real_rule = inference._write_results, inference.save_due

    def timed(path: Path, result: dict, complete: bool) -> None:
        nonlocal writes, megabytes, seconds
        start = time.process_time()
        real_write(path, result, complete)
        seconds += time.process_time() - start
        writes += 1
        megabytes += path.stat().st_size / 1e6

    inference._write_results, inference.save_due = timed, rule
    try:
        with tempfile.TemporaryDirectory() as tmp:
            heatmaps = [f"{tmp}/heatmaps/scan_{i:06d}_gradcam.png" for i in range(count)]
            result = {"class_names": ["benign", "malignant", "normal"], "predictions": {}, "errors": {},
                      "weights": "/models/usf_mae_classify/model.pt", inference.PENDING_KEY: heatmaps}
            with inference.kept_results(Path(tmp) / "predictions.json", result) as one_more_file:
                for i in range(count):
                    one_more_file()
                    result["predictions"][f"/archive/study_{i // 100:05d}/scan_{i:06d}.png"] = {
                        "label": 1, "class": "malignant",
                        "probabilities": {"benign": 0.12, "malignant": 0.81, "normal": 0.07}, "heatmap": heatmaps[i]}
    finally:
        inference._write_results, inference.save_due = real_write, real_rule
    return writes, megabytes, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=whole_number(OLD_EVERY), default=20000, help="images in the batch")
    args = parser.parse_args()
    timed = {}
    for name, rule in (("every 50 images (before)", every_fifty), ("growing intervals (now)", inference.save_due)):
        writes, megabytes, seconds = simulated_batch(args.images, rule)
        timed[name] = seconds
        print(f"{name:26s}: {writes:5d} writes, {megabytes:9.1f} MB written, {seconds:7.2f} CPU-s writing "
              f"({args.images} images)")
    before, now = timed.values()
    print(f"before / now = {before / max(now, 1e-9):.1f}x the CPU time spent writing the results file")


if __name__ == "__main__":
    main()
