"""The segmentation bundle's inference pieces (network, loading, preprocessing, class names), loaded once, and the
datastore's masks as the bundle's datalist.

MONAI Label serves exactly what ``bundles/usf_mae_segment/configs/inference.yaml`` computes by parsing that standalone
config with the served checkpoint and calling the same :func:`~monai_ext.engines.segmentation.segment_image`, so a
served mask and the bundle's mask for one image cannot differ. Nothing here imports MONAI Label.
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

from monai_ext.apps.label.bundle_model import _unreadable_cause
from monai_ext.apps.label.datalist import skipped_text
from monai_ext.apps.label.datastore import is_mask_file, is_picture_mask
from monai_ext.apps.label.split import SplitMemory, image_identity, stable_split
from monai_ext.data.datalists import write_split
from monai_ext.engines.inference import applied_orientation, frames_read, note_if_blank, note_if_several_frames
from monai_ext.engines.segmentation import mask_summary, segment_image
from monai_ext.io.errors import UnreadableImageError
from monai_ext.io.images import read_image, resampled_grid, stored_shape, to_stored_grid
from monai_ext.networks.checkpoints import read_checkpoint
from monai_ext.transforms.masks import MOST_LESION_SHARE, LoadMask, orientation_note

logger = logging.getLogger(__name__)


@dataclass
class BundleSegmenter:
    """A ready-to-run segmenter: ``segment(path)`` gives the bundle inference's mask for one file."""

    network: torch.nn.Module
    load: Callable[[dict[str, Any]], dict[str, Any]]
    preprocess: Callable[[dict[str, Any]], dict[str, Any]]
    class_names: list[str]
    device: torch.device
    precision: str
    checkpoint: str

    def segment(self, path: str | os.PathLike) -> tuple[np.ndarray, dict[str, Any]]:
        """(mask (H, W) uint8 class indices at the file's size, per-class pixel counts and area fractions, and a
        ``warning`` for a blank image, ``frames`` and ``frame``, the index of the one segmented, for a file of
        several).

        The mask is on the file's stored pixel grid, as the bundle's inference writes it
        (:func:`~monai_ext.engines.segmentation.predict_mask_files`): a picture with an EXIF orientation is
        segmented upright and its mask turned back, to lie on the image as 3D Slicer and OHIF show it; a DICOM of
        non-square pixels is segmented on square ones and its mask resampled back to the stored grid.

        Raises:
            UnreadableImageError: the file is not a decodable image (MONAI's Compose wrapping removed).
        """
        try:
            loaded = self.load({"image": str(path)})
            size = np.asarray(loaded["image"]).shape[1:]
            image = torch.as_tensor(self.preprocess(loaded)["image"]).float()[None].to(self.device)
        except Exception as e:
            unreadable = _unreadable_cause(e)
            if unreadable is None and not isinstance(e, UnreadableImageError):
                raise
            raise UnreadableImageError(str(unreadable or e)) from e
        mask, _ = segment_image(self.network, image, size, self.precision)
        mask = to_stored_grid(mask, path, applied_orientation(loaded, path))
        summary = mask_summary(mask, self.class_names)
        note_if_blank(summary, path, image)
        note_if_several_frames(summary, path, *frames_read(loaded))
        return mask, summary


def load_bundle_segmenter(
    bundle_root: str | os.PathLike, checkpoint: str | os.PathLike, device: str | torch.device | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> BundleSegmenter:
    """Parse the segmentation bundle's standalone ``inference.yaml`` with ``checkpoint``.

    Raises:
        ValueError: a missing bundle config or checkpoint, quoting the path.
    """
    config, ckpt = Path(bundle_root) / "configs" / "inference.yaml", Path(checkpoint)
    if not config.is_file():
        raise ValueError(f"bundle_root {str(bundle_root)!r} is not a segmentation bundle: missing {str(config)!r}")
    if not ckpt.is_file():
        raise ValueError(f"checkpoint {str(ckpt)!r} does not exist; train the segmentation bundle first")
    parser = ConfigParser()
    parser.read_config(str(config))
    settings = {"bundle_root": str(bundle_root), "ckpt_path": str(ckpt), **(overrides or {})}
    if device is not None:
        settings["device"] = f"$torch.device({str(device)!r})"
    for key, value in settings.items():
        parser[key] = value
    parser.parse()
    network = parser.get_parsed_content("network")
    network.eval()
    return BundleSegmenter(
        network=network,
        load=parser.get_parsed_content("load"),
        preprocess=parser.get_parsed_content("preprocessing"),
        class_names=list(parser.get_parsed_content("class_names")),
        device=torch.device(parser.get_parsed_content("device")),
        precision=str(parser.get_parsed_content("precision")),
        checkpoint=str(ckpt),
    )


def segmenter_overrides(checkpoint: str | Path) -> dict[str, Any]:
    """Bundle settings the segmentation checkpoint fixes (arch, image size, channels, decoder)."""
    record = read_checkpoint(checkpoint).get("arch") or {}
    config, args = record.get("config") or {}, record.get("arch_args") or {}
    found = {"arch": config.get("arch"), "image_size": config.get("image_size"), "in_channels": args.get("in_chans"),
             "feature_size": args.get("feature_size"), "feature_blocks": args.get("feature_blocks"),
             "mask_encoding": config.get("mask_encoding")}
    return {key: value for key, value in found.items() if value is not None}


def app_mask_encoding(checkpoint: str | Path, class_names: Sequence[str]) -> str:
    """How the app's fine-tuning reads the datastore's masks: as class indices for a model of several foreground
    classes, the way the app saves its masks, whatever the model was first trained from (an MMOTU model learnt from
    binary masks with a class per image, which the app's masks do not carry: read as binary, every class would be
    class 1, and the bundle refuses that); otherwise as the served model recorded (binary by default)."""
    if len(class_names) > 2:
        return "index"
    return str(segmenter_overrides(checkpoint).get("mask_encoding", "binary"))


def mask_datalist(items: Sequence[Mapping[str, str]], class_names: Sequence[str], out: Path, val_fraction: float,
                  seed: int, encoding: str = "binary",
                  memory: SplitMemory | None = None) -> tuple[Path, dict[str, str], dict[str, str]]:
    """The datastore's images with mask labels as a datalist.

    Every mask is read here, before training: one that is not a picture, cannot be decoded or differs in size from
    its image is skipped with the reason (the bundle would drop it with a log line only, and the summary would
    count it). Masks without a lesion pixel (normal scans) train, but stay out of the validation part: Dice is not
    defined on them, and a validation part of only such masks would leave no epoch to choose the best model by.
    A binary mask that is mostly lesion (over :data:`~monai_ext.transforms.masks.MOST_LESION_SHARE`: inverted, a
    white background?) trains, as a crop around a large lesion may be, but is returned as suspect with the reason:
    the bundle warns of it in the training process's log only, which annotators do not see.

    Masks are read in the ``encoding`` the training will read them in (the served checkpoint's: a 0/255 mask is no
    class-index mask of a multi-class model, and the bundle would refuse it after this check had counted it).

    The validation part is stable across training rounds (:func:`~monai_ext.apps.label.split.stable_split`, one
    stratum): images the served model's line (``memory``) trained on stay in training, those it validated on stay in
    validation while their mask shows a lesion, and new images fill about ``val_fraction`` of the masks with a lesion
    in the order of their id's hash with ``seed``.

    Returns:
        (datalist path, {label file: reason} for labels that were skipped, {label file: reason} for masks that train
        but look wrong).

    Raises:
        ValueError: fewer than two masks with a lesion (one must go to validation), with the skipped labels' reasons.
    """
    lesion, empty, skipped, suspect = [], [], {}, {}
    for item in items:
        label = str(item.get("label", ""))
        try:
            share = _mask_lesion_share(str(item["image"]), label, encoding, len(class_names))
        except (UnreadableImageError, ValueError) as e:
            skipped[label] = str(e)
            continue
        if encoding == "binary" and share > MOST_LESION_SHARE:
            suspect[label] = (f"{share:.1%} of this binary mask is lesion: is it inverted (a white background)? "
                              "Lesion pixels must be non-zero and the background 0")
        entry = {"image": item["image"], "label": label, "id": image_identity(item)}
        (lesion if share > 0 else empty).append(entry)
    if len(lesion) < 2:
        blank = f" ({len(empty)} saved mask(s) have no lesion pixel)" if empty else ""
        raise ValueError(f"need at least 2 images whose saved mask shows a lesion (one for validation), found "
                         f"{len(lesion)}{blank}{skipped_text(skipped)}")
    train, validation = stable_split(lesion, ["masks with a lesion"] * len(lesion), val_fraction, seed, memory,
                                     "images")
    return write_split({"train": train + empty, "validation": validation, "test": []}, class_names, out,
                       "segmentation"), skipped, suspect


def _mask_lesion_share(image: str, label: str, encoding: str = "binary", num_classes: int = 2) -> float:
    """The share of the mask file ``label``'s pixels that are set (0 for a mask without a lesion); checks that it is
    a picture of its image's size.

    The mask is on the image file's stored pixel grid, where 3D Slicer and OHIF draw it and where served masks
    are (:meth:`BundleSegmenter.segment`); the bundle turns it by the image's EXIF orientation, as this check
    does (:class:`~monai_ext.transforms.masks.LoadMaskd`), and sizes are named as stored.

    Raises:
        ValueError: not a picture; UnreadableImageError: the mask or image cannot be read, or the sizes differ.
    """
    if is_mask_file(label) and not is_picture_mask(label):
        raise ValueError(f"{label}: a label map ({Path(label).name}), as 3D Slicer saves them, is not read: save "
                         "2-D masks as PNG label maps (0 background, 1 or 255 lesion)")
    if not is_picture_mask(label):
        raise ValueError(f"{label}: not a mask image (PNG/JPG/BMP/TIFF)")
    read = read_image(image)
    orientation = read.orientation
    mask = LoadMask(encoding, num_classes=num_classes if encoding == "index" else None).read_one(label, orientation)
    grid = resampled_grid(image)  # a DICOM of non-square pixels: read resampled, its mask on the stored grid
    size = grid if grid is not None else read.pixels.shape[:2]
    if mask.shape != size:
        (mask_h, mask_w), (image_h, image_w) = stored_shape(mask.shape, orientation), stored_shape(size, orientation)
        raise UnreadableImageError(f"{label}: mask size {mask_w}x{mask_h} (width x height) differs from its "
                                   f"image's {image_w}x{image_h} ({image}){orientation_note(orientation)}")
    return float(np.count_nonzero(mask)) / max(mask.size, 1)
