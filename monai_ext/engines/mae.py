"""MONAI engines for masked-autoencoder pretraining: a trainer and an evaluator over image-only batches.

MAE batches have only images and the network computes its own loss, so these subclasses only say how one
micro-batch becomes a loss (training) or a masked reconstruction with fixed masks (validation).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from monai.engines import SupervisedEvaluator
from monai.engines.utils import IterationEvents

from monai_ext.engines.base import RobustStepTrainer, ShardSafeEvaluatorMixin, autocast, batch_images, refuse_amp


def _unused_loss(*_: Any) -> torch.Tensor:
    raise RuntimeError("the MAE network computes its own loss")


def check_training_mask_ratio(mask_ratio: float, network: torch.nn.Module | None = None) -> float:
    """``mask_ratio`` as a float, if it removes at least one patch and keeps at least one (of ``network``'s images,
    where given).

    The network itself accepts 0 (no masking, for features), but its loss is the mean over removed patches: with
    none removed it is 0/0 = NaN, and with none kept the encoder sees nothing.

    Raises:
        ValueError: quoting the value, when it is not in (0, 1) or keeps no patch of ``network``'s images.
    """
    ratio = float(mask_ratio)
    if not 0.0 < ratio < 1.0:
        raise ValueError(f"mask_ratio must be in (0, 1) (the loss is a mean over removed patches, and the encoder needs "
                         f"a kept one), got {mask_ratio!r}")
    patches = getattr(getattr(network, "module", network), "num_patches", None)
    if patches is not None and int(patches * (1 - ratio)) < 1:
        raise ValueError(f"mask_ratio {mask_ratio!r} keeps no patch of the {patches} in an image")
    return ratio


def with_positions(datalist: Sequence[Mapping[str, Any]], key: str = "index") -> list[dict[str, Any]]:
    """Copies of the datalist's items with their position in it under ``key`` (collated into batches), which
    :class:`MAEEvaluator` seeds each image's mask with."""
    return [{**item, key: i} for i, item in enumerate(datalist)]


def image_masking_noise(positions: Sequence[int], num_patches: int, noise_seed: int = 0) -> torch.Tensor:
    """(len(positions), L) masking noise on the CPU, row j seeded by ``noise_seed + positions[j]``: the masks
    :class:`MAEEvaluator` scores the image at each position with (reconstruction grids show the same ones)."""
    rows = [torch.rand(num_patches, generator=torch.Generator().manual_seed(noise_seed + int(i))) for i in positions]
    return torch.stack(rows)


class MAETrainer(RobustStepTrainer):
    """Trainer for MAE pretraining: image-only batches, the network computes its own loss.

    Args:
        mask_ratio: fraction of patches removed per image.
        *args, **kwargs: as :class:`RobustStepTrainer`; ``loss_function`` is not needed.

    Iteration output: ``{"image": (N, C, H, W), "loss": scalar, "pred": (N, L, P*P*C), "mask": (N, L)}``.
    """

    def __init__(self, *args: Any, mask_ratio: float = 0.75, **kwargs: Any) -> None:
        kwargs.setdefault("loss_function", _unused_loss)
        super().__init__(*args, **kwargs)
        self.mask_ratio = check_training_mask_ratio(mask_ratio, self.network)

    def forward_loss(self, engine: MAETrainer, batchdata: Any) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        images = batch_images(batchdata, engine.state.device, engine.non_blocking)
        # A batch may carry its own masking noise (N, L) for reproducible masks; else it is drawn on the device.
        noise = batchdata.get("noise") if isinstance(batchdata, dict) else None
        if noise is not None:
            noise = torch.as_tensor(noise).to(engine.state.device, non_blocking=engine.non_blocking)
        loss, pred, mask = engine.network(images, self.mask_ratio, noise)
        return loss, {"image": images, "pred": pred.detach(), "mask": mask.detach()}


class MAEEvaluator(ShardSafeEvaluatorMixin, SupervisedEvaluator):
    """Validation reconstruction loss with the same masks at every validation.

    Masks are seeded per image when batches carry the image's position in the validation set ("index", see
    :func:`with_positions`): image i uses ``noise_seed + i``, so the loss does not depend on
    how images are batched or split over ranks. Without it, batch i of this process uses ``noise_seed + i``.

    Args:
        mask_ratio: fraction of patches removed, in (0, 1).
        precision: "bf16" or "fp32".
        noise_seed: base seed of the masking noise.
        *args, **kwargs: as ``SupervisedEvaluator``.

    Iteration output: ``{"image": (N, C, H, W), "loss": scalar (mean over the batch's images), "pred": (N, L, D),
    "mask": (N, L), "count": N}``.
    """

    def __init__(
        self, *args: Any, mask_ratio: float = 0.75, precision: str = "bf16", noise_seed: int = 0, **kwargs: Any
    ) -> None:
        kwargs.setdefault("decollate", False)
        # SupervisedEvaluator's amp is read by its own iteration only, which this class replaces
        refuse_amp(kwargs.get("amp"), type(self).__name__)
        super().__init__(*args, **kwargs)
        autocast(self.state.device, precision)
        self.mask_ratio = check_training_mask_ratio(mask_ratio, self.network)
        self.precision = precision
        self.noise_seed = noise_seed

    def masking_noise(self, batch: int, num_patches: int, index: int, device: torch.device) -> torch.Tensor:
        """Deterministic (batch, L) noise for batch ``index``, drawn on the CPU and copied to ``device``."""
        gen = torch.Generator().manual_seed(self.noise_seed + index)
        return torch.rand(batch, num_patches, generator=gen).to(device, non_blocking=True)

    def image_masking_noise(self, positions: Sequence[int], num_patches: int, device: torch.device) -> torch.Tensor:
        """(len(positions), L) noise, row j seeded by ``noise_seed + positions[j]`` (drawn on the CPU)."""
        return image_masking_noise(positions, num_patches, self.noise_seed).to(device, non_blocking=True)

    def _iteration(self, engine: MAEEvaluator, batchdata: Any) -> dict[str, torch.Tensor]:
        if batchdata is None:
            raise ValueError("Must provide batch data for current iteration.")
        images = batch_images(batchdata, engine.state.device, engine.non_blocking)
        network = getattr(engine.network, "module", engine.network)
        positions = batchdata.get("index") if isinstance(batchdata, Mapping) else None
        if positions is not None:
            noise = self.image_masking_noise(torch.as_tensor(positions).reshape(-1).tolist(), network.num_patches,
                                             images.device)
        else:
            noise = self.masking_noise(images.shape[0], network.num_patches, engine.state.iteration, images.device)
        engine.network.eval()
        with torch.no_grad(), autocast(engine.state.device, self.precision):
            loss, pred, mask = engine.network(images, self.mask_ratio, noise)
        engine.fire_event(IterationEvents.FORWARD_COMPLETED)
        return {"image": images, "loss": loss.float(), "pred": pred.float(), "mask": mask, "count": images.shape[0]}
