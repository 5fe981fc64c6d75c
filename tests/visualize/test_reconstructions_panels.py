"""Reconstruction grid panels: removed patches stand out from a black ultrasound background, and captions sit whole
inside their panel with an outline that follows the text."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from monai_ext.handlers.reconstructions import ReconstructionGridSaver
from monai_ext.networks.mae import MaskedAutoencoderViT
from monai_ext.visualize.reconstructions import caption

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
TINY = {"img_size": 32, "patch_size": 8, "embed_dim": 16, "depth": 1, "num_heads": 2, "decoder_embed_dim": 16,
        "decoder_depth": 1, "decoder_num_heads": 2}


def test_removed_patches_of_a_black_image_are_not_black_and_stay_gray(tmp_path) -> None:
    """They were filled with the batch's darkest value: on the black around an ultrasound sector, invisible."""
    black = (torch.zeros(2, 3, 32, 32) - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
    saver = ReconstructionGridSaver(tmp_path, black, MEAN, STD, mask_ratio=0.75, precision="fp32")
    grid = saver.render(MaskedAutoencoderViT(**TINY), "cpu")
    side = grid.shape[0] // 2
    masked = grid[side:, side:2 * side]  # the second image's masked panel (uncaptioned)
    assert np.array_equal(masked[..., 0], masked[..., 1]) and np.array_equal(masked[..., 1], masked[..., 2])
    filled = (masked[..., 0] > 100) & (masked[..., 0] < 156)  # mid-gray
    assert filled.mean() == pytest.approx(0.75)  # the removed patches; the visible quarter is still black
    assert (masked[..., 0] == 0).mean() == pytest.approx(0.25)


@pytest.mark.parametrize("side", [192, 224, 400])
@pytest.mark.parametrize("bottom", [False, True])
def test_a_caption_lies_inside_its_panel_and_its_outline_follows_the_text(side: int, bottom: bool) -> None:
    panel = np.full((side, side, 3), 128, np.uint8)
    out = caption(panel, "reconstruction loss 0.123", bottom=bottom)
    changed = np.any(out != panel, axis=-1)
    rows = np.flatnonzero(changed.any(axis=1))
    assert rows.min() > 0 and rows.max() < side - 1  # not cut at the panel's edge
    white = np.flatnonzero(np.all(out > 200, axis=-1).any(axis=0))
    dark = np.flatnonzero(np.all(out < 60, axis=-1).any(axis=0))
    # a thicker outline advanced further than the text: a dark ghost of the last letters to its right
    assert dark.max() <= white.max() + 2 and dark.min() >= white.min() - 2
