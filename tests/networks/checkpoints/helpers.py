"""Shared sizes of the checkpoint tests: a tiny MAE and its encoder alone."""

from __future__ import annotations

TINY = dict(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=4, decoder_embed_dim=16, decoder_depth=1,
            decoder_num_heads=2)
TINY_ENC = dict(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=4)
