"""The MAE as an image-to-image network for inference, bundle checks and exports: images in, reconstructions out."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from monai_ext.networks.mae import MaskedAutoencoderViT, build_mae, validate_mask_ratio

logger = logging.getLogger(__name__)


class MAEReconstructor(MaskedAutoencoderViT):
    """A :class:`MaskedAutoencoderViT` whose plain call ``net(images)`` returns the reconstructed images.

    A fixed mask (seeded noise, the same for every image and batch) makes the output deterministic, so the network
    passes ``verify_net_in_out`` and TorchScript tracing checks. Removed patches show the prediction, visible ones
    the input (MAE's "reconstruction + visible" picture). With ``norm_pix_loss`` the predictions are per-patch
    normalised; they are brought back with each patch's mean and variance in the input, as MAE's demo does.

    Subclassing (rather than wrapping) keeps the parameter names, so a pretrain-bundle ``model.pt`` loads as is, and
    a call with a mask ratio still gives the MAE's own ``(loss, pred, mask)`` for MAE tools (reconstruction grids).

    Args:
        mask_ratio: fraction of patches removed by the fixed mask.
        mask_seed: seed of the fixed mask's noise.
        **kwargs: :class:`MaskedAutoencoderViT` arguments.
    """

    def __init__(self, *, mask_ratio: float = 0.75, mask_seed: int = 0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.mask_ratio = validate_mask_ratio(mask_ratio)
        noise = torch.rand(1, self.num_patches, generator=torch.Generator().manual_seed(mask_seed))
        # not persistent: the state dict stays exactly the MAE's
        self.register_buffer("mask_noise", noise, persistent=False)

    def forward(  # type: ignore[override]
        self, imgs: torch.Tensor, mask_ratio: float | None = None, noise: torch.Tensor | None = None
    ) -> Any:
        """Reconstruct images, or run the MAE.

        Args:
            imgs: (N, C, H, W) normalised images.
            mask_ratio: None for the reconstruction under the fixed mask; a ratio for the MAE's own forward.
            noise: (N, L) masking noise for the MAE's own forward.

        Returns:
            (N, C, H, W) reconstructions when ``mask_ratio`` is None, else the MAE's ``(loss, pred, mask)``.
        """
        if mask_ratio is not None:
            return super().forward(imgs, mask_ratio, noise)
        _, pred, mask = super().forward(imgs, self.mask_ratio, self.mask_noise.expand(imgs.shape[0], -1))
        patches = self.patchify(imgs)
        if self.norm_pix_loss:
            mean = patches.mean(dim=-1, keepdim=True)
            std = (patches.var(dim=-1, keepdim=True) + 1.0e-6) ** 0.5
            pred = pred * std + mean
        removed = mask.unsqueeze(-1).to(pred.dtype)
        return self.unpatchify(pred * removed + patches.to(pred.dtype) * (1 - removed))


def build_mae_reconstructor(arch: str, mask_ratio: float = 0.75, mask_seed: int = 0, **kwargs: Any) -> MAEReconstructor:
    """:class:`MAEReconstructor` with the architecture of :func:`~monai_ext.networks.mae.build_mae`'s ``arch``.

    Args:
        arch: a registered MAE name (``mae_vit_base_patch16_dec512d8b`` ...).
        mask_ratio, mask_seed: the fixed mask.
        **kwargs: overrides of the architecture's arguments (img_size, in_chans, norm_pix_loss ...).
    """
    with torch.device("meta"):  # only the architecture's arguments are wanted, not its weights
        arch_args = build_mae(arch, **kwargs).arch_args
    return MAEReconstructor(mask_ratio=mask_ratio, mask_seed=mask_seed, **arch_args)


def recorded_norm_pix_loss(trained: Mapping[str, Any], ckpt_path: str | os.PathLike) -> bool:
    """The ``norm_pix_loss`` a checkpoint's record states, else False with a warning where the file has no record.

    A released or foreign file (the released USF-MAE, Facebook's ImageNet MAE) records no targets. Read as raw-pixel
    targets, weights trained on per-patch normalised ones (Facebook's ``_full`` files) give a loss against the wrong
    targets, smaller than their own, and reconstructions without their patches' mean and variance, without an error.

    Args:
        trained: the checkpoint's settings (:func:`monai_ext.apps.bundle_support.trained_settings`).
        ckpt_path: the checkpoint; a missing one (before training) is the config's defaults, without a warning.
    """
    if "norm_pix_loss" in trained:
        return bool(trained["norm_pix_loss"])
    if Path(ckpt_path).expanduser().is_file():
        logger.warning("%s records no norm_pix_loss: its targets are taken as raw pixels, as the released USF-MAE "
                       "regressed them; for weights trained on per-patch normalised pixels (Facebook's ImageNet MAE "
                       "_full checkpoints) give --norm_pix_loss true, or the loss and the reconstructions are wrong",
                       ckpt_path)
    return False
