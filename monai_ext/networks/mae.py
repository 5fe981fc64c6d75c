"""Masked autoencoder Vision Transformer, parameter-compatible with the Facebook MAE reference.

The forward pass is split into the reference's named stages (``patchify``, ``random_masking``, ``forward_encoder``,
``forward_decoder``, ``forward_loss``) so that each can be checked against the MAE paper on its own. Differences
from the reference that do not change the numbers:

* masking noise may be passed in (reproducible, comparable masks) and is drawn on the input's device otherwise;
* gathers use ``expand`` instead of ``repeat`` (no copies);
* attention runs through ``scaled_dot_product_attention``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from monai_ext.networks.layers import Block, PatchEmbed, init_patch_embed, init_vit_weights, prepend_cls_token
from monai_ext.networks.pos_embed import sincos_2d


def validate_mask_ratio(mask_ratio: float) -> float:
    """Return ``mask_ratio`` as a float, raising ``ValueError`` unless it lies in [0, 1)."""
    if not 0.0 <= float(mask_ratio) < 1.0:
        raise ValueError(f"mask_ratio must be in [0, 1), got {mask_ratio!r}")
    return float(mask_ratio)


class MaskedAutoencoderViT(nn.Module):
    """MAE with a ViT encoder and a light Transformer decoder (He et al., 2022).

    Args:
        img_size: input side (or (H, W)); divisible by ``patch_size``.
        patch_size: patch side P.
        in_chans: input channels C (3 for the released weights; 1 for native grayscale).
        embed_dim: encoder width D.
        depth: encoder blocks.
        num_heads: encoder heads.
        decoder_embed_dim: decoder width Dd.
        decoder_depth: decoder blocks.
        decoder_num_heads: decoder heads.
        mlp_ratio: MLP hidden width as a multiple of the block width.
        norm_pix_loss: regress per-patch normalised pixels (ImageNet MAE ``_full`` weights) instead of raw ones
            (the released USF-MAE run).
        norm_eps: LayerNorm epsilon.

    Shapes: images (N, C, H, W); L = (H/P)(W/P) patches; ``pred`` (N, L, P*P*C); ``mask`` (N, L) with 1 = masked.
    """

    def __init__(
        self,
        img_size: int | tuple[int, int] = 224,
        patch_size: int = 16,
        in_chans: int = 3,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        decoder_embed_dim: int = 512,
        decoder_depth: int = 8,
        decoder_num_heads: int = 16,
        mlp_ratio: float = 4.0,
        norm_pix_loss: bool = False,
        norm_eps: float = 1e-6,
    ) -> None:
        super().__init__()
        if in_chans not in (1, 3):
            raise ValueError(f"in_chans must be 1 or 3, got {in_chans!r}")
        # checked here by its own name: the sin-cos builder's refusal called the decoder's width "embed_dim", and a
        # user who had set embed_dim=768 was told that 510 was the embed_dim at fault
        if decoder_embed_dim <= 0 or decoder_embed_dim % 4:
            raise ValueError("decoder_embed_dim must be positive and divisible by 4 for a 2-D sine-cosine embedding, "
                             f"got {decoder_embed_dim!r}")
        # Kept so that checkpoints can rebuild the model from the file alone (see checkpoints.arch_record).
        self.arch_args: dict[str, Any] = {
            "img_size": img_size,
            "patch_size": patch_size,
            "in_chans": in_chans,
            "embed_dim": embed_dim,
            "depth": depth,
            "num_heads": num_heads,
            "decoder_embed_dim": decoder_embed_dim,
            "decoder_depth": decoder_depth,
            "decoder_num_heads": decoder_num_heads,
            "mlp_ratio": mlp_ratio,
            "norm_pix_loss": norm_pix_loss,
            "norm_eps": norm_eps,
        }
        self.patch_size = patch_size
        self.in_chans = in_chans
        self.norm_pix_loss = norm_pix_loss

        self.patch_embed = PatchEmbed(img_size, patch_size, in_chans, embed_dim)
        grid = self.patch_embed.grid_size
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        # Fixed sin-cos embeddings stored as frozen parameters, exactly as in the reference (they are in its checkpoints).
        self.pos_embed = nn.Parameter(sincos_2d(embed_dim, grid).unsqueeze(0), requires_grad=False)
        self.blocks = nn.ModuleList(
            [Block(embed_dim, num_heads, mlp_ratio, qkv_bias=True, norm_eps=norm_eps) for _ in range(depth)]
        )
        self.norm = nn.LayerNorm(embed_dim, eps=norm_eps)

        self.decoder_embed = nn.Linear(embed_dim, decoder_embed_dim, bias=True)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_embed_dim))
        self.decoder_pos_embed = nn.Parameter(sincos_2d(decoder_embed_dim, grid).unsqueeze(0), requires_grad=False)
        self.decoder_blocks = nn.ModuleList(
            [
                Block(decoder_embed_dim, decoder_num_heads, mlp_ratio, qkv_bias=True, norm_eps=norm_eps)
                for _ in range(decoder_depth)
            ]
        )
        self.decoder_norm = nn.LayerNorm(decoder_embed_dim, eps=norm_eps)
        self.decoder_pred = nn.Linear(decoder_embed_dim, patch_size**2 * in_chans, bias=True)
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """Reference initialisation: xavier linears, N(0, 0.02) tokens, linear-style patch projection."""
        self.apply(init_vit_weights)
        init_patch_embed(self.patch_embed)
        nn.init.normal_(self.cls_token, std=0.02)
        nn.init.normal_(self.mask_token, std=0.02)

    @property
    def num_patches(self) -> int:
        """L, the number of patches of an image."""
        return self.patch_embed.num_patches

    def patchify(self, imgs: torch.Tensor) -> torch.Tensor:
        """Cut images into flattened patches.

        Args:
            imgs: (N, C, H, W).

        Returns:
            (N, L, P*P*C), each patch flattened in (row, column, channel) order as in the reference.

        Raises:
            ValueError: ``imgs`` is not (N, C, H, W) with H and W multiples of P, quoting its shape.
        """
        p = self.patch_size
        if imgs.ndim != 4 or imgs.shape[2] % p or imgs.shape[3] % p:
            # a reshape error ("shape '[1, 3, 4, 8, 4, 8]' is invalid for input of size 3888") named neither the
            # image size nor the patch size
            raise ValueError(f"patchify needs images (N, C, H, W) with H and W divisible by the patch size {p}, got "
                             f"{list(map(int, imgs.shape))}")
        n, c, h, w = imgs.shape
        gh, gw = h // p, w // p
        x = imgs.reshape(n, c, gh, p, gw, p)
        x = torch.einsum("nchpwq->nhwpqc", x)
        return x.reshape(n, gh * gw, p * p * c)

    def unpatchify(self, x: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`patchify`: (N, L, P*P*C) -> (N, C, H, W) on this model's patch grid.

        Raises:
            ValueError: ``x`` is not (N, L, P*P*C) for this model's grid and channels, quoting its shape.
        """
        p = self.patch_size
        gh, gw = self.patch_embed.grid_size
        if x.ndim != 3 or x.shape[1] != gh * gw or x.shape[2] != p * p * self.in_chans:
            raise ValueError(f"unpatchify needs patches (N, {gh * gw}, {p * p * self.in_chans}) of this model's "
                             f"{gh} x {gw} grid, got {list(map(int, x.shape))}")
        n = x.shape[0]
        x = x.reshape(n, gh, gw, p, p, self.in_chans)
        x = torch.einsum("nhwpqc->nchpwq", x)
        return x.reshape(n, self.in_chans, gh * p, gw * p)

    def random_masking(
        self, x: torch.Tensor, mask_ratio: float, noise: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-sample random masking by argsort of uniform noise (smallest noise kept).

        Args:
            x: tokens (N, L, D).
            mask_ratio: fraction of tokens to drop, in [0, 1).
            noise: optional (N, L) noise; drawn uniformly on ``x``'s device when omitted.

        Returns:
            x_masked (N, L_keep, D) with L_keep = int(L * (1 - mask_ratio)); mask (N, L), 0 = kept, 1 = removed,
            in ``x``'s dtype; ids_restore (N, L), the permutation that undoes the shuffle.

        Raises:
            ValueError: ``mask_ratio`` outside [0, 1), quoting it; ``noise`` not (N, L).
        """
        # forward() checks the ratio, but forward_encoder and this are public too: 1.5 kept L/2 tokens with a mask
        # saying all were removed, and a percentage (75) kept none, each without an error
        mask_ratio = validate_mask_ratio(mask_ratio)
        n, length, dim = x.shape
        len_keep = int(length * (1 - mask_ratio))
        if noise is None:
            noise = torch.rand(n, length, device=x.device)
        elif noise.shape != (n, length):
            raise ValueError(f"noise must have shape {(n, length)!r}, got {tuple(noise.shape)!r}")
        ids_shuffle = torch.argsort(noise, dim=1)
        ids_restore = torch.argsort(ids_shuffle, dim=1)
        ids_keep = ids_shuffle[:, :len_keep]
        x_masked = torch.gather(x, 1, ids_keep.unsqueeze(-1).expand(-1, -1, dim))
        # Mask built from ranks on the device: position i is removed when its rank in the shuffle is >= len_keep.
        mask = (ids_restore >= len_keep).to(x.dtype)
        return x_masked, mask, ids_restore

    def forward_encoder(
        self, imgs: torch.Tensor, mask_ratio: float, noise: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Embed, mask and encode the visible patches.

        Args:
            imgs: (N, C, H, W).
            mask_ratio: fraction of patches removed.
            noise: optional (N, L) masking noise.

        Returns:
            latent (N, 1 + L_keep, D) with the cls token first; mask (N, L); ids_restore (N, L).
        """
        x = self.patch_embed(imgs)
        # under autocast the patch embedding gives bf16 and the float32 position embedding promotes the sum: the
        # residual stream stays float32 between the blocks, as in the reference (only matmuls run in bf16)
        x = x + self.pos_embed[:, 1:, :]
        x, mask, ids_restore = self.random_masking(x, mask_ratio, noise)
        x = prepend_cls_token(x, self.cls_token, self.pos_embed)
        for block in self.blocks:
            x = block(x)
        return self.norm(x), mask, ids_restore

    def forward_decoder(self, latent: torch.Tensor, ids_restore: torch.Tensor) -> torch.Tensor:
        """Decode the full token sequence from the visible latents and mask tokens.

        Args:
            latent: (N, 1 + L_keep, D) encoder output.
            ids_restore: (N, L) permutation from :meth:`random_masking`.

        Returns:
            pred (N, L, P*P*C), pixel predictions for every patch (cls token removed).
        """
        x = self.decoder_embed(latent)
        n, length = ids_restore.shape
        mask_tokens = self.mask_token.expand(n, length + 1 - x.shape[1], -1)
        x_ = torch.cat([x[:, 1:, :], mask_tokens], dim=1)  # promoted as the reference's cat: float32 under autocast
        x_ = torch.gather(x_, 1, ids_restore.unsqueeze(-1).expand(-1, -1, x.shape[2]))
        x = torch.cat([x[:, :1, :], x_], dim=1)
        x = x + self.decoder_pos_embed
        for block in self.decoder_blocks:
            x = block(x)
        x = self.decoder_pred(self.decoder_norm(x))
        return x[:, 1:, :]

    def patch_targets(self, imgs: torch.Tensor) -> torch.Tensor:
        """Regression targets (N, L, P*P*C): raw patches, or per-patch normalised with ``norm_pix_loss``."""
        target = self.patchify(imgs)
        if self.norm_pix_loss:
            mean = target.mean(dim=-1, keepdim=True)
            var = target.var(dim=-1, keepdim=True)  # unbiased, as in the reference
            target = (target - mean) / (var + 1.0e-6) ** 0.5
        return target

    def forward_loss(self, imgs: torch.Tensor, pred: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Mean squared error over the removed patches only.

        Args:
            imgs: (N, C, H, W).
            pred: (N, L, P*P*C).
            mask: (N, L), 1 = removed.

        Returns:
            scalar loss, computed in float32 whatever the autocast dtype.
        """
        target = self.patch_targets(imgs.float())
        per_patch = (pred.float() - target).pow(2).mean(dim=-1)
        mask = mask.float()
        return (per_patch * mask).sum() / mask.sum()

    def forward(
        self, imgs: torch.Tensor, mask_ratio: float = 0.75, noise: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Mask, encode, decode and score.

        Args:
            imgs: (N, C, H, W) normalised images.
            mask_ratio: fraction of patches removed, in [0, 1).
            noise: optional (N, L) uniform noise deciding which patches are kept (smallest kept).

        Returns:
            ``(loss, pred, mask)``: scalar loss, pred (N, L, P*P*C), mask (N, L) with 1 = removed.
        """
        mask_ratio = validate_mask_ratio(mask_ratio)
        if imgs.ndim != 4 or imgs.shape[1] != self.in_chans or tuple(imgs.shape[2:]) != self.patch_embed.img_size:
            raise ValueError(
                f"expected images of shape (N, {self.in_chans}, {self.patch_embed.img_size[0]}, "
                f"{self.patch_embed.img_size[1]}), got {list(map(int, imgs.shape))}"  # ints: a trace gives tensors
            )
        latent, mask, ids_restore = self.forward_encoder(imgs, mask_ratio, noise)
        pred = self.forward_decoder(latent, ids_restore)
        loss = self.forward_loss(imgs, pred, mask)
        return loss, pred, mask


def _mae(**kwargs: Any) -> MaskedAutoencoderViT:
    return MaskedAutoencoderViT(**kwargs)


#: The structure each registered MAE's factory sets (the rest are keyword arguments): a checkpoint that records its
#: ``arch_args`` but no architecture name is named by these (the bundles rebuild networks by name).
MAE_SPECS: dict[str, dict[str, Any]] = {
    "mae_vit_base_patch16_dec512d8b": dict(patch_size=16, embed_dim=768, depth=12, num_heads=12, decoder_embed_dim=512,
                                           decoder_depth=8, decoder_num_heads=16, mlp_ratio=4.0),
    "mae_vit_large_patch16_dec512d8b": dict(patch_size=16, embed_dim=1024, depth=24, num_heads=16,
                                            decoder_embed_dim=512, decoder_depth=8, decoder_num_heads=16, mlp_ratio=4.0),
    "mae_vit_small_patch16_dec256d4b": dict(patch_size=16, embed_dim=384, depth=12, num_heads=6, decoder_embed_dim=256,
                                            decoder_depth=4, decoder_num_heads=8, mlp_ratio=4.0),
    "mae_vit_tiny_patch16_dec128d2b": dict(patch_size=16, embed_dim=192, depth=12, num_heads=3, decoder_embed_dim=128,
                                           decoder_depth=2, decoder_num_heads=4, mlp_ratio=4.0),
}


def mae_vit_base_patch16_dec512d8b(**kwargs: Any) -> MaskedAutoencoderViT:
    """ViT-B/16 encoder, 8-block 512-wide decoder: the USF-MAE / ImageNet MAE base model (about 112M parameters)."""
    return _mae(**{**MAE_SPECS["mae_vit_base_patch16_dec512d8b"], **kwargs})


def mae_vit_large_patch16_dec512d8b(**kwargs: Any) -> MaskedAutoencoderViT:
    """ViT-L/16 encoder with the same 8-block 512-wide decoder (about 330M parameters)."""
    return _mae(**{**MAE_SPECS["mae_vit_large_patch16_dec512d8b"], **kwargs})


def mae_vit_small_patch16_dec256d4b(**kwargs: Any) -> MaskedAutoencoderViT:
    """ViT-S/16 encoder, 4-block 256-wide decoder: for single-GPU and CPU experiments (about 26M parameters)."""
    return _mae(**{**MAE_SPECS["mae_vit_small_patch16_dec256d4b"], **kwargs})


def mae_vit_tiny_patch16_dec128d2b(**kwargs: Any) -> MaskedAutoencoderViT:
    """ViT-Ti/16 encoder, 2-block 128-wide decoder: the CPU demo and test model (about 6M parameters)."""
    return _mae(**{**MAE_SPECS["mae_vit_tiny_patch16_dec128d2b"], **kwargs})


MAE_FACTORIES = {
    fn.__name__: fn
    for fn in (
        mae_vit_base_patch16_dec512d8b,
        mae_vit_large_patch16_dec512d8b,
        mae_vit_small_patch16_dec256d4b,
        mae_vit_tiny_patch16_dec128d2b,
    )
}


def build_mae(arch: str, **kwargs: Any) -> MaskedAutoencoderViT:
    """Build a registered MAE by factory name, with keyword overrides of its arguments."""
    if arch not in MAE_FACTORIES:
        raise ValueError(f"unknown MAE architecture {arch!r}; choose one of {sorted(MAE_FACTORIES)}")
    return MAE_FACTORIES[arch](**kwargs)
