"""MONAI engines for masked-autoencoder pretraining: a trainer and an evaluator over image-only batches.

MAE batches have only images and the network computes its own loss, so these subclasses only say how one
micro-batch becomes a loss (training) or a masked reconstruction with fixed masks (validation).
"""

from __future__ import annotations

from typing import Any

import torch
from monai.engines import SupervisedEvaluator
from monai.engines.utils import IterationEvents

from monai_ext.engines.base import RobustStepTrainer, autocast, batch_images


def _unused_loss(*_: Any) -> torch.Tensor:
    raise RuntimeError("the MAE network computes its own loss")


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
        self.mask_ratio = mask_ratio

    def forward_loss(self, engine: MAETrainer, batchdata: Any) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        images = batch_images(batchdata, engine.state.device, engine.non_blocking)
        # A batch may carry its own masking noise (N, L) for reproducible masks; else it is drawn on the device.
        noise = batchdata.get("noise") if isinstance(batchdata, dict) else None
        if noise is not None:
            noise = torch.as_tensor(noise).to(engine.state.device, non_blocking=engine.non_blocking)
        loss, pred, mask = engine.network(images, self.mask_ratio, noise)
        return loss, {"image": images, "pred": pred.detach(), "mask": mask.detach()}


class MAEEvaluator(SupervisedEvaluator):
    """Validation reconstruction loss with the same masks at every validation (seeded per batch).

    Args:
        mask_ratio: fraction of patches removed.
        precision: "bf16" or "fp32".
        noise_seed: base seed of the masking noise; batch i uses ``noise_seed + i``.
        *args, **kwargs: as ``SupervisedEvaluator``.
    """

    def __init__(
        self, *args: Any, mask_ratio: float = 0.75, precision: str = "bf16", noise_seed: int = 0, **kwargs: Any
    ) -> None:
        kwargs.setdefault("decollate", False)
        super().__init__(*args, **kwargs)
        autocast(self.state.device, precision)
        self.mask_ratio = mask_ratio
        self.precision = precision
        self.noise_seed = noise_seed

    def masking_noise(self, batch: int, num_patches: int, index: int, device: torch.device) -> torch.Tensor:
        """Deterministic (batch, L) noise for batch ``index``, drawn on the CPU and copied to ``device``."""
        gen = torch.Generator().manual_seed(self.noise_seed + index)
        return torch.rand(batch, num_patches, generator=gen).to(device, non_blocking=True)

    def _iteration(self, engine: MAEEvaluator, batchdata: Any) -> dict[str, torch.Tensor]:
        if batchdata is None:
            raise ValueError("Must provide batch data for current iteration.")
        images = batch_images(batchdata, engine.state.device, engine.non_blocking)
        network = getattr(engine.network, "module", engine.network)
        noise = self.masking_noise(images.shape[0], network.num_patches, engine.state.iteration, images.device)
        engine.network.eval()
        with torch.no_grad(), autocast(engine.state.device, self.precision):
            loss, pred, mask = engine.network(images, self.mask_ratio, noise)
        engine.fire_event(IterationEvents.FORWARD_COMPLETED)
        return {"image": images, "loss": loss.float(), "pred": pred.float(), "mask": mask}
