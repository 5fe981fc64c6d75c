"""Fixed 2-D sine-cosine position embeddings, laid out exactly as in the Facebook MAE reference.

The reference (``util/pos_embed.py`` in facebookresearch/mae) builds the grid with ``np.meshgrid(grid_w, grid_h)``,
so the first half of every embedding encodes the *column* coordinate and the second half the *row* coordinate.
Checkpoints store the result, so the order matters for weight compatibility: we reproduce it, in torch, for any
(possibly non-square) grid.
"""

from __future__ import annotations

import torch


def sincos_1d(embed_dim: int, positions: torch.Tensor) -> torch.Tensor:
    """Sine-cosine embedding of 1-D positions.

    Args:
        embed_dim: output width D; must be even.
        positions: positions of any shape, M elements in all.

    Returns:
        Tensor of shape (M, D): ``[sin(pos * omega), cos(pos * omega)]`` with ``omega_i = 10000^(-2i/D)``.
    """
    if embed_dim % 2:
        raise ValueError(f"embed_dim must be even for a sine-cosine embedding, got {embed_dim!r}")
    omega = torch.arange(embed_dim // 2, dtype=torch.float64) / (embed_dim / 2.0)
    omega = 1.0 / 10000**omega
    out = positions.reshape(-1).to(torch.float64)[:, None] * omega[None, :]
    return torch.cat([torch.sin(out), torch.cos(out)], dim=1)


def sincos_2d(embed_dim: int, grid_size: tuple[int, int], cls_token: bool = True) -> torch.Tensor:
    """2-D sine-cosine position embedding of a ``grid_h x grid_w`` patch grid.

    Args:
        embed_dim: output width D; must be divisible by 4.
        grid_size: (grid_h, grid_w), the number of patches along rows and columns.
        cls_token: prepend an all-zero row for the class token, as the reference does.

    Returns:
        float32 tensor of shape (grid_h * grid_w [+1], D), patches in row-major order.
    """
    if embed_dim % 4:
        raise ValueError(f"embed_dim must be divisible by 4 for a 2-D sine-cosine embedding, got {embed_dim!r}")
    grid_h, grid_w = grid_size
    rows, cols = torch.meshgrid(
        torch.arange(grid_h, dtype=torch.float64), torch.arange(grid_w, dtype=torch.float64), indexing="ij"
    )
    # First half from the column coordinate, second from the row: the reference's meshgrid(w, h) order.
    emb = torch.cat([sincos_1d(embed_dim // 2, cols), sincos_1d(embed_dim // 2, rows)], dim=1)
    if cls_token:
        emb = torch.cat([torch.zeros(1, embed_dim, dtype=emb.dtype), emb], dim=0)
    return emb.float()
