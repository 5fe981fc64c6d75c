"""Stochastic depth in the ViT blocks is MONAI's ``DropPath`` and follows timm's rule."""

from __future__ import annotations

import pytest
import torch
from monai.networks.layers import DropPath

from monai_ext.networks.layers import Block


def timm_drop_path(x: torch.Tensor, drop_prob: float, training: bool) -> torch.Tensor:
    """timm ``layers/drop.py::drop_path`` (scale_by_keep=True), written out."""
    if drop_prob == 0.0 or not training:
        return x
    keep_prob = 1 - drop_prob
    shape = (x.shape[0],) + (1,) * (x.ndim - 1)
    random_tensor = x.new_empty(shape).bernoulli_(keep_prob)
    if keep_prob > 0.0:
        random_tensor.div_(keep_prob)
    return x * random_tensor


@pytest.mark.parametrize("drop_prob", [0.1, 0.5, 0.9])
def test_block_drop_path_follows_timm(drop_prob: float) -> None:
    block = Block(8, 2, drop_path=drop_prob).train()
    assert isinstance(block.drop_path, DropPath)
    x = torch.randn(64, 5, 8)
    torch.manual_seed(7)
    ours = block.drop_path(x)
    torch.manual_seed(7)
    torch.testing.assert_close(ours, timm_drop_path(x, drop_prob, training=True), rtol=0, atol=0)
    dropped = (ours == 0).flatten(1).all(dim=1)
    assert 0 < int(dropped.sum()) < len(x)  # whole samples dropped, not all of them
    torch.testing.assert_close(ours[~dropped], x[~dropped] / (1 - drop_prob))
    assert torch.equal(block.eval().drop_path(x), x)


def test_no_drop_path_is_an_identity_and_bad_rates_are_refused() -> None:
    assert isinstance(Block(8, 2, drop_path=0.0).drop_path, torch.nn.Identity)
    with pytest.raises(ValueError, match="1.0"):
        Block(8, 2, drop_path=1.0)
