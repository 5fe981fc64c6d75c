"""Fixed 2-D sine-cosine position embeddings laid out as in the Facebook MAE reference: MONAI's builder plus a cls row.

The reference (``util/pos_embed.py`` in facebookresearch/mae) builds the grid with ``np.meshgrid(grid_w, grid_h)``,
so the first half of every embedding encodes the *column* coordinate and the second half the *row* coordinate, each
as ``[sin(pos * omega), cos(pos * omega)]`` with ``omega_i = 10000^(-i / (D / 4))``. MONAI's
``build_sincos_position_embedding`` (2-D) concatenates ``[sin(w), cos(w), sin(h), cos(h)]`` with the same ``omega``:
the same layout, for any (possibly non-square) grid. It computes in float32 where the reference uses float64, a
difference below 1e-6 up to a 16 x 16 grid (tested); checkpoints store the embedding, so loading them is unaffected.
"""

from __future__ import annotations

import warnings

import torch
from monai.networks.blocks.pos_embed_utils import build_sincos_position_embedding


def sincos_2d(embed_dim: int, grid_size: tuple[int, int], cls_token: bool = True) -> torch.Tensor:
    """2-D sine-cosine position embedding of a ``grid_h x grid_w`` patch grid.

    Args:
        embed_dim: output width D; must be divisible by 4.
        grid_size: (grid_h, grid_w), the number of patches along rows and columns.
        cls_token: prepend an all-zero row for the class token, as the reference does.

    Returns:
        float32 tensor of shape (grid_h * grid_w [+1], D), patches in row-major order.
    """
    if embed_dim <= 0 or embed_dim % 4:
        raise ValueError(f"embed_dim must be positive and divisible by 4 for a 2-D sine-cosine embedding, got {embed_dim!r}")
    grid_h, grid_w = (int(side) for side in grid_size)
    if grid_h < 1 or grid_w < 1:
        raise ValueError(f"grid_size must hold two positive sides, got {grid_size!r}")
    with warnings.catch_warnings():
        # MONAI calls torch.meshgrid without ``indexing``; its default ("ij") is the row-major order wanted here.
        warnings.filterwarnings("ignore", message=".*torch.meshgrid.*", category=UserWarning)
        emb = build_sincos_position_embedding([grid_h, grid_w], embed_dim, spatial_dims=2).detach()[0]
    if cls_token:
        emb = torch.cat([torch.zeros(1, embed_dim, dtype=emb.dtype), emb], dim=0)
    return emb.float().contiguous()
