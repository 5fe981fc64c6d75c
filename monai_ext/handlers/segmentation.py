"""Segmentation reports after an evaluation: per-image and per-class Dice, IoU and HD95 as JSON, and PNG overlays of
prediction against ground truth for a sample of images.

The numbers are MONAI's own (``MeanDice``, ``MeanIoUHandler``, ``HausdorffDistance`` with ``save_details``): their
per-image buffers are gathered over ranks by MONAI (``evenly_divisible_all_gather``, exact for unequal shards), and
this handler gathers the matching image ids in the same rank order, so every validation image appears once.
Unreadable images are left out of the evaluation by the dataset (never replaced by another) and listed under
``skipped`` with their reason.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from ignite.engine import Engine, Events

from monai_ext.engines.distributed import is_distributed, is_main_process, world_size
from monai_ext.handlers.reports import best_after_resume, is_new_best, skipped_items
from monai_ext.io.atomic import atomic_write_bytes
from monai_ext.io.figures import save_png
from monai_ext.io.images import unique_output_stems
from monai_ext.io.json_values import json_number, json_tree
from monai_ext.visualize.overlays import comparison_overlay
from monai_ext.visualize.reconstructions import enlarge

logger = logging.getLogger(__name__)
#: Report entry -> the evaluator metric holding its per-image (N, K - 1) details.
DETAIL_METRICS = {"dice": "val_mean_dice", "iou": "val_mean_iou", "hd95": "val_hd95"}


def _finite_mean(values: np.ndarray) -> float | None:
    """Mean over finite values (NaN: Dice and IoU of a class absent from the truth, HD95 of one absent from
    either mask), None if none."""
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if finite.size else None


def _image_then_class_mean(values: np.ndarray) -> float | None:
    """MONAI's ``"mean"`` reduction of (N, K - 1) values: each image's mean over its defined (finite) classes, then
    the mean over the images with any; None if no value is defined. The logged ``val_mean_*`` metrics reduce so,
    and the report's ``mean_*`` must be the same number (a mean over every (image, class) pair weights an image by
    its classes present, and differs as soon as an image holds two of them)."""
    finite = np.isfinite(values)
    defined = finite.any(axis=1)
    if not defined.any():
        return None
    per_image = np.where(finite, values, 0.0)[defined].sum(axis=1) / finite[defined].sum(axis=1)
    return float(per_image.mean())


def gather_ids(ids: list[Any]) -> list[Any]:
    """Every rank's ids (or per-image records) concatenated in rank order (the order of MONAI's gathered buffers)."""
    if not is_distributed():
        return list(ids)
    parts: list[Any] = [None] * world_size()
    dist.all_gather_object(parts, list(ids))
    return [i for part in parts for i in part]


def _empty_truth(ids: Sequence[str], presence: np.ndarray, foreground: Sequence[str]) -> dict[str, Any]:
    """Per foreground class: the images whose truth lacks it and those of them where it was predicted anyway.

    MONAI's Dice and IoU (``ignore_empty=True``) are NaN for every such image, a false positive included, so these
    images are in no mean; this is where a false positive on a lesion-free (BUSI ``normal``) image shows.

    Args:
        ids: N image ids.
        presence: (N, 2, K - 1) bool, [:, 0] the class is in the truth, [:, 1] in the prediction.
        foreground: the K - 1 foreground class names.
    """
    out = {}
    for c, name in enumerate(foreground):
        empty = ~presence[:, 0, c]
        out[name] = {"images": int(empty.sum()),
                     "predicted": [ids[i] for i in np.flatnonzero(empty & presence[:, 1, c])]}
    return out


def segmentation_report(details: dict[str, torch.Tensor], ids: Sequence[str], class_names: Sequence[str],
                        presence: np.ndarray | None = None) -> dict[str, Any]:
    """Per-image and per-class metrics from the metrics' gathered details.

    Args:
        details: ``{"dice" | "iou" | "hd95": (N, K - 1)}`` per image and foreground class.
        ids: N image ids in the same order.
        class_names: K names, background first.
        presence: optional (N, 2, K - 1) bool, whether each foreground class is in the truth ([:, 0]) and in the
            prediction ([:, 1]) of each image.

    Returns:
        JSON-serialisable dict: n, per-class means (finite values only), ``mean_*`` reduced as MONAI's metrics
        are (:func:`_image_then_class_mean`: the logged ``val_mean_*``), per-image values (None where undefined:
        Dice and IoU when a class is absent from the ground truth, whatever was predicted (MONAI's ``ignore_empty``),
        HD95 when it is absent from either), ``hd95_undefined``, the number of (image, class) pairs without a
        distance, and with ``presence`` ``empty_truth``: per class, the number of images without it in the truth
        and the ids of those where it was predicted (false positives that no Dice or IoU counts).
    """
    foreground = list(class_names[1:])
    arrays = {k: v.detach().float().cpu().reshape(len(ids), -1).numpy() for k, v in details.items()}
    for key, array in arrays.items():
        if array.shape != (len(ids), len(foreground)):
            raise ValueError(f"{key} details have shape {array.shape!r}, expected {(len(ids), len(foreground))!r}")
    report: dict[str, Any] = {"n": len(ids), "class_names": list(class_names), "per_class": {}, "per_image": []}
    for c, name in enumerate(foreground):
        report["per_class"][name] = {key: _finite_mean(array[:, c]) for key, array in arrays.items()}
    for key, array in arrays.items():
        report[f"mean_{key}"] = _image_then_class_mean(array)
    if "hd95" in arrays:  # distances are undefined where the class is missing from the prediction or the truth
        report["hd95_undefined"] = int((~np.isfinite(arrays["hd95"])).sum())
    if presence is not None:
        if presence.shape != (len(ids), 2, len(foreground)):
            raise ValueError(f"presence has shape {presence.shape!r}, expected {(len(ids), 2, len(foreground))!r}")
        report["empty_truth"] = _empty_truth(ids, presence, foreground)
    for i, image_id in enumerate(ids):
        entry: dict[str, Any] = {"id": image_id}
        for key, array in arrays.items():
            entry[key] = {name: json_number(array[i, c]) for c, name in enumerate(foreground)}
        report["per_image"].append(entry)
    return report


class SegmentationReportWriter:
    """After an evaluation, write ``<prefix>report.json`` and ``<prefix>overlays/<id>.png`` for ``num_overlays`` images
    (``/`` in the id as ``_``; a name too long for the filesystem is cut, :func:`~monai_ext.io.images.unique_output_stems`).

    Args:
        output_dir: folder of the files.
        class_names: K names, background first.
        key_metric: the Dice metric's name (the model-selection metric).
        prefix: file-name prefix (e.g. "test_").
        num_overlays: images (of rank 0's shard, in loader order) drawn with prediction (red) and truth (green).
        best_only: write only when the key metric improves on the best so far (during training).
        id_key: the batch field naming each image.

    The best so far is saved in training checkpoints (``state_dict``): a resumed run does not replace the best
    epoch's report and overlays by a worse one's: it restores the higher of the checkpoint's best and the report on
    disk (:func:`~monai_ext.handlers.reports.best_after_resume`). A non-finite score is never the best.
    """

    def __init__(self, output_dir: str | os.PathLike, class_names: Sequence[str], key_metric: str = "val_mean_dice",
                 prefix: str = "", num_overlays: int = 4, best_only: bool = False, id_key: str = "id") -> None:
        if num_overlays < 0:
            raise ValueError(f"num_overlays must be >= 0, got {num_overlays!r}")
        self.folder, self.class_names = Path(output_dir), list(class_names)
        self.key_metric, self.prefix, self.num_overlays = key_metric, prefix, num_overlays
        self.best_only, self.id_key = best_only, id_key
        self.best: float | None = None
        self.last_report: dict[str, Any] | None = None
        self._ids: list[str] = []
        self._presence: list[np.ndarray] = []  # per image (2, K - 1): foreground class in truth, in prediction
        self._samples: list[tuple[str, np.ndarray, np.ndarray, np.ndarray]] = []

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_STARTED, self._reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._collect)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def _reset(self, engine: Engine) -> None:
        self._ids, self._presence, self._samples = [], [], []

    def _collect(self, engine: Engine) -> None:
        """Record the ids of this iteration's images, which foreground classes their truth and prediction hold, and,
        on rank 0, keep the first few for overlays."""
        batch, output = engine.state.batch, engine.state.output
        items = batch if isinstance(batch, list) else [batch]  # decollated by the evaluator
        for index, item in enumerate(items):
            # "is None", not "or": an id of 0 (a datalist numbering its images) is an id
            image_id = next((str(v) for v in (item.get(self.id_key), item.get("image_path")) if v is not None),
                            str(len(self._ids)))
            self._ids.append(image_id)
            if not isinstance(output, list):
                continue
            out = output[index]
            # one-hot (K, H, W) after the postprocessing; background (channel 0) left out as by the metrics
            self._presence.append(np.stack([torch.as_tensor(out[key])[1:].flatten(1).any(dim=1).cpu().numpy()
                                            for key in ("label", "pred")]))
            if is_main_process() and len(self._samples) < self.num_overlays:
                self._samples.append((
                    image_id,
                    torch.as_tensor(out["image"])[0].detach().float().cpu().numpy(),
                    torch.as_tensor(out["pred"]).argmax(dim=0).cpu().numpy(),
                    torch.as_tensor(out["label"]).argmax(dim=0).cpu().numpy(),
                ))

    def __call__(self, engine: Engine) -> None:
        ids = gather_ids(self._ids)  # every rank takes part, whatever it then writes
        presence = gather_ids(self._presence)
        if self.best_only and presence and not np.stack(presence)[:, 0].any():
            # whether the truth holds a class never changes between epochs: say so now, not after the last one
            raise ValueError(f"none of the {len(ids)} validation masks holds a foreground class "
                             f"({', '.join(self.class_names[1:])}): Dice and IoU are undefined at every epoch, so "
                             "no epoch can be chosen as the best; give the validation part images with lesions")
        score = float(engine.state.metrics[self.key_metric])
        if self.best_only and not is_new_best(score, self.best):
            return
        self.best = score
        details = {key: engine.state.metric_details[name] for key, name in DETAIL_METRICS.items()
                   if name in getattr(engine.state, "metric_details", {})}
        report = {"key_metric": self.key_metric, "score": score, **segmentation_report(details, ids, self.class_names,
                                                       np.stack(presence) if len(presence) == len(ids) else None),
                  "skipped": skipped_items(engine)}
        self.last_report = report
        if not is_main_process():
            return
        # strict JSON: a set without lesions has no Dice (NaN), written null, as the per-image scores are
        atomic_write_bytes(self.folder / f"{self.prefix}report.json",
                           json.dumps(json_tree(report), indent=1, allow_nan=False).encode())
        # an earlier run's overlays (another model, another dataset) would sit beside this report's as if its own
        for old in (self.folder / f"{self.prefix}overlays").glob("*.png"):
            old.unlink(missing_ok=True)
        # ids may be whole paths (a datalist without "id"): flattened, then cut to a name the filesystem takes
        names = unique_output_stems([image_id.replace("/", "_") for image_id, *_ in self._samples])
        for (image_id, image, prediction, truth), name in zip(self._samples, names):
            # enlarged as the reconstruction grids are: at network size (64 px) a 1-px outline is hard to see
            overlay = enlarge(comparison_overlay(image, prediction, truth)[None])[0]
            save_png(overlay, self.folder / f"{self.prefix}overlays" / f"{name}.png")
        logger.info("segmentation report: %s (n %d, %d unreadable left out; Dice %.4f, IoU %s, HD95 %s)",
                    self.folder / f"{self.prefix}report.json", report["n"], len(report["skipped"]), score,
                    report.get("mean_iou"), report.get("mean_hd95"))

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.best = best_after_resume(state.get("best"), self.folder / f"{self.prefix}report.json", "score")
