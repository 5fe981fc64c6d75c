"""Token Grad-CAM for ViT classifiers and heat-map overlays."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F


def token_gradcam(model: torch.nn.Module, image: torch.Tensor, class_index: int) -> torch.Tensor:
    """Grad-CAM on a ViT's patch tokens (output of the last block): ReLU(sum_d grad * activation) per patch.

    MONAI's ``GradCAM`` needs a convolutional feature map; for a ViT the last block's patch tokens play that role.

    Args:
        model: a :class:`~monai_ext.networks.classifier.ViTClassifier`.
        image: (1, C, H, W).
        class_index: the class whose logit is explained.

    Returns:
        (H, W) map in [0, 1] at the image's resolution.
    """
    model = getattr(model, "module", model)
    captured: dict[str, torch.Tensor] = {}

    def keep(_module: Any, _inputs: Any, output: torch.Tensor) -> None:
        output.retain_grad()
        captured["tokens"] = output

    handle = model.blocks[-1].register_forward_hook(keep)
    try:
        with torch.enable_grad():
            logits = model(image.requires_grad_(True))
            model.zero_grad(set_to_none=True)
            logits[0, class_index].backward()
    finally:
        handle.remove()
    tokens = captured["tokens"][0, 1:]  # (L, D), cls token dropped
    grads = captured["tokens"].grad[0, 1:]
    cam = F.relu((tokens * grads).sum(dim=-1)).detach()
    gh, gw = model.patch_embed.grid_size
    cam = F.interpolate(cam.reshape(1, 1, gh, gw), size=tuple(image.shape[-2:]), mode="bilinear", align_corners=False)
    cam = cam[0, 0]
    return cam / cam.max() if cam.max() > 0 else cam


def overlay_heatmap(gray: np.ndarray, cam: np.ndarray) -> np.ndarray:
    """Blend a [0, 1] heat map (jet colours) over a [0, 1] gray image: (H, W, 3) uint8."""
    import cv2

    colour = cv2.applyColorMap((cam * 255).astype(np.uint8), cv2.COLORMAP_JET)[..., ::-1]
    base = np.repeat((np.clip(gray, 0, 1) * 255).astype(np.uint8)[..., None], 3, axis=2)
    return (0.6 * base + 0.4 * colour).astype(np.uint8)


def gradcam_overlay(network: torch.nn.Module, image: torch.Tensor, class_index: int) -> np.ndarray:
    """Grad-CAM for ``class_index`` blended over the (channel-mean, min-max scaled) image: (H, W, 3) uint8."""
    cam = token_gradcam(network, image.clone(), class_index).cpu().numpy()
    gray = image[0].mean(0).detach().cpu().numpy()
    gray = (gray - gray.min()) / max(float(gray.max() - gray.min()), 1e-6)
    return overlay_heatmap(gray, cam)


def has_token_blocks(network: torch.nn.Module) -> bool:
    """Whether token Grad-CAM applies (a ViT with ``blocks``; the CNN baseline has none)."""
    return hasattr(getattr(network, "module", network), "blocks")
