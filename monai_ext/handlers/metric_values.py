"""MONAI's segmentation metric handlers, giving NaN instead of 0.0 when no image has a value.

MONAI's ``do_metric_reduction`` averages the finite per-image values and gives 0.0 when there are none: the HD95 of a
model that predicts no lesion anywhere (usual in early epochs with few labels) read as 0.0, a perfect distance, in
the log, ``metrics.json`` and MLflow; so did the Dice of a validation set without any lesion, which MONAI's evaluator
then took as its best. These subclasses change only that case, inside the metric, so every consumer (the evaluator's
best-metric record included, which runs before any handler) sees NaN.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import torch
from ignite.engine import Engine
from monai.handlers import HausdorffDistance, MeanDice, MeanIoUHandler
from monai.utils import MetricReduction, evenly_divisible_all_gather, look_up_option

from monai_ext.engines.distributed import is_distributed
from monai_ext.handlers.reports import is_new_best

logger = logging.getLogger(__name__)


class _NaNWhenUndefined:
    """Mixin for a MONAI ``IgniteMetricHandler`` over a cumulative per-image metric: ``compute`` gives NaN when none
    of the (N, C) per-image values of the epoch (gathered from every rank) is finite, else the mean of MONAI's "mean"
    reduction computed exactly (:func:`mean_over_images`; other reductions are MONAI's own); a rank without images
    takes part (:func:`join_from_an_empty_shard`)."""

    metric_fn: Any
    _name: str | None

    def compute(self) -> Any:
        join_from_an_empty_shard(self.metric_fn)
        result = super().compute()  # type: ignore[misc]
        values = torch.as_tensor(self.metric_fn.get_buffer())
        if values.numel() and torch.isfinite(values).any():
            if look_up_option(self.metric_fn.reduction, MetricReduction) == MetricReduction.MEAN:
                return mean_over_images(values)
            return result
        logger.info("%s is undefined for every image (Dice and IoU need the class in the truth, HD95 in both masks):"
                    " NaN, not MONAI's 0.0", self._name)
        return math.nan


def mean_over_images(values: torch.Tensor) -> float:
    """MONAI's "mean" reduction of (N, C) per-image values: the mean over the classes an image defines (not NaN),
    then over the images that define any; NaN when none does. Exactly rounded (``math.fsum`` in float64), so the
    same whatever the images' order.

    MONAI sums in float32 in the order of its gathered buffer, which under torchrun is rank by rank (rank 0's
    images 0, 2, 4, ..., then rank 1's), not the datalist's: the same per-image Dice of 7 validation images gave
    0.1828237921 on 2 ranks and 0.1828238070 in one process, and the report written with it said ``score``
    0.1828237921 beside its own ``mean_dice`` 0.1828238091.

    Args:
        values: (N, C) or (N,) per-image values, NaN where an image does not define a class.
    """
    rows = values.detach().to("cpu", torch.float64).reshape(values.shape[0], -1).tolist() if values.ndim else []
    per_image = []
    for row in rows:
        defined = [v for v in row if not math.isnan(v)]
        if defined:
            per_image.append(math.fsum(defined) / len(defined))
    return math.fsum(per_image) / len(per_image) if per_image else math.nan


def join_from_an_empty_shard(metric_fn: Any) -> None:
    """Let a rank that evaluated no image take part in MONAI's gather of per-image values.

    MONAI's ``Cumulative`` gathers each buffer with ``evenly_divisible_all_gather`` on ranks that hold values and skips
    the gather on a rank that holds none, which then fails ("data to aggregate must be PyTorch Tensor, got None")
    while the others wait: a validation set smaller than the number of GPUs under an unpadded sampler. Every rank
    tells the shapes and types of its buffers' entries; a rank without values then gathers a zero-row tensor of the
    others' shape, in the same order, and keeps the result as MONAI's own ``_sync`` would. No MONAI API does this.
    """
    if not is_distributed() or metric_fn._synced:
        return
    buffers = metric_fn._buffers
    mine = None if buffers is None else [(tuple(b[0].shape), b[0].dtype) if b else None for b in buffers]
    everyone: list[Any] = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(everyone, mine)
    layout = next((shapes for shapes in everyone if shapes and None not in shapes), None)
    if buffers is not None or layout is None:
        return  # this rank gathers in MONAI's _sync; or no rank has values and none gathers
    metric_fn._synced_tensors = [evenly_divisible_all_gather(torch.zeros((0, *shape), dtype=dtype), concat=True)
                                 for shape, dtype in layout]
    metric_fn._synced = True


class MeanDiceOrNaN(_NaNWhenUndefined, MeanDice):
    """MONAI's ``MeanDice`` handler; NaN when no image has a Dice (no foreground in any ground truth)."""


class MeanIoUOrNaN(_NaNWhenUndefined, MeanIoUHandler):
    """MONAI's ``MeanIoUHandler``; NaN when no image has an IoU (no foreground in any ground truth)."""


class HausdorffDistanceOrNaN(_NaNWhenUndefined, HausdorffDistance):
    """MONAI's ``HausdorffDistance`` handler; NaN when no image has a distance (the class missing from the
    prediction or the truth of every image); in pixels of each image as read where the output carries its size.

    The masks are scored at the square training size, where a pixel of a 40 x 600 image is 0.6 of its rows high and
    9.4 of its columns wide: measured in those pixels, a 2-pixel vertical error counted more than a 20-pixel horizontal
    one. Given ``(pred, label, size)`` per image (``size``: the (H, W) as read), each image's distances are measured
    with MONAI's per-axis ``spacing`` H / h, W / w, i.e. in pixels of the image as read, comparable across images of
    any size; ``(pred, label)`` measures them in pixels of the grid scored, as MONAI's handler does.
    """

    def iteration_completed(self, engine: Engine) -> None:
        # ignite unrolls an output of per-image lists only where it has two items (prediction, truth) and refuses a
        # third; MONAI's metric takes the lists as they are, so they go to ``update`` whole
        self.update(self._output_transform(engine.state.output))

    def update(self, output: Sequence[Any]) -> None:
        """Args: output: ``(pred, label)`` as MONAI's handler, or ``(pred, label, size)``: per image a one-hot
        (K, h, w) prediction and truth and its (H, W) as read."""
        if len(output) != 3:
            super().update(output)
            return
        for prediction, truth, size in zip(*output):
            self.metric_fn([prediction], [truth], spacing=pixel_spacing(size, prediction.shape[-2:]))


def pixel_spacing(original: Any, scored: Sequence[int]) -> list[float]:
    """The (rows, cols) size of a pixel of the grid ``scored`` (h, w), in pixels of the image as read ``original``
    (H, W): ``[H / h, W / w]``.

    Raises:
        ValueError: ``original`` is not two positive sizes.
    """
    sizes = [float(s) for s in torch.as_tensor(original).reshape(-1).tolist()]
    if len(sizes) != 2 or min(sizes) <= 0:
        raise ValueError(f"an image's size as read must be two positive numbers (H, W), got {sizes!r}")
    return [sizes[0] / int(scored[0]), sizes[1] / int(scored[1])]


def finite_improvement(current: float, best: float) -> bool:
    """``metric_cmp_fn`` for MONAI's evaluators: a finite value beats a NaN best, and NaN is never better.

    MONAI takes the first validation as its best whatever the value and then asks ``current > best``, which is
    never true once the best is NaN: a NaN first epoch would stay "best value: nan at epoch 1" for the whole run.
    """
    return is_new_best(current, best if math.isfinite(best) else None)
