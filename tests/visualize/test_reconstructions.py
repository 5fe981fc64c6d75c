"""Readable reconstruction grids: gray shown gray, normalisation undone, each image's masked-patch loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from monai_ext.handlers.reconstructions import ReconstructionGridSaver
from monai_ext.networks.mae import MaskedAutoencoderViT
from monai_ext.visualize.reconstructions import (
    caption,
    is_gray,
    masked_patch_losses,
    reconstruction_panels,
    to_display,
)

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
TINY = {"img_size": 32, "patch_size": 8, "embed_dim": 16, "depth": 1, "num_heads": 2, "decoder_embed_dim": 16,
        "decoder_depth": 1, "decoder_num_heads": 2}


def normalised_gray(n: int = 2, side: int = 32) -> torch.Tensor:
    gray = torch.rand(n, 1, side, side).expand(-1, 3, -1, -1)
    return (gray - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)


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


def test_grid_is_gray_captioned_and_sized(tmp_path) -> None:
    model = MaskedAutoencoderViT(**TINY)
    grid = ReconstructionGridSaver(tmp_path, normalised_gray(2), MEAN, STD, precision="fp32").render(model, "cpu")
    assert grid.shape == (2 * 192, 4 * 192, 3)  # 32 px panels enlarged 6x
    assert np.array_equal(grid[..., 0], grid[..., 1]) and np.array_equal(grid[..., 1], grid[..., 2])
    plain = np.zeros((32, 32, 3), np.uint8)
    assert caption(plain, "loss 0.123").any() and not plain.any()  # written on a copy


def test_a_shorter_run_removes_the_later_epochs_grids_of_an_earlier_one(tmp_path) -> None:
    """A 2-epoch run, then a 1-epoch run into the same folder: epoch_0002.png once stayed beside a 1-entry
    metrics.json; an evaluation's own file and other pictures stay."""
    from types import SimpleNamespace

    saver = ReconstructionGridSaver(tmp_path, normalised_gray(1), MEAN, STD, precision="fp32")
    folder = tmp_path / "reconstructions"
    folder.mkdir()
    for name in ("epoch_0001.png", "epoch_0002.png", "epoch_0010.png", "evaluate.png", "epoch_notes.png"):
        (folder / name).write_bytes(b"earlier")
    engine = SimpleNamespace(network=MaskedAutoencoderViT(**TINY), state=SimpleNamespace(epoch=1, device="cpu"))
    saver(engine)
    assert sorted(p.name for p in folder.iterdir()) == ["epoch_0001.png", "epoch_notes.png", "evaluate.png",
                                                         "latest.png"]
    assert (folder / "epoch_0001.png").read_bytes() != b"earlier"
