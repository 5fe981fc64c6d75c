"""The sine-cosine position embedding (MONAI's builder plus the cls row) against Facebook MAE's numpy reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from monai_ext.networks.classifier import ViTClassifier
from monai_ext.networks.mae import build_mae
from monai_ext.networks.pos_embed import sincos_2d


# --- facebookresearch/mae util/pos_embed.py, written out (np.float -> np.float64; grid_size may be (h, w)) ---
def get_2d_sincos_pos_embed(embed_dim, grid_size, cls_token=False):
    grid_h_size, grid_w_size = (grid_size, grid_size) if isinstance(grid_size, int) else grid_size
    grid_h = np.arange(grid_h_size, dtype=np.float32)
    grid_w = np.arange(grid_w_size, dtype=np.float32)
    grid = np.meshgrid(grid_w, grid_h)  # here w goes first
    grid = np.stack(grid, axis=0)
    grid = grid.reshape([2, 1, grid_h_size, grid_w_size])
    pos_embed = get_2d_sincos_pos_embed_from_grid(embed_dim, grid)
    if cls_token:
        pos_embed = np.concatenate([np.zeros([1, embed_dim]), pos_embed], axis=0)
    return pos_embed


def get_2d_sincos_pos_embed_from_grid(embed_dim, grid):
    assert embed_dim % 2 == 0
    emb_h = get_1d_sincos_pos_embed_from_grid(embed_dim // 2, grid[0])  # (H*W, D/2)
    emb_w = get_1d_sincos_pos_embed_from_grid(embed_dim // 2, grid[1])  # (H*W, D/2)
    return np.concatenate([emb_h, emb_w], axis=1)  # (H*W, D)


def get_1d_sincos_pos_embed_from_grid(embed_dim, pos):
    assert embed_dim % 2 == 0
    omega = np.arange(embed_dim // 2, dtype=np.float64)
    omega /= embed_dim / 2.0
    omega = 1.0 / 10000**omega  # (D/2,)
    pos = pos.reshape(-1)  # (M,)
    out = np.einsum("m,d->md", pos, omega)  # (M, D/2), outer product
    emb_sin = np.sin(out)  # (M, D/2)
    emb_cos = np.cos(out)  # (M, D/2)
    return np.concatenate([emb_sin, emb_cos], axis=1)  # (M, D)
# --- end of the reference ---


@pytest.mark.parametrize("embed_dim, grid", [(768, 14), (1024, 16), (512, (14, 14)), (192, (4, 6)), (64, (7, 3)),
                                             (16, (1, 5))])
@pytest.mark.parametrize("cls_token", [True, False])
def test_equals_the_facebook_mae_reference(embed_dim: int, grid, cls_token: bool) -> None:
    grid_hw = (grid, grid) if isinstance(grid, int) else grid
    ours = sincos_2d(embed_dim, grid_hw, cls_token=cls_token)
    reference = get_2d_sincos_pos_embed(embed_dim, grid, cls_token=cls_token)
    assert ours.dtype == torch.float32 and ours.shape == reference.shape
    # float32 arithmetic in MONAI against float64 in the reference: below 1e-6 up to a 16 x 16 grid (224 px)
    np.testing.assert_allclose(ours.numpy(), reference, rtol=0, atol=2e-6)
    if cls_token:
        assert not ours[0].any()


def test_models_start_from_the_reference_embedding() -> None:
    mae = build_mae("mae_vit_tiny_patch16_dec128d2b", img_size=(64, 96))
    for name, width in (("pos_embed", 192), ("decoder_pos_embed", 128)):
        expected = get_2d_sincos_pos_embed(width, (4, 6), cls_token=True)[None]
        np.testing.assert_allclose(getattr(mae, name).detach().numpy(), expected, rtol=0, atol=1e-5)
    classifier = ViTClassifier(2, img_size=(64, 96), patch_size=16, embed_dim=64, depth=1, num_heads=2)
    expected = get_2d_sincos_pos_embed(64, (4, 6), cls_token=True)[None]
    np.testing.assert_allclose(classifier.pos_embed.detach().numpy(), expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("embed_dim, grid, match", [(30, (2, 2), "divisible by 4"), (0, (2, 2), "divisible by 4"),
                                                    (32, (0, 2), "grid_size")])
def test_bad_arguments(embed_dim: int, grid, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        sincos_2d(embed_dim, grid)
