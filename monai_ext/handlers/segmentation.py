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
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from ignite.engine import Engine, Events

from monai_ext.engines.distributed import UnpaddedShardSampler, is_distributed, is_main_process, world_size
from monai_ext.handlers.reports import best_after_resume, is_new_best, skipped_items
from monai_ext.io.atomic import atomic_write_bytes
from monai_ext.io.figures import save_png
from monai_ext.io.images import unique_output_stems
from monai_ext.io.json_values import json_number, json_tree
from monai_ext.visualize.overlays import aspect_size, comparison_overlay
from monai_ext.visualize.reconstructions import enlarge

logger = logging.getLogger(__name__)
#: Report entry -> the evaluator metric holding its per-image (N, K - 1) details, after the part's prefix
#: (``val_mean_dice`` in training, ``test_mean_dice`` in evaluate.yaml's default).
DETAIL_METRICS = {"dice": "mean_dice", "iou": "mean_iou", "hd95": "hd95"}


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


def datalist_order(counts: Sequence[int]) -> list[int]:
    """Positions in the gathered (rank-major) order of the images in datalist order, for shards drawn as
    :class:`~monai_ext.engines.distributed.UnpaddedShardSampler` draws them (rank r's j-th image is image
    ``r + j * world``).

    Args:
        counts: the number of images of each rank, in rank order (the world is its length).

    Returns:
        ``order`` with ``gathered[order[i]]`` the datalist's i-th image.
    """
    world = len(counts)
    index = [r + j * world for r, count in enumerate(counts) for j in range(count)]
    return sorted(range(len(index)), key=index.__getitem__)


def _empty_truth(ids: Sequence[str], presence: np.ndarray, foreground: Sequence[str],
                 lost: np.ndarray | None = None) -> dict[str, Any]:
    """Per foreground class: the images whose truth lacks it and those of them where it was predicted anyway.

    MONAI's Dice and IoU (``ignore_empty=True``) are NaN for every such image, a false positive included, so these
    images are in no mean; this is where a false positive on a lesion-free (BUSI ``normal``) image shows.

    Args:
        ids: N image ids.
        presence: (N, 2, K - 1) bool, [:, 0] the class is in the truth, [:, 1] in the prediction.
        foreground: the K - 1 foreground class names.
        lost: optional (N, K - 1) bool, the class is in the mask file but not in the truth at the training size:
            those images are not lesion-free, and are left out here.
    """
    out = {}
    for c, name in enumerate(foreground):
        empty = ~presence[:, 0, c] & (~lost[:, c] if lost is not None else True)
        out[name] = {"images": int(empty.sum()),
                     "predicted": [ids[i] for i in np.flatnonzero(empty & presence[:, 1, c])]}
    return out


def segmentation_report(details: dict[str, torch.Tensor], ids: Sequence[str], class_names: Sequence[str],
                        presence: np.ndarray | None = None, loaded: np.ndarray | None = None) -> dict[str, Any]:
    """Per-image and per-class metrics from the metrics' gathered details.

    Args:
        details: ``{"dice" | "iou" | "hd95": (N, K - 1)}`` per image and foreground class.
        ids: N image ids in the same order.
        class_names: K names, background first.
        presence: optional (N, 2, K - 1) bool, whether each foreground class is in the truth ([:, 0]) and in the
            prediction ([:, 1]) of each image.
        loaded: optional (N, K - 1) bool, whether each foreground class is in the mask at its own size (before the
            resize to the training size; ``LoadMaskd(record_presence=True)``); used with ``presence`` only.

    Returns:
        JSON-serialisable dict: n, per-class means (finite values only), ``mean_*`` reduced as MONAI's metrics
        are (:func:`_image_then_class_mean`: the logged ``val_mean_*``), per-image values (None where undefined:
        Dice and IoU when a class is absent from the ground truth, whatever was predicted (MONAI's ``ignore_empty``),
        HD95 when it is absent from either), ``hd95_undefined``, the number of (image, class) pairs without a
        distance, and with ``presence`` ``empty_truth``: per class, the number of images without it in the truth
        and the ids of those where it was predicted (false positives that no Dice or IoU counts), and with
        ``loaded`` too ``lost_in_resize``: per class, the ids of the images whose mask holds it but whose truth at
        the training size does not (a lesion too small for that size; no Dice, and not in ``empty_truth``).
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
        lost = None
        if loaded is not None:
            if loaded.shape != (len(ids), len(foreground)):
                raise ValueError(f"loaded has shape {loaded.shape!r}, expected {(len(ids), len(foreground))!r}")
            lost = loaded.astype(bool) & ~presence[:, 0]
            report["lost_in_resize"] = {name: [ids[i] for i in np.flatnonzero(lost[:, c])]
                                        for c, name in enumerate(foreground)}
        report["empty_truth"] = _empty_truth(ids, presence, foreground, lost)
    for i, image_id in enumerate(ids):
        entry: dict[str, Any] = {"id": image_id}
        for key, array in arrays.items():
            entry[key] = {name: json_number(array[i, c]) for c, name in enumerate(foreground)}
        report["per_image"].append(entry)
    return report


def _size_of(value: Any) -> tuple[int, ...] | None:
    """An item's recorded (H, W) as ints, None where it has none."""
    return None if value is None else tuple(int(s) for s in torch.as_tensor(value).reshape(-1).tolist())


def overlay_panel(image: np.ndarray, prediction: np.ndarray, truth: np.ndarray,
                  original: Sequence[int] | None = None) -> np.ndarray:
    """A scored image's comparison overlay (:func:`~monai_ext.visualize.overlays.comparison_overlay`), enlarged as
    the reconstruction grids are (at network size, 64 px, a 1-px outline is hard to see).

    Args:
        image: (h, w) at the training size, any range.
        prediction: (h, w) class indices.
        truth: (h, w) class indices.
        original: the image's (H, W) as read: the panel is drawn in that aspect, its shorter side as long as the
            enlarged square's, with outlines as thick as the enlargement makes them; None: the square, enlarged.

    Returns:
        (rows, 2 cols, 3) uint8 RGB.
    """
    factor = max(1, -(-192 // image.shape[0]))  # enlarge()'s factor for the square panel
    if original is None:
        return enlarge(comparison_overlay(image, prediction, truth)[None])[0]
    size = aspect_size(original, image.shape[0] * factor)
    return comparison_overlay(image, prediction, truth, size=size, thickness=factor)


def score_text(score: float) -> str:
    """A mean Dice for a console line: ``undefined`` where it is NaN (no image's truth holds a lesion, as in a test
    part of lesion-free images), as cross-validate's lines say; "Dice nan" read as a failed run."""
    return f"{score}" if math.isfinite(score) else "undefined"


def report_counts(report: dict[str, Any]) -> str:
    """What a report's mean Dice is over, for the lines that print it: the images with a defined Dice (a class in
    their truth), of all, and per class the images whose truth lacks it and where it was predicted anyway.

    The mean leaves out lesion-free images, a false positive on one included (MONAI's ``ignore_empty``): printed
    beside ``n`` alone, a Dice over 2 of 3 images read as over all 3, and the false positive went unseen.
    """
    defined = sum(any(value is not None for value in entry.get("dice", {}).values()) for entry in report["per_image"])
    text = f"Dice over {defined} of {report['n']} image(s)"
    for name, empty in report.get("empty_truth", {}).items():
        if empty["images"]:
            text += f"; {empty['images']} without {name}, {len(empty['predicted'])} of them with {name} predicted"
    return text


class SegmentationReportWriter:
    """After an evaluation, write ``<prefix>report.json`` and ``<prefix>overlays/<id>.png`` for ``num_overlays`` images
    (``/`` in the id as ``_``; a name too long for the filesystem is cut, :func:`~monai_ext.io.images.unique_output_stems`).

    Args:
        output_dir: folder of the files.
        class_names: K names, background first.
        key_metric: the Dice metric's name (the model-selection metric); ``<metric_prefix>mean_dice`` if None.
        prefix: file-name prefix (e.g. "test_").
        metric_prefix: the part in the evaluator's metric names, ``val_`` (``val_mean_dice``, ``val_mean_iou``,
            ``val_hd95``) or, in evaluate.yaml, the part scored (``test_``).
        size_key: the batch field holding each image's (H, W) as read; where the items have it, an overlay is drawn
            in the image's own aspect (:func:`~monai_ext.visualize.overlays.aspect_size`), not as the square it was
            scored at (a 40 x 600 strip was drawn square, its lesions squeezed into other shapes).
        num_overlays: images (of rank 0's shard, in loader order) drawn with prediction (red) and truth (green);
            ``per_image`` lists every image in datalist order, whatever the number of ranks.
        best_only: write only when the key metric improves on the best so far (during training).
        id_key: the batch field naming each image.
        present_key: the batch field holding which foreground classes each mask holds at its own size
            (``LoadMaskd(record_presence=True)``); where the items have it, images whose lesion the resize to the
            training size removed are listed under ``lost_in_resize`` (with a warning) instead of ``empty_truth``.

    The best so far is saved in training checkpoints (``state_dict``): a resumed run does not replace the best
    epoch's report and overlays by a worse one's: it restores the higher of the checkpoint's best and the report on
    disk (:func:`~monai_ext.handlers.reports.best_after_resume`). A non-finite score is never the best.
    """

    def __init__(self, output_dir: str | os.PathLike, class_names: Sequence[str], key_metric: str | None = None,
                 prefix: str = "", num_overlays: int = 4, best_only: bool = False, id_key: str = "id",
                 present_key: str = "label_present", metric_prefix: str = "val_",
                 size_key: str = "original_size") -> None:
        if num_overlays < 0:
            raise ValueError(f"num_overlays must be >= 0, got {num_overlays!r}")
        self.folder, self.class_names = Path(output_dir), list(class_names)
        self.metric_prefix = metric_prefix
        self.key_metric = key_metric if key_metric is not None else f"{metric_prefix}mean_dice"
        self.prefix, self.num_overlays = prefix, num_overlays
        self.best_only, self.id_key, self.present_key, self.size_key = best_only, id_key, present_key, size_key
        self.best: float | None = None
        self.last_report: dict[str, Any] | None = None
        self._ids: list[str] = []
        self._presence: list[np.ndarray] = []  # per image (2, K - 1): foreground class in truth, in prediction
        self._loaded: list[np.ndarray] = []  # per image (K - 1,): foreground class in the mask at its own size
        self._size: tuple[int, ...] = ()  # the truth's (H, W) at the training size, for the warning
        self._warned_lost: set[str] = set()  # said once per image, not at every validation of a training
        # (id, image, prediction, truth, (H, W) as read or None) of the first images, for overlays
        self._samples: list[tuple[str, np.ndarray, np.ndarray, np.ndarray, tuple[int, ...] | None]] = []

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_STARTED, self._reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._collect)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def _reset(self, engine: Engine) -> None:
        self._ids, self._presence, self._loaded, self._samples = [], [], [], []

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
            if item.get(self.present_key) is not None:
                self._loaded.append(torch.as_tensor(item[self.present_key]).bool().reshape(-1).cpu().numpy())
            if not isinstance(output, list):
                continue
            out = output[index]
            # one-hot (K, H, W) after the postprocessing; background (channel 0) left out as by the metrics
            self._presence.append(np.stack([torch.as_tensor(out[key])[1:].flatten(1).any(dim=1).cpu().numpy()
                                            for key in ("label", "pred")]))
            self._size = tuple(torch.as_tensor(out["label"]).shape[1:])
            if is_main_process() and len(self._samples) < self.num_overlays:
                self._samples.append((
                    image_id,
                    torch.as_tensor(out["image"])[0].detach().float().cpu().numpy(),
                    torch.as_tensor(out["pred"]).argmax(dim=0).cpu().numpy(),
                    torch.as_tensor(out["label"]).argmax(dim=0).cpu().numpy(),
                    _size_of(item.get(self.size_key)),
                ))

    def __call__(self, engine: Engine) -> None:
        ids = gather_ids(self._ids)  # every rank takes part, whatever it then writes
        presence = gather_ids(self._presence)
        loaded = gather_ids(self._loaded)
        order = self._datalist_order(engine)
        if order is not None:
            ids, presence, loaded = ([part[i] for i in order] if len(part) == len(order) else part
                                     for part in (ids, presence, loaded))
        loaded_array = np.stack(loaded) if loaded and len(loaded) == len(ids) else None
        if self.best_only and presence and not np.stack(presence)[:, 0].any():
            # whether the truth holds a class never changes between epochs: say so now, not after the last one
            raise ValueError(self._no_lesion_message(engine, len(ids), loaded_array))
        if is_main_process() and loaded_array is not None and len(presence) == len(ids):
            # said whether or not this epoch's report is written: it is about the data, not the scores
            self._warn_of_lost_lesions(ids, loaded_array & ~np.stack(presence)[:, 0])
        score = float(engine.state.metrics[self.key_metric])
        if self.best_only and not is_new_best(score, self.best):
            return
        self.best = score
        names = {key: self.metric_prefix + name for key, name in DETAIL_METRICS.items()}
        details = {key: engine.state.metric_details[name] for key, name in names.items()
                   if name in getattr(engine.state, "metric_details", {})}
        if order is not None:  # MONAI's gathered per-image buffers are rank-major too
            details = {key: torch.as_tensor(value)[torch.as_tensor(order)] if len(value) == len(order) else value
                       for key, value in details.items()}
        report = {"key_metric": self.key_metric, "score": score, **segmentation_report(details, ids, self.class_names,
                                                       np.stack(presence) if len(presence) == len(ids) else None,
                                                       loaded_array),
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
        for (image_id, image, prediction, truth, original), name in zip(self._samples, names):
            save_png(overlay_panel(image, prediction, truth, original),
                     self.folder / f"{self.prefix}overlays" / f"{name}.png")
        logger.info("segmentation report: %s (n %d, %d unreadable left out; Dice %.4f, IoU %s, HD95 %s; %s)",
                    self.folder / f"{self.prefix}report.json", report["n"], len(report["skipped"]), score,
                    report.get("mean_iou"), report.get("mean_hd95"), report_counts(report))

    def _datalist_order(self, engine: Engine) -> list[int] | None:
        """The permutation putting the gathered (rank-major) per-image records in datalist order, or None where
        they are in it already (one process) or the shards are not :class:`UnpaddedShardSampler`'s.

        Under torchrun the records came rank by rank (``us_000001, us_000019, us_000008, ...`` on 2 ranks against
        ``us_000001, us_000015, us_000019, ...`` in one process): reports of one model on 1, 2 or 3 GPUs listed their
        images in different orders. Every rank takes part (a collective).
        """
        if not is_distributed():
            return None
        counts = [int(n) for n in gather_ids([len(self._ids)])]
        loader = getattr(engine.state, "dataloader", None)
        return datalist_order(counts) if isinstance(getattr(loader, "sampler", None), UnpaddedShardSampler) else None

    def _no_lesion_message(self, engine: Engine, count: int, loaded: np.ndarray | None) -> str:
        """Why no epoch can be the best when no validation truth holds a lesion, with what may have caused it: masks
        whose lesion the resize removed, and items left out as unreadable (a wrong --mask_encoding leaves out the
        masks with lesions and said only that the few left had none)."""
        message = f"none of the {count} validation masks holds a foreground class ({', '.join(self.class_names[1:])})"
        lost = int(loaded.any(axis=1).sum()) if loaded is not None else 0
        if lost:
            message += (f" at the training size {'x'.join(map(str, self._size))} ({lost} hold one that the resize to "
                        "it removes: a larger --image_size may keep it)")
        message += (": Dice and IoU are undefined at every epoch, so no epoch can be chosen as the best; give the "
                    "validation part images with lesions")
        skipped = skipped_items(engine)
        if skipped:
            message += (f"; {len(skipped)} more validation item(s) were left out as unreadable, the first "
                        f"{skipped[0].get('image')!r}: {skipped[0].get('reason')}")
        return message

    def _warn_of_lost_lesions(self, ids: Sequence[str], lost: np.ndarray) -> None:
        """Name the images whose lesion the resize to the training size removed (once each in a training): their
        truth there is empty, so they have no Dice and would have read as lesion-free images with a false positive.

        Args:
            ids: N image ids.
            lost: (N, K - 1) bool, the class is in the mask file but not in the truth at the training size.
        """
        for c, name in enumerate(self.class_names[1:]):
            new = [ids[i] for i in np.flatnonzero(lost[:, c]) if f"{name}/{ids[i]}" not in self._warned_lost]
            if not new:
                continue
            self._warned_lost.update(f"{name}/{image_id}" for image_id in new)
            logger.warning("%d image(s) hold a %s region that the resize to the training size %s removes, so they "
                           "have no Dice and are listed under lost_in_resize, not empty_truth (a model trained at a "
                           "larger --image_size may keep it): %s",
                           len(new), name, "x".join(map(str, self._size)), ", ".join(new))

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.best = best_after_resume(state.get("best"), self.folder / f"{self.prefix}report.json", "score")
