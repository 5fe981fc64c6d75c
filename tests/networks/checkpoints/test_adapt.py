"""Fitting a checkpoint to a model (networks/checkpoints/adapt.py): position embeddings resized by their recorded
grid, channel adaptation that keeps the response to a gray image, shape, width and head-count refusals."""

from __future__ import annotations

import re

import pytest
import torch

from monai_ext.networks import checkpoints as ck
from monai_ext.networks.classifier import ViTClassifier
from monai_ext.networks.input_stats import input_stats
from monai_ext.networks.mae import MaskedAutoencoderViT
from tests.networks.checkpoints.helpers import TINY, TINY_ENC


def test_shape_mismatch_names_the_key() -> None:
    sd = MaskedAutoencoderViT(**{**TINY, "decoder_embed_dim": 24}).state_dict()
    with pytest.raises(ValueError, match=r"'mask_token' has shape \(1, 1, 24\).*\(1, 1, 16\)"):
        ck.load_mae_weights(MaskedAutoencoderViT(**TINY), sd)


def test_a_weight_of_another_rank_is_refused_before_adaptation() -> None:
    sd = MaskedAutoencoderViT(**TINY).state_dict()
    sd["patch_embed.proj.weight"] = torch.zeros(32)  # 1-D where a (32, 3, 8, 8) kernel belongs
    with pytest.raises(ValueError, match=r"patch_embed.proj.weight: checkpoint shape \(32,\), the model's \(32, 3, 8, 8\)"):
        ck.load_mae_weights(MaskedAutoencoderViT(**TINY), sd)


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


@pytest.mark.parametrize("wrap, model_kind, target_size, resized", [
    (False, "mae", (16, 64), True),         # the released USF-MAE's plain dict: 4 x 4 into 2 x 8, the same 16 patches
    (True, "mae", (64, 16), True),          # Facebook's {"model": ...}: 4 x 4 into 8 x 2
    (False, "classifier", (16, 64), True),  # the encoder alone, into a fine-tuned classifier
    (False, "mae", (32, 32), False),        # the same square grid: loaded as it is
])
def test_an_unrecorded_square_grid_is_resized_to_another_shape_of_the_same_count(wrap, model_kind, target_size,
                                                                                  resized) -> None:
    """A file that records no grid was compared by size alone: a 4 x 4 embedding loaded unchanged into a 2 x 8
    model, each patch given another image position's embedding, and the report said adapted=none."""
    torch.manual_seed(0)
    source = MaskedAutoencoderViT(**TINY)
    with torch.no_grad():
        source.pos_embed.normal_()  # learnt-looking values: a sin-cos table of one grid would hide a misplacement
    state = source.state_dict()
    content = {"model": state, "epoch": 1} if wrap else dict(state)
    if model_kind == "mae":
        model = MaskedAutoencoderViT(**{**TINY, "img_size": target_size})
        report = ck.load_mae_weights(model, content)
    else:
        model = ViTClassifier(num_classes=2, **{**TINY_ENC, "img_size": target_size})
        report = ck.load_encoder_weights(model, content)
    grid = (target_size[0] // 8, target_size[1] // 8)
    expected = {"mae": ["pos_embed", "decoder_pos_embed"], "classifier": ["pos_embed"]}[model_kind] if resized else []
    assert report.adapted == expected
    assert ("adapted=none" in report.summary()) is not resized
    torch.testing.assert_close(model.pos_embed.data, _bicubic(state["pos_embed"], (4, 4), grid))


@pytest.mark.parametrize("in_chans", [3, 1])
def test_a_file_of_another_patch_size_is_refused_naming_the_key_and_the_arch_to_give(in_chans) -> None:
    """A ViT-H/14 file into a /16 model crashed reshaping its decoder_pred ("shape '[256, 2, 512]' is invalid for
    input of size ...") before any check named the file's patch size."""
    patch4 = MaskedAutoencoderViT(**{**TINY, "img_size": 16, "patch_size": 4})  # 4 x 4 patches of 4 px
    with pytest.raises(ck.CheckpointError, match=re.escape(
            "'patch_embed.proj.weight' has shape (32, 3, 4, 4)" if in_chans == 3 else "'patch_embed.proj.weight' "
            "has shape (32, 1, 4, 4)") + r".*the file's patches are \(4, 4\) pixels, the model's \(8, 8\); give the "
            r"--arch of that patch size"):
        ck.load_mae_weights(MaskedAutoencoderViT(**{**TINY, "in_chans": in_chans}), patch4.state_dict(), name="p4.pth")


@pytest.mark.parametrize("outputs", [48, 100])
def test_decoder_pred_of_another_patch_size_is_refused_by_the_channel_adapter(outputs) -> None:
    with pytest.raises(ck.CheckpointError, match=re.escape(f"cannot adapt decoder_pred of {outputs} outputs to 8 x 8 "
                                                           "patches")):
        ck.adapt_decoder_pred_channels(torch.zeros(outputs, 16), 8, 3)


@pytest.mark.parametrize("entries, message", [
    (196, "its position embedding has 196 entries, a 14-square patch grid with no slot for the 1 cls token(s)"),
    (21, "cannot interpolate a non-square position grid of 20 patches without a record of its shape"),
])
def test_a_position_embedding_without_a_cls_slot_is_named_as_such(entries: int, message: str) -> None:
    """timm's no_embed_class files hold 196 = 14 x 14 entries: taken as a cls slot and 195 patches, the refusal
    spoke of a 'non-square grid' of a file whose grid is square."""
    with pytest.raises(ck.CheckpointError, match=re.escape(message)):
        ck.interpolate_pos_embed(torch.zeros(1, entries, 8), (8, 8))
