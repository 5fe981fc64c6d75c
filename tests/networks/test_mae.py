"""MaskedAutoencoderViT: parity with an independent reference, masking contract, gradients, compile, argument checks."""

from __future__ import annotations

import pytest
import torch

from monai_ext.networks.mae import MaskedAutoencoderViT, build_mae
from tests.networks.mae_reference import mae_reference_forward, patchify_loops

TINY = dict(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=4, decoder_embed_dim=16, decoder_depth=2,
            decoder_num_heads=2)


def tiny_mae(**kwargs) -> MaskedAutoencoderViT:
    torch.manual_seed(0)
    return MaskedAutoencoderViT(**{**TINY, **kwargs}).eval()


@pytest.mark.parametrize("mask_ratio", [0.5, 0.75, 0.9])
@pytest.mark.parametrize("in_chans", [1, 3])
@pytest.mark.parametrize("norm_pix_loss", [False, True])
def test_matches_paper_reference(mask_ratio: float, in_chans: int, norm_pix_loss: bool) -> None:
    model = tiny_mae(in_chans=in_chans, norm_pix_loss=norm_pix_loss)
    # Random (not initial) token values so that every parameter influences the comparison.
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    gen = torch.Generator().manual_seed(1)
    imgs = torch.randn(3, in_chans, 32, 32, generator=gen)
    noise = torch.rand(3, model.num_patches, generator=gen)
    loss, pred, mask = model(imgs, mask_ratio=mask_ratio, noise=noise)
    ref_loss, ref_pred, ref_mask = mae_reference_forward(
        model.state_dict(), imgs, noise, mask_ratio, patch=8, heads=4, dec_heads=2, depth=2, dec_depth=2,
        norm_pix=norm_pix_loss,
    )
    torch.testing.assert_close(mask, ref_mask, atol=0, rtol=0)
    torch.testing.assert_close(pred, ref_pred, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(loss, ref_loss, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("in_chans", [1, 3])
def test_patchify_matches_loops_and_inverts(in_chans: int) -> None:
    model = tiny_mae(in_chans=in_chans)
    imgs = torch.randn(2, in_chans, 32, 32)
    patches = model.patchify(imgs)
    torch.testing.assert_close(patches, patchify_loops(imgs, 8), atol=0, rtol=0)
    torch.testing.assert_close(model.unpatchify(patches), imgs, atol=0, rtol=0)


@pytest.mark.parametrize("mask_ratio", [0.0, 0.5, 0.75, 0.9, 0.99])
def test_each_sample_keeps_exact_count(mask_ratio: float) -> None:
    model = tiny_mae()
    length = model.num_patches
    _, _, mask = model(torch.randn(4, 3, 32, 32), mask_ratio=mask_ratio)
    kept = (mask == 0).sum(dim=1)
    assert kept.tolist() == [int(length * (1 - mask_ratio))] * 4
    assert set(mask.unique().tolist()) <= {0.0, 1.0}


def test_noise_makes_masking_reproducible_and_default_is_random() -> None:
    model = tiny_mae()
    imgs = torch.randn(2, 3, 32, 32)
    noise = torch.rand(2, model.num_patches)
    a = model(imgs, noise=noise)
    b = model(imgs, noise=noise)
    torch.testing.assert_close(a[1], b[1])
    masks = {tuple(model(imgs)[2].flatten().tolist()) for _ in range(5)}
    assert len(masks) > 1


@pytest.mark.parametrize("norm_pix_loss", [False, True])
def test_gradients_reach_every_trainable_parameter(norm_pix_loss: bool) -> None:
    model = tiny_mae(norm_pix_loss=norm_pix_loss).train()
    loss, pred, _ = model(torch.randn(2, 3, 32, 32))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(pred).all()
    for name, param in model.named_parameters():
        if param.requires_grad:
            assert param.grad is not None and param.grad.abs().sum() > 0, name
            assert torch.isfinite(param.grad).all(), name
        else:
            assert name in ("pos_embed", "decoder_pos_embed")


def test_bf16_autocast_forward_backward() -> None:
    model = tiny_mae().train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, pred, mask = model(torch.randn(2, 3, 32, 32))
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    loss.backward()
    assert model.mask_token.grad is not None


def test_non_square_and_other_sizes() -> None:
    model = MaskedAutoencoderViT(**{**TINY, "img_size": (48, 32)})
    loss, pred, mask = model(torch.randn(2, 3, 48, 32))
    assert pred.shape == (2, 24, 8 * 8 * 3) and mask.shape == (2, 24)
    assert model.unpatchify(pred).shape == (2, 3, 48, 32)


def test_compile_fullgraph_has_no_graph_breaks() -> None:
    """Dynamo traces the whole forward in one graph (``fullgraph=True`` raises at a break whatever the backend);
    ``aot_eager`` checks the traced graph's values without the minute inductor's C++ build takes on a CPU."""
    model = tiny_mae()
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    imgs = torch.randn(2, 3, 32, 32)
    noise = torch.rand(2, model.num_patches)
    loss, pred, _ = compiled(imgs, 0.75, noise)
    ref_loss, ref_pred, _ = model(imgs, 0.75, noise)
    torch.testing.assert_close(pred, ref_pred, atol=1e-4, rtol=1e-4)


def test_base_model_size() -> None:
    model = build_mae("mae_vit_base_patch16_dec512d8b")
    assert sum(p.numel() for p in model.parameters()) == 111_907_840


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(img_size=30), r"\(30, 30\).*patch size 8"),
        (dict(in_chans=2), "in_chans must be 1 or 3, got 2"),
        (dict(embed_dim=30), "divisible by 4.*30"),
        # the decoder's width is named as such (the sin-cos builder called it embed_dim)
        (dict(decoder_embed_dim=18), r"^decoder_embed_dim must be positive and divisible by 4.*got 18$"),
        (dict(decoder_embed_dim=0), r"^decoder_embed_dim must .*got 0$"),
    ],
)
def test_bad_construction_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        MaskedAutoencoderViT(**{**TINY, **kwargs})


@pytest.mark.parametrize("ratio", [-0.1, 1.0, 1.5])
def test_bad_mask_ratio(ratio: float) -> None:
    with pytest.raises(ValueError, match=f"mask_ratio must be in \\[0, 1\\), got {ratio}"):
        tiny_mae()(torch.randn(1, 3, 32, 32), mask_ratio=ratio)


def test_bad_input_shape_and_noise() -> None:
    model = tiny_mae()
    with pytest.raises(ValueError, match=r"got \[1, 3, 40, 40\]"):
        model(torch.randn(1, 3, 40, 40))
    with pytest.raises(ValueError, match="noise must have shape"):
        model(torch.randn(1, 3, 32, 32), noise=torch.rand(1, 5))


def test_unknown_factory() -> None:
    with pytest.raises(ValueError, match="'mae_vit_giant'"):
        build_mae("mae_vit_giant")


@pytest.mark.parametrize("ratio", [1.5, 75, -0.25])
@pytest.mark.parametrize("stage", ["forward_encoder", "random_masking"])
def test_the_public_masking_stages_refuse_a_ratio_outside_0_1(stage: str, ratio: float) -> None:
    """forward() checked the ratio, its public stages did not: 1.5 kept half the tokens with a mask saying all were
    removed, and a percentage (75) kept none, each without an error."""
    model = tiny_mae()
    imgs = torch.randn(2, 3, 32, 32)
    with pytest.raises(ValueError, match=f"mask_ratio must be in \\[0, 1\\), got {ratio}"):
        if stage == "forward_encoder":
            model.forward_encoder(imgs, ratio)
        else:
            model.random_masking(torch.randn(2, model.num_patches, 32), ratio)


@pytest.mark.parametrize("ratio", [0.0, 0.5, 0.99])
def test_the_encoder_sees_exactly_the_tokens_the_mask_keeps(ratio: float) -> None:
    model = tiny_mae()
    latent, mask, _ = model.forward_encoder(torch.randn(2, 3, 32, 32), ratio)
    assert latent.shape[1] - 1 == int((mask[0] == 0).sum()) == int(model.num_patches * (1 - ratio))


@pytest.mark.parametrize("shape", [(1, 3, 36, 36), (1, 3, 32, 36), (3, 32, 32)])
def test_patchify_refuses_images_off_the_patch_grid_quoting_the_shape(shape: tuple) -> None:
    """A reshape error ("shape '[1, 3, 4, 8, 4, 8]' is invalid for input of size 3888") named neither size."""
    with pytest.raises(ValueError, match=rf"patch size 8, got \[{', '.join(map(str, shape))}\]"):
        tiny_mae().patchify(torch.randn(*shape))


@pytest.mark.parametrize("shape", [(1, 15, 192), (1, 16, 64), (16, 192)])
def test_unpatchify_refuses_patches_of_another_grid_quoting_the_shape(shape: tuple) -> None:
    with pytest.raises(ValueError, match=rf"\(N, 16, 192\).*4 x 4 grid, got \[{', '.join(map(str, shape))}\]"):
        tiny_mae().unpatchify(torch.randn(*shape))
