"""GPU benchmark of the pretraining and fine-tuning steps (issue #10).

In one run on one GPU: times this project's MAE pretraining step (ViT-B/16 + 8x512 decoder by default), MONAI's
``MaskedAutoEncoderViT`` with the same sizes as the in-run baseline, the fine-tuning step of the ViT-B classifier
(an absolute figure: it has no in-run baseline),
and the end-to-end pretraining loop reading a memory-mapped corpus cache (#4) through the GPU batch augmentation
(#5). Prints images/s, FLOPs per image (``torch.utils.flop_counter``), model FLOPs utilisation against the card's
bf16 peak, peak memory, the ratio to MONAI, and the bf16-vs-fp32 loss difference of the same batch.

Without a GPU it says so and exits 0. ``--smoke`` runs every part with tiny sizes on whatever device there is (a
check that the script works, not a measurement).

    python scripts/bench_gpu.py                 # on an H100: batch 256, 224 px, bf16, torch.compile
    python scripts/bench_gpu.py --smoke         # a one-minute functional check, CPU or GPU
"""

from __future__ import annotations

import argparse
import gc
import itertools
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from _bench import whole_number

#: Dense bf16 peak by device-name fragment, TFLOP/s, from the vendors' datasheets (SXM parts; H200 has the H100's
#: tensor cores; an H100 PCIe peaks near 756). MFU is conventionally against this figure, not against what a bf16
#: matrix product reaches in practice (issue #10 quotes about 788 on an H100; nothing here measures or prints it).
PEAK_BF16_TFLOPS = {"H100 PCIe": 756.0, "H100": 989.4, "H200": 989.4, "A100": 312.0}


def peak_tflops(device_name: str) -> float | None:
    """The dense bf16 datasheet peak of a device by its name (the first fragment of :data:`PEAK_BF16_TFLOPS` it
    holds, the PCIe variant before the SXM one), None for an unknown device."""
    return next((tflops for fragment, tflops in PEAK_BF16_TFLOPS.items() if fragment in device_name), None)


def flops_per_image(step: Callable[[], None], batch: int) -> float:
    """FLOPs of one forward + backward step divided by the batch size (``FlopCounterMode``)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        step()
    return counter.get_total_flops() / batch


def time_steps(step: Callable[[], None], warmup: int, steps: int, device: torch.device,
               before: int = 0) -> tuple[float, float]:
    """(seconds per step, peak GiB) after ``warmup`` steps; synchronises only around the timed loop. The peak is of
    the timed steps, less ``before``: the bytes allocated before the model was built."""
    for _ in range(warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    elapsed = (time.perf_counter() - start) / steps
    peak = (torch.cuda.max_memory_allocated() - before) / 2**30 if device.type == "cuda" else float("nan")
    return elapsed, peak


def autocast(device: torch.device, bf16: bool):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16 and device.type == "cuda")


def mae_step(model: torch.nn.Module, images: torch.Tensor, bf16: bool, loss_of: Callable) -> Callable[[], None]:
    """One optimiser step of an MAE: fused AdamW on CUDA, gradients set to None, no host synchronisation."""
    fused = images.is_cuda
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), fused=fused or None)

    def step() -> None:
        with autocast(images.device, bf16):
            loss = loss_of(model, images)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def project_mae_loss(model: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    return model(images, 0.75)[0]


def monai_mae_loss(patch: int) -> Callable:
    """MSE on the removed patches of MONAI's ``MaskedAutoEncoderViT`` output (its forward returns no loss)."""

    def loss(model: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
        pred, mask = model(images)
        n, c, h, w = images.shape
        target = images.reshape(n, c, h // patch, patch, w // patch, patch).permute(0, 2, 4, 3, 5, 1)
        target = target.reshape(n, (h // patch) * (w // patch), patch * patch * c)
        per_patch = ((pred.float() - target) ** 2).mean(-1)
        return (per_patch * mask).sum() / mask.sum()

    return loss


#: The models :func:`build_model` builds.
MODELS = ("ours", "monai", "classifier")


def build_model(key: str, args: argparse.Namespace, device: torch.device) -> torch.nn.Module:
    """One of :data:`MODELS` on ``device``: this project's MAE, MONAI's ``MaskedAutoEncoderViT`` of the same sizes,
    or the ViT classifier. Built one at a time, so that each peak memory is its own model's alone."""
    from monai.networks.nets import MaskedAutoEncoderViT

    from monai_ext.networks.classifier import build_classifier
    from monai_ext.networks.mae import build_mae

    small = args.smoke
    arch = "mae_vit_tiny_patch16_dec128d2b" if small else "mae_vit_base_patch16_dec512d8b"
    if key == "ours":
        return build_mae(arch, img_size=args.image_size).to(device)
    if key == "classifier":
        return build_classifier(arch, num_classes=3, img_size=args.image_size).to(device)
    if key != "monai":
        raise ValueError(f"model must be one of {MODELS}, got {key!r}")
    dims = (192, 3, 768, 128, 2, 512) if small else (768, 12, 3072, 512, 8, 2048)
    hidden, heads_layers, mlp, dec_hidden, dec_layers, dec_mlp = dims
    return MaskedAutoEncoderViT(
        in_channels=3, img_size=args.image_size, patch_size=16, hidden_size=hidden, mlp_dim=mlp, spatial_dims=2,
        num_layers=12, num_heads=heads_layers, masking_ratio=0.75,
        decoder_hidden_size=dec_hidden, decoder_mlp_dim=dec_mlp, decoder_num_layers=dec_layers,
        decoder_num_heads=16 if not small else 4,
    ).to(device)


def allocated(device: torch.device) -> int:
    """Bytes allocated on ``device`` now, after what the previous model left is freed (0 off CUDA)."""
    gc.collect()  # a compiled model and its optimiser hold reference cycles
    if device.type != "cuda":
        return 0
    torch.cuda.empty_cache()
    return torch.cuda.memory_allocated()


def maybe_compile(model: torch.nn.Module, enabled: bool) -> torch.nn.Module:
    return torch.compile(model) if enabled else model


def report(name: str, batch: int, seconds: float, flops: float, peak_gib: float, peak_tflops: float | None) -> float:
    rate = batch / seconds
    mfu = f"{rate * flops / (peak_tflops * 1e12):6.1%}" if peak_tflops else "   n/a"
    print(f"{name:<44} {rate:10.1f} images/s   {flops / 1e9:6.1f} GFLOP/image   MFU {mfu}   peak {peak_gib:5.1f} GiB")
    return rate


def bf16_vs_fp32(model: torch.nn.Module, images: torch.Tensor) -> float:
    """Relative difference of the MAE loss of one batch under bf16 autocast and in float32 (same mask)."""
    noise = torch.rand(images.shape[0], model.patch_embed.num_patches, device=images.device)
    with torch.no_grad():
        fp32 = model(images, 0.75, noise)[0].float()
        with autocast(images.device, True):
            bf16 = model(images, 0.75, noise)[0].float()
    return float((bf16 - fp32).abs() / fp32.abs())


def end_to_end(model: torch.nn.Module, args: argparse.Namespace, device: torch.device, bf16: bool) -> float:
    """Images/s of the pretraining loop fed from a corpus cache through ``UltrasoundBatchAugment`` on the device."""
    from monai_ext.data.corpus import CorpusFrames, CorpusOptions, prepare_corpus
    from monai_ext.data.synthetic import SimulatorConfig, generate_dataset

    with tempfile.TemporaryDirectory(prefix="bench_gpu_") as scratch:
        work = Path(scratch)
        count = max(args.batch * 2, 64) if args.smoke else 2048
        generate_dataset(work / "root" / "synthetic", count, seed=0,
                         config=SimulatorConfig(size=256, screen_capture=True))
        prepare_corpus(work / "root", work / "cache", CorpusOptions(size=256, dedup_threshold=-1), workers=args.workers)
        loader = torch.utils.data.DataLoader(CorpusFrames(work / "cache"), batch_size=args.batch, shuffle=True,
                                             num_workers=args.workers, pin_memory=device.type == "cuda",
                                             drop_last=True, persistent_workers=args.workers > 0)
        return _timed_steps(model, loader, args, device, bf16)


def _timed_steps(model: torch.nn.Module, loader: torch.utils.data.DataLoader, args: argparse.Namespace,
                 device: torch.device, bf16: bool) -> float:
    """Images/s over ``args.steps`` optimiser steps, after whole untimed epochs of at least ``args.warmup`` steps.

    The clock starts at an epoch boundary, before the loader's iterator is made: timed from a step inside an epoch,
    the batches its workers had loaded ahead during the warm-up (``prefetch_factor`` per worker, 16 with the
    defaults) came for free, and the rate was the model step's rather than the loop's."""
    from monai_ext.transforms import UltrasoundBatchAugment

    if len(loader) == 0:
        raise RuntimeError(f"the cache holds fewer frames ({len(loader.dataset)}) than one batch ({args.batch})")
    augment = UltrasoundBatchAugment(args.image_size, speckle_prob=0.3, depth_gain_prob=0.3, gamma_gain_prob=0.3,
                                     seed=0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.type == "cuda" or None)
    warmup_epochs = -(-args.warmup // len(loader))
    timed, start = 0, 0.0
    for epoch in itertools.count():
        if epoch == warmup_epochs:
            torch.cuda.synchronize() if device.type == "cuda" else None
            start = time.perf_counter()
        for batch in loader:
            images = augment(batch["image"].to(device, non_blocking=True))
            with autocast(device, bf16):
                loss = model(images, 0.75)[0]
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if epoch >= warmup_epochs:
                timed += 1
                if timed == args.steps:
                    torch.cuda.synchronize() if device.type == "cuda" else None
                    return timed * args.batch / (time.perf_counter() - start)
    raise AssertionError("unreachable")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    # no count of steps, images or pixels may be 0 (the end-to-end clock starts after the warm-up steps), and the
    # models cut images into 16-pixel patches
    parser.add_argument("--batch", type=whole_number(1), default=256)
    parser.add_argument("--finetune-batch", type=whole_number(1), default=128)
    parser.add_argument("--image-size", type=whole_number(16, multiple_of=16), default=224)
    parser.add_argument("--steps", type=whole_number(1), default=20)
    parser.add_argument("--warmup", type=whole_number(1), default=5)
    parser.add_argument("--workers", type=whole_number(0), default=8)
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--skip-end-to-end", action="store_true")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny sizes on any device: checks the script runs; overrides --batch and --finetune-batch "
                             "(4), --image-size (32), --steps (2), --warmup (1) and --workers (0)")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type != "cuda" and not args.smoke:
        print("no GPU: skipped (use --smoke for a functional check on the CPU)")
        return
    if args.smoke:
        args.batch, args.finetune_batch, args.image_size = 4, 4, 32
        args.steps, args.warmup, args.workers = 2, 1, 0
    bf16, compile_ = device.type == "cuda", not args.no_compile and device.type == "cuda"
    name = torch.cuda.get_device_name() if device.type == "cuda" else "CPU"
    peak = peak_tflops(name)
    print(f"device {name}; batch {args.batch}, {args.image_size} px, bf16 {bf16}, torch.compile {compile_}, "
          f"torch {torch.__version__}; MFU against a dense bf16 peak of "
          f"{f'{peak:.0f} TFLOP/s (datasheet)' if peak else 'n/a (unknown device)'}")
    images = torch.randn(args.batch, 3, args.image_size, args.image_size, device=device)
    rates = {}
    # one model on the device at a time, each peak less what was allocated before it was built: with all three
    # built up front, and the previous model's optimiser state alive, every peak counted the others too
    for key, loss_of, label in (("ours", project_mae_loss, "pretraining step, this project"),
                                ("monai", monai_mae_loss(16), "pretraining step, MONAI MaskedAutoEncoderViT")):
        before = allocated(device)
        model = build_model(key, args, device)
        if key == "ours":
            print(f"bf16 vs fp32 MAE loss, relative difference: {bf16_vs_fp32(model, images[:8]):.2e} "
                  f"(goal <= 1e-2)" if bf16 else "bf16 vs fp32: needs CUDA")
        flops = flops_per_image(mae_step(model, images, bf16, loss_of), args.batch)
        step = mae_step(maybe_compile(model, compile_), images, bf16, loss_of)
        try:
            seconds, gib = time_steps(step, args.warmup, args.steps, device, before)
        except Exception as e:  # noqa: BLE001 - MONAI's model has failed under bf16 before: report it, keep going
            print(f"{label}: failed ({type(e).__name__}: {str(e)[:200]})")
            continue
        finally:
            del model, step  # with its optimiser and gradients, before the next model is built
        rates[key] = report(label, args.batch, seconds, flops, gib, peak)
    if "monai" in rates and "ours" in rates:
        print(f"pretraining step, this project / MONAI = {rates['ours'] / rates['monai']:.2f}")
    labels = torch.randint(0, 3, (args.finetune_batch,), device=device)
    ft_images = images[: args.finetune_batch] if args.finetune_batch <= args.batch else torch.randn(
        args.finetune_batch, 3, args.image_size, args.image_size, device=device)
    ce = torch.nn.CrossEntropyLoss(label_smoothing=0.1)

    def finetune_loss(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
        return ce(model(x).float(), labels)

    before = allocated(device)
    classifier = build_model("classifier", args, device)
    flops = flops_per_image(mae_step(classifier, ft_images, bf16, finetune_loss), args.finetune_batch)
    seconds, gib = time_steps(mae_step(maybe_compile(classifier, compile_), ft_images, bf16, finetune_loss),
                              args.warmup, args.steps, device, before)
    del classifier
    # no in-run baseline for it (MONAI has no ViT classifier of the same layout): an absolute figure, with its MFU
    report("fine-tuning step, ViT classifier (absolute)", args.finetune_batch, seconds, flops, gib, peak)
    if not args.skip_end_to_end:
        allocated(device)  # the classifier's memory back before the loop's model is built
        rate = end_to_end(maybe_compile(build_model("ours", args, device), compile_), args, device, bf16)
        line = f"end to end (cache -> GPU augmentation -> step): {rate:10.1f} images/s"
        if "ours" in rates:
            line += f"   / model step alone = {rate / rates['ours']:.2f} (goal >= 0.9)"
        print(line)


if __name__ == "__main__":
    main()
