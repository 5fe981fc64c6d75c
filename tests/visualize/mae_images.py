"""Shared inputs of the reconstruction tests (tests/visualize and tests/handlers): ImageNet statistics, a tiny MAE
and normalised gray images."""

from __future__ import annotations

import torch

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
TINY = {"img_size": 32, "patch_size": 8, "embed_dim": 16, "depth": 1, "num_heads": 2, "decoder_embed_dim": 16,
        "decoder_depth": 1, "decoder_num_heads": 2}


def normalised_gray(n: int = 2, side: int = 32) -> torch.Tensor:
    gray = torch.rand(n, 1, side, side).expand(-1, 3, -1, -1)
    return (gray - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
