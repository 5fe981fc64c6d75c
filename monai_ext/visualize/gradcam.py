"""Token Grad-CAM for ViT classifiers and heat-map overlays."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from monai_ext.io.display import to_gray_unit


def explained_depth(model: torch.nn.Module) -> int:
    """After how many blocks Grad-CAM takes the tokens: all of them for average pooling; for cls pooling all but the
    last, because after the last block the logit sees the cls token alone (the patch tokens' gradient is 0)."""
    blocks = len(model.blocks)
    return blocks if getattr(model, "global_pool", "avg") == "avg" else max(blocks - 1, 0)


def token_gradcam(model: torch.nn.Module, image: torch.Tensor, class_index: int) -> torch.Tensor:
    """Grad-CAM on a ViT's patch tokens: ReLU(sum_d grad * activation) per patch, upsampled to the image.

    MONAI's ``GradCAM`` needs a convolutional feature map; for a ViT the patch tokens play that role: the last
    block's output with average pooling, the last block's input with cls pooling (:func:`explained_depth`). The
    gradient is taken with ``torch.autograd.grad`` of the logit with respect to those tokens, computed in this call's
    own forward pass: no hook is registered on the model and no parameter's ``.grad`` is touched, so any number of
    threads may explain images with one shared model at once (as a serving app does).

    Args:
        model: a :class:`~monai_ext.networks.classifier.ViTClassifier` (or a wrapper of one with ``.module``), in
            the mode it should explain (``eval()`` for served models).
        image: (1, C, H, W); left as it is (no ``requires_grad`` set on it).
        class_index: the class whose logit is explained, in [0, K).

    Returns:
        (H, W) float32 map in [0, 1] at the image's resolution (float32 for a bfloat16 or half model too: NumPy,
        which draws it, has no bfloat16).
    """
    model = getattr(model, "module", model)
    if image.ndim != 4 or image.shape[0] != 1:
        raise ValueError(f"image must have shape (1, C, H, W), got {tuple(image.shape)!r}")
    if not 0 <= class_index < model.num_classes:
        raise ValueError(f"class_index must be in [0, {model.num_classes}), got {class_index!r}")
    split = explained_depth(model)
    with torch.enable_grad():
        # A private leaf that requires grad: the tokens get a graph even when the encoder is frozen (linear probe).
        tokens = model.embed(image.detach().requires_grad_(True))
        for block in model.blocks[:split]:
            tokens = block(tokens)
        x = tokens
        for block in model.blocks[split:]:
            x = block(x)
        logit = model.forward_head(x)[0, class_index]
        (grads,) = torch.autograd.grad(logit, tokens)
    cam = F.relu((tokens.detach()[0, 1:] * grads[0, 1:]).sum(dim=-1))  # (L,), cls token dropped
    gh, gw = model.patch_embed.grid_size
    cam = F.interpolate(cam.reshape(1, 1, gh, gw), size=tuple(image.shape[-2:]), mode="bilinear", align_corners=False)
    cam = cam[0, 0].float()
    return cam / cam.max() if cam.max() > 0 else cam


def overlay_heatmap(gray: np.ndarray, cam: np.ndarray) -> np.ndarray:
    """Blend a [0, 1] heat map (jet colours) over a [0, 1] gray image: (H, W, 3) uint8."""
    import cv2

    colour = cv2.applyColorMap((cam * 255).astype(np.uint8), cv2.COLORMAP_JET)[..., ::-1]
    base = np.repeat((np.clip(gray, 0, 1) * 255).astype(np.uint8)[..., None], 3, axis=2)
    return (0.6 * base + 0.4 * colour).astype(np.uint8)


def gradcam_overlay(network: torch.nn.Module, image: torch.Tensor, class_index: int,
                    display: np.ndarray | None = None) -> np.ndarray:
    """Grad-CAM for ``class_index`` blended over the image: (H, W, 3) uint8.

    Args:
        network, image, class_index: as :func:`token_gradcam`; ``image`` is (1, C, h, w), the network's input.
        display: the file's own pixels as shown ((H, W) or (H, W, C), :func:`monai_ext.io.images.read_image`). The
            map is resized to them and drawn over their gray, so that the overlay lines up with the image a viewer
            shows, whatever its size and aspect. Default: over the network's input (channel mean, min-max scaled),
            at the network's (h, w).
    """
    cam = token_gradcam(network, image, class_index).cpu().numpy()
    if display is None:
        gray = image[0].mean(0).detach().cpu().float().numpy()  # float32: NumPy has no bfloat16
        gray = (gray - gray.min()) / max(float(gray.max() - gray.min()), 1e-6)
        return overlay_heatmap(gray, cam)
    import cv2

    gray = to_gray_unit(display, "the displayed image")
    cam = cv2.resize(cam, (gray.shape[1], gray.shape[0]), interpolation=cv2.INTER_LINEAR)
    return overlay_heatmap(gray, np.clip(cam, 0.0, 1.0))


def has_token_blocks(network: torch.nn.Module) -> bool:
    """Whether token Grad-CAM applies (a ViT classifier with ``embed``, ``blocks`` and ``forward_head``; not the CNN)."""
    inner = getattr(network, "module", network)
    return all(hasattr(inner, name) for name in ("embed", "blocks", "forward_head"))
