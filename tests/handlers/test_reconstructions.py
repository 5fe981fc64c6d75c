"""ReconstructionGridSaver (handlers/reconstructions.py): the grid it renders is gray and sized, and a
shorter run removes the later epochs' grids of an earlier one."""

from __future__ import annotations

import numpy as np

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
