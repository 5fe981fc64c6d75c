"""MONAI engines for masked-autoencoder pretraining: a trainer and an evaluator over image-only batches.

``SupervisedTrainer`` assumes a label and a separate loss function; MAE batches have only images and the network
computes its own loss. These subclasses replace just the iteration: autocast, gradient accumulation with DDP's
``no_sync``, gradient clipping and the non-finite-loss guard. Everything else (handlers, events, metrics, state,
``torchrun``) is MONAI's and ignite's.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from contextlib import nullcontext
from typing import Any

import torch
from monai.engines import SupervisedEvaluator, SupervisedTrainer
from monai.engines.utils import IterationEvents
from monai.data import MetaTensor

logger = logging.getLogger(__name__)

PRECISIONS = ("fp32", "bf16")


def autocast(device: torch.device | str, precision: str):
    """bf16 autocast on CUDA when asked for; float32 (a no-op context) otherwise, including on CPU."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    device = torch.device(device)
    if precision == "bf16" and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


def batch_images(batch: Mapping[str, Any] | torch.Tensor, device: torch.device, non_blocking: bool) -> torch.Tensor:
    """The image tensor (N, C, H, W) of a batch, as a plain tensor on ``device`` (MetaTensor tracking is not needed)."""
    images = batch["image"] if isinstance(batch, Mapping) else batch
    if isinstance(images, MetaTensor):
        images = images.as_tensor()
    return images.to(device, non_blocking=non_blocking)


def _unused_loss(*_: Any) -> torch.Tensor:
    raise RuntimeError("the MAE network computes its own loss")


class MAETrainer(SupervisedTrainer):
    """``SupervisedTrainer`` for MAE pretraining.

    Args:
        mask_ratio: fraction of patches removed per image.
        precision: "bf16" (autocast on CUDA) or "fp32".
        clip_grad_norm: max gradient norm (None or 0: no clipping).
        max_nonfinite_steps: stop after this many consecutive non-finite losses (each such step is skipped).
        *args, **kwargs: as ``SupervisedTrainer``; ``loss_function`` is not needed.

    Iteration output: ``{"image": (N, C, H, W), "loss": scalar, "pred": (N, L, P*P*C), "mask": (N, L)}``.
    """

    def __init__(
        self,
        *args: Any,
        mask_ratio: float = 0.75,
        precision: str = "bf16",
        clip_grad_norm: float | None = 1.0,
        max_nonfinite_steps: int = 5,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("loss_function", _unused_loss)
        kwargs.setdefault("decollate", False)
        super().__init__(*args, **kwargs)
        autocast(self.state.device, precision)  # validates the name early
        if max_nonfinite_steps < 1:
            raise ValueError(f"max_nonfinite_steps must be at least 1, got {max_nonfinite_steps!r}")
        self.mask_ratio = mask_ratio
        self.precision = precision
        self.clip_grad_norm = clip_grad_norm
        self.max_nonfinite_steps = max_nonfinite_steps
        self.nonfinite_in_a_row = 0

    def _micro_step_flags(self, engine: MAETrainer) -> tuple[bool, bool]:
        """(zero the gradients before this micro-step, step the optimiser after it)."""
        acc = engine.accumulation_steps
        length = engine.state.epoch_length
        local = (engine.state.iteration - 1) % length if length else engine.state.iteration - 1
        last_of_epoch = length is not None and local + 1 == length
        return local % acc == 0, (local + 1) % acc == 0 or last_of_epoch

    def _optimizer_step(self, engine: MAETrainer, loss: torch.Tensor) -> None:
        """Clip and step, or skip the step when the loss or the gradients are not finite."""
        params = [p for group in engine.optimizer.param_groups for p in group["params"]]
        max_norm = self.clip_grad_norm or float("inf")
        total_norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
        # One host read per optimiser step; it is what lets a bad batch be skipped instead of poisoning the weights.
        if bool(torch.isfinite(loss) & torch.isfinite(total_norm)):
            engine.optimizer.step()
            self.nonfinite_in_a_row = 0
            return
        self.nonfinite_in_a_row += 1
        logger.warning(
            "non-finite loss or gradient at iteration %d: step skipped (%d in a row, limit %d)",
            engine.state.iteration, self.nonfinite_in_a_row, self.max_nonfinite_steps,
        )
        engine.optimizer.zero_grad(set_to_none=True)
        if self.nonfinite_in_a_row >= self.max_nonfinite_steps:
            raise FloatingPointError(f"{self.nonfinite_in_a_row} non-finite losses in a row; stopping the run")

    def _iteration(self, engine: MAETrainer, batchdata: Any) -> dict[str, torch.Tensor]:
        if batchdata is None:
            raise ValueError("Must provide batch data for current iteration.")
        images = batch_images(batchdata, engine.state.device, engine.non_blocking)
        zero_grad, step = self._micro_step_flags(engine)
        engine.network.train()
        if zero_grad:
            engine.optimizer.zero_grad(set_to_none=engine.optim_set_to_none)
        # DDP all-reduces gradients only on the micro-step that steps the optimiser.
        sync = nullcontext() if step or not hasattr(engine.network, "no_sync") else engine.network.no_sync()
        with sync:
            with autocast(engine.state.device, self.precision):
                loss, pred, mask = engine.network(images, self.mask_ratio)
            engine.fire_event(IterationEvents.FORWARD_COMPLETED)
            engine.fire_event(IterationEvents.LOSS_COMPLETED)
            (loss / engine.accumulation_steps).backward()
            engine.fire_event(IterationEvents.BACKWARD_COMPLETED)
        if step:
            self._optimizer_step(engine, loss.detach())
            engine.fire_event(IterationEvents.MODEL_COMPLETED)
        return {"image": images, "loss": loss.detach(), "pred": pred.detach(), "mask": mask.detach()}


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
