"""Event handlers for the pretraining and fine-tuning engines: pictures and metric histories, written by rank 0."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ignite.engine import Engine, Events
from PIL import Image

from monai_ext.engines.distributed import is_main_process
from monai_ext.engines.base import autocast

logger = logging.getLogger(__name__)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def save_png(image: np.ndarray, path: Path) -> None:
    """Save a uint8 (H, W) or (H, W, 3) array as PNG, atomically."""
    from io import BytesIO

    buffer = BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    atomic_write_bytes(path, buffer.getvalue())


def to_display(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """Undo channel normalisation: (N, C, H, W) float -> (N, H, W, 3) uint8 (gray replicated to RGB)."""
    mean_t = torch.tensor(mean, dtype=images.dtype).view(1, -1, 1, 1)[:, : images.shape[1]]
    std_t = torch.tensor(std, dtype=images.dtype).view(1, -1, 1, 1)[:, : images.shape[1]]
    pixels = (images.cpu() * std_t + mean_t).clamp(0, 1)
    if pixels.shape[1] == 1:
        pixels = pixels.expand(-1, 3, -1, -1)
    return (pixels.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)


def reconstruction_panels(
    model: torch.nn.Module, images: torch.Tensor, pred: torch.Tensor, mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Masked input, reconstruction, and reconstruction with the visible patches pasted back, in image space.

    With ``norm_pix_loss`` the prediction is per-patch normalised; it is mapped back with the true patches' mean and
    variance, as the MAE reference visualisation does.

    Args:
        model: the (unwrapped) MAE.
        images: (N, C, H, W) normalised inputs.
        pred: (N, L, P*P*C).
        mask: (N, L), 1 = removed.

    Returns:
        Three (N, C, H, W) tensors.
    """
    if model.norm_pix_loss:
        target = model.patchify(images)
        mean, var = target.mean(-1, keepdim=True), target.var(-1, keepdim=True)
        pred = pred * (var + 1e-6) ** 0.5 + mean
    pixel_mask = model.unpatchify(mask.unsqueeze(-1).expand(-1, -1, pred.shape[-1]).to(images.dtype))
    recon = model.unpatchify(pred.to(images.dtype))
    masked = images * (1 - pixel_mask) + pixel_mask * images.amin()  # removed patches shown dark
    pasted = images * (1 - pixel_mask) + recon * pixel_mask
    return masked, recon, pasted


class ReconstructionGridSaver:
    """After each validation, reconstruct fixed validation images and save a PNG grid.

    Rows are images; columns are original | masked input | reconstruction | reconstruction + visible patches.
    Files: ``<output_dir>/reconstructions/epoch_NNNN.png`` and ``latest.png``.

    Args:
        output_dir: run output folder.
        images: (K, C, H, W) normalised validation images (fixed across the run).
        mean, std: the normalisation to undo for display.
        mask_ratio: fraction of patches removed.
        noise_seed: seed of the fixed masks.
        precision: autocast precision.
        epoch_engine: engine whose epoch numbers the files (the trainer); defaults to the attached one.
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
    ) -> None:
        self.folder = Path(output_dir) / "reconstructions"
        self.images = images
        self.mean, self.std = list(mean), list(std)
        self.mask_ratio, self.noise_seed, self.precision = mask_ratio, noise_seed, precision
        self.epoch_engine = epoch_engine
        self.last_path: Path | None = None

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def render(self, network: torch.nn.Module, device: torch.device) -> np.ndarray:
        """The grid as a uint8 (K*H, 4*W, 3) array."""
        model = getattr(network, "module", network)
        images = self.images.to(device)
        noise = torch.rand(images.shape[0], model.num_patches, generator=torch.Generator().manual_seed(self.noise_seed))
        was_training = model.training
        model.eval()
        with torch.no_grad(), autocast(device, self.precision):
            _, pred, mask = model(images, self.mask_ratio, noise.to(device))
        model.train(was_training)
        panels = [images, *reconstruction_panels(model, images.float(), pred.float(), mask.float())]
        columns = [to_display(p, self.mean, self.std) for p in panels]  # each (K, H, W, 3)
        rows = [np.concatenate([col[i] for col in columns], axis=1) for i in range(images.shape[0])]
        return np.concatenate(rows, axis=0)

    def save(self, network: torch.nn.Module, device: torch.device, name: str) -> Path:
        """Render and write ``<output_dir>/reconstructions/<name>`` (and ``latest.png``). Returns the path."""
        grid = self.render(network, device)
        path = self.folder / name
        save_png(grid, path)
        save_png(grid, self.folder / "latest.png")
        self.last_path = path
        logger.info("reconstruction grid written to %s", path)
        return path

    def __call__(self, engine: Engine) -> None:
        if is_main_process():
            epoch = (self.epoch_engine or engine).state.epoch
            self.save(engine.network, engine.state.device, f"epoch_{epoch:04d}.png")


class ProgressBar:
    """ignite's tqdm progress bar showing the running loss, attachable from a bundle's handler list."""

    def __init__(self, loss_key: str = "loss", persist: bool = False) -> None:
        self.loss_key, self.persist = loss_key, persist

    def attach(self, engine: Engine) -> None:
        from ignite.handlers import ProgressBar as IgniteProgressBar

        if is_main_process():
            bar = IgniteProgressBar(persist=self.persist)
            bar.attach(engine, output_transform=lambda out: {self.loss_key: out[self.loss_key]})


def _is_scalar(value: Any) -> bool:
    return isinstance(value, (int, float)) or (isinstance(value, torch.Tensor) and value.numel() == 1)


class MetricsHistory:
    """Append each validation's metrics (with the trainer's epoch) to a JSON list at ``path``.

    Args:
        path: JSON file, rewritten atomically after each validation.
        epoch_engine: the trainer, whose epoch labels the entries.

    Saved in trainer checkpoints (``state_dict``), so a resumed run keeps the history of the epochs before it.
    """

    def __init__(self, path: str | os.PathLike, epoch_engine: Engine | None = None) -> None:
        self.path = Path(path)
        self.epoch_engine = epoch_engine
        self.history: list[dict[str, Any]] = []

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        epoch = (self.epoch_engine or engine).state.epoch
        entry = {"epoch": epoch, **{k: float(v) for k, v in engine.state.metrics.items() if _is_scalar(v)}}
        self.history = [h for h in self.history if h["epoch"] < epoch] + [entry]
        if is_main_process():
            atomic_write_bytes(self.path, json.dumps(self.history, indent=1).encode())
            logger.info("epoch %d validation: %s", epoch, {k: round(v, 6) for k, v in entry.items() if k != "epoch"})

    def state_dict(self) -> dict[str, Any]:
        return {"history": self.history}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.history = list(state.get("history", []))
