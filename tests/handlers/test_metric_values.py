"""UndefinedMetricsAsNaN against MONAI's own metric handlers on an ignite engine."""

from __future__ import annotations

import math

import pytest
import torch
from ignite.engine import Engine
from monai.handlers import HausdorffDistance, MeanDice, from_engine

from monai_ext.handlers.metric_values import UndefinedMetricsAsNaN


def disc(size: int = 16, radius: int = 4) -> torch.Tensor:
    """(2, size, size) one-hot mask of a centred disc (background, lesion)."""
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    lesion = (((yy - size // 2) ** 2 + (xx - size // 2) ** 2) <= radius**2).float()
    return torch.stack([1 - lesion, lesion])


EMPTY = torch.stack([torch.ones(16, 16), torch.zeros(16, 16)])  # no lesion


def evaluate(pairs: list[tuple[torch.Tensor, torch.Tensor]], with_handler: bool) -> dict[str, float]:
    """Run MONAI's HD95 and Dice handlers over (prediction, truth) pairs, one image per iteration."""
    engine = Engine(lambda e, pair: [{"pred": pair[0], "label": pair[1]}])
    for name, metric in {"val_hd95": HausdorffDistance(include_background=False, percentile=95),
                         "val_mean_dice": MeanDice(include_background=False)}.items():
        metric._output_transform = from_engine(["pred", "label"])
        metric.attach(engine, name)
    if with_handler:
        UndefinedMetricsAsNaN(["val_hd95", "val_mean_dice"]).attach(engine)
    return engine.run(pairs, max_epochs=1).metrics


@pytest.mark.parametrize("pairs, hd95, dice", [
    # a model that predicts no lesion: every distance undefined; Dice defined (0) where the truth has the lesion
    ([(EMPTY, disc()), (EMPTY, disc(radius=5))], "nan", 0.0),
    # a validation set without any lesion, predicted empty: Dice and IoU undefined for every image (ignore_empty)
    ([(EMPTY, EMPTY), (EMPTY, EMPTY)], "nan", "nan"),
    # one image with both masks: the means over that image are MONAI's own, unchanged
    ([(disc(), disc()), (EMPTY, disc())], 0.0, 0.5),
])
def test_a_mean_over_no_values_is_nan_not_zero(pairs, hd95, dice) -> None:
    monai_only = evaluate(pairs, with_handler=False)
    fixed = evaluate(pairs, with_handler=True)
    for name, expected in (("val_hd95", hd95), ("val_mean_dice", dice)):
        if expected == "nan":
            assert monai_only[name] == 0.0  # MONAI's reduction over no finite value: what this handler corrects
            assert math.isnan(fixed[name]), name
        else:
            assert fixed[name] == pytest.approx(expected) == monai_only[name]


def test_a_metric_without_per_image_values_is_named() -> None:
    engine = Engine(lambda e, pair: [{"pred": pair[0], "label": pair[1]}])
    MeanDice(include_background=False, output_transform=from_engine(["pred", "label"])).attach(engine, "val_dice")
    UndefinedMetricsAsNaN(["val_hd95"]).attach(engine)
    with pytest.raises(KeyError, match=r"'val_hd95' has no per-image values.*\['val_dice'\]"):
        engine.run([(disc(), disc())], max_epochs=1)


@pytest.mark.parametrize("names", ["val_hd95", [], None])
def test_metric_names_must_be_a_list_of_names(names) -> None:
    with pytest.raises(ValueError, match="non-empty list of metric names"):
        UndefinedMetricsAsNaN(names)
