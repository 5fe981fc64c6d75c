"""MAEReconstructor: the MAE's parameters under the same names, a fixed mask, and the MAE demo's reconstruction."""

from __future__ import annotations

import pytest
import torch

from monai_ext.networks.mae import build_mae
from monai_ext.networks.reconstruction import build_mae_reconstructor

TINY = "mae_vit_tiny_patch16_dec128d2b"


@pytest.mark.parametrize("norm_pix_loss", [False, True])
def test_reconstruction_is_the_mae_prediction_in_removed_patches_and_the_input_elsewhere(norm_pix_loss: bool) -> None:
    mae = build_mae(TINY, img_size=64, norm_pix_loss=norm_pix_loss).eval()
    recon = build_mae_reconstructor(TINY, img_size=64, norm_pix_loss=norm_pix_loss, mask_ratio=0.5, mask_seed=3)
    recon.load_state_dict(mae.state_dict(), strict=True)  # a pretrain-bundle state dict loads as is
    recon.eval()
    images = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    noise = torch.rand(1, 16, generator=torch.Generator().manual_seed(3)).expand(2, -1)
    with torch.no_grad():
        _, pred, mask = mae(images, 0.5, noise)
        output = recon(images)
    # Written out per patch, independently of the module's vectorised code (MAE's demo notebook does the same).
    p = 16
    for n in range(2):
        for index in range(16):
            row, col = divmod(index, 4)
            patch = images[n, :, row * p:(row + 1) * p, col * p:(col + 1) * p]
            got = output[n, :, row * p:(row + 1) * p, col * p:(col + 1) * p]
            if mask[n, index] == 0:
                torch.testing.assert_close(got, patch, atol=0, rtol=0)
                continue
            flat = patch.permute(1, 2, 0).reshape(-1)  # (row, column, channel) order, as patchify
            predicted = pred[n, index]
            if norm_pix_loss:
                predicted = predicted * (flat.var() + 1e-6) ** 0.5 + flat.mean()
            torch.testing.assert_close(got.permute(1, 2, 0).reshape(-1), predicted, atol=1e-5, rtol=1e-5)
    assert int(mask.sum()) == 2 * 8


def test_fixed_mask_gives_the_same_output_for_any_batch_and_keeps_the_mae_call() -> None:
    recon = build_mae_reconstructor(TINY, img_size=64).eval()
    images = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        together = recon(images)
        alone = recon(images[1:2])
        loss, pred, mask = recon(images, 0.75)
    torch.testing.assert_close(alone[0], together[1], atol=1e-5, rtol=0)
    assert pred.shape == (3, 16, 768) and mask.shape == (3, 16) and loss.ndim == 0
    assert "mask_noise" not in recon.state_dict()


def test_unknown_architecture_and_bad_mask_ratio_are_rejected() -> None:
    with pytest.raises(ValueError, match="unknown MAE architecture"):
        build_mae_reconstructor("mae_vit_huge_nope", img_size=64)
    with pytest.raises(ValueError):
        build_mae_reconstructor(TINY, img_size=64, mask_ratio=1.5)


def test_a_file_without_a_record_is_read_as_raw_pixel_targets_with_a_warning(tmp_path, caplog) -> None:
    """Weights trained on per-patch normalised pixels, saved without a record (Facebook's ``_full`` layout), were
    evaluated against raw pixels without a word: a loss of 0.71 for a model whose own loss was 1.26."""
    import logging

    from monai_ext.networks.checkpoints import save_model_checkpoint
    from monai_ext.networks.reconstruction import recorded_norm_pix_loss

    bare, recorded = tmp_path / "released.pth", tmp_path / "model.pt"
    mae = build_mae(TINY, img_size=64, norm_pix_loss=True)
    torch.save(mae.state_dict(), bare)
    save_model_checkpoint(recorded, mae, "mae")
    with caplog.at_level(logging.WARNING, logger="monai_ext.networks.reconstruction"):
        assert recorded_norm_pix_loss({"norm_pix_loss": True}, recorded) is True
        assert recorded_norm_pix_loss({}, tmp_path / "models" / "model.pt") is False  # before training: defaults
        assert not caplog.records
        assert recorded_norm_pix_loss({}, bare) is False
    assert len(caplog.records) == 1 and f"{bare} records no norm_pix_loss" in caplog.text
    assert "give --norm_pix_loss true" in caplog.text
