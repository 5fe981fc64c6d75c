"""Segmentation engine parts: the fine-tuning trainer, the per-image metric collector's inputs, and whole-image
inference at the training size with the mask brought back to the original image size."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from ignite.engine import Events
from monai.engines import SupervisedEvaluator
from monai.engines.utils import IterationEvents
from monai.utils import CommonKeys
from tqdm import tqdm

from monai_ext.engines.base import RobustStepTrainer, ShardSafeEvaluatorMixin, autocast, batch_images
from monai_ext.engines.distributed import gather_objects
from monai_ext.engines.inference import (
    PENDING_KEY,
    NonFiniteOutputError,
    applied_orientation,
    clear_earlier_outputs,
    frames_read,
    kept_results,
    make_output_folders,
    note_if_blank,
    note_if_several_frames,
    record_error,
    remove_earlier_outputs,
    require_finite_output,
    require_some_result,
)
from monai_ext.engines.metrics import require_finite_outputs
from monai_ext.io.errors import UnreadableImageError, root_cause
from monai_ext.io.figures import save_png
from monai_ext.io.images import to_stored_grid, unique_output_stems
from monai_ext.io.label_maps import LABEL_MAP_SUFFIXES, itk_pixel_spacing, label_map_suffix, save_label_map

logger = logging.getLogger(__name__)


class SegmentationEvaluator(ShardSafeEvaluatorMixin, SupervisedEvaluator):
    """MONAI's ``SupervisedEvaluator`` that also works when a rank's validation shard is empty (a validation set
    smaller than the number of GPUs; see :class:`~monai_ext.engines.base.ShardSafeEvaluatorMixin`), and that stops a
    validation whose network outputs are not finite.

    NaN logits arg-max to background everywhere, whose Dice is 0.0, not NaN: a fine-tune whose weights had diverged
    ended with exit code 0 and "best validation Dice: 0.0", its model saved and published by the label app, where
    every request then failed. The evaluator counts the images with a non-finite output as their logits come
    (before the arg-max) and raises at the end of the epoch, on every rank together and before the metrics and the
    handlers (the best-model saver above all) see it, as the classifier's metrics do.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._outputs: list[int] | None = None  # [images with a non-finite output, images] of this rank's epoch
        super().__init__(*args, **kwargs)
        self._count_nonfinite_outputs()  # neither metrics nor handlers: nothing else runs at EPOCH_COMPLETED

    # MONAI's Workflow registers the metrics, then the handlers, in its __init__: the check, registered by whichever
    # comes first, runs before both at EPOCH_COMPLETED
    def _register_metrics(self, k_metric: dict, add_metrics: dict | None = None) -> None:
        self._count_nonfinite_outputs()
        super()._register_metrics(k_metric, add_metrics)

    def _register_handlers(self, handlers: Sequence) -> None:
        self._count_nonfinite_outputs()
        super()._register_handlers(handlers)

    def _count_nonfinite_outputs(self) -> None:
        """Register the count and the check, once."""
        if self._outputs is not None:
            return
        self._outputs = [0, 0]
        self.add_event_handler(Events.EPOCH_STARTED, self._reset_output_count)
        self.add_event_handler(IterationEvents.FORWARD_COMPLETED, self._count_outputs)
        self.add_event_handler(Events.EPOCH_COMPLETED, self._require_finite_outputs)

    def _reset_output_count(self, engine: SegmentationEvaluator) -> None:
        self._outputs = [0, 0]

    def _count_outputs(self, engine: SegmentationEvaluator) -> None:
        """After the forward, before decollation and the arg-max: (N, K, H, W) logits."""
        logits = torch.as_tensor(engine.state.output[CommonKeys.PRED]).detach()
        self._outputs[0] += int((~torch.isfinite(logits)).reshape(len(logits), -1).any(dim=1).sum())
        self._outputs[1] += len(logits)

    def _require_finite_outputs(self, engine: SegmentationEvaluator) -> None:
        # every rank's counts, an empty shard's included: all ranks raise together, none waits in a later gather
        bad, total = (sum(counts) for counts in zip(*gather_objects(tuple(self._outputs))))
        require_finite_outputs(bad, total)


class SegmentationTrainer(RobustStepTrainer):
    """Supervised fine-tuning: ``logits = network(image)``, ``loss = loss_function(logits, label)``.

    The loss takes logits (N, K, H, W) and class-index labels (N, 1, H, W), as MONAI's ``DiceCELoss(to_onehot_y=True,
    softmax=True)`` does; it runs in float32 whatever the autocast dtype.

    Iteration output: ``{"image": (N, C, H, W), "label": (N, 1, H, W), "pred": (N, K, H, W) logits, "loss": scalar}``.
    """

    def forward_loss(self, engine: SegmentationTrainer, batchdata: Any) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        images = batch_images(batchdata, engine.state.device, engine.non_blocking)
        labels = torch.as_tensor(batchdata["label"]).to(engine.state.device, non_blocking=engine.non_blocking)
        logits = engine.network(images)
        loss = engine.loss_function(logits.float(), labels.long())
        return loss, {"image": images, "label": labels, "pred": logits.detach().float()}


def segment_image(network: torch.nn.Module, image: torch.Tensor, original_size: Sequence[int],
                  precision: str = "bf16") -> tuple[np.ndarray, np.ndarray]:
    """Whole-image inference at the training size, resized back to the original image.

    The class probabilities (not the hard mask) are resized bilinearly and then the arg-max taken, so borders stay
    smooth at the original resolution.

    Args:
        network: segmentation network in eval mode, logits (1, K, h, w) for the preprocessed image.
        image: (1, C, h, w) preprocessed image at the training size.
        original_size: (H, W) of the file as read.
        precision: autocast precision on CUDA.

    Returns:
        mask (H, W) uint8 class indices; probabilities (K, H, W) float32.

    Raises:
        NonFiniteOutputError: the network's logits hold NaN or inf.
    """
    with torch.no_grad(), autocast(image.device, precision):
        logits = network(image).float()
    require_finite_output(logits)  # NaN logits are background everywhere: "no lesion" for every image
    probs = torch.softmax(logits, dim=1)
    probs = F.interpolate(probs, size=tuple(int(s) for s in original_size), mode="bilinear", align_corners=False)
    return probs[0].argmax(dim=0).to(torch.uint8).cpu().numpy(), probs[0].cpu().numpy()


def mask_summary(mask: np.ndarray, class_names: Sequence[str]) -> dict[str, Any]:
    """Per-class pixel counts and area fractions of a (H, W) class-index mask (background included).

    Raises:
        ValueError: the mask holds a class index with no name (a network of more classes than ``class_names``):
            its pixels were left out of the summary, whose fractions then did not add up to 1.
    """
    counts = np.bincount(mask.reshape(-1), minlength=len(class_names))
    if len(counts) > len(class_names):
        raise ValueError(f"the mask holds class index {len(counts) - 1}, but only {len(class_names)} classes are "
                         f"named, {list(class_names)!r}")
    total = max(int(mask.size), 1)
    return {"size": list(mask.shape), "pixels": {n: int(c) for n, c in zip(class_names, counts)},
            "fraction": {n: float(c) / total for n, c in zip(class_names, counts)}}


def _overlay_of(mask_file: Path) -> Path:
    """``<out>/masks/<stem>_mask.png`` (or ``.tif``) -> ``<out>/overlays/<stem>_overlay.png``."""
    stem = mask_file.name
    for suffix in LABEL_MAP_SUFFIXES:
        stem = stem.removesuffix(f"_mask{suffix}")
    return _overlay_file(mask_file.parent.parent, stem)


def _overlay_file(out: Path, stem: str) -> Path:
    return out / "overlays" / f"{stem}_overlay.png"


def _mask_files(out: Path, stem: str) -> list[Path]:
    """The names a mask of ``stem`` may take, one per :data:`~monai_ext.io.label_maps.LABEL_MAP_SUFFIXES`: which one
    is written depends on the image's pixel size, known once it is read."""
    return [out / "masks" / f"{stem}_mask{suffix}" for suffix in LABEL_MAP_SUFFIXES]


def predict_mask_files(
    network: torch.nn.Module,
    files: Sequence[str | os.PathLike],
    load: Callable[[dict[str, Any]], dict[str, Any]],
    preprocess: Callable[[dict[str, Any]], dict[str, Any]],
    class_names: Sequence[str],
    device: torch.device | str,
    output_dir: str | os.PathLike,
    precision: str = "bf16",
    overlays: bool = False,
    weights: str | None = None,
) -> dict[str, Any]:
    """Segment every file; unreadable ones are listed with the reason and skipped.

    Writes ``<output_dir>/masks/<stem>_mask.png`` (uint8 class indices at the original size, the label-map that
    3D Slicer and OHIF display), or ``<stem>_mask.tif`` carrying the image's pixel size where ITK reads one from the
    image (a DICOM's ``PixelSpacing``, a JPEG's or TIFF's dots per inch), as the MONAI Label app serves masks
    (:mod:`monai_ext.io.label_maps`): 3D Slicer places the image by that size and a PNG mask at 1 mm a pixel, several
    times the image's size. Also optional ``<output_dir>/overlays/<stem>_overlay.png``, and ``masks.json``; ``stem``
    is the file's name without suffix, or a longer distinct one where inputs share it
    (:func:`~monai_ext.io.images.unique_output_stems`). The names of an input's outputs are this run's: a mask of
    the other suffix there (of an earlier run on an image of another format) is removed when its mask is written,
    and both, with the overlay, when the input fails.

    Masks are on the file's stored pixel grid, where those viewers show the image and where training reads masks
    (:class:`~monai_ext.transforms.masks.LoadMaskd`): a picture with an EXIF orientation is segmented upright and
    its mask turned back; its overlay, a picture of its own, is drawn upright.

    Args:
        network: segmentation network.
        files: image paths (any format the single-image loader reads).
        load: reads ``{"image": path}`` into ``{"image": (1, H, W)}`` at the original size.
        preprocess: the bundle's resize + normalisation for a loaded item.
        class_names: K names, background first.
        device: where to run.
        output_dir: folder of the results.
        precision: autocast precision on CUDA.
        overlays: also write a colour overlay of the mask on the image.
        weights: the checkpoint the network holds, recorded as ``"weights"`` from the first write on.

    Returns:
        ``{"class_names", "masks": {path: {"mask": file, "size", "pixels", "fraction"[, "pixel_spacing_mm"]
        [, "warning"][, "frames", "frame"]}}, "errors": {path: reason}[, "weights"], "complete": true}``; a TIFF
        mask's entry gives the pixel size it carries as (rows, columns) in mm, as the served summary and DICOM's
        ``PixelSpacing`` do; a file whose mask (or overlay) could not be written is under ``errors``, a blank
        image's entry carries a ``warning`` (:func:`~monai_ext.engines.inference.note_if_blank`), and that of a file
        of several frames their number and the index of the one segmented (0, or a volume's first slice with
        content: :func:`~monai_ext.engines.inference.note_if_several_frames`, when ``load`` records them).
        ``masks.json`` is written whatever single files do, and kept while the batch runs
        (:func:`~monai_ext.engines.inference.kept_results`).

    Raises:
        FileExistsError: ``output_dir`` (or its ``masks`` / ``overlays`` folder) is an existing file, before any
            file is segmented.
        ValueError: no file gave a mask (the JSON is written first).
    """
    from monai_ext.visualize.overlays import mask_overlay

    if not files:
        raise ValueError("no input files to segment")
    device, out = torch.device(device), Path(output_dir)
    make_output_folders(out, out / "masks", *([out / "overlays"] if overlays else []))
    network.eval()
    stems = unique_output_stems(files)
    result: dict[str, Any] = {"class_names": list(class_names), "masks": {}, "errors": {},
                              **({"weights": weights} if weights is not None else {}),
                              # until the run completes: the files it may write, a mask under either suffix (a rerun
                              # after a kill removes them)
                              PENDING_KEY: [os.path.abspath(f) for stem in stems for f in
                                            [*_mask_files(out, stem), *([_overlay_file(out, stem)] if overlays else [])]]}
    clear_earlier_outputs(out / "masks.json", "masks", ["mask"], lambda mask: [_overlay_of(mask)])
    with kept_results(out / "masks.json", result) as one_more_file:
        for path, stem in zip(tqdm(files, desc="segment", unit="image"), stems):
            one_more_file()
            mask_files = _mask_files(out, stem)
            overlay_file = _overlay_file(out, stem)
            try:
                loaded = load({"image": str(path)})
                original = np.asarray(loaded["image"])[0]
                image = torch.as_tensor(preprocess(loaded)["image"]).float()[None].to(device)
            except Exception as e:  # noqa: BLE001 - one bad file must not stop the batch
                record_error(result, path, root_cause(e))
                remove_earlier_outputs(*mask_files, overlay_file)
                continue
            try:
                mask, _ = segment_image(network, image, original.shape, precision)
            except NonFiniteOutputError as e:
                record_error(result, path, str(e))
                remove_earlier_outputs(*mask_files, overlay_file)
                continue
            try:  # the overlay is a picture: drawn upright, on square pixels
                stored = to_stored_grid(mask, path, applied_orientation(loaded, path))
            except UnreadableImageError as e:  # the header read again for the stored grid failed (the file replaced
                # since it was read): this file fails, the batch goes on
                record_error(result, path, str(e))
                remove_earlier_outputs(*mask_files, overlay_file)
                continue
            spacing = itk_pixel_spacing(path, stored.shape)  # where 3D Slicer places the image (None: a PNG)
            mask_file = out / "masks" / f"{stem}_mask{label_map_suffix(spacing)}"
            try:
                save_label_map(stored, mask_file, spacing)
                # the other suffix's mask of this name, an earlier run's of an image in another format, would be
                # loaded by name beside this one
                remove_earlier_outputs(*(f for f in mask_files if f != mask_file))
                if overlays:
                    # the loader's display values as they are: stretched, a dim scan was drawn brighter
                    save_png(mask_overlay(original, mask, stretch=False), overlay_file)
            except OSError as e:  # a full disk or a name the filesystem refuses: this file fails, the batch goes on
                record_error(result, path, f"mask not written: {type(e).__name__}: {e}")
                remove_earlier_outputs(*mask_files, overlay_file)
                continue
            # absolute: the JSON is read (and its earlier outputs cleared) from whatever folder a later run starts in
            entry = result["masks"][str(path)] = {"mask": os.path.abspath(mask_file), **mask_summary(stored,
                                                                                                      class_names)}
            if spacing is not None:
                entry["pixel_spacing_mm"] = [round(spacing[1], 6), round(spacing[0], 6)]  # (rows, columns) as DICOM
            note_if_blank(entry, path, image)
            note_if_several_frames(entry, path, *frames_read(loaded))
    logger.info("%d masks, %d errors: %s", len(result["masks"]), len(result["errors"]), out / "masks.json")
    require_some_result(len(result["masks"]), result["errors"], "masks", out / "masks.json")
    return result
