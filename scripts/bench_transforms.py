"""Throughput of the ultrasound transforms, per CPU core, on 640x480 screen captures.

Prints de-annotation (field-of-view detection + annotation finding + inpainting) in images/s on one core, beside a
baseline measured in the same run on the same images: decoding the screen capture from PNG with OpenCV (the work
every loader does anyway). Then the training augmentations: the per-sample CPU transforms against the batch path
(on the GPU when there is one, else on the CPU).

    python scripts/bench_transforms.py [--images 60] [--batch 64] [--repeats 3]

Every side gets one untimed warm-up pass, then each rate is the best of ``--repeats`` passes, given per second of
wall-clock time and per second of CPU time of this (single-threaded) process; the ratios are of the CPU-time rates,
which hold even when other jobs share the cores (note the load with ``uptime`` next to the numbers), except that a
batch path on a GPU is taken at its wall-clock rate.
"""

from __future__ import annotations

import argparse

import cv2
import numpy as np
import torch
from _bench import Rate, per_second, whole_number


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


def bench_deannotation(count: int, repeats: int) -> None:
    from monai_ext.transforms import deannotate

    images = screens_640x480(count)
    encoded = [cv2.imencode(".png", img)[1] for img in images]
    decode = per_second(lambda buf: cv2.imdecode(buf, cv2.IMREAD_COLOR), encoded, repeats, warmup=1)
    ours = per_second(deannotate, images, repeats, warmup=1)
    print(f"de-annotation, 640x480, 1 core: {ours:8.1f} images/s   (goal >= 50 per CPU-s)")
    print(f"PNG decode baseline, 1 core:     {decode:8.1f} images/s   de-annotation / decode = "
          f"{ours.cpu / decode.cpu:.2f}")


def bench_augmentation(batch_size: int, repeats: int) -> None:
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
    # the first pass is the process's first MONAI call (its set-up, the allocator growing): untimed on both sides
    cpu_rate = per_second(cpu, items, repeats, warmup=1)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    batch = torch.from_numpy(np.stack([frames[i % 8] for i in range(batch_size)])).to(device)
    gpu = UltrasoundBatchAugment(224, speckle_prob=0.5, depth_gain_prob=0.5, dynamic_range_prob=0.5,
                                 gamma_gain_prob=0.5, blur_prob=0.5, seed=0)

    def run_batch(_: object) -> None:
        gpu(batch)
        if device.type == "cuda":
            torch.cuda.synchronize()

    batches = per_second(run_batch, range(5), repeats, warmup=1)  # warm-up: CUDA context, kernels
    batch_rate = Rate(batches * batch_size)
    batch_rate.cpu = batches.cpu * batch_size
    # on the CPU both sides are per core (CPU time); a GPU's rate is its wall-clock one (the host only waits on it)
    batch_side = batch_rate.cpu if device.type == "cpu" else float(batch_rate)
    print(f"augmentation, CPU per-sample transforms, {torch.get_num_threads()} thread(s): {cpu_rate:8.1f} images/s")
    print(f"augmentation, batch path on {device.type} ({torch.cuda.get_device_name() if device.type == 'cuda' else 'CPU'}): "
          f"{batch_rate:8.1f} images/s   batch / per-sample = {batch_side / cpu_rate.cpu:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=whole_number(1), default=60)
    parser.add_argument("--batch", type=whole_number(1), default=64)
    parser.add_argument("--repeats", type=whole_number(1), default=3)
    args = parser.parse_args()
    cv2.setNumThreads(1)  # per-core figures
    torch.set_num_threads(1)
    bench_deannotation(args.images, args.repeats)
    bench_augmentation(args.batch, args.repeats)


if __name__ == "__main__":
    main()
