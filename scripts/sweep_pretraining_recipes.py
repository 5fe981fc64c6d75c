"""Sweep of MAE pretraining recipes on the subtle lesion benchmark: does any give frozen features a gap over random?

Issue #19 asks for a pretraining recipe whose frozen features beat a random encoder's by 10 points on the subtle
benchmark (``monai_ext.data.lesion_benchmark``) within the demo's CPU budget. Running the bundle and the
cross-validation runner per recipe costs minutes of overhead each and exposes only the bundle's options, so this
harness pretrains in memory (the same network, the same crop/flip augmentation, AdamW with warmup and cosine, at the
demo's scaled lr) and scores the encoder with the project's own tuned probe and kNN
(:func:`monai_ext.engines.probe.evaluate_frozen_features`) on the demo's protocol: 5 stratified folds, at most 100
labelled images per fold (80 train + 20 validation), test on the rest. Every recipe is compared with the random
initialisation of the same seed, paired over the same folds.

Recipes (``--recipes``, comma-separated; see RECIPES): the demo's (``demo``), raw-pixel targets, mask ratio 0.5,
8-pixel patches (256 tokens at 128 px), a blurred reconstruction target (speckle is unpredictable from context, so
a Gaussian-smoothed target leaves the structure to learn), and more epochs. ``--strength`` scales the class cues
(3 = obvious to the eye). Pooling (``--poolings``): the mean of the final normalised patch tokens (the bundle's),
the cls token, the max of the patch tokens; ``--depths`` probes the output of earlier blocks as well.

    python scripts/sweep_pretraining_recipes.py --recipes demo,raw_pixels --out /tmp/sweep

Prints one markdown table; writes ``OUT/sweep.json`` and ``OUT/sweep.md``.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from monai.transforms import GaussianSmooth
from sklearn.model_selection import StratifiedKFold, train_test_split

from monai_ext.data.downstream import check_generated_size
from monai_ext.data.lesion_benchmark import SUBTLE_CLASSES, subtle_lesion_dataset, subtle_pretraining_frames
from monai_ext.engines.probe import evaluate_frozen_features
from monai_ext.io.atomic import atomic_write_text
from monai_ext.networks.mae import MaskedAutoencoderViT, build_mae
from monai_ext.transforms import normalization_stats
from monai_ext.transforms.spatial import RandResizedCrop

REPO = Path(__file__).resolve().parents[1]

DEMO = {"patch": 16, "norm_pix": True, "mask_ratio": 0.75, "epochs": 8, "blur": 0.0}
RECIPES: dict[str, dict[str, Any]] = {
    "demo": {},
    "raw_pixels": {"norm_pix": False},
    "mask_0.5": {"mask_ratio": 0.5},
    "patch_8": {"patch": 8},
    "blurred_raw": {"blur": 2.0, "norm_pix": False},
    "blurred_norm": {"blur": 2.0},
    "epochs_24": {"epochs": 24},
}
METRICS = ("macro_f1", "auc", "balanced_accuracy")
POOLINGS = ("mean", "cls")
ALL_POOLINGS = ("mean", "cls", "max")


def load_gray(paths: list[Path], size: int) -> torch.Tensor:
    """PNG screen captures as normalised gray tensors (N, 1, size, size), resized with area averaging (the bundles')."""
    mean, std = (v[0] for v in normalization_stats(1))
    images = [cv2.resize(cv2.imread(str(p), cv2.IMREAD_GRAYSCALE), (size, size), interpolation=cv2.INTER_AREA)
              for p in paths]
    return (torch.from_numpy(np.stack(images)).float().div(255.0).sub(mean).div(std)).unsqueeze(1)


def benchmark(cache: Path, per_class: int, strength: float, size: int) -> tuple[torch.Tensor, np.ndarray]:
    """The subtle benchmark: images (N, 1, size, size) and labels (N,)."""
    root = subtle_lesion_dataset(cache, per_class, 0, strength)
    paths = [sorted((root / kind).glob("us_*.png")) for kind in SUBTLE_CLASSES]
    labels = np.concatenate([np.full(len(p), c) for c, p in enumerate(paths)])
    return load_gray([q for p in paths for q in p], size), labels


def use_blurred_targets(model: MaskedAutoencoderViT, sigma: float) -> None:
    """Make ``model`` regress the Gaussian-smoothed image (sigma in pixels) instead of the raw one."""
    smooth, targets = GaussianSmooth(sigma=sigma), model.patch_targets
    model.patch_targets = lambda imgs: targets(torch.stack([torch.as_tensor(smooth(i)).as_subclass(torch.Tensor)
                                                           for i in imgs]))


def augment(frames: torch.Tensor, crop: RandResizedCrop, generator: torch.Generator) -> torch.Tensor:
    """The pretraining recipe's top-anchored random resized crop and horizontal flip, per image."""
    out = []
    for image in frames:
        image = torch.as_tensor(crop(image))
        out.append(image.flip(-1) if torch.rand(1, generator=generator) < 0.5 else image)
    return torch.stack(out)


def pretrain(model: MaskedAutoencoderViT, frames: torch.Tensor, recipe: dict[str, Any], seed: int,
             batch_size: int = 32, base_lr: float = 8e-3) -> list[float]:
    """AdamW (betas 0.9/0.95, weight decay 0.05 on matrices), 10 % warmup then cosine; returns the epoch losses."""
    generator = torch.Generator().manual_seed(seed)
    crop = RandResizedCrop(frames.shape[-1], scale=(0.5, 1.0), keep_top=True)
    crop.set_random_state(seed)
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]
    lr = base_lr * batch_size / 256  # the bundles' linear scaling rule
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": 0.05}, {"params": no_decay, "weight_decay": 0.0}],
                                  lr=lr, betas=(0.9, 0.95))
    steps = recipe["epochs"] * math.ceil(len(frames) / batch_size)
    warmup = max(1, steps // 10)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda t: (t + 1) / warmup if t < warmup else
                                                 0.5 * (1 + math.cos(math.pi * (t - warmup) / max(1, steps - warmup))))
    losses = []
    model.train()
    for _ in range(recipe["epochs"]):
        order, total = torch.randperm(len(frames), generator=generator), 0.0
        for start in range(0, len(frames), batch_size):
            batch = augment(frames[order[start:start + batch_size]], crop, generator)
            loss, _, _ = model(batch, recipe["mask_ratio"])
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            total += float(loss.detach()) * len(batch)
        losses.append(total / len(frames))
    return losses


def pool_tokens(tokens: torch.Tensor, pooling: str) -> torch.Tensor:
    """(N, 1 + L, D) tokens, cls first -> (N, D): mean or max of the patch tokens, or the cls token."""
    if pooling not in ALL_POOLINGS:
        raise ValueError(f"pooling must be one of {list(ALL_POOLINGS)}, got {pooling!r}")
    if pooling == "cls":
        return tokens[:, 0]
    patches = tokens[:, 1:]
    return patches.amax(1) if pooling == "max" else patches.mean(1)


@torch.no_grad()
def pooled_features(model: MaskedAutoencoderViT, images: torch.Tensor, poolings: Sequence[str] = POOLINGS,
                    depths: Sequence[int] = (), batch_size: int = 64) -> dict[str, np.ndarray]:
    """Eval-mode encoder features without masking, (N, D) per pooling and depth.

    Keys: the pooling (``mean``, ``cls``, ``max``) for the encoder's output; ``mean@4`` for the output of block 4
    (1-based), layer-normalised without affine parameters, because only the last block is followed by the
    encoder's own norm. MAE's last blocks specialise in reconstruction, so an earlier block may probe better.
    """
    if any(not 1 <= d <= len(model.blocks) for d in depths):
        raise ValueError(f"depths must lie in 1..{len(model.blocks)} (the encoder's blocks), got {list(depths)!r}")
    model.eval()
    captured: dict[int, torch.Tensor] = {}
    hooks = [model.blocks[d - 1].register_forward_hook(lambda _m, _i, out, d=d: captured.__setitem__(d, out))
             for d in depths]
    out: dict[str, list[torch.Tensor]] = {}
    try:
        for start in range(0, len(images), batch_size):
            latent, _, _ = model.forward_encoder(images[start:start + batch_size], 0.0)
            layers = {"": latent, **{f"@{d}": F.layer_norm(t, t.shape[-1:]) for d, t in captured.items()}}
            for suffix, tokens in layers.items():
                for pooling in poolings:
                    out.setdefault(pooling + suffix, []).append(pool_tokens(tokens, pooling))
    finally:
        for hook in hooks:
            hook.remove()
    return {k: torch.cat(v).numpy() for k, v in out.items()}


def cross_validate(features: np.ndarray, labels: np.ndarray, seed: int, max_train: int = 100) -> dict[str, np.ndarray]:
    """Per-fold test metrics (5 folds) of the tuned probe and kNN, the demo's protocol."""
    per_fold: dict[str, list[float]] = {}
    folds = StratifiedKFold(5, shuffle=True, random_state=seed).split(features, labels)
    for labelled, test in folds:
        if len(labelled) > max_train:
            labelled, _ = train_test_split(labelled, train_size=max_train, stratify=labels[labelled], random_state=seed)
        train, val = train_test_split(labelled, test_size=0.2, stratify=labels[labelled], random_state=seed)
        splits = {name: (features[idx], labels[idx]) for name, idx in (("train", train), ("validation", val),
                                                                        ("test", test))}
        _, record = evaluate_frozen_features(splits, SUBTLE_CLASSES, seed=seed)
        for metric in METRICS:
            per_fold.setdefault(metric, []).append(record["linear_test"][metric])
        per_fold.setdefault("knn_macro_f1", []).append(record["knn_test"]["macro_f1"])
    return {k: np.asarray(v) for k, v in per_fold.items()}


def run_recipe(name: str, args: argparse.Namespace, images: torch.Tensor, labels: np.ndarray,
               frames: torch.Tensor) -> dict[str, Any]:
    """Pretrain one recipe; cross-validate random and pretrained features under each pooling."""
    recipe = {**DEMO, **RECIPES[name]}
    kwargs = {"img_size": args.image_size, "patch_size": recipe["patch"], "in_chans": 1,
              "norm_pix_loss": recipe["norm_pix"]}
    torch.manual_seed(args.seed)
    random_start = build_mae("mae_vit_tiny_patch16_dec128d2b", **kwargs)
    torch.manual_seed(args.seed)
    model = build_mae("mae_vit_tiny_patch16_dec128d2b", **kwargs)
    if recipe["blur"] > 0:
        use_blurred_targets(model, recipe["blur"])
    started = time.time()
    losses = pretrain(model, frames, recipe, args.seed)
    seconds = time.time() - started
    before, after = (pooled_features(m, images, args.poolings, args.depths) for m in (random_start, model))
    result: dict[str, Any] = {"recipe": recipe, "losses": losses, "pretrain_seconds": seconds, "poolings": {}}
    for pooling in before:
        r, p = cross_validate(before[pooling], labels, args.seed), cross_validate(after[pooling], labels, args.seed)
        result["poolings"][pooling] = {k: {"random": r[k].tolist(), "pretrained": p[k].tolist()} for k in r}
    return result


def table(results: dict[str, dict[str, Any]]) -> str:
    """Markdown: random -> pretrained (paired gap) per metric, test %, 5-fold means."""
    head = "| recipe | pooling | pretraining loss first -> last | " + " | ".join(
        f"{m} R -> P (gap)" for m in (*METRICS, "knn_macro_f1")) + " |"
    lines = [head, "|" + "---|" * (3 + len(METRICS) + 1)]
    for name, res in results.items():
        loss = f"{res['losses'][0]:.3f} -> {res['losses'][-1]:.3f} ({res['pretrain_seconds']:.0f} s)"
        for pooling, figures in res["poolings"].items():
            cells = []
            for metric in (*METRICS, "knn_macro_f1"):
                r, p = (100 * np.asarray(figures[metric][k]) for k in ("random", "pretrained"))
                cells.append(f"{r.mean():.1f} -> {p.mean():.1f} ({(p - r).mean():+.1f})")
            lines.append(f"| {name} | {pooling} | {loss} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def parse_poolings(parser: argparse.ArgumentParser, text: str) -> list[str]:
    """``"mean,max"`` -> ["mean", "max"]; an empty or unknown choice is a command-line error."""
    poolings = [p for p in text.split(",") if p]
    if not poolings or any(p not in ALL_POOLINGS for p in poolings):
        parser.error(f"--poolings must be a comma-separated choice of {list(ALL_POOLINGS)}, got {text!r}")
    return poolings


def parse_depths(parser: argparse.ArgumentParser, text: str, blocks: int = 12) -> list[int]:
    """``"2,4"`` -> [2, 4]; a depth outside 1..blocks (ViT-Tiny has 12) is a command-line error."""
    try:
        depths = [int(d) for d in text.split(",") if d]
    except ValueError:
        parser.error(f"--depths must be comma-separated integers, got {text!r}")
    if any(not 1 <= d <= blocks for d in depths):
        parser.error(f"--depths must lie in 1..{blocks}, got {text!r}")
    return depths


def check_sizes(parser: argparse.ArgumentParser, args: argparse.Namespace, names: list[str]) -> None:
    """Refuse, before minutes of generation and pretraining, what would fail after them: the 5 folds need 5 images
    per class, the seeds a non-negative number, every recipe's patch must divide the image size."""
    if not names:
        parser.error(f"--recipes names no recipe; choose from {sorted(RECIPES)}")
    try:
        check_generated_size(args.per_class)  # the benchmark's 5 folds: the bundles' rule, with its words
    except ValueError as e:
        parser.error(f"--{e}")
    for name, value, least in (("frames", args.frames, 1), ("seed", args.seed, 0)):
        if value < least:
            parser.error(f"--{name} must be at least {least}, got {value}")
    if not args.strength >= 0 or math.isinf(args.strength):  # "not >=" refuses nan too
        parser.error(f"--strength must be a finite number of at least 0, got {args.strength}")
    for name in names:
        patch = {**DEMO, **RECIPES[name]}["patch"]
        if args.image_size <= 0 or args.image_size % patch:
            parser.error(f"--image_size must be a positive multiple of recipe {name!r}'s patch {patch}, "
                         f"got {args.image_size}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipes", default=",".join(RECIPES), help=f"comma-separated, of {sorted(RECIPES)}")
    parser.add_argument("--strength", type=float, default=1.0, help="cue strength of the benchmark (1 = default)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--image_size", type=int, default=128)
    parser.add_argument("--frames", type=int, default=1000, help="unlabelled pretraining frames")
    parser.add_argument("--per_class", type=int, default=60)
    parser.add_argument("--cache_dir", default=str(REPO / "demo_output" / "cache"))
    parser.add_argument("--out", default=str(REPO / "demo_output" / "recipe_sweep"))
    parser.add_argument("--poolings", default=",".join(POOLINGS), help=f"comma-separated, of {list(ALL_POOLINGS)}")
    parser.add_argument("--depths", default="", help="comma-separated encoder blocks (1-based) to probe as well")
    args = parser.parse_args()
    names = [n for n in args.recipes.split(",") if n]
    unknown = [n for n in names if n not in RECIPES]
    if unknown:
        parser.error(f"unknown recipes {unknown!r}; choose from {sorted(RECIPES)}")
    check_sizes(parser, args, names)
    args.poolings = parse_poolings(parser, args.poolings)
    args.depths = parse_depths(parser, args.depths)
    cache, out = Path(args.cache_dir), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    images, labels = benchmark(cache, args.per_class, args.strength, args.image_size)
    frames_dir = subtle_pretraining_frames(cache, args.frames)
    frames = load_gray(sorted(frames_dir.glob("us_*.png")), args.image_size)
    results = {}
    for name in names:
        results[name] = run_recipe(name, args, images, labels, frames)
        print("\n".join(table({name: results[name]}).splitlines()[2:]), flush=True)
    text = table(results)
    atomic_write_text(out / "sweep.json", json.dumps({"args": vars(args), "results": results}, indent=1))
    atomic_write_text(out / "sweep.md", text + "\n")
    print(text)


if __name__ == "__main__":
    main()
