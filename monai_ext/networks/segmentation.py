"""2-D lesion segmentation on the MAE ViT encoder: a UNETR decoder built from MONAI's UNETR blocks.

The encoder has the MAE / :class:`~monai_ext.networks.classifier.ViTClassifier` key names (``patch_embed``,
``cls_token``, ``pos_embed``, ``blocks``, ``norm``), so :func:`monai_ext.networks.checkpoints.load_encoder_weights`
fills it from any checkpoint layout the project reads and reports the decoder as exactly the new keys. The decoder
is UNETR's (Hatamizadeh et al., 2022) in two dimensions: the tokens of three intermediate blocks and of the last one
are reshaped to the patch grid and brought back to full resolution through ``UnetrPrUpBlock`` / ``UnetrUpBlock``
stages, with a ``UnetrBasicBlock`` on the input image as the full-resolution skip.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from monai.networks.blocks import UnetOutBlock, UnetrBasicBlock, UnetrPrUpBlock, UnetrUpBlock
from torch import nn

from monai_ext.io.settings import number_list_setting
from monai_ext.networks.classifier import ENCODER_OF_MAE
from monai_ext.networks.layers import Block, PatchEmbed, init_patch_embed, init_vit_weights, prepend_cls_token
from monai_ext.networks.pos_embed import sincos_2d

#: Encoder sizes by the classifier name of the MAE encoder (MAE names are accepted through ``ENCODER_OF_MAE``).
ENCODER_SPECS: dict[str, dict[str, int]] = {
    "vit_base_patch16": {"patch_size": 16, "embed_dim": 768, "depth": 12, "num_heads": 12},
    "vit_large_patch16": {"patch_size": 16, "embed_dim": 1024, "depth": 24, "num_heads": 16},
    "vit_small_patch16": {"patch_size": 16, "embed_dim": 384, "depth": 12, "num_heads": 6},
    "vit_tiny_patch16": {"patch_size": 16, "embed_dim": 192, "depth": 12, "num_heads": 3},
}
ENCODER_PREFIXES = ("patch_embed.", "cls_token", "pos_embed", "blocks.", "norm.")


def default_feature_blocks(depth: int) -> tuple[int, int, int]:
    """UNETR's skip depths: the outputs of blocks depth/4, depth/2 and 3*depth/4 (3, 6, 9 of 12; 0-based ids)."""
    return (depth // 4, depth // 2, 3 * depth // 4)


class ViTSegmenter(nn.Module):
    """UNETR-style 2-D segmentation network whose encoder is the MAE ViT.

    Args:
        num_classes: output channels K (background included: 2 for lesion vs background).
        img_size: input side or (H, W), divisible by 16.
        patch_size: patch side; UNETR's four 2x upsamplings need 16.
        in_chans: input channels C.
        embed_dim, depth, num_heads, mlp_ratio: encoder size.
        feature_blocks: 0-based ids of the three blocks whose outputs feed the 1/2, 1/4 and 1/8 resolution skips
            (default :func:`default_feature_blocks`); the last block (after ``norm``) feeds the 1/16 stage.
        feature_size: decoder width at full resolution (doubles at each coarser stage), UNETR's ``feature_size``.
        norm_name: decoder normalisation ("instance", "batch", ...), as MONAI's UNETR.
        res_block: residual convolution blocks in the decoder.
        drop_path_rate: stochastic depth in the encoder, increasing linearly over the blocks.
        norm_eps: LayerNorm epsilon.

    Shapes: images (N, C, H, W) -> logits (N, K, H, W).
    """

    def __init__(
        self,
        num_classes: int = 2,
        img_size: int | tuple[int, int] = 224,
        patch_size: int = 16,
        in_chans: int = 3,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        feature_blocks: Sequence[int] | None = None,
        feature_size: int = 16,
        norm_name: str = "instance",
        res_block: bool = True,
        drop_path_rate: float = 0.0,
        norm_eps: float = 1e-6,
    ) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"num_classes counts the background too and must be at least 2, got {num_classes!r}")
        if patch_size != 16:
            raise ValueError(f"the UNETR decoder upsamples the patch grid 16 times; patch_size must be 16, got {patch_size!r}")
        rule = f"three increasing block ids below {depth}"
        # --feature_blocks 3 arrives as an int and --feature_blocks null as text; both are checked against the rule
        blocks_used = number_list_setting(feature_blocks, "feature_blocks", int, rule) or default_feature_blocks(depth)
        if len(blocks_used) != 3 or not all(0 <= b < depth for b in blocks_used) or list(blocks_used) != sorted(set(blocks_used)):
            raise ValueError(f"feature_blocks must be {rule}, got {feature_blocks!r}")
        if feature_size < 1 or not 0.0 <= drop_path_rate < 1.0:
            raise ValueError(f"need feature_size >= 1 and drop_path_rate in [0, 1), got {feature_size!r}, {drop_path_rate!r}")
        self.arch_args: dict[str, Any] = {
            "num_classes": num_classes, "img_size": img_size, "patch_size": patch_size, "in_chans": in_chans,
            "embed_dim": embed_dim, "depth": depth, "num_heads": num_heads, "mlp_ratio": mlp_ratio,
            "feature_blocks": list(blocks_used), "feature_size": feature_size, "norm_name": norm_name,
            "res_block": res_block, "drop_path_rate": drop_path_rate, "norm_eps": norm_eps,
        }
        self.num_classes, self.feature_blocks = num_classes, blocks_used
        # ----- encoder: the MAE encoder's modules and names
        self.patch_embed = PatchEmbed(img_size, patch_size, in_chans, embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(sincos_2d(embed_dim, self.patch_embed.grid_size).unsqueeze(0))
        rates = torch.linspace(0, drop_path_rate, depth).tolist()
        self.blocks = nn.ModuleList(
            [Block(embed_dim, num_heads, mlp_ratio, qkv_bias=True, drop_path=r, norm_eps=norm_eps) for r in rates]
        )
        self.norm = nn.LayerNorm(embed_dim, eps=norm_eps)
        # ----- decoder: MONAI UNETR's stages in 2-D
        f, dims = feature_size, 2
        self.encoder1 = UnetrBasicBlock(dims, in_chans, f, kernel_size=3, stride=1, norm_name=norm_name, res_block=res_block)
        self.encoder2 = UnetrPrUpBlock(dims, embed_dim, f * 2, num_layer=2, kernel_size=3, stride=1,
                                       upsample_kernel_size=2, norm_name=norm_name, conv_block=True, res_block=res_block)
        self.encoder3 = UnetrPrUpBlock(dims, embed_dim, f * 4, num_layer=1, kernel_size=3, stride=1,
                                       upsample_kernel_size=2, norm_name=norm_name, conv_block=True, res_block=res_block)
        self.encoder4 = UnetrPrUpBlock(dims, embed_dim, f * 8, num_layer=0, kernel_size=3, stride=1,
                                       upsample_kernel_size=2, norm_name=norm_name, conv_block=True, res_block=res_block)
        self.decoder5 = UnetrUpBlock(dims, embed_dim, f * 8, 3, 2, norm_name=norm_name, res_block=res_block)
        self.decoder4 = UnetrUpBlock(dims, f * 8, f * 4, 3, 2, norm_name=norm_name, res_block=res_block)
        self.decoder3 = UnetrUpBlock(dims, f * 4, f * 2, 3, 2, norm_name=norm_name, res_block=res_block)
        self.decoder2 = UnetrUpBlock(dims, f * 2, f, 3, 2, norm_name=norm_name, res_block=res_block)
        self.out = UnetOutBlock(dims, f, num_classes)
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """The MAE reference initialisation for the encoder; MONAI's own initialisation for the decoder."""
        for module in (self.blocks, self.norm):
            module.apply(init_vit_weights)
        init_patch_embed(self.patch_embed)
        nn.init.normal_(self.cls_token, std=0.02)

    def encoder_parameter_names(self) -> list[str]:
        """State-dict keys that a pretrained MAE (or ViT) encoder provides; the rest is the new decoder."""
        return [n for n in self.state_dict() if n.startswith(ENCODER_PREFIXES)]

    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Encoder feature maps. Args: x (N, C, H, W). Returns: four maps (N, D, H/16, W/16), shallow to deep."""
        tokens = self.patch_embed(x)
        tokens = prepend_cls_token(tokens + self.pos_embed[:, 1:, :], self.cls_token, self.pos_embed)  # float32 stream
        grid = self.patch_embed.grid_size
        features = []
        for index, block in enumerate(self.blocks):
            tokens = block(tokens)
            if index in self.feature_blocks:
                features.append(self._to_grid(tokens, grid))
        features.append(self._to_grid(self.norm(tokens), grid))
        return features

    @staticmethod
    def _to_grid(tokens: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """(N, 1 + L, D) tokens without the cls token -> (N, D, grid_h, grid_w)."""
        patches = tokens[:, 1:, :]
        return patches.transpose(1, 2).reshape(patches.shape[0], patches.shape[2], grid[0], grid[1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args: x (N, C, H, W) with (H, W) equal to ``img_size``. Returns: logits (N, K, H, W)."""
        shallow, middle, deep, last = self.encode(x)
        skip1 = self.encoder1(x)  # (N, f, H, W)
        skip2 = self.encoder2(shallow)  # (N, 2f, H/2, W/2)
        skip3 = self.encoder3(middle)  # (N, 4f, H/4, W/4)
        skip4 = self.encoder4(deep)  # (N, 8f, H/8, W/8)
        y = self.decoder5(last, skip4)
        y = self.decoder4(y, skip3)
        y = self.decoder3(y, skip2)
        y = self.decoder2(y, skip1)
        return self.out(y)


def build_segmenter(arch: str, num_classes: int = 2, **kwargs: Any) -> ViTSegmenter:
    """A :class:`ViTSegmenter` whose encoder has the size of ``arch`` (an MAE name or a classifier name)."""
    name = ENCODER_OF_MAE.get(arch, arch)
    if name not in ENCODER_SPECS:
        raise ValueError(f"unknown encoder architecture {arch!r}; choose one of {sorted(ENCODER_SPECS) + sorted(ENCODER_OF_MAE)}")
    return ViTSegmenter(num_classes, **{**ENCODER_SPECS[name], **kwargs})
