"""MAE reconstructions in image space, for display."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import torch


def undo_normalization(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """(N, C, H, W) normalised, of any float type -> (N, C, H, W) float32 pixels in [0, 1] (per-channel
    ``x * std + mean``, clamped)."""
    # in float32 whatever the input: bfloat16 has no NumPy type (to_display failed), and its 8-bit mantissa rounded
    # each channel's mean and std differently, so that a gray image failed is_gray and was shown with a colour cast
    images = images.detach().cpu().float()
    mean_t = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)[:, : images.shape[1]]
    std_t = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)[:, : images.shape[1]]
    return (images * std_t + mean_t).clamp(0, 1)


def is_gray(images: torch.Tensor, mean: Sequence[float], std: Sequence[float], tolerance: float = 1.5 / 255) -> bool:
    """Whether (N, C, H, W) normalised images are gray: one channel, or channels equal once normalisation is undone
    (a gray image replicated to three channels and normalised with ImageNet's per-channel statistics)."""
    pixels = undo_normalization(images, mean, std)
    return pixels.shape[1] == 1 or bool((pixels - pixels[:, :1]).abs().max() <= tolerance)


def to_display(images: torch.Tensor, mean: Sequence[float], std: Sequence[float], gray: bool = False) -> np.ndarray:
    """Undo channel normalisation: (N, C, H, W) float -> (N, H, W, 3) uint8.

    With ``gray`` (or one channel) the channels are averaged and shown gray: a reconstruction of a gray image has
    slightly different values per channel, which per-channel de-normalisation would show as a colour cast.
    """
    pixels = undo_normalization(images, mean, std)
    if gray or pixels.shape[1] == 1:
        pixels = pixels.mean(dim=1, keepdim=True).expand(-1, 3, -1, -1)
    return (pixels.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)


def masked_patch_losses(model: torch.nn.Module, images: torch.Tensor, pred: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Each image's training loss: mean squared error over its removed patches, against the model's targets.

    Args:
        model: the (unwrapped) MAE.
        images: (N, C, H, W) normalised inputs.
        pred: (N, L, P*P*C) raw predictions (per-patch normalised with ``norm_pix_loss``).
        mask: (N, L), 1 = removed.

    Returns:
        (N,) losses.
    """
    per_patch = (pred.float() - model.patch_targets(images.float())).pow(2).mean(dim=-1)
    mask = mask.float()
    return (per_patch * mask).sum(dim=1) / mask.sum(dim=1).clamp_min(1)


def caption(panel: np.ndarray, text: str, bottom: bool = False) -> np.ndarray:
    """Write ``text`` in the top-left (or bottom-left) corner of a uint8 (H, W, 3) panel, white on a dark outline
    (readable on any background); returns a copy."""
    out = np.ascontiguousarray(panel.copy())
    scale = max(0.35, panel.shape[0] / 450)
    # the baseline from the text's measured height (and descent), so that the outline stays inside the panel: a
    # guessed height cut the top caption at row 0
    (_, height), descent = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    row = panel.shape[0] - 2 - descent if bottom else height + 2
    text_mask = np.zeros(panel.shape[:2], np.uint8)
    cv2.putText(text_mask, text, (3, row), cv2.FONT_HERSHEY_SIMPLEX, scale, 255, 1, cv2.LINE_AA)
    # the outline is the text grown by a pixel, not the text drawn thicker: Hershey glyphs advance further when
    # thicker, so a thick outline drifted away from the thin text (a ghost of the last letters)
    out[cv2.dilate(text_mask, np.ones((3, 3), np.uint8)) > 0] = 0
    alpha = (text_mask.astype(np.float32) / 255)[..., None]
    return (out * (1 - alpha) + 255 * alpha).round().astype(np.uint8)


def mid_gray(mean: Sequence[float], std: Sequence[float], channels: int) -> torch.Tensor:
    """(1, C, 1, 1): the normalised value of a 50% gray pixel on every channel (the same gray on each, so a gray
    image stays gray)."""
    mean_t = torch.tensor(mean, dtype=torch.float32)[:channels]
    std_t = torch.tensor(std, dtype=torch.float32)[:channels]
    return ((0.5 - mean_t) / std_t).view(1, -1, 1, 1)


def enlarge(panels: np.ndarray, min_side: int = 192) -> np.ndarray:
    """(N, H, W, 3) uint8 -> the same enlarged by the smallest integer factor reaching ``min_side`` rows (nearest
    neighbour: patches stay sharp), so that small training images stay readable and captions fit."""
    factor = max(1, -(-min_side // panels.shape[1]))
    return panels if factor == 1 else panels.repeat(factor, axis=1).repeat(factor, axis=2)


def reconstruction_panels(
    model: torch.nn.Module, images: torch.Tensor, pred: torch.Tensor, mask: torch.Tensor,
    fill: torch.Tensor | float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Masked input, reconstruction, and reconstruction with the visible patches pasted back, in image space.

    With ``norm_pix_loss`` the prediction is per-patch normalised; it is mapped back with the true patches' mean and
    variance, as the MAE reference visualisation does.

    Args:
        model: the (unwrapped) MAE.
        images: (N, C, H, W) normalised inputs.
        pred: (N, L, P*P*C).
        mask: (N, L), 1 = removed.
        fill: the normalised value shown in the removed patches of the masked input, a number or (1, C, 1, 1) per
            channel; 0 (the normalisation mean) as in the MAE reference visualisation, ``mid_gray`` for a gray
            that stands out from both black background and bright tissue.

    Returns:
        Three (N, C, H, W) tensors.
    """
    if model.norm_pix_loss:
        target = model.patchify(images)
        mean, var = target.mean(-1, keepdim=True), target.var(-1, keepdim=True)
        pred = pred * (var + 1e-6) ** 0.5 + mean
    pixel_mask = model.unpatchify(mask.unsqueeze(-1).expand(-1, -1, pred.shape[-1]).to(images.dtype))
    recon = model.unpatchify(pred.to(images.dtype))
    # removed patches in one flat value, not the darkest pixel: black patches vanished into an ultrasound's black
    # background, so the masked input looked less masked than it was
    masked = images * (1 - pixel_mask) + pixel_mask * torch.as_tensor(fill, dtype=images.dtype).to(images.device)
    pasted = images * (1 - pixel_mask) + recon * pixel_mask
    return masked, recon, pasted
