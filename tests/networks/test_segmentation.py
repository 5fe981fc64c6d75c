"""ViTSegmenter: full-resolution logits, encoder equal to the classifier's, exact encoder loading, lr decay groups."""

from __future__ import annotations

import re

import pytest
import torch

from monai_ext.engines.optim import param_groups_layer_decay
from monai_ext.networks import build_from_checkpoint, load_encoder_weights, save_model_checkpoint
from monai_ext.networks.classifier import ViTClassifier
from monai_ext.networks.mae import MaskedAutoencoderViT
from monai_ext.networks.segmentation import ViTSegmenter, build_segmenter

TINY_ENC = {"embed_dim": 32, "depth": 4, "num_heads": 4}


@pytest.mark.parametrize("img_size, classes", [(32, 2), ((32, 48), 3), (64, 9)])
def test_logits_at_full_resolution_and_every_parameter_gets_a_gradient(img_size, classes: int) -> None:
    model = ViTSegmenter(classes, img_size=img_size, feature_size=4, drop_path_rate=0.1, **TINY_ENC).train()
    size = (img_size, img_size) if isinstance(img_size, int) else img_size
    logits = model(torch.randn(2, 3, *size))
    assert logits.shape == (2, classes, *size)
    logits.square().mean().backward()
    assert [n for n, p in model.named_parameters() if p.grad is None] == []


def test_encoder_features_are_the_classifier_encoder_tokens_on_the_patch_grid() -> None:
    """Independent reference: the classifier's ``forward_tokens`` with the same encoder weights."""
    seg = ViTSegmenter(2, img_size=32, feature_blocks=[0, 1, 2], **TINY_ENC).eval()
    clf = ViTClassifier(2, img_size=32, patch_size=16, **TINY_ENC).eval()
    clf.load_state_dict({k: v for k, v in seg.state_dict().items() if k in clf.state_dict()}, strict=False)
    x = torch.randn(2, 3, 32, 32)
    last = seg.encode(x)[-1]
    tokens = seg.norm(clf.forward_tokens(x))[:, 1:]  # (N, 4, D) in row-major patch order
    expected = tokens.transpose(1, 2).reshape(2, 32, 2, 2)
    torch.testing.assert_close(last, expected)


def test_mae_checkpoint_loads_the_encoder_with_exactly_the_decoder_new() -> None:
    mae = MaskedAutoencoderViT(img_size=64, patch_size=16, decoder_embed_dim=16, decoder_depth=1, decoder_num_heads=2,
                               **TINY_ENC)
    seg = ViTSegmenter(2, img_size=32, feature_size=4, **TINY_ENC)  # another grid: pos_embed is interpolated
    report = load_encoder_weights(seg, {"model": mae.state_dict()})
    decoder = {k for k in seg.state_dict() if not k.startswith(("patch_embed.", "cls_token", "pos_embed", "blocks.", "norm."))}
    assert set(report.missing) == decoder and decoder
    assert {k.split(".")[0] for k in report.dropped} == {"decoder_embed", "decoder_blocks", "decoder_norm",
                                                         "decoder_pred", "decoder_pos_embed", "mask_token"}
    assert report.adapted == ["pos_embed"] and report.layout == "facebook_mae"
    torch.testing.assert_close(seg.blocks[3].mlp.fc2.weight, mae.blocks[3].mlp.fc2.weight)
    torch.testing.assert_close(seg.norm.weight, mae.norm.weight)


def test_checkpoint_rebuilds_the_segmenter(tmp_path) -> None:
    model = build_segmenter("mae_vit_tiny_patch16_dec128d2b", 3, img_size=32, feature_size=4).eval()
    save_model_checkpoint(tmp_path / "seg.pt", model, "segmenter", {"class_names": ["background", "a", "b"]})
    rebuilt = build_from_checkpoint(tmp_path / "seg.pt").eval()
    x = torch.randn(1, 3, 32, 32)
    torch.testing.assert_close(rebuilt(x), model(x))


def test_layer_decay_gives_the_decoder_the_full_lr_and_the_embedding_the_smallest() -> None:
    model = ViTSegmenter(2, img_size=32, feature_size=4, **TINY_ENC)
    groups = param_groups_layer_decay(model, lr=1.0, weight_decay=0.05, layer_decay=0.5)
    scale_of = {id(p): g["lr_scale"] for g in groups for p in g["params"]}
    assert scale_of[id(model.decoder2.transp_conv.conv.weight)] == 1.0
    assert scale_of[id(model.patch_embed.proj.weight)] == 0.5 ** 5  # depth 4: embeddings are layer 0 of 5
    assert scale_of[id(model.blocks[3].attn.qkv.weight)] == 0.5
    assert len(scale_of) == sum(1 for _ in model.parameters())


@pytest.mark.parametrize("unset", [None, "null", "None", []])
def test_feature_blocks_left_unset_take_the_default(unset) -> None:
    """``--feature_blocks null`` reaches the network as the text 'null'."""
    assert ViTSegmenter(2, img_size=32, feature_blocks=unset, **TINY_ENC).feature_blocks == (1, 2, 3)


@pytest.mark.parametrize("kwargs, match", [
    ({"num_classes": 1}, "at least 2, got 1"),
    ({"num_classes": 2, "patch_size": 8}, "patch_size must be 16, got 8"),
    ({"num_classes": 2, "feature_blocks": [2, 1, 0]}, r"\[2, 1, 0\]"),
    ({"num_classes": 2, "feature_blocks": [0, 1, 4]}, "below 4"),
])
def test_bad_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ViTSegmenter(**{"img_size": 32, **TINY_ENC, **kwargs})


@pytest.mark.parametrize("given", [3, "abc", 2.5, True, "0,1", {"a": 1}])
def test_feature_blocks_that_are_not_three_block_ids_are_refused_by_the_rule(given) -> None:
    """``--feature_blocks 3`` arrives as the int 3 and ``--feature_blocks abc`` as text: the rule, quoting them."""
    with pytest.raises(ValueError, match=rf"^feature_blocks must be three increasing block ids below 4, got {re.escape(repr(given))}$"):
        ViTSegmenter(2, img_size=32, feature_blocks=given, **TINY_ENC)


@pytest.mark.parametrize("given", ["0,2,3", " 0, 2 ,3", (0, 2, 3), [0, 2, 3]])
def test_feature_blocks_as_text_or_a_sequence_are_read(given) -> None:
    assert ViTSegmenter(2, img_size=32, feature_blocks=given, **TINY_ENC).feature_blocks == (0, 2, 3)


def test_unknown_arch() -> None:
    with pytest.raises(ValueError, match="'vit_huge'"):
        build_segmenter("vit_huge", 2)
