"""Vision Transformer building blocks with the timm / Facebook MAE parameter names.

Written here rather than taken from a library because the released USF-MAE and Facebook MAE checkpoints use timm's
key names (``blocks.i.attn.qkv``, ``mlp.fc1`` ...). MONAI's ``TransformerBlock`` names them differently and carries
an unused cross-attention norm (which breaks plain DDP), and timm itself requires torchvision, which cannot be
installed beside the CPU torch this project targets. Stochastic depth is MONAI's ``DropPath`` (timm's rule: one
Bernoulli draw per sample, kept branches scaled by ``1 / (1 - p)``).
"""

from __future__ import annotations

import numbers

import torch
import torch.nn.functional as F
from monai.networks.layers import DropPath
from torch import nn


def _whole(value: object) -> bool:
    """A whole number (numpy's too), not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def to_2tuple(value: int | tuple[int, int]) -> tuple[int, int]:
    """Return ``(value, value)`` for an int and the pair unchanged otherwise.

    Raises:
        ValueError: anything but a whole number or a pair of them, quoting it (``224.0`` failed with a TypeError
            about ``len``, ``True`` was taken as 1).
    """
    if _whole(value):
        return (int(value), int(value))  # type: ignore[arg-type]
    pair = list(value) if isinstance(value, (tuple, list)) or getattr(value, "ndim", None) == 1 else None
    if pair is None or len(pair) != 2 or not all(_whole(v) for v in pair):
        raise ValueError(f"expected a whole number or a pair of them, got {value!r}")
    return (int(pair[0]), int(pair[1]))


class PatchEmbed(nn.Module):
    """Non-overlapping patch embedding by a strided convolution.

    Args:
        img_size: input (H, W) or one int for a square image; must be divisible by ``patch_size``.
        patch_size: patch side P.
        in_chans: input channels C.
        embed_dim: token width D.
    """

    def __init__(self, img_size: int | tuple[int, int], patch_size: int, in_chans: int, embed_dim: int) -> None:
        super().__init__()
        self.img_size = to_2tuple(img_size)
        if not _whole(patch_size) or patch_size < 1:
            raise ValueError(f"patch size must be a whole number of at least 1, got {patch_size!r}")
        if not _whole(in_chans) or in_chans < 1:
            raise ValueError(f"in_chans must be a whole number of at least 1, got {in_chans!r}")
        self.patch_size = int(patch_size)
        for side in self.img_size:
            if side <= 0 or side % self.patch_size:
                raise ValueError(
                    f"image size {self.img_size!r} must be positive and divisible by patch size {self.patch_size!r}"
                )
        self.grid_size = (self.img_size[0] // self.patch_size, self.img_size[1] // self.patch_size)
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=self.patch_size, stride=self.patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Embed patches.

        Args:
            x: images (N, C, H, W) with (H, W) equal to ``img_size``.

        Returns:
            tokens (N, L, D) in row-major patch order, L = (H / P) * (W / P).

        Raises:
            ValueError: ``x`` is not (N, C, H, W) of this size: the position embedding would fail later with a
                tensor-size message that names neither the expected image size nor the given one.
        """
        if x.dim() != 4 or x.shape[1] != self.proj.in_channels or x.shape[2] != self.img_size[0] or \
                x.shape[3] != self.img_size[1]:
            raise ValueError(f"expected images of shape (N, {self.proj.in_channels}, {self.img_size[0]}, "
                             f"{self.img_size[1]}), got {list(x.shape)}")
        if torch.jit.is_tracing():
            # a trace records tensor operations only: the check above ran once, at trace time, and a traced model
            # took another (H, W) of the same patch count (112 x 448 for 224 x 224), its patches scrambled onto
            # this grid. Adding zeros of this (H, W) is recorded, and its broadcast fails at run time on another size.
            x = x + x.new_zeros(()).expand(*self.img_size)
        return self.proj(x).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    """Multi-head self-attention through ``F.scaled_dot_product_attention`` (flash / memory-efficient kernels).

    Args:
        dim: token width D, divisible by ``num_heads``.
        num_heads: number of heads.
        qkv_bias: learn a bias on the fused qkv projection (True for ViT-B/16 MAE).
    """

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True) -> None:
        super().__init__()
        if not _whole(num_heads) or num_heads < 1:
            raise ValueError(f"num_heads must be a whole number of at least 1, got {num_heads!r}")
        if dim % num_heads:
            raise ValueError(f"width {dim!r} must be divisible by the number of heads {num_heads!r}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args: x (N, T, D). Returns: (N, T, D)."""
        batch, tokens, dim = x.shape
        # (N, T, 3*D) -> (3, N, heads, T, head_dim): the fused layout of timm's qkv weight.
        qkv = self.qkv(x).reshape(batch, tokens, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        x = F.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(batch, tokens, dim))


class Mlp(nn.Module):
    """Two-layer GELU MLP: ``fc1 -> GELU -> fc2``. Shapes (N, T, D) -> (N, T, D)."""

    def __init__(self, dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm Transformer block: ``x + attn(norm1(x))`` then ``x + mlp(norm2(x))``.

    Args:
        dim: token width D.
        num_heads: attention heads.
        mlp_ratio: hidden width of the MLP as a multiple of D.
        qkv_bias: bias on the qkv projection.
        drop_path: stochastic-depth probability of both residual branches.
        norm_eps: LayerNorm epsilon (1e-6 in MAE).
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop_path: float = 0.0,
        norm_eps: float = 1e-6,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = Attention(dim, num_heads, qkv_bias=qkv_bias)
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        if not 0.0 <= drop_path < 1.0:
            raise ValueError(f"drop path probability must be in [0, 1), got {drop_path!r}")
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args: x (N, T, D). Returns: (N, T, D)."""
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


def prepend_cls_token(tokens: torch.Tensor, cls_token: torch.Tensor, pos_embed: torch.Tensor) -> torch.Tensor:
    """Prepend the cls token, plus its slot of the position embedding, to already position-embedded patch tokens.

    Args:
        tokens: (N, T, D) patch tokens.
        cls_token: (1, 1, D).
        pos_embed: (1, 1 + L, D), cls slot first.

    Returns:
        (N, 1 + T, D) in the wider of the tokens' and the cls token's dtypes: float32 for a float32 model under bf16
        autocast, as the reference's ``torch.cat`` promotes it (a bf16 residual stream keeps 3 significant digits
        through every block), bf16 for a bf16 model.
    """
    cls = cls_token + pos_embed[:, :1, :]
    dtype = torch.promote_types(tokens.dtype, cls.dtype)
    return torch.cat([cls.to(dtype).expand(tokens.shape[0], -1, -1), tokens.to(dtype)], dim=1)


def init_vit_weights(module: nn.Module) -> None:
    """The MAE reference initialisation: xavier-uniform linears with zero bias, unit LayerNorms."""
    if isinstance(module, nn.Linear):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


def init_patch_embed(patch_embed: PatchEmbed) -> None:
    """Initialise the patch projection like a linear layer (xavier on the flattened kernel), as MAE does."""
    weight = patch_embed.proj.weight.data
    nn.init.xavier_uniform_(weight.view(weight.shape[0], -1))
    nn.init.zeros_(patch_embed.proj.bias)
