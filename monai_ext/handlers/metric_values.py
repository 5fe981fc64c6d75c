"""Metric values that MONAI reports as 0.0 when no image had one, made NaN so that they read as undefined."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import torch
from ignite.engine import Engine, Events

logger = logging.getLogger(__name__)


class UndefinedMetricsAsNaN:
    """After an evaluation, set each named metric to NaN when none of its per-image values is finite.

    MONAI's ``do_metric_reduction`` averages the finite per-image values and gives 0.0 when there are none: the HD95
    of a model that predicts no lesion anywhere (usual in early epochs with few labels) read as 0.0, a perfect
    distance, in the logs, ``metrics.json`` and MLflow; so did the Dice of a validation set without any lesion. The
    per-image values (``engine.state.metric_details``, MONAI's ``save_details``, gathered from every rank) tell the
    two cases apart. Attach before the handlers that log or compare the metrics (first in ``val_handlers``).

    Args:
        metric_names: evaluator metrics with ``save_details`` (MONAI's default), e.g. ``["val_hd95"]``.
    """

    def __init__(self, metric_names: Sequence[str]) -> None:
        if isinstance(metric_names, str) or not metric_names:
            raise ValueError(f"metric_names must be a non-empty list of metric names, got {metric_names!r}")
        self.metric_names = list(metric_names)

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        details = getattr(engine.state, "metric_details", {})
        for name in self.metric_names:
            if name not in details:
                raise KeyError(f"metric {name!r} has no per-image values (save_details off, or no such metric); "
                               f"the evaluator's are {sorted(details)!r}")
            values = torch.as_tensor(details[name])
            if not torch.isfinite(values).any():
                engine.state.metrics[name] = math.nan
                logger.info("%s is undefined for all %d images (Dice and IoU need the class in the truth, HD95 in "
                            "both masks): NaN, not MONAI's 0.0", name, values.shape[0] if values.ndim else 1)
