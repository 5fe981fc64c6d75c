"""Checkpoint interoperability: released USF-MAE layout, Facebook files, MONAI and timm layouts, safety, adaptation."""

from __future__ import annotations

import argparse
import hashlib
import os
import pickle
import re

import pytest
import torch

from monai_ext.networks import checkpoints as ck
from monai_ext.networks.classifier import ViTClassifier, build_classifier
from monai_ext.networks.input_stats import input_stats
from monai_ext.networks.mae import MaskedAutoencoderViT, build_mae

TINY = dict(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=4, decoder_embed_dim=16, decoder_depth=1,
            decoder_num_heads=2)
TINY_ENC = dict(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=4)
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


def test_cls_pooling_keeps_the_pretrained_norm() -> None:
    mae = MaskedAutoencoderViT(**TINY)
    clf = ViTClassifier(3, global_pool="cls", **TINY_ENC)
    report = ck.load_encoder_weights(clf, mae.state_dict())
    assert report.missing == ["head.bias", "head.weight"]
    torch.testing.assert_close(clf.norm.weight, mae.norm.weight)


def test_facebook_file_with_namespace_loads(tmp_path) -> None:
    mae = MaskedAutoencoderViT(**TINY)
    path = tmp_path / "mae_pretrain_vit_base_full.pth"
    torch.save({"model": mae.state_dict(), "args": argparse.Namespace(model="mae", norm_pix_loss=True),
                "epoch": 799, "optimizer": {"state": {}, "param_groups": []}}, path)
    target = MaskedAutoencoderViT(**TINY)
    report = ck.load_mae_weights(target, path)
    assert report.layout == "facebook_mae"
    torch.testing.assert_close(target.decoder_pred.weight, mae.decoder_pred.weight, atol=0, rtol=0)


class _Exploit:
    """Pickles as a call that would write a marker file when unpickled."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_arbitrary_pickled_object_is_refused_and_not_run(tmp_path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"model": {"w": torch.zeros(1)}, "payload": _Exploit(str(marker))}, path)
    with pytest.raises(ck.CheckpointError, match="refused to load .*evil.pth") as refused:
        ck.read_checkpoint(path)
    assert not marker.exists()
    assert "torch.load(path, weights_only=False)['state_dict']" in str(refused.value)  # how to keep the weights


def _legacy_checkpoint_prefix(tmp_path, length: int | None) -> bytes:
    """The first ``length`` bytes (all if None) of a checkpoint in torch's legacy (pre-zip) format: a pickle stream."""
    torch.save({"w": torch.ones(3)}, tmp_path / "legacy.pth", _use_new_zipfile_serialization=False)
    return (tmp_path / "legacy.pth").read_bytes()[:length]


def _legacy_checkpoint_with_a_changed_storage_key(tmp_path) -> bytes:
    """A legacy checkpoint whose list of storage keys (pickled after the object) no longer matches the object's."""
    data = bytearray(_legacy_checkpoint_prefix(tmp_path, None))
    last_key = [m.start() for m in re.finditer(rb"\d{6,}", bytes(data))][-1]
    data[last_key] = ord("9") if data[last_key] != ord("9") else ord("8")
    return bytes(data)


def _legacy_checkpoint_with_a_damaged_opcode(tmp_path) -> bytes:
    """A legacy checkpoint whose first pickle opcode was changed to one no unpickler knows (149)."""
    data = bytearray(_legacy_checkpoint_prefix(tmp_path, None))
    data[2] = 149
    return bytes(data)


@pytest.mark.parametrize("content", [b"", b"not a torch file", b"PK\x03\x04truncated",
                                     b"root:x:0:0:root:/root:/bin/bash\n",  # a text file given by mistake
                                     16, 30, 90,                            # legacy files cut short
                                     "changed storage key", "damaged opcode",
                                     pickle.dumps({"blocks.0.norm1.weight": [1.0, 2.0]}, protocol=2)])  # plain pickle
def test_corrupt_file_gives_clear_error(tmp_path, content: bytes | int | str) -> None:
    """Damaged bytes were reported as a security refusal ("pickles objects outside the allow-list"), advising
    torch.load(..., weights_only=False); a cut-short legacy file gave an empty reason, "()"."""
    if isinstance(content, int):
        content = _legacy_checkpoint_prefix(tmp_path, content)
    elif content == "changed storage key":
        content = _legacy_checkpoint_with_a_changed_storage_key(tmp_path)
    elif content == "damaged opcode":
        content = _legacy_checkpoint_with_a_damaged_opcode(tmp_path)
    path = tmp_path / "broken.pth"
    path.write_bytes(content)
    with pytest.raises(ck.CheckpointError, match="cannot read checkpoint .*broken.pth.*: corrupt or not a torch file") \
            as refused:
        ck.read_checkpoint(path)
    message = str(refused.value)
    assert "allow-list" not in message and "weights_only" not in message and not message.endswith("()")


@pytest.mark.parametrize("zip_format", [True, False])
def test_both_torch_file_formats_load(tmp_path, zip_format: bool) -> None:
    state = {"w": torch.arange(6.0).view(2, 3), "step": 3}
    path = tmp_path / "w.pth"
    torch.save(state, path, _use_new_zipfile_serialization=zip_format)
    loaded = ck.read_checkpoint(path)
    assert torch.equal(loaded["w"], state["w"]) and loaded["step"] == 3


def test_sha256_is_checked(tmp_path) -> None:
    path = tmp_path / "w.pth"
    torch.save(MaskedAutoencoderViT(**TINY).state_dict(), path)
    good = hashlib.sha256(path.read_bytes()).hexdigest()
    ck.read_checkpoint(path, sha256=good)
    with pytest.raises(ck.CheckpointError, match="expected 'f815c6"):
        ck.read_checkpoint(path, sha256=ck.USF_MAE_100EP_SHA256)
    ck.read_checkpoint(path, sha256=f" {good.upper()}\n")  # as pasted from sha256sum output


@pytest.mark.parametrize("digest", [0, 1234, "f815c6", "z" * 64, ["f815"]])
def test_malformed_sha256_is_refused_naming_it(tmp_path, digest) -> None:
    """An all-digit digest given on a command line may arrive as a number: it must not be compared as text."""
    path = tmp_path / "w.pth"
    torch.save({"w": torch.zeros(1)}, path)
    with pytest.raises(ValueError, match=re.escape(f"sha256 must be 64 hexadecimal characters, got {digest!r}")):
        ck.read_checkpoint(path, sha256=digest)


def test_shape_mismatch_names_the_key() -> None:
    sd = MaskedAutoencoderViT(**{**TINY, "decoder_embed_dim": 24}).state_dict()
    with pytest.raises(ValueError, match=r"'mask_token' has shape \(1, 1, 24\).*\(1, 1, 16\)"):
        ck.load_mae_weights(MaskedAutoencoderViT(**TINY), sd)


def test_missing_encoder_keys_are_named() -> None:
    sd = MaskedAutoencoderViT(**TINY).state_dict()
    del sd["blocks.1.mlp.fc2.bias"]
    with pytest.raises(ValueError, match="blocks.1.mlp.fc2.bias"):
        ck.load_encoder_weights(ViTClassifier(2, **TINY_ENC), sd)
    with pytest.raises(ValueError, match="blocks.1.mlp.fc2.bias"):
        ck.load_mae_weights(MaskedAutoencoderViT(**TINY), sd)


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
def test_monai_vit_gives_the_same_logits(nest, layout: str) -> None:
    from monai.networks.nets import ViT

    torch.manual_seed(0)
    monai_vit = ViT(in_channels=3, img_size=32, patch_size=8, hidden_size=32, mlp_dim=128, num_layers=2,
                    num_heads=4, spatial_dims=2, classification=True, num_classes=3, qkv_bias=True,
                    post_activation=None).eval()
    clf = ViTClassifier(3, global_pool="cls", norm_eps=1e-5, **TINY_ENC).eval()
    found, sd = ck.to_state_dict(nest(monai_vit.state_dict()))
    assert found == layout
    clf.load_state_dict(sd, strict=True)
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(clf(x), monai_vit(x)[0], atol=1e-5, rtol=1e-5)


def test_monai_mae_gives_the_same_reconstruction() -> None:
    from monai.networks.nets import MaskedAutoEncoderViT

    torch.manual_seed(0)
    theirs = MaskedAutoEncoderViT(in_channels=3, img_size=32, patch_size=8, hidden_size=32, mlp_dim=128,
                                  num_layers=2, num_heads=4, decoder_hidden_size=16, decoder_mlp_dim=64,
                                  decoder_num_layers=1, decoder_num_heads=2, spatial_dims=2, qkv_bias=True,
                                  pos_embed_type="sincos", decoder_pos_embed_type="sincos").eval()
    ours = MaskedAutoencoderViT(**TINY, norm_eps=1e-5).eval()
    report = ck.load_mae_weights(ours, theirs.state_dict())
    assert report.layout == "monai_mae"
    x = torch.randn(2, 3, 32, 32)
    # Mask ratio 0 keeps every patch, so MONAI's host-side random selection cannot change the result.
    their_pred, _ = theirs(x, masking_ratio=0.0)
    _, our_pred, _ = ours(x, mask_ratio=0.0)
    torch.testing.assert_close(our_pred, their_pred, atol=1e-5, rtol=1e-5)


def test_position_embedding_interpolated_to_a_larger_grid() -> None:
    sd = MaskedAutoencoderViT(**TINY).state_dict()
    bigger = MaskedAutoencoderViT(**{**TINY, "img_size": 48})
    report = ck.load_mae_weights(bigger, sd)
    assert report.adapted == ["pos_embed", "decoder_pos_embed"]
    torch.testing.assert_close(bigger.pos_embed[:, 0], sd["pos_embed"][:, 0])  # cls slot kept


def _normalised(gray: torch.Tensor, channels: int) -> torch.Tensor:
    """A gray image (N, 1, H, W) in [0, 1] as the bundles feed a model of ``channels``: replicated, then normalised
    with that pipeline's statistics (NormalizeIntensityd with ``normalization_stats``)."""
    mean, std = (torch.tensor(v).view(1, -1, 1, 1) for v in input_stats(channels))
    return (gray.expand(-1, channels, -1, -1) - mean) / std


@pytest.mark.parametrize("source, target", [(3, 1), (1, 3)])
def test_channel_adaptation_keeps_the_response_to_a_gray_image_through_each_pipeline(source, target) -> None:
    """Summing the RGB kernels matched raw pixels, but each pipeline normalises with its own statistics: features
    came out shifted (max 0.27 on a response of scale 0.6 with these kernels)."""
    torch.manual_seed(0)
    trained = ViTClassifier(2, in_chans=source, **TINY_ENC).eval()
    with torch.no_grad():  # kernels that differ per channel and a bias, as trained ones do (init is zero-bias)
        trained.patch_embed.proj.weight.normal_(0.0, 0.05)
        trained.patch_embed.proj.bias.normal_(0.0, 0.5)
    fitted = ViTClassifier(2, in_chans=target, **TINY_ENC).eval()
    report = ck.load_encoder_weights(fitted, trained.state_dict())
    assert report.adapted == ["patch_embed.proj.weight", "patch_embed.proj.bias"]
    gray = torch.rand(2, 1, 32, 32)
    torch.testing.assert_close(fitted.forward_features(_normalised(gray, target)),
                               trained.forward_features(_normalised(gray, source)), atol=1e-5, rtol=1e-4)


def test_mae_channel_adaptation_round_trip() -> None:
    gray = MaskedAutoencoderViT(**TINY, in_chans=1)
    rgb = MaskedAutoencoderViT(**TINY, in_chans=3)
    report = ck.load_mae_weights(rgb, gray.state_dict())
    assert "decoder_pred.weight" in report.adapted
    back = MaskedAutoencoderViT(**TINY, in_chans=1)
    ck.load_mae_weights(back, rgb.state_dict())
    torch.testing.assert_close(back.decoder_pred.weight, gray.decoder_pred.weight)


@pytest.mark.parametrize("kind, model", [("mae", MaskedAutoencoderViT(**TINY)),
                                         ("classifier", ViTClassifier(4, **TINY_ENC))])
def test_own_checkpoint_rebuilds_the_model(tmp_path, kind, model) -> None:
    path = tmp_path / "model.pt"
    ck.save_model_checkpoint(path, model.eval(), kind, config={"recipe": "ultrasound"})
    rebuilt = ck.build_from_checkpoint(path).eval()
    assert type(rebuilt) is type(model) and rebuilt.arch_args == model.arch_args
    x = torch.randn(1, 3, 32, 32)
    if kind == "mae":
        noise = torch.rand(1, 16)
        torch.testing.assert_close(rebuilt(x, noise=noise)[1], model(x, noise=noise)[1])
    else:
        torch.testing.assert_close(rebuilt(x), model(x))
    assert not list(tmp_path.glob("*.tmp"))


def test_foreign_file_cannot_be_rebuilt() -> None:
    with pytest.raises(ValueError, match="no architecture record"):
        ck.build_from_checkpoint(MaskedAutoencoderViT(**TINY).state_dict())


def test_a_training_checkpoint_given_for_a_model_is_named_in_a_short_message() -> None:
    """checkpoint_iteration=N.pt lies beside models/model.pt: the message quoted the whole content it was given
    (megabytes of tensors on one line) instead of the file, and did not say which file to give."""
    training = {"network": MaskedAutoencoderViT(**TINY).state_dict(), "optimizer": {"state": {}},
                "arch": {"format": "monai_ext", "kind": "classifier"}}
    with pytest.raises(ValueError) as raised:
        ck.build_from_checkpoint(training, "run/models/checkpoint_iteration=8.pt")
    assert str(raised.value) == ("run/models/checkpoint_iteration=8.pt: not a monai_ext model checkpoint; a training "
                                 "checkpoint, for resuming a run; give the run's models/model.pt (the best model)")


@pytest.mark.parametrize("value", [1, "x", None, [1.0]])
def test_a_weight_that_is_not_a_tensor_is_refused_naming_its_key(value) -> None:
    """A number or text where weights belong failed later as an AttributeError or IndexError traceback (in
    inspect-checkpoint's parameter count, in the channel adaptation)."""
    sd = {**MaskedAutoencoderViT(**TINY).state_dict(), "cls_token": value}
    with pytest.raises(ValueError, match=re.escape(f"'cls_token' holds {type(value).__name__} {value!r}, not a tensor")):
        ck.to_state_dict({"model": sd})
    with pytest.raises(ValueError, match="'cls_token' holds "):
        ck.load_mae_weights(MaskedAutoencoderViT(**TINY), {"state_dict": sd})


def test_a_weight_of_another_rank_is_refused_before_adaptation() -> None:
    sd = MaskedAutoencoderViT(**TINY).state_dict()
    sd["patch_embed.proj.weight"] = torch.zeros(32)  # 1-D where a (32, 3, 8, 8) kernel belongs
    with pytest.raises(ValueError, match=r"patch_embed.proj.weight: checkpoint shape \(32,\), the model's \(32, 3, 8, 8\)"):
        ck.load_mae_weights(MaskedAutoencoderViT(**TINY), sd)


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


def test_encoder_into_linear_probe_head() -> None:
    clf = ViTClassifier(3, linear_probe=True, **TINY_ENC)
    report = ck.load_encoder_weights(clf, MaskedAutoencoderViT(**TINY).state_dict())
    assert report.missing == ["fc_norm.bias", "fc_norm.weight", "head.0.running_mean", "head.0.running_var",
                              "head.1.bias", "head.1.weight"]


@pytest.mark.parametrize("extra, named", [
    ({"depth": 3}, "blocks.2."),                       # a deeper encoder, cut to fit
    ("layerscale", "blocks.0.ls1.gamma"),              # LayerScale gammas (1e-5) thrown away: branches 1e5 too strong
])
def test_encoder_keys_the_model_has_no_place_for_are_refused(extra, named) -> None:
    state = MaskedAutoencoderViT(**{**TINY, **extra}).state_dict() if isinstance(extra, dict) else \
        MaskedAutoencoderViT(**TINY).state_dict()
    if extra == "layerscale":
        state.update({f"blocks.{i}.ls{j}.gamma": torch.full((TINY["embed_dim"],), 1e-5)
                      for i in range(TINY["depth"]) for j in (1, 2)})
    with pytest.raises(ck.CheckpointError, match=f"have no place in this model, e.g. .*'{named}"):
        ck.load_encoder_weights(ViTClassifier(2, **TINY_ENC), state)


@pytest.mark.parametrize("edit, message", [
    (lambda c: c["model"].pop("head.bias"), r"keys do not match its architecture record: missing \['head.bias'\]"),
    (lambda c: c["arch"]["arch_args"].update(bogus=1), "its architecture record does not build a classifier: .*bogus"),
])
def test_an_edited_own_file_is_refused_naming_it(tmp_path, edit, message) -> None:
    """A hand-edited file (or one with a newer version's arguments) gave torch's key dump or a TypeError."""
    path = tmp_path / "model.pt"
    ck.save_model_checkpoint(path, ViTClassifier(2, **TINY_ENC), "classifier")
    content = torch.load(path, weights_only=True)
    edit(content)
    with pytest.raises(ck.CheckpointError, match=f"^edited.pt: {message}"):
        ck.build_from_checkpoint(content, "edited.pt")


@pytest.mark.parametrize("content", [{}, {"model_ema": {"w": torch.zeros(1)}}])
def test_a_layout_refusal_names_the_file(tmp_path, content) -> None:
    path = tmp_path / "odd.pth"
    torch.save(content, path)
    with pytest.raises(ck.CheckpointError, match=f"^{re.escape(str(path))}: "):
        ck.load_mae_weights(MaskedAutoencoderViT(**TINY), path)


def _saved_mae(tmp_path, **overrides) -> tuple[MaskedAutoencoderViT, str]:
    mae = MaskedAutoencoderViT(**{**TINY, **overrides})
    with torch.no_grad():
        mae.pos_embed.normal_()  # learnt-looking values: the sin-cos table of one grid would hide a misplacement
    path = tmp_path / "mae.pt"
    ck.save_model_checkpoint(path, mae, "mae")
    return mae, str(path)


def _bicubic(pos: torch.Tensor, source: tuple[int, int], target: tuple[int, int]) -> torch.Tensor:
    """Facebook's interpolate_pos_embed, written out for a grid of any shape: the reference."""
    dim = pos.shape[-1]
    grid = pos[:, 1:].reshape(1, *source, dim).permute(0, 3, 1, 2)
    grid = torch.nn.functional.interpolate(grid, size=target, mode="bicubic", align_corners=False)
    return torch.cat([pos[:, :1], grid.permute(0, 2, 3, 1).reshape(1, -1, dim)], dim=1)


@pytest.mark.parametrize("source_size, target_size", [
    ((24, 32), (32, 24)),   # 3 x 4 into 4 x 3: the same 12 patches, which loaded as they were, each misplaced
    ((16, 64), (32, 32)),   # 2 x 8 into 4 x 4: the same 16 patches
    ((16, 64), (40, 40)),   # a non-square grid resized: it was refused ("non-square position grid")
])
def test_a_recorded_grid_is_resized_by_its_own_shape(tmp_path, source_size, target_size) -> None:
    mae, path = _saved_mae(tmp_path, img_size=source_size)
    classifier = ViTClassifier(num_classes=2, **{**TINY_ENC, "img_size": target_size})
    report = ck.load_encoder_weights(classifier, path)
    source_grid = (source_size[0] // 8, source_size[1] // 8)
    target_grid = (target_size[0] // 8, target_size[1] // 8)
    assert report.adapted == ["pos_embed"]
    torch.testing.assert_close(classifier.pos_embed.data, _bicubic(mae.pos_embed.data, source_grid, target_grid))


def test_a_file_of_another_head_count_is_refused_naming_it(tmp_path) -> None:
    """3 heads of 64 and 6 of 32 have the same weights: the encoder loaded and split its features otherwise."""
    _, path = _saved_mae(tmp_path)
    with pytest.raises(ck.CheckpointError, match=re.escape(f"{path}: its encoder was trained with 4 attention heads, "
                                                           "the model has 2")):
        ck.load_encoder_weights(ViTClassifier(num_classes=2, **{**TINY_ENC, "num_heads": 2}), path)


def test_a_refusal_while_fitting_the_file_names_it(tmp_path) -> None:
    sd = MaskedAutoencoderViT(**TINY).state_dict()
    sd["pos_embed"] = sd["pos_embed"][0]  # saved without its batch axis
    path = tmp_path / "flat.pth"
    torch.save(sd, path)
    with pytest.raises(ck.CheckpointError, match=re.escape(f"{path}: pos_embed: checkpoint shape (17, 32)")):
        ck.load_mae_weights(MaskedAutoencoderViT(**TINY), path)


def test_a_record_with_paths_and_numpy_numbers_reads_back(tmp_path) -> None:
    """A ``Path`` or a numpy scalar in the config was written, and the file's own reader then refused it as pickling
    objects outside the allow-list."""
    from pathlib import Path

    import numpy as np

    path = tmp_path / "m.pt"
    config = {"data_root": Path("/data"), "lr": np.float64(1e-3), "sizes": (np.int64(2), 3), "nested": {"k": None}}
    ck.save_model_checkpoint(path, MaskedAutoencoderViT(**TINY), "mae", config)
    assert ck.read_checkpoint(path)["arch"]["config"] == {"data_root": "/data", "lr": 1e-3, "sizes": [2, 3],
                                                          "nested": {"k": None}}
    with pytest.raises(ValueError, match=re.escape("config.hook is a builtin_function_or_method, which a checkpoint cannot hold")):
        ck.save_model_checkpoint(path, MaskedAutoencoderViT(**TINY), "mae", {"hook": len})


@pytest.mark.parametrize("width, named", [(192, "mae_vit_tiny_patch16_dec128d2b"), (48, "see the registered architectures")])
def test_a_file_of_another_width_says_which_arch_fits(tmp_path, width, named) -> None:
    """'key cls_token has shape (1, 1, 192), the model expects (1, 1, 768)' did not say what to change."""
    sd = MaskedAutoencoderViT(**{**TINY, "embed_dim": width, "num_heads": 4}).state_dict()
    with pytest.raises(ck.CheckpointError, match=re.escape(f"the file's encoder is {width} wide, the model's 32; give "
                                                           f"the --arch of that width ({named})")):
        ck.load_mae_weights(MaskedAutoencoderViT(**TINY), sd)


def test_an_mae_file_of_another_decoder_head_count_is_refused_naming_it(tmp_path) -> None:
    _, path = _saved_mae(tmp_path)  # decoder of 2 heads
    with pytest.raises(ck.CheckpointError, match=re.escape(f"{path}: its decoder was trained with 2 attention heads, "
                                                           "the model has 4")):
        ck.load_mae_weights(MaskedAutoencoderViT(**{**TINY, "decoder_num_heads": 4}), path)


@pytest.mark.parametrize("img_size", ["224", [224], [224, 160, 3], 22.4])
def test_a_malformed_size_in_a_record_is_refused_naming_the_file(tmp_path, img_size) -> None:
    _, path = _saved_mae(tmp_path)
    content = torch.load(path, weights_only=True)
    content["arch"]["arch_args"]["img_size"] = img_size
    torch.save(content, path)
    with pytest.raises(ck.CheckpointError, match=re.escape(f"{path}: its architecture record has img_size "
                                                           f"{img_size!r} and patch_size 8: not whole numbers")):
        ck.load_mae_weights(MaskedAutoencoderViT(**TINY), path)
