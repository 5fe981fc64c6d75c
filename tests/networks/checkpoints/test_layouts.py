"""Checkpoint layouts (networks/checkpoints/layouts.py): the released USF-MAE layout, Facebook files, timm,
MONAI ViT and MAE layouts, wrapper prefixes, training checkpoints that nest a network, and the refusals of odd or
ambiguous content."""

from __future__ import annotations

import argparse
import re

import pytest
import torch

from monai_ext.networks import checkpoints as ck
from monai_ext.networks.classifier import ViTClassifier, build_classifier
from monai_ext.networks.mae import MaskedAutoencoderViT, build_mae
from tests.networks.checkpoints.helpers import TINY, TINY_ENC

HEAD_KEYS_AVG = ["fc_norm.bias", "fc_norm.weight", "head.bias", "head.weight"]


def released_layout(d=768, depth=12, dd=512, ddepth=8, p=16, c=3, grid=14, mlp=4) -> dict[str, torch.Tensor]:
    """A state dict with the released USF-MAE keys and shapes, built from the reference doc, not from our model."""
    sd = {"cls_token": (1, 1, d), "pos_embed": (1, grid * grid + 1, d), "patch_embed.proj.weight": (d, c, p, p),
          "patch_embed.proj.bias": (d,), "norm.weight": (d,), "norm.bias": (d,), "mask_token": (1, 1, dd),
          "decoder_embed.weight": (dd, d), "decoder_embed.bias": (dd,), "decoder_pos_embed": (1, grid * grid + 1, dd),
          "decoder_norm.weight": (dd,), "decoder_norm.bias": (dd,), "decoder_pred.weight": (p * p * c, dd),
          "decoder_pred.bias": (p * p * c,)}
    for prefix, width, n in (("blocks", d, depth), ("decoder_blocks", dd, ddepth)):
        for i in range(n):
            for name, shape in (("norm1", (width,)), ("norm2", (width,))):
                sd[f"{prefix}.{i}.{name}.weight"], sd[f"{prefix}.{i}.{name}.bias"] = shape, shape
            sd[f"{prefix}.{i}.attn.qkv.weight"], sd[f"{prefix}.{i}.attn.qkv.bias"] = (3 * width, width), (3 * width,)
            sd[f"{prefix}.{i}.attn.proj.weight"], sd[f"{prefix}.{i}.attn.proj.bias"] = (width, width), (width,)
            sd[f"{prefix}.{i}.mlp.fc1.weight"], sd[f"{prefix}.{i}.mlp.fc1.bias"] = (mlp * width, width), (mlp * width,)
            sd[f"{prefix}.{i}.mlp.fc2.weight"], sd[f"{prefix}.{i}.mlp.fc2.bias"] = (width, mlp * width), (width,)
    gen = torch.Generator().manual_seed(0)
    return {k: torch.randn(shape, generator=gen) * 0.02 for k, shape in sd.items()}


def test_released_layout_loads_strict_into_base_and_encoder_into_classifier() -> None:
    sd = released_layout()
    assert 111e6 < sum(v.numel() for v in sd.values()) < 113e6
    mae = build_mae("mae_vit_base_patch16_dec512d8b")
    report = ck.load_mae_weights(mae, sd)
    assert report.layout == "usf_mae" and report.missing == [] and report.dropped == []
    torch.testing.assert_close(mae.blocks[3].attn.qkv.weight, sd["blocks.3.attn.qkv.weight"], atol=0, rtol=0)

    clf = build_classifier("mae_vit_base_patch16_dec512d8b", num_classes=2)
    report = ck.load_encoder_weights(clf, sd)
    assert report.missing == HEAD_KEYS_AVG
    decoder = {k for k in sd if k.startswith("decoder") or k == "mask_token"}
    assert set(report.dropped) == decoder | {"norm.weight", "norm.bias"}
    torch.testing.assert_close(clf.pos_embed, sd["pos_embed"], atol=0, rtol=0)


def test_facebook_file_with_namespace_loads(tmp_path) -> None:
    mae = MaskedAutoencoderViT(**TINY)
    path = tmp_path / "mae_pretrain_vit_base_full.pth"
    torch.save({"model": mae.state_dict(), "args": argparse.Namespace(model="mae", norm_pix_loss=True),
                "epoch": 799, "optimizer": {"state": {}, "param_groups": []}}, path)
    target = MaskedAutoencoderViT(**TINY)
    report = ck.load_mae_weights(target, path)
    assert report.layout == "facebook_mae"
    torch.testing.assert_close(target.decoder_pred.weight, mae.decoder_pred.weight, atol=0, rtol=0)


def test_wrapper_prefixes_are_stripped() -> None:
    mae = MaskedAutoencoderViT(**TINY)
    wrapped = {f"module._orig_mod.{k}": v for k, v in mae.state_dict().items()}
    ck.load_mae_weights(MaskedAutoencoderViT(**TINY), wrapped)


def test_timm_vit_layout_into_classifier() -> None:
    timm_like = ViTClassifier(1000, global_pool="cls", **TINY_ENC).state_dict()  # timm names: norm + head
    clf = ViTClassifier(2, **TINY_ENC)
    report = ck.load_encoder_weights(clf, timm_like)
    assert report.layout == "timm_vit"
    assert set(report.dropped) == {"norm.weight", "norm.bias", "head.weight", "head.bias"}
    assert report.missing == HEAD_KEYS_AVG


@pytest.mark.parametrize("nest, layout", [
    (lambda sd: sd, "monai_vit"),
    (lambda sd: {"model": sd, "optimizer": {"state": {}}, "epoch": 4}, "facebook_mae"),  # a MONAI bundle's save dict
    (lambda sd: {"state_dict": {f"net.{k}": v for k, v in sd.items()}, "epoch": 4}, "wrapped(state_dict: monai_vit)"),
])
@pytest.mark.parametrize("qkv_bias", [True, False])  # MONAI's default, False, was refused (no attn.qkv.bias key)
def test_monai_vit_gives_the_same_logits(nest, layout: str, qkv_bias: bool) -> None:
    from monai.networks.nets import ViT

    torch.manual_seed(0)
    monai_vit = ViT(in_channels=3, img_size=32, patch_size=8, hidden_size=32, mlp_dim=128, num_layers=2,
                    num_heads=4, spatial_dims=2, classification=True, num_classes=3, qkv_bias=qkv_bias,
                    post_activation=None).eval()
    clf = ViTClassifier(3, global_pool="cls", norm_eps=1e-5, **TINY_ENC).eval()
    found, sd = ck.to_state_dict(nest(monai_vit.state_dict()))
    assert found == layout
    clf.load_state_dict(sd, strict=True)
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(clf(x), monai_vit(x)[0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("qkv_bias", [True, False])  # MONAI's default, False, was refused (no attn.qkv.bias key)
def test_monai_mae_gives_the_same_reconstruction(qkv_bias: bool) -> None:
    from monai.networks.nets import MaskedAutoEncoderViT

    torch.manual_seed(0)
    theirs = MaskedAutoEncoderViT(in_channels=3, img_size=32, patch_size=8, hidden_size=32, mlp_dim=128,
                                  num_layers=2, num_heads=4, decoder_hidden_size=16, decoder_mlp_dim=64,
                                  decoder_num_layers=1, decoder_num_heads=2, spatial_dims=2, qkv_bias=qkv_bias,
                                  pos_embed_type="sincos", decoder_pos_embed_type="sincos").eval()
    ours = MaskedAutoencoderViT(**TINY, norm_eps=1e-5).eval()
    report = ck.load_mae_weights(ours, theirs.state_dict())
    assert report.layout == "monai_mae"
    x = torch.randn(2, 3, 32, 32)
    # Mask ratio 0 keeps every patch, so MONAI's host-side random selection cannot change the result.
    their_pred, _ = theirs(x, masking_ratio=0.0)
    _, our_pred, _ = ours(x, mask_ratio=0.0)
    torch.testing.assert_close(our_pred, their_pred, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("value", [1, "x", None, [1.0]])
def test_a_weight_that_is_not_a_tensor_is_refused_naming_its_key(value) -> None:
    """A number or text where weights belong failed later as an AttributeError or IndexError traceback (in
    inspect-checkpoint's parameter count, in the channel adaptation)."""
    sd = {**MaskedAutoencoderViT(**TINY).state_dict(), "cls_token": value}
    with pytest.raises(ValueError, match=re.escape(f"'cls_token' holds {type(value).__name__} {value!r}, not a tensor")):
        ck.to_state_dict({"model": sd})
    with pytest.raises(ValueError, match="'cls_token' holds "):
        ck.load_mae_weights(MaskedAutoencoderViT(**TINY), {"state_dict": sd})


def test_unknown_layout_is_refused() -> None:
    with pytest.raises(ValueError, match="unrecognised checkpoint layout"):
        ck.to_state_dict({"encoder.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match="weights under 'state_dict' have an unrecognised layout.*'model.w'"):
        ck.to_state_dict({"state_dict": {"model.w": torch.zeros(1)}, "epoch": 1})


def lightning_checkpoint(state_dict: dict[str, torch.Tensor], container: str, owner: str) -> dict:
    """A training checkpoint as PyTorch Lightning (``state_dict`` with the module attribute as prefix) and other
    trainers write one: the network's weights nested under ``container``, beside the loop's own state."""
    return {container: {owner + k: v for k, v in state_dict.items()}, "epoch": 7, "global_step": 70,
            "pytorch-lightning_version": "2.5.1", "optimizer_states": [{"state": {}, "param_groups": []}],
            "lr_schedulers": [], "hparams_name": "kwargs", "hyper_parameters": {"lr": 1.5e-4, "mask_ratio": 0.75}}


@pytest.mark.parametrize("container, owner", [("state_dict", "model."), ("state_dict", "mae."),
                                              ("model_state_dict", ""), ("network", "module."),
                                              ("net", "module.backbone."),
                                              ("state_dict", "model._orig_mod.")])  # compiled inside the module
def test_training_checkpoint_file_loads_strict(tmp_path, container: str, owner: str) -> None:
    trained = MaskedAutoencoderViT(**TINY)
    torch.save(lightning_checkpoint(trained.state_dict(), container, owner), tmp_path / "last.ckpt")
    fresh = MaskedAutoencoderViT(**TINY)
    report = ck.load_mae_weights(fresh, tmp_path / "last.ckpt")
    assert report.layout == f"wrapped({container}: usf_mae)"
    for key, value in trained.state_dict().items():
        torch.testing.assert_close(fresh.state_dict()[key], value, rtol=0, atol=0)


def test_training_checkpoint_with_two_networks_is_refused_naming_them() -> None:
    """A teacher and a student (or an EMA copy under an owner of its own): which one is meant cannot be guessed."""
    sd = MaskedAutoencoderViT(**TINY).state_dict()
    nested = {"state_dict": {**{f"model.{k}": v for k, v in sd.items()}, **{f"encoder.{k}": v for k, v in sd.items()}}}
    with pytest.raises(ck.CheckpointError, match=r"hold several networks \(model\., encoder\.\)"):
        ck.to_state_dict(nested)


def test_training_checkpoint_with_the_network_at_the_top_keeps_owned_copies_as_unexpected() -> None:
    sd = MaskedAutoencoderViT(**TINY).state_dict()
    nested = {"state_dict": {**sd, **{f"backbone.{k}": torch.zeros_like(v) for k, v in sd.items()}}}
    with pytest.raises(ValueError, match=r"unexpected: \['backbone\."):
        ck.load_mae_weights(MaskedAutoencoderViT(**TINY), nested)  # never silently the zero copy


@pytest.mark.parametrize("checkpoint, match", [
    ({"state_dict": {"model.patch_embed.proj.weight": torch.zeros(1), "model.head.weight": torch.zeros(1),
                     "head.weight": torch.ones(1)}}, r"removing 'model\.' gives names that other keys already have, "
                                                     r"e\.g\. \['head\.weight'\]"),
    ({0: torch.zeros(1)}, "keyed by int 0, not by parameter names"),
    ({"state_dict": {1: torch.zeros(1)}}, "weights under 'state_dict' are keyed by int 1"),
    ({"model": {2: torch.zeros(1)}}, "weights under 'model' are keyed by int 2"),
])
def test_ambiguous_or_odd_nesting_is_refused(checkpoint, match: str) -> None:
    with pytest.raises(ck.CheckpointError, match=match):
        ck.to_state_dict(checkpoint)


def test_training_checkpoint_keys_outside_the_network_are_named() -> None:
    nested = lightning_checkpoint(MaskedAutoencoderViT(**TINY).state_dict(), "state_dict", "model.")
    nested["state_dict"]["criterion.weight"] = torch.ones(2)  # a loss's class weights, saved with the module
    with pytest.raises(ValueError, match=r"unexpected: \['criterion.weight'\]"):
        ck.load_mae_weights(MaskedAutoencoderViT(**TINY), nested)
    report = ck.load_encoder_weights(ViTClassifier(2, **TINY_ENC), nested)
    assert "criterion.weight" in report.dropped and report.layout == "wrapped(state_dict: usf_mae)"
