"""After each validation, a PNG grid of MAE reconstructions of fixed validation images."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from ignite.engine import Engine, Events

from monai_ext.engines.base import autocast
from monai_ext.engines.distributed import is_main_process
from monai_ext.engines.mae import check_training_mask_ratio, image_masking_noise
from monai_ext.io.figures import save_png
from monai_ext.visualize.reconstructions import (
    caption,
    enlarge,
    is_gray,
    masked_patch_losses,
    mid_gray,
    reconstruction_panels,
    to_display,
)

logger = logging.getLogger(__name__)


def first_images_and_positions(
    dataset: Sequence[Mapping[str, object]], count: int, key: str = "image", position_key: str = "index"
) -> tuple[torch.Tensor, list[int] | None]:
    """The first ``count`` items' ``key`` tensors stacked (K, C, H, W), and their positions in the validation set
    (``position_key``, see :func:`~monai_ext.engines.mae.with_positions`), or None where the items carry none.

    With the positions the grid masks each image as :class:`~monai_ext.engines.mae.MAEEvaluator` does, so that the
    loss written on it is that image's share of ``val_loss``.

    Raises:
        ValueError: ``count`` below 1 or an empty dataset, quoting both.
    """
    if min(int(count), len(dataset)) < 1:
        raise ValueError(f"the grid needs at least one image: grid_images {count!r}, the dataset has {len(dataset)!r}")
    items = [dataset[i] for i in range(min(int(count), len(dataset)))]
    images = torch.stack([torch.as_tensor(item[key]) for item in items])
    if not all(position_key in item for item in items):
        return images, None
    return images, [int(torch.as_tensor(item[position_key]).reshape(-1)[0]) for item in items]


class ReconstructionGridSaver:
    """After each validation, reconstruct fixed validation images and save a PNG grid.

    Rows are images; columns are original | masked input | reconstruction | reconstruction + visible patches, each
    captioned; the reconstruction carries that image's masked-patch loss (the training loss, in the target's units).
    Normalisation is undone (per-patch statistics too with ``norm_pix_loss``) and gray inputs are shown gray.
    Files: ``<output_dir>/reconstructions/epoch_NNNN.png`` and ``latest.png``, or ``file_name``.

    Args:
        output_dir: run output folder.
        images: (K, C, H, W) normalised validation images (fixed across the run).
        mean, std: the normalisation to undo for display.
        mask_ratio: fraction of patches removed.
        noise_seed: seed of the fixed masks.
        positions: the images' positions in the validation set: each is then masked as
            :class:`~monai_ext.engines.mae.MAEEvaluator` with this ``noise_seed`` masks it (its default, 0, in the
            bundle), so the loss written on it is the one the validation scored for it. Without them the images'
            masks are drawn together from ``noise_seed``.
        precision: autocast precision.
        epoch_engine: engine whose epoch numbers the files (the trainer); defaults to the attached one.
        file_name: one file written at every validation instead of ``epoch_NNNN.png`` and ``latest.png`` (an
            evaluation's ``evaluate.png``, which must not overwrite the training's grids in the same folder).
    """

    def __init__(
        self,
        output_dir: str | os.PathLike,
        images: torch.Tensor,
        mean: Sequence[float] = (0.485, 0.456, 0.406),
        std: Sequence[float] = (0.229, 0.224, 0.225),
        mask_ratio: float = 0.75,
        noise_seed: int = 1234,
        precision: str = "bf16",
        epoch_engine: Engine | None = None,
        file_name: str | None = None,
        positions: Sequence[int] | None = None,
    ) -> None:
        if positions is not None and len(positions) != len(images):
            raise ValueError(f"positions must give one position per image ({len(images)}), got {list(positions)!r}")
        # a ratio that removes no patch wrote "loss 0.000" on the grid (a mean over no patches), and one that keeps
        # none a reconstruction of nothing: refused as training refuses them
        self.mask_ratio = check_training_mask_ratio(mask_ratio)
        self.folder = Path(output_dir) / "reconstructions"
        self.file_name = file_name
        self.images = images
        self.mean, self.std = list(mean), list(std)
        self.noise_seed, self.precision = noise_seed, precision
        self.positions = None if positions is None else [int(i) for i in positions]
        self.epoch_engine = epoch_engine
        self.last_path: Path | None = None

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def render(self, network: torch.nn.Module, device: torch.device) -> np.ndarray:
        """The grid as a uint8 (K*H', 4*W', 3) array (panels enlarged to at least 192 rows, see ``enlarge``)."""
        model = getattr(network, "module", network)
        check_training_mask_ratio(self.mask_ratio, model)  # keeps at least one of this model's patches
        images = self.images.to(device)
        noise = self.masking_noise(images.shape[0], model.num_patches)
        was_training = model.training
        model.eval()
        with torch.no_grad(), autocast(device, self.precision):
            _, pred, mask = model(images, self.mask_ratio, noise.to(device))
        model.train(was_training)
        losses = masked_patch_losses(model, images.float(), pred.float(), mask.float()).cpu().tolist()
        fill = mid_gray(self.mean, self.std, images.shape[1])  # removed patches 50% gray: apart from black background
        panels = [images, *reconstruction_panels(model, images.float(), pred.float(), mask.float(), fill)]
        gray = is_gray(images.float(), self.mean, self.std)
        columns = [enlarge(to_display(p, self.mean, self.std, gray)) for p in panels]  # each (K, H', W', 3)
        names = ("original", f"masked {round(100 * self.mask_ratio)}%", "reconstruction", "recon + visible")
        rows = []
        for i, loss in enumerate(losses):
            cells = [caption(col[i], name) if i == 0 else col[i] for col, name in zip(columns, names)]
            cells[2] = caption(cells[2], f"loss {loss:.3f}", bottom=True)
            rows.append(np.concatenate(cells, axis=1))
        return np.concatenate(rows, axis=0)

    def masking_noise(self, count: int, num_patches: int) -> torch.Tensor:
        """(count, L) noise of the grid's fixed masks: the evaluator's per image with ``positions``, else drawn
        together from ``noise_seed``."""
        if self.positions is not None:
            return image_masking_noise(self.positions, num_patches, self.noise_seed)
        return torch.rand(count, num_patches, generator=torch.Generator().manual_seed(self.noise_seed))

    def save(self, network: torch.nn.Module, device: torch.device, name: str, latest: bool = False) -> Path:
        """Render and write ``<output_dir>/reconstructions/<name>``, and ``latest.png`` with ``latest`` (the
        training's grids only: an evaluation or inference into the same folder leaves them as they are). Returns
        the path."""
        grid = self.render(network, device)
        path = self.folder / name
        save_png(grid, path)
        if latest:
            save_png(grid, self.folder / "latest.png")
        self.last_path = path
        logger.info("reconstruction grid written to %s", path)
        return path

    def __call__(self, engine: Engine) -> None:
        if is_main_process():
            if self.file_name is not None:
                self.save(engine.network, engine.state.device, self.file_name)
                return
            epoch = (self.epoch_engine or engine).state.epoch
            self.save(engine.network, engine.state.device, f"epoch_{epoch:04d}.png", latest=True)
            self.remove_later_grids(epoch)

    def remove_later_grids(self, epoch: int) -> None:
        """Remove ``epoch_NNNN.png`` of epochs after ``epoch``: an earlier, longer run into the same folder (or the
        epochs a killed run drew after its last checkpoint) left them beside this run's, whose ``metrics.json``
        has no such epoch."""
        for path in self.folder.glob("epoch_*.png"):
            number = path.stem.removeprefix("epoch_")
            if number.isdigit() and int(number) > epoch:
                path.unlink(missing_ok=True)
                logger.info("removed %s, an earlier run's grid", path)
