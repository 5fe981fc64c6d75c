"""Throughput of the ultrasound transforms, per CPU core, on 640x480 screen captures.

Prints de-annotation (field-of-view detection + annotation finding + inpainting) in images/s on one core, beside a
baseline measured in the same run on the same images: decoding the screen capture from PNG with OpenCV (the work
every loader does anyway). Then the training augmentations: the per-sample CPU transforms against the batch path
(on the GPU when there is one, else on the CPU).

    python scripts/bench_transforms.py [--images 60] [--batch 64]
"""

from __future__ import annotations

import argparse
import time

import cv2
import numpy as np
import torch


def screens_640x480(count: int) -> list[np.ndarray]:
    """Simulated 480x480 screen captures centred on a 640x480 black screen: (480, 640, 3) uint8 each."""
    from monai_ext.data.synthetic import SimulatorConfig, simulate_frame

    config = SimulatorConfig(size=480, screen_capture=True)
    out = []
    for i in range(count):
        screen = np.zeros((480, 640, 3), np.uint8)
        screen[:, 80:560] = simulate_frame(np.random.default_rng([640, i]), config).screen
        out.append(screen)
    return out


def rate(fn, items, repeats: int = 2) -> float:
    """Items per second of ``fn`` over ``items`` (best of ``repeats`` passes)."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for item in items:
            fn(item)
        best = min(best, time.perf_counter() - start)
    return len(items) / best


def bench_deannotation(count: int) -> None:
    from monai_ext.transforms import deannotate

    images = screens_640x480(count)
    encoded = [cv2.imencode(".png", img)[1] for img in images]
    decode = rate(lambda buf: cv2.imdecode(buf, cv2.IMREAD_COLOR), encoded)
    ours = rate(deannotate, images)
    print(f"de-annotation, 640x480, 1 core: {ours:8.1f} images/s   (goal >= 50)")
    print(f"PNG decode baseline, 1 core:     {decode:8.1f} images/s   de-annotation / decode = {ours / decode:.2f}")


def bench_augmentation(batch_size: int) -> None:
    from monai.transforms import Compose

    from monai_ext.transforms import (
        NormalizeUltrasound,
        RandAxialLateralBlur,
        RandDepthGain,
        RandDynamicRange,
        RandGammaGain,
        RandResizedCrop,
        RandSpeckle,
        UltrasoundBatchAugment,
    )

    frames = [cv2.cvtColor(s, cv2.COLOR_RGB2GRAY)[None] for s in screens_640x480(8)]
    cpu = Compose([RandResizedCrop(224, (0.2, 1.0), keep_top=True), RandDepthGain(0.5), RandDynamicRange(0.5),
                   RandSpeckle(0.5), RandGammaGain(0.5), RandAxialLateralBlur(0.5), NormalizeUltrasound()])
    cpu.set_random_state(0)
    items = [torch.from_numpy(frames[i % 8].astype(np.float32) / 255.0) for i in range(batch_size)]
    cpu_rate = rate(cpu, items, repeats=1)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    batch = torch.from_numpy(np.stack([frames[i % 8] for i in range(batch_size)])).to(device)
    gpu = UltrasoundBatchAugment(224, speckle_prob=0.5, depth_gain_prob=0.5, dynamic_range_prob=0.5,
                                 gamma_gain_prob=0.5, blur_prob=0.5, seed=0)

    def run_batch(_: object) -> None:
        gpu(batch)
        if device.type == "cuda":
            torch.cuda.synchronize()

    run_batch(None)  # warm-up (CUDA context, kernels)
    batch_rate = rate(run_batch, range(5), repeats=1) * batch_size
    print(f"augmentation, CPU per-sample transforms, {torch.get_num_threads()} thread(s): {cpu_rate:8.1f} images/s")
    print(f"augmentation, batch path on {device.type} ({torch.cuda.get_device_name() if device.type == 'cuda' else 'CPU'}): "
          f"{batch_rate:8.1f} images/s   batch / per-sample = {batch_rate / cpu_rate:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=60)
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args()
    cv2.setNumThreads(1)  # per-core figures
    torch.set_num_threads(1)
    bench_deannotation(args.images)
    bench_augmentation(args.batch)


if __name__ == "__main__":
    main()
