"""MAE reconstructions in image space, for display."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch


def to_display(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """Undo channel normalisation: (N, C, H, W) float -> (N, H, W, 3) uint8 (gray replicated to RGB)."""
    mean_t = torch.tensor(mean, dtype=images.dtype).view(1, -1, 1, 1)[:, : images.shape[1]]
    std_t = torch.tensor(std, dtype=images.dtype).view(1, -1, 1, 1)[:, : images.shape[1]]
    pixels = (images.cpu() * std_t + mean_t).clamp(0, 1)
    if pixels.shape[1] == 1:
        pixels = pixels.expand(-1, 3, -1, -1)
    return (pixels.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)


def reconstruction_panels(
    model: torch.nn.Module, images: torch.Tensor, pred: torch.Tensor, mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Masked input, reconstruction, and reconstruction with the visible patches pasted back, in image space.

    With ``norm_pix_loss`` the prediction is per-patch normalised; it is mapped back with the true patches' mean and
    variance, as the MAE reference visualisation does.

    Args:
        model: the (unwrapped) MAE.
        images: (N, C, H, W) normalised inputs.
        pred: (N, L, P*P*C).
        mask: (N, L), 1 = removed.

    Returns:
        Three (N, C, H, W) tensors.
    """
    if model.norm_pix_loss:
        target = model.patchify(images)
        mean, var = target.mean(-1, keepdim=True), target.var(-1, keepdim=True)
        pred = pred * (var + 1e-6) ** 0.5 + mean
    pixel_mask = model.unpatchify(mask.unsqueeze(-1).expand(-1, -1, pred.shape[-1]).to(images.dtype))
    recon = model.unpatchify(pred.to(images.dtype))
    masked = images * (1 - pixel_mask) + pixel_mask * images.amin()  # removed patches shown dark
    pasted = images * (1 - pixel_mask) + recon * pixel_mask
    return masked, recon, pasted
