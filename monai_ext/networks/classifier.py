"""ViT image classifier on the MAE encoder (same parameter names), as in MAE's reference fine-tuning.

Global average pooling of the patch tokens followed by ``fc_norm`` is the reference fine-tuning default; the cls
token through the final ``norm`` is the alternative. Only the modules the chosen pooling uses are created, so every
parameter receives a gradient and plain DDP works without ``find_unused_parameters``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from monai_ext.networks.layers import Block, PatchEmbed, init_patch_embed, init_vit_weights, prepend_cls_token
from monai_ext.networks.pos_embed import sincos_2d

POOLINGS = ("avg", "cls")


class ViTClassifier(nn.Module):
    """Vision Transformer classifier whose encoder keys match :class:`MaskedAutoencoderViT`.

    Args:
        num_classes: number of output logits K.
        img_size: input side or (H, W), divisible by ``patch_size``.
        patch_size: patch side P.
        in_chans: input channels C.
        embed_dim: width D.
        depth: blocks.
        num_heads: heads.
        mlp_ratio: MLP hidden width multiple.
        global_pool: ``"avg"`` (mean of patch tokens, then ``fc_norm``) or ``"cls"`` (``norm``, then cls token).
        drop_path_rate: stochastic depth, increasing linearly to this value over the blocks.
        head_dropout: dropout before the linear head.
        linear_probe: frozen-feature head: ``BatchNorm1d(affine=False)`` before the linear layer (MAE linprobe).
        norm_eps: LayerNorm epsilon.

    Shapes: images (N, C, H, W) -> logits (N, K); ``forward_features`` -> (N, D).
    """

    def __init__(
        self,
        num_classes: int,
        img_size: int | tuple[int, int] = 224,
        patch_size: int = 16,
        in_chans: int = 3,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        global_pool: str = "avg",
        drop_path_rate: float = 0.0,
        head_dropout: float = 0.0,
        linear_probe: bool = False,
        norm_eps: float = 1e-6,
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be at least 1, got {num_classes!r}")
        if global_pool not in POOLINGS:
            raise ValueError(f"global_pool must be one of {POOLINGS}, got {global_pool!r}")
        if not 0.0 <= drop_path_rate < 1.0:
            raise ValueError(f"drop_path_rate must be in [0, 1), got {drop_path_rate!r}")
        self.arch_args: dict[str, Any] = {
            "num_classes": num_classes,
            "img_size": img_size,
            "patch_size": patch_size,
            "in_chans": in_chans,
            "embed_dim": embed_dim,
            "depth": depth,
            "num_heads": num_heads,
            "mlp_ratio": mlp_ratio,
            "global_pool": global_pool,
            "drop_path_rate": drop_path_rate,
            "head_dropout": head_dropout,
            "linear_probe": linear_probe,
            "norm_eps": norm_eps,
        }
        self.global_pool = global_pool
        self.num_classes = num_classes
        self.patch_embed = PatchEmbed(img_size, patch_size, in_chans, embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        # Learnable in fine-tuning (as timm's ViT); initialised with the MAE sin-cos values.
        self.pos_embed = nn.Parameter(sincos_2d(embed_dim, self.patch_embed.grid_size).unsqueeze(0))
        rates = torch.linspace(0, drop_path_rate, depth).tolist()
        self.blocks = nn.ModuleList(
            [Block(embed_dim, num_heads, mlp_ratio, qkv_bias=True, drop_path=r, norm_eps=norm_eps) for r in rates]
        )
        # The unused one of the two norms is a parameter-free Identity: the state dict keeps the reference's keys
        # and TorchScript can compile both pooling branches.
        avg = global_pool == "avg"
        self.fc_norm = nn.LayerNorm(embed_dim, eps=norm_eps) if avg else nn.Identity()
        self.norm = nn.Identity() if avg else nn.LayerNorm(embed_dim, eps=norm_eps)
        self.head_drop = nn.Dropout(head_dropout)
        linear = nn.Linear(embed_dim, num_classes)
        self.head: nn.Module = (
            nn.Sequential(nn.BatchNorm1d(embed_dim, affine=False, eps=1e-6), linear) if linear_probe else linear
        )
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """Reference initialisation; the head gets N(0, 2e-5) weights as in MAE fine-tuning."""
        self.apply(init_vit_weights)
        init_patch_embed(self.patch_embed)
        nn.init.normal_(self.cls_token, std=0.02)
        linear = self.head[-1] if isinstance(self.head, nn.Sequential) else self.head
        nn.init.normal_(linear.weight, std=2e-5)
        nn.init.zeros_(linear.bias)

    def encoder_parameter_names(self) -> list[str]:
        """Names of the parameters that a pretrained MAE encoder provides (everything but the pooling head)."""
        return [n for n in self.state_dict() if not n.startswith(("head.", "fc_norm."))]

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Tokens entering the first block. Args: x (N, C, H, W). Returns: (N, 1 + L, D), cls first."""
        x = self.patch_embed(x)
        return prepend_cls_token(x + self.pos_embed[:, 1:, :], self.cls_token, self.pos_embed)  # float32 stream

    def forward_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Encode all patches. Args: x (N, C, H, W). Returns: tokens (N, 1 + L, D), cls first, before norm."""
        x = self.embed(x)
        for block in self.blocks:
            x = block(x)
        return x

    def pool(self, tokens: torch.Tensor) -> torch.Tensor:
        """Pooled features of encoded tokens. Args: tokens (N, 1 + L, D) from :meth:`forward_tokens`. Returns: (N, D)."""
        if self.global_pool == "avg":
            return self.fc_norm(tokens[:, 1:, :].mean(dim=1))
        return self.norm(tokens)[:, 0]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled features. Args: x (N, C, H, W). Returns: (N, D)."""
        return self.pool(self.forward_tokens(x))

    def forward_head(self, tokens: torch.Tensor) -> torch.Tensor:
        """Logits of encoded tokens (what token Grad-CAM differentiates against the tokens without hooking the model).

        Args: tokens (N, 1 + L, D) from :meth:`forward_tokens`. Returns: logits (N, K).
        """
        return self.head(self.head_drop(self.pool(tokens)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args: x (N, C, H, W). Returns: logits (N, K)."""
        return self.forward_head(self.forward_tokens(x))


def vit_base_patch16(num_classes: int, **kwargs: Any) -> ViTClassifier:
    """ViT-B/16 classifier matching ``mae_vit_base_patch16_dec512d8b``'s encoder."""
    return ViTClassifier(num_classes, **{"patch_size": 16, "embed_dim": 768, "depth": 12, "num_heads": 12, **kwargs})


def vit_large_patch16(num_classes: int, **kwargs: Any) -> ViTClassifier:
    """ViT-L/16 classifier matching ``mae_vit_large_patch16_dec512d8b``'s encoder."""
    return ViTClassifier(num_classes, **{"patch_size": 16, "embed_dim": 1024, "depth": 24, "num_heads": 16, **kwargs})


def vit_small_patch16(num_classes: int, **kwargs: Any) -> ViTClassifier:
    """ViT-S/16 classifier matching ``mae_vit_small_patch16_dec256d4b``'s encoder."""
    return ViTClassifier(num_classes, **{"patch_size": 16, "embed_dim": 384, "depth": 12, "num_heads": 6, **kwargs})


def vit_tiny_patch16(num_classes: int, **kwargs: Any) -> ViTClassifier:
    """ViT-Ti/16 classifier matching ``mae_vit_tiny_patch16_dec128d2b``'s encoder."""
    return ViTClassifier(num_classes, **{"patch_size": 16, "embed_dim": 192, "depth": 12, "num_heads": 3, **kwargs})


CLASSIFIER_FACTORIES = {fn.__name__: fn for fn in (vit_base_patch16, vit_large_patch16, vit_small_patch16, vit_tiny_patch16)}

#: The classifier that fine-tunes the encoder of each MAE architecture.
ENCODER_OF_MAE = {
    "mae_vit_base_patch16_dec512d8b": "vit_base_patch16",
    "mae_vit_large_patch16_dec512d8b": "vit_large_patch16",
    "mae_vit_small_patch16_dec256d4b": "vit_small_patch16",
    "mae_vit_tiny_patch16_dec128d2b": "vit_tiny_patch16",
}


def build_classifier(arch: str, num_classes: int, **kwargs: Any) -> ViTClassifier:
    """Build a registered classifier by name (a classifier name or the MAE name whose encoder it fine-tunes)."""
    arch = ENCODER_OF_MAE.get(arch, arch)
    if arch not in CLASSIFIER_FACTORIES:
        raise ValueError(f"unknown classifier architecture {arch!r}; choose one of {sorted(CLASSIFIER_FACTORIES)} "
                         f"or the MAE whose encoder it fine-tunes ({', '.join(sorted(ENCODER_OF_MAE))})")
    return CLASSIFIER_FACTORIES[arch](num_classes, **kwargs)
