"""ReconstructionGridSaver (handlers/reconstructions.py): the grid it renders is gray and sized, and a
shorter run removes the later epochs' grids of an earlier one."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ignite.engine import Events

from monai_ext.handlers.reconstructions import ReconstructionGridSaver
from monai_ext.networks.mae import MaskedAutoencoderViT
from tests.visualize.mae_images import MEAN, STD, TINY, normalised_gray


def test_grid_is_gray_captioned_and_sized(tmp_path) -> None:
    model = MaskedAutoencoderViT(**TINY)
    grid = ReconstructionGridSaver(tmp_path, normalised_gray(2), MEAN, STD, precision="fp32").render(model, "cpu")
    assert grid.shape == (2 * 192, 4 * 192, 3)  # 32 px panels enlarged 6x
    assert np.array_equal(grid[..., 0], grid[..., 1]) and np.array_equal(grid[..., 1], grid[..., 2])


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


def _written_losses(monkeypatch, saver: ReconstructionGridSaver, model: MaskedAutoencoderViT) -> list[float]:
    """The per-image losses ``saver`` writes on its grid (captured where they are computed)."""
    import monai_ext.handlers.reconstructions as handler

    written: list[list[float]] = []
    real = handler.masked_patch_losses
    monkeypatch.setattr(handler, "masked_patch_losses", lambda *a: written.append(real(*a).tolist()) or real(*a))
    saver.render(model, "cpu")
    return written[-1]


def test_the_loss_written_on_each_image_is_the_one_the_validation_scored_for_it(tmp_path, monkeypatch) -> None:
    """The grid drew its masks from its own seed: the losses written on the images of a validation (evaluate.png)
    were not the ones val_loss averages, and a grid of the whole set did not average to val_loss."""
    from torch.utils.data import DataLoader

    from monai_ext.engines.mae import MAEEvaluator, with_positions
    from monai_ext.handlers.reconstructions import first_images_and_positions

    torch.manual_seed(0)
    model = MaskedAutoencoderViT(**TINY).eval()
    dataset = with_positions([{"image": image} for image in normalised_gray(3)])
    scored: list[float] = []  # each image's own loss: a validation of batches of one
    evaluator = MAEEvaluator(device=torch.device("cpu"), val_data_loader=DataLoader(dataset, batch_size=1),
                             network=model, precision="fp32")
    evaluator.add_event_handler(Events.ITERATION_COMPLETED, lambda e: scored.append(float(e.state.output["loss"])))
    evaluator.run()
    images, positions = first_images_and_positions(dataset, 3)
    assert positions == [0, 1, 2]
    with pytest.raises(ValueError, match="the grid needs at least one image: grid_images 0, the dataset has 3"):
        first_images_and_positions(dataset, 0)
    saver = ReconstructionGridSaver(tmp_path, images, MEAN, STD, precision="fp32", positions=positions,
                                    noise_seed=evaluator.noise_seed)
    assert _written_losses(monkeypatch, saver, model) == pytest.approx(scored, rel=1e-5)


@pytest.mark.parametrize("ratio, match", [(0.0, r"mask_ratio must be in \(0, 1\).*, got 0.0"),
                                          (1.0, r"mask_ratio must be in \(0, 1\).*, got 1.0"),
                                          (0.95, "mask_ratio 0.95 keeps no patch of the 16")])
def test_a_mask_ratio_that_removes_no_patch_or_keeps_none_is_refused(tmp_path, ratio, match) -> None:
    """``--mask_ratio 0`` wrote "loss 0.000" (a mean over no removed patch) on every image of inference.png, and
    0.95 of 16 patches a reconstruction from none."""
    with pytest.raises(ValueError, match=match):
        ReconstructionGridSaver(tmp_path, normalised_gray(1), MEAN, STD, mask_ratio=ratio, precision="fp32").render(
            MaskedAutoencoderViT(**TINY), "cpu")
