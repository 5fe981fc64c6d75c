"""The MAE as an image-to-image network for inference, bundle checks and exports: images in, reconstructions out."""

from __future__ import annotations

from typing import Any

import torch

from monai_ext.networks.mae import MaskedAutoencoderViT, build_mae, validate_mask_ratio


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
