"""Checkpoint description and conversion (``monai_ext.apps.conversion``): the settings of the MAE to build come from
what the file records, a caller's settings win, and the summary says where each came from. The command line's one-line
refusals are tested in ``tests/test_cli.py``."""

from __future__ import annotations

import argparse
import re

import pytest
import torch

from monai_ext.apps.conversion import convert_mae_checkpoint, describe_checkpoint, registered_arch
from monai_ext.networks.checkpoints import save_model_checkpoint
from monai_ext.networks.mae import build_mae

TINY_MAE = "mae_vit_tiny_patch16_dec128d2b"


@pytest.mark.parametrize("config, given, expected, named, told", [
    # the whole record rebuilds: norm_eps was lost (1e-5 became 1e-6: every LayerNorm changed)
    ({"arch": TINY_MAE}, {}, {"norm_eps": 1e-5, "img_size": 32}, TINY_MAE,
     f"arch={TINY_MAE!r} (the file's record), img_size=32 (the file's record)"),
    # a record without config['arch'] was built as the default ViT-B and refused; no arch name is made up for it
    ({}, {}, {"norm_eps": 1e-5, "img_size": 32}, None, "arch=None (the file's record), img_size=32 (the file's record)"),
    # a setting given still wins; the record's other settings stay
    ({}, {"img_size": 64, "in_chans": 1}, {"norm_eps": 1e-5, "img_size": 64, "in_chans": 1}, None,
     "img_size=64 (given), in_chans=1 (given), norm_pix_loss=False (the file's record)"),
    ({}, {"arch": TINY_MAE}, {"norm_eps": 1e-5, "depth": 12}, TINY_MAE, f"arch={TINY_MAE!r} (given)"),
])
def test_a_project_file_is_rebuilt_from_its_whole_record(config, given, expected, named, told, tmp_path) -> None:
    tiny = build_mae(TINY_MAE, img_size=32, norm_eps=1e-5)
    save_model_checkpoint(tmp_path / "eps.pt", tiny, "mae", config)
    summary = convert_mae_checkpoint(str(tmp_path / "eps.pt"), str(tmp_path / "out.pt"), **given)
    record = torch.load(tmp_path / "out.pt", weights_only=True)["arch"]
    assert {key: record["arch_args"][key] for key in expected} == expected
    assert record["config"].get("arch") == named
    assert told in summary


@pytest.mark.parametrize("given, expected, told", [
    ({}, {"img_size": 64, "norm_pix_loss": True},
     f"arch={TINY_MAE!r} (the file's args), img_size=64 (the file's args), in_chans=3 (the file's weights), "
     "norm_pix_loss=True (the file's args)"),
    ({"norm_pix_loss": False, "img_size": 96}, {"img_size": 96, "norm_pix_loss": False},
     "img_size=96 (given), in_chans=3 (the file's weights), norm_pix_loss=False (given)"),
])
def test_a_facebook_files_args_give_the_settings(given, expected, told, tmp_path) -> None:
    """Its args (model, input_size, norm_pix_loss) were ignored: a --norm_pix_loss 64-px run became a raw-pixel
    224-px ViT-B, and was refused for its width."""
    mae = build_mae(TINY_MAE, img_size=64, norm_pix_loss=True)
    args = argparse.Namespace(model=TINY_MAE, input_size=64, norm_pix_loss=True, mask_ratio=0.75)
    torch.save({"model": mae.state_dict(), "epoch": 799, "args": args}, tmp_path / "fb.pth")
    summary = convert_mae_checkpoint(str(tmp_path / "fb.pth"), str(tmp_path / "out.pt"), **given)
    record = torch.load(tmp_path / "out.pt", weights_only=True)["arch"]
    assert {key: record["arch_args"][key] for key in expected} == expected
    assert record["arch_args"]["embed_dim"] == 192 and record["config"]["arch"] == TINY_MAE
    assert told in summary


def test_the_converted_file_holds_the_sources_weights(tmp_path) -> None:
    """Every tensor of a Facebook file reaches the converted file unchanged (compared key by key with the source)."""
    mae = build_mae(TINY_MAE, img_size=32)
    torch.save({"model": mae.state_dict()}, tmp_path / "fb.pth")
    convert_mae_checkpoint(str(tmp_path / "fb.pth"), str(tmp_path / "out.pt"), arch=TINY_MAE, img_size=32)
    converted = torch.load(tmp_path / "out.pt", weights_only=True)["model"]
    assert converted.keys() == mae.state_dict().keys()
    assert all(torch.equal(converted[key], value) for key, value in mae.state_dict().items())


def test_the_source_itself_is_refused_as_the_output(tmp_path) -> None:
    torch.save({"model": build_mae(TINY_MAE, img_size=32).state_dict()}, tmp_path / "fb.pth")
    with pytest.raises(ValueError, match="is the source checkpoint itself"):
        convert_mae_checkpoint(str(tmp_path / "fb.pth"), str(tmp_path / "." / "fb.pth"), arch=TINY_MAE)


@pytest.mark.parametrize("model, expected", [
    ("mae_vit_base_patch16", "mae_vit_base_patch16_dec512d8b"),  # Facebook's models_mae aliases
    ("mae_vit_large_patch16", "mae_vit_large_patch16_dec512d8b"),
    (TINY_MAE, TINY_MAE),
    (["mae_vit_base_patch16"], None),                            # not a name at all: refused quoting it
])
def test_a_facebook_model_name_is_read_as_its_registered_architecture(model, expected) -> None:
    if expected is None:
        with pytest.raises(ValueError, match=re.escape(f"fb.pth: its args name model {model!r}, which is not a "
                                                       "registered architecture")):
            registered_arch(model, "fb.pth")
    else:
        assert registered_arch(model, "fb.pth") == expected


@pytest.mark.parametrize("layout", ["facebook_mae", "monai_ext"])
def test_a_checkpoint_is_described_by_its_layout_and_sizes(layout, tmp_path) -> None:
    mae = build_mae(TINY_MAE, img_size=32)
    path = tmp_path / "file.pt"
    if layout == "facebook_mae":
        torch.save({"model": mae.state_dict()}, path)
    else:
        save_model_checkpoint(path, mae, "mae", {"arch": TINY_MAE})
    info = describe_checkpoint(str(path))
    state = mae.state_dict()
    assert info["layout"] == layout and info["tensors"] == len(state)
    assert info["parameters"] == sum(value.numel() for value in state.values())  # buffers (pos_embed) included
    assert info["groups"] == sorted({key.split(".")[0] for key in state})
    assert (info["arch"] is None) == (layout == "facebook_mae")
    if layout == "monai_ext":
        assert info["arch"]["arch_args"]["img_size"] == 32


@pytest.mark.parametrize("content, named", [("other", "str"), ([1, 2, 3], "list")])
def test_a_file_holding_no_dict_is_refused_not_read_as_a_path(tmp_path, content, named) -> None:
    """A file holding the text of another checkpoint's path converted that other file, rc 0."""
    torch.save({"model": build_mae(TINY_MAE, img_size=32).state_dict()}, tmp_path / "other.pth")
    path = tmp_path / "holds_a_path.pth"
    torch.save(str(tmp_path / content) if content == "other" else content, path)
    with pytest.raises(ValueError, match=rf"^{re.escape(str(path))}: a checkpoint must be a dict, got '{named}'"):
        convert_mae_checkpoint(str(path), str(tmp_path / "out.pt"), arch=TINY_MAE, img_size=32)
    assert not (tmp_path / "out.pt").exists()


def _encoder_only(kind: str) -> dict:
    """The content of an encoder-only file of ``kind``: a timm ViT, a MONAI ViT, a Facebook fine-tuned classifier."""
    from monai_ext.networks.classifier import build_classifier

    classifier = build_classifier(TINY_MAE, 2, img_size=32)
    if kind == "timm_vit":
        return {key: value for key, value in classifier.state_dict().items() if not key.startswith("fc_norm")}
    if kind == "facebook_finetuned":
        return {"model": classifier.state_dict(), "epoch": 99}
    from monai.networks.nets import ViT

    return ViT(in_channels=3, img_size=(32, 32), patch_size=(16, 16), hidden_size=192, mlp_dim=768, num_layers=2,
               num_heads=3, spatial_dims=2, classification=True, num_classes=2).state_dict()


@pytest.mark.parametrize("kind", ["timm_vit", "facebook_finetuned", "monai_vit"])
def test_an_encoder_only_file_is_refused_in_one_line(tmp_path, kind) -> None:
    """convert-checkpoint of a ViT without a decoder listed every missing decoder key (3.6 KB)."""
    path = tmp_path / "encoder.pth"
    torch.save(_encoder_only(kind), path)
    with pytest.raises(ValueError, match=rf"^{re.escape(str(path))}: its '\w+' weights are an encoder only .*"
                                         r"--init_checkpoint of usf_mae_classify or usf_mae_segment$") as refused:
        convert_mae_checkpoint(str(path), str(tmp_path / "out.pt"), arch=TINY_MAE, img_size=32)
    assert len(str(refused.value)) < 400 and "\n" not in str(refused.value)


@pytest.mark.parametrize("given", [{}, {"arch": TINY_MAE}])
@pytest.mark.parametrize("prefix", ["", "module."])
def test_a_training_checkpoint_is_converted_by_its_own_record(tmp_path, given, prefix) -> None:
    """A pretraining run's checkpoint_iteration=N.pt (weights under "network", beside the optimiser and the run's
    architecture record) was converted as a foreign file: a 64-px norm_pix_loss run became a 224-px raw-pixel MAE,
    its position embeddings resized, rc 0 (or, without --arch, was refused for the default ViT-B's width)."""
    from monai_ext.networks.checkpoints import arch_record

    mae = build_mae(TINY_MAE, img_size=64, norm_pix_loss=True)
    record = arch_record(mae, "mae", {"arch": TINY_MAE, "image_size": 64, "recipe": "ultrasound"})
    weights = {prefix + key: value for key, value in mae.state_dict().items()}  # a DDP run's names too
    torch.save({"network": weights, "optimizer": {"state": {}, "param_groups": []}, "lr_scheduler": {},
                "trainer": {"epoch": 3, "iteration": 30}, "arch": record}, tmp_path / "checkpoint_iteration=30.pt")
    summary = convert_mae_checkpoint(str(tmp_path / "checkpoint_iteration=30.pt"), str(tmp_path / "out.pt"), **given)
    converted = torch.load(tmp_path / "out.pt", weights_only=True)
    assert converted["arch"]["arch_args"] == record["arch_args"]
    assert converted["arch"]["config"]["image_size"] == 64 and "adapted=none" in summary
    assert "img_size=64 (the file's record)" in summary and "norm_pix_loss=True (the file's record)" in summary
    assert all(torch.equal(converted["model"][key], value) for key, value in mae.state_dict().items())


@pytest.mark.parametrize("img_size, in_chans, wrap", [(64, 1, False), (48, 3, True), (224, 3, False)])
def test_a_foreign_files_weights_give_its_image_size_and_channels(tmp_path, img_size, in_chans, wrap) -> None:
    """A plain state dict (the released USF-MAE's layout) or a Facebook file without args, of a 64-px gray MAE, became
    the default 224-px 3-channel MAE: its position grid resized 4 x 4 to 14 x 14 and its kernel spread over three
    channels, rc 0, the summary saying "img_size=224 (default)"."""
    mae = build_mae(TINY_MAE, img_size=img_size, in_chans=in_chans)
    torch.save({"model": mae.state_dict(), "epoch": 9} if wrap else mae.state_dict(), tmp_path / "plain.pth")
    summary = convert_mae_checkpoint(str(tmp_path / "plain.pth"), str(tmp_path / "out.pt"), arch=TINY_MAE)
    converted = torch.load(tmp_path / "out.pt", weights_only=True)
    assert {key: converted["arch"]["arch_args"][key] for key in ("img_size", "in_chans")} == {
        "img_size": img_size, "in_chans": in_chans}
    assert f"img_size={img_size} (the file's weights), in_chans={in_chans} (the file's weights)" in summary
    assert "adapted=none" in summary
    assert all(torch.equal(converted["model"][key], value) for key, value in mae.state_dict().items())
    given = convert_mae_checkpoint(str(tmp_path / "plain.pth"), str(tmp_path / "out.pt"), arch=TINY_MAE, img_size=32)
    assert "img_size=32 (given)" in given and "'pos_embed'" in given  # a setting given still wins


def test_a_training_checkpoint_is_described_with_its_record(tmp_path) -> None:
    """inspect-checkpoint said "arch": null of a pretraining run's checkpoint_iteration=N.pt, which records it."""
    from monai_ext.networks.checkpoints import arch_record

    mae = build_mae(TINY_MAE, img_size=32)
    record = arch_record(mae, "mae", {"arch": TINY_MAE})
    torch.save({"network": mae.state_dict(), "optimizer": {"state": {}}, "arch": record}, tmp_path / "ckpt.pt")
    info = describe_checkpoint(str(tmp_path / "ckpt.pt"))
    assert info["layout"] == "wrapped(network: usf_mae)" and info["arch"] == record
