"""The classification bundle's inference pieces (network with weights, preprocessing, class names), loaded once.

MONAI Label serves the same model and the same preprocessing as ``bundles/usf_mae_classify/configs/inference.yaml``
by parsing that bundle's own configs rather than restating them, so the two cannot drift apart. Nothing here imports
MONAI Label: the main environment can load and test it too.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.bundle import ConfigParser

from monai_ext.engines.inference import classify_image, note_if_blank, note_if_several_frames, prepare_image
from monai_ext.io.errors import UnreadableImageError
from monai_ext.io.images import read_image, to_stored_grid
from monai_ext.networks.checkpoints import read_checkpoint
from monai_ext.visualize.gradcam import gradcam_overlay, has_token_blocks

logger = logging.getLogger(__name__)
CONFIG_FILES = ("inference.yaml",)  # standalone: the model and preprocessing that bundle inference uses


@dataclass
class BundleClassifier:
    """A ready-to-run classifier: ``predict(path)`` gives the bundle inference's record for one file."""

    network: torch.nn.Module
    transform: Callable[[dict[str, Any]], dict[str, Any]]
    class_names: list[str]
    device: torch.device
    precision: str
    checkpoint: str

    def prepare(self, path: str | os.PathLike) -> tuple[torch.Tensor, int, int]:
        """(1, C, H, W) preprocessed image, the frames the file holds and the index of the one the image is
        (:func:`~monai_ext.engines.inference.prepare_image`); raises ``UnreadableImageError`` (a ``ValueError``)
        for a bad file."""
        try:
            return prepare_image(path, self.transform, self.device)
        except Exception as e:
            unreadable = _unreadable_cause(e)
            if unreadable is None:
                raise
            # MONAI's Compose wraps the reader's error in RuntimeErrors; callers want the reader's own error.
            raise UnreadableImageError(str(unreadable)) from e

    def predict(self, path: str | os.PathLike) -> dict[str, Any]:
        """``{"label", "class", "probabilities": {name: p}[, "warning"][, "frames", "frame"]}`` for one image file
        (a blank image is flagged, :func:`~monai_ext.engines.inference.note_if_blank`, and a file of several frames
        gives their number and the index of the one classified,
        :func:`~monai_ext.engines.inference.note_if_several_frames`)."""
        return self._classify(path)[0]

    def heatmap(self, path: str | os.PathLike, class_index: int) -> np.ndarray | None:
        """Grad-CAM overlay (H, W, 3) uint8 at the file's size, on its stored pixel grid (:meth:`_overlay`), for
        ``class_index``, or None for networks without ViT blocks."""
        return self._overlay(self.prepare(path)[0], class_index, path)

    def predict_and_explain(self, path: str | os.PathLike) -> tuple[dict[str, Any], np.ndarray | None]:
        """:meth:`predict` plus the Grad-CAM overlay of the predicted class ((H, W, 3) uint8 at the file's own size;
        None for a network without token blocks), reading the file once."""
        result, image = self._classify(path)
        return result, self._overlay(image, result["label"], path)

    def _classify(self, path: str | os.PathLike) -> tuple[dict[str, Any], torch.Tensor]:
        image, frames, frame = self.prepare(path)
        result = classify_image(self.network, image, self.class_names, self.precision)
        note_if_blank(result, path, image)
        note_if_several_frames(result, path, frames, frame)
        return result, image

    def _overlay(self, image: torch.Tensor, class_index: int, path: str | os.PathLike) -> np.ndarray | None:
        """Drawn over the file's own pixels, so that it lines up with the image the annotator's viewer shows (the
        network saw a square resize of it); the file is read again only for a heat map.

        The overlay is on the file's stored pixel grid, as served masks are
        (:meth:`~monai_ext.apps.label.segment_model.BundleSegmenter.segment`): a picture with an EXIF orientation is
        explained upright, as the network saw it, and the overlay turned back, to lie on the image as 3D Slicer and
        OHIF show it (an upright 77x123 overlay lay across a 123x77 image there); a DICOM of non-square pixels is
        explained on square ones and the overlay resampled back to the stored grid.
        """
        if not has_token_blocks(self.network):
            return None
        read = read_image(path)
        return to_stored_grid(gradcam_overlay(self.network, image, class_index, read.pixels), path, read.orientation)


def _unreadable_cause(error: BaseException) -> UnreadableImageError | None:
    """The ``UnreadableImageError`` in an exception's cause chain, if any."""
    current: BaseException | None = error
    while current is not None:
        if isinstance(current, UnreadableImageError):
            return current
        current = current.__cause__
    return None


def overrides_from_checkpoint(checkpoint: str | os.PathLike) -> dict[str, Any]:
    """Bundle settings that the checkpoint's architecture record fixes (arch, image size, channels, pooling).

    A model fine-tuned with ``--arch ... --image_size ...`` then serves without repeating those flags.
    """
    record = read_checkpoint(checkpoint).get("arch") or {}
    config, arch_args = record.get("config") or {}, record.get("arch_args") or {}
    found = {
        "arch": config.get("arch"),
        "image_size": config.get("image_size"),
        "in_channels": arch_args.get("in_chans"),
        "global_pool": arch_args.get("global_pool"),
        "linear_probe": arch_args.get("linear_probe"),
    }
    return {key: value for key, value in found.items() if value is not None}


def load_bundle_classifier(
    bundle_root: str | os.PathLike,
    checkpoint: str | os.PathLike,
    device: str | torch.device | None = None,
    overrides: Mapping[str, Any] | None = None,
    config_files: Sequence[str] = CONFIG_FILES,
) -> BundleClassifier:
    """Parse the classification bundle's inference config and build its network with ``checkpoint``.

    Args:
        bundle_root: the ``usf_mae_classify`` bundle folder.
        checkpoint: a classification-bundle ``models/model.pt``.
        device: where to run; default: the bundle's choice (CUDA when available).
        overrides: extra bundle settings (``{"image_size": 224}``), applied after those read from the checkpoint.
        config_files: configs under ``<bundle_root>/configs``, merged in order.

    Raises:
        ValueError: a missing bundle folder or checkpoint, quoting the path.
    """
    root, ckpt = Path(bundle_root), Path(checkpoint)
    configs = [root / "configs" / name for name in config_files]
    missing = [str(p) for p in configs if not p.is_file()]
    if missing:
        raise ValueError(f"bundle_root {str(root)!r} is not a classification bundle: missing {missing!r}")
    if not ckpt.is_file():
        raise ValueError(f"checkpoint {str(ckpt)!r} does not exist; train the classification bundle first")
    parser = ConfigParser()
    parser.read_config([str(p) for p in configs])
    settings = {"bundle_root": str(root), "ckpt_path": str(ckpt), **overrides_from_checkpoint(ckpt), **(overrides or {})}
    if device is not None:
        settings["device"] = f"$torch.device({str(device)!r})"
    for key, value in settings.items():
        parser[key] = value
    parser.parse()
    for summary in parser.get_parsed_content("initialize"):
        logger.info("bundle initialize: %s", summary)
    network = parser.get_parsed_content("network")
    network.eval()
    return BundleClassifier(
        network=network,
        transform=parser.get_parsed_content("preprocessing"),
        class_names=list(parser.get_parsed_content("class_names")),
        device=torch.device(parser.get_parsed_content("device")),
        precision=str(parser.get_parsed_content("precision")),
        checkpoint=str(ckpt),
    )
