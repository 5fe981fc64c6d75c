"""Reconstruction panels (visualize/reconstructions.py): gray shown gray, normalisation undone, each image's
masked-patch loss, captions; the grid saver handler is tested in tests/handlers/test_reconstructions.py."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from monai_ext.networks.mae import MaskedAutoencoderViT
from monai_ext.visualize.reconstructions import (
    caption,
    is_gray,
    masked_patch_losses,
    reconstruction_panels,
    to_display,
)
from tests.visualize.mae_images import MEAN, STD, TINY, normalised_gray


def test_gray_is_detected_and_a_reconstruction_with_channel_drift_is_shown_gray() -> None:
    images = normalised_gray()
    assert is_gray(images, MEAN, STD) and not is_gray(torch.randn(2, 3, 32, 32), MEAN, STD)
    drifted = images + torch.tensor([0.0, 0.0, 0.3]).view(1, 3, 1, 1)  # the blue cast of issue #19
    shown = to_display(drifted, MEAN, STD, gray=True)
    assert np.array_equal(shown[..., 0], shown[..., 2])
    assert not np.array_equal(*(to_display(drifted, MEAN, STD)[..., c] for c in (0, 2)))


@pytest.mark.parametrize("norm_pix_loss", [False, True])
def test_per_image_losses_average_to_the_training_loss(norm_pix_loss: bool) -> None:
    torch.manual_seed(0)
    model = MaskedAutoencoderViT(norm_pix_loss=norm_pix_loss, **TINY).eval()
    images = normalised_gray(3)
    with torch.no_grad():
        loss, pred, mask = model(images, 0.75)
        per_image = masked_patch_losses(model, images, pred, mask)
    assert per_image.shape == (3,)
    assert per_image.mean().item() == pytest.approx(loss.item(), rel=1e-5)  # equal masked counts per image


@pytest.mark.parametrize("norm_pix_loss", [False, True])
def test_a_perfect_prediction_reconstructs_the_image(norm_pix_loss: bool) -> None:
    model = MaskedAutoencoderViT(norm_pix_loss=norm_pix_loss, **TINY)
    images = normalised_gray(2)
    pred, mask = model.patch_targets(images), torch.ones(2, model.num_patches)
    _, recon, _ = reconstruction_panels(model, images, pred, mask)
    torch.testing.assert_close(recon, images, atol=1e-3, rtol=1e-3)


def test_a_caption_is_written_on_a_copy() -> None:
    plain = np.zeros((32, 32, 3), np.uint8)
    assert caption(plain, "loss 0.123").any() and not plain.any()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_gray_images_of_any_float_type_are_detected_and_shown_gray(dtype: torch.dtype) -> None:
    """bfloat16 images failed in to_display (NumPy has no bfloat16), and is_gray, computed in bfloat16, whose
    rounding of each channel's mean and std differs, took a gray image for a colour one (a colour cast)."""
    images = normalised_gray().to(dtype)
    assert is_gray(images, MEAN, STD)
    shown = to_display(images, MEAN, STD, gray=is_gray(images, MEAN, STD))
    assert shown.dtype == np.uint8 and np.array_equal(shown[..., 0], shown[..., 2])
    np.testing.assert_array_equal(shown, to_display(images.float(), MEAN, STD, gray=True))  # the same values' pixels
