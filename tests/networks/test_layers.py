"""Stochastic depth in the ViT blocks is MONAI's ``DropPath`` and follows timm's rule; the patch embedding refuses images of
another shape in words."""

from __future__ import annotations

import re

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


@pytest.mark.parametrize("shape", [(1, 3, 224, 224), (1, 1, 64, 64), (1, 3, 64, 48), (3, 64, 64)])
@pytest.mark.parametrize("kind", ["classifier", "segmenter"])
def test_an_image_of_another_size_is_refused_naming_both_shapes(kind, shape) -> None:
    """verify_net_in_out with the metadata's 224 px against a 64-px model once ended in the position embedding's
    "size of tensor a (196) must match the size of tensor b (16)"."""
    from monai_ext.networks import build_classifier
    from monai_ext.networks.segmentation import build_segmenter

    arch = "mae_vit_tiny_patch16_dec128d2b"
    network = build_classifier(arch, 2, img_size=64) if kind == "classifier" else \
        build_segmenter(arch, 2, img_size=64, feature_size=8)
    with pytest.raises(ValueError, match=re.escape(f"expected images of shape (N, 3, 64, 64), got {list(shape)}")):
        network(torch.zeros(shape))


def _three_networks() -> list[torch.nn.Module]:
    from monai_ext.networks.classifier import ViTClassifier
    from monai_ext.networks.mae import MaskedAutoencoderViT
    from monai_ext.networks.segmentation import ViTSegmenter

    encoder = dict(img_size=32, patch_size=16, embed_dim=32, depth=4, num_heads=4)
    return [MaskedAutoencoderViT(**encoder, decoder_embed_dim=16, decoder_depth=2, decoder_num_heads=4),
            ViTClassifier(num_classes=3, **encoder), ViTSegmenter(num_classes=2, feature_size=8, **encoder)]


@pytest.mark.parametrize("index", [0, 1, 2], ids=["mae", "classifier", "segmenter"])
@pytest.mark.parametrize("model_dtype, stream", [(torch.float32, torch.float32), (torch.bfloat16, torch.bfloat16)])
def test_the_residual_stream_keeps_the_models_dtype_under_bf16_autocast(index, model_dtype, stream) -> None:
    """As in Facebook's MAE and timm: under autocast only the matmuls run in bf16, and the tokens between blocks stay
    float32 for a float32 model (they were cast to bf16, 3 significant digits carried through every block)."""
    model = _three_networks()[index].to(model_dtype).eval()
    seen: list[torch.dtype] = []
    blocks = [m for m in model.modules() if isinstance(m, Block)]
    for block in blocks:
        block.register_forward_pre_hook(lambda _, args: seen.append(args[0].dtype))
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        model(torch.randn(2, 3, 32, 32, dtype=model_dtype))
    assert len(seen) == len(blocks) and set(seen) == {stream}, seen


@pytest.mark.parametrize("index", [0, 1], ids=["mae", "classifier"])
def test_a_traced_network_refuses_another_image_size_of_the_same_patch_count(index) -> None:
    """The size check ran only at trace time: a model traced at 32 x 32 took 16 x 64 (the same 4 patches), its
    patches scrambled onto the 2 x 2 grid, and returned a result."""
    from monai_ext.networks.reconstruction import MAEReconstructor

    encoder = dict(img_size=32, patch_size=16, embed_dim=32, depth=2, num_heads=4)
    model = [MAEReconstructor(**encoder, decoder_embed_dim=16, decoder_depth=1, decoder_num_heads=4),
             _three_networks()[1]][index].eval()
    traced = torch.jit.trace(model, torch.rand(1, 3, 32, 32))
    torch.testing.assert_close(traced(torch.rand(3, 3, 32, 32) * 0), model(torch.zeros(3, 3, 32, 32)))
    with pytest.raises(RuntimeError, match="must match the size"):
        traced(torch.rand(2, 3, 16, 64))


@pytest.mark.parametrize("kwargs, message", [
    ({"img_size": 224.0}, "expected a whole number or a pair of them, got 224.0"),  # a TypeError about len()
    ({"img_size": True}, "got True"),  # taken as 1
    ({"img_size": (32, 32, 32)}, "got (32, 32, 32)"),
    ({"patch_size": 0}, "patch size must be a whole number of at least 1, got 0"),  # ZeroDivisionError
    ({"in_chans": 0}, "in_chans must be a whole number of at least 1, got 0"),
    ({"num_heads": 0}, "num_heads must be a whole number of at least 1, got 0"),  # ZeroDivisionError
])
def test_bad_sizes_are_refused_quoting_the_value(kwargs, message) -> None:
    from monai_ext.networks.classifier import ViTClassifier

    settings = {"img_size": 32, "patch_size": 16, "in_chans": 3, "embed_dim": 32, "depth": 1, "num_heads": 4, **kwargs}
    with pytest.raises(ValueError, match=re.escape(message)):
        ViTClassifier(num_classes=2, **settings)


def test_numpy_sizes_are_sizes() -> None:
    import numpy as np

    from monai_ext.networks.layers import PatchEmbed

    embed = PatchEmbed(np.int64(32), np.int64(16), 3, 8)
    assert embed.img_size == (32, 32) and embed.grid_size == (2, 2)
    assert PatchEmbed(np.array([48, 32]), 16, 3, 8).img_size == (48, 32)  # a numpy pair is a pair
