"""The NaN-when-undefined metric handlers against MONAI's own ones, on MONAI's SupervisedEvaluator."""

from __future__ import annotations

import math

import pytest
import torch
from monai.engines import SupervisedEvaluator
from monai.handlers import HausdorffDistance, MeanDice, MeanIoUHandler, from_engine
from torch import nn

from monai_ext.handlers.metric_values import (
    HausdorffDistanceOrNaN,
    MeanDiceOrNaN,
    MeanIoUOrNaN,
    finite_improvement,
    pixel_spacing,
)


def disc(size: int = 16, radius: int = 4) -> torch.Tensor:
    """(2, size, size) one-hot mask of a centred disc (background, lesion)."""
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    lesion = (((yy - size // 2) ** 2 + (xx - size // 2) ** 2) <= radius**2).float()
    return torch.stack([1 - lesion, lesion])


EMPTY = torch.stack([torch.ones(16, 16), torch.zeros(16, 16)])  # no lesion


class Replay(nn.Module):
    """A "network" whose prediction for an image is the one-hot mask stored in it (the batch carries the index)."""

    def __init__(self, predictions: list[torch.Tensor]) -> None:
        super().__init__()
        self.register_buffer("predictions", torch.stack(predictions))

    def forward(self, index: torch.Tensor) -> torch.Tensor:
        return self.predictions[index.flatten().long()]


def evaluate(pairs: list[tuple[torch.Tensor, torch.Tensor]], ours: bool) -> SupervisedEvaluator:
    """One validation of (prediction, truth) pairs, one image per batch, with MONAI's or this project's metrics."""
    pair = from_engine(["pred", "label"])
    dice, iou, hd = (MeanDiceOrNaN, MeanIoUOrNaN, HausdorffDistanceOrNaN) if ours else (
        MeanDice, MeanIoUHandler, HausdorffDistance)
    data = [{"image": torch.tensor([[i]]), "label": truth[None]} for i, (_, truth) in enumerate(pairs)]
    evaluator = SupervisedEvaluator(
        device=torch.device("cpu"), val_data_loader=data, network=Replay([p for p, _ in pairs]),
        key_val_metric={"val_mean_dice": dice(include_background=False, output_transform=pair)},
        additional_metrics={"val_mean_iou": iou(include_background=False, output_transform=pair),
                            "val_hd95": hd(include_background=False, percentile=95, output_transform=pair)})
    evaluator.run()
    return evaluator


@pytest.mark.parametrize("pairs, expected", [
    # a model that predicts no lesion: every distance undefined; Dice and IoU defined (0) where the truth has one
    ([(EMPTY, disc()), (EMPTY, disc(radius=5))], {"val_hd95": "nan", "val_mean_dice": 0.0, "val_mean_iou": 0.0}),
    # a validation set without any lesion, predicted empty: Dice and IoU undefined for every image (ignore_empty)
    ([(EMPTY, EMPTY), (EMPTY, EMPTY)], {"val_hd95": "nan", "val_mean_dice": "nan", "val_mean_iou": "nan"}),
    # one image with both masks: the means over that image are MONAI's own, unchanged
    ([(disc(), disc()), (EMPTY, disc())], {"val_hd95": 0.0, "val_mean_dice": 0.5, "val_mean_iou": 0.5}),
])
def test_a_mean_over_no_values_is_nan_not_zero(pairs, expected) -> None:
    monai_only, ours = evaluate(pairs, ours=False).state, evaluate(pairs, ours=True).state
    for name, value in expected.items():
        if value == "nan":
            assert monai_only.metrics[name] == 0.0  # MONAI's reduction over no finite value: what is corrected
            assert math.isnan(ours.metrics[name]), name
        else:
            assert ours.metrics[name] == pytest.approx(value) == monai_only.metrics[name]
    # the evaluator's own best-metric record, which runs before any handler, no longer holds 0.0 as a best Dice
    if expected["val_mean_dice"] == "nan":
        assert monai_only.best_metric == 0.0 and math.isnan(ours.best_metric)
    else:
        assert ours.best_metric == monai_only.best_metric == expected["val_mean_dice"]


@pytest.mark.parametrize("current, best, better", [
    (0.5, 0.25, True), (0.25, 0.5, False), (0.5, 0.5, False),
    (0.5, math.nan, True), (math.nan, 0.5, False), (math.nan, math.nan, False), (0.1, -1, True),
])
def test_finite_improvement(current, best, better) -> None:
    assert finite_improvement(current, best) is better


def test_a_finite_dice_replaces_a_nan_best_in_monais_evaluator() -> None:
    """MONAI takes the first validation as its best whatever it is, then asks current > best: never true of NaN."""
    pair = from_engine(["pred", "label"])

    def evaluator_for(cmp):
        data = [{"image": torch.tensor([[0]]), "label": disc()[None]}]
        extra = {} if cmp is None else {"metric_cmp_fn": cmp}
        return SupervisedEvaluator(
            device=torch.device("cpu"), val_data_loader=data, network=Replay([disc()]),
            key_val_metric={"val_mean_dice": MeanDiceOrNaN(include_background=False, output_transform=pair)},
            **extra)

    for cmp, expected_best in ((None, "nan"), (finite_improvement, 1.0)):
        evaluator, truths = evaluator_for(cmp), iter([EMPTY, disc()])  # no lesion, then one
        for epoch in (1, 2):
            evaluator.data_loader = [{"image": torch.tensor([[0]]), "label": next(truths)[None]}]
            evaluator.run(global_epoch=epoch)
        if expected_best == "nan":
            assert math.isnan(evaluator.state.best_metric)
        else:
            assert evaluator.state.best_metric == expected_best and evaluator.state.best_metric_epoch == 2


def dot(row: int, col: int, size: int = 16) -> torch.Tensor:
    """(2, size, size) one-hot mask of a one-pixel lesion at (row, col): its distance to another is exact."""
    lesion = torch.zeros(size, size)
    lesion[row, col] = 1
    return torch.stack([1 - lesion, lesion])


@pytest.mark.parametrize("original, predicted_at, expected", [
    # scored at 16 x 16 from a 32 x 160 image: a grid pixel is 2 rows and 10 columns of the image as read
    ((32, 160), (6, 4), 4.0),                      # 2 grid rows: 4 pixels of the image
    ((32, 160), (4, 6), 20.0),                     # 2 grid columns: 20 pixels of the image
    ((32, 160), (6, 6), math.hypot(4, 20)),
    ((16, 16), (4, 6), 2.0),                       # an image read at the size scored: grid pixels
    (None, (4, 6), 2.0),                           # no size in the output: MONAI's own, in grid pixels
])
def test_hd95_is_in_pixels_of_the_image_as_read(original, predicted_at, expected) -> None:
    """Truth at (4, 4), prediction at ``predicted_at``: the exact distance, as the bundle wires it (the size carried
    by the batch, copied into the output by a postprocessing transform)."""
    from monai.transforms import Compose, CopyItemsd

    keys = ["pred", "label"] + ([] if original is None else ["scored_original_size"])
    item = {"image": torch.tensor([[0]]), "label": dot(4, 4)[None]}
    if original is not None:
        item["original_size"] = torch.tensor([original])
    evaluator = SupervisedEvaluator(
        device=torch.device("cpu"), val_data_loader=[item], network=Replay([dot(*predicted_at)]),
        postprocessing=Compose([CopyItemsd(keys="original_size", names="scored_original_size",
                                           allow_missing_keys=True)]),
        key_val_metric={"val_hd95": HausdorffDistanceOrNaN(include_background=False, percentile=95,
                                                           output_transform=from_engine(keys))})
    evaluator.run()
    assert evaluator.state.metrics["val_hd95"] == pytest.approx(expected)


@pytest.mark.parametrize("original", [(32,), (0, 16), (16, -1)])
def test_pixel_spacing_refuses_a_size_that_is_not_two_positive_numbers(original) -> None:
    with pytest.raises(ValueError, match=r"two positive numbers .*got \["):
        pixel_spacing(original, (16, 16))


def test_hd95_measures_each_image_of_a_batch_in_its_own_pixels() -> None:
    """A batch of a wide and a tall image, the same 2-grid-column error in each: 20 and 4 pixels as read (mean 12);
    one image's size applied to the whole batch gives 20 or 4."""
    from monai.transforms import Compose, CopyItemsd

    item = {"image": torch.tensor([[0], [1]]), "label": torch.stack([dot(4, 4), dot(4, 4)]),
            "original_size": torch.tensor([[32, 160], [160, 32]])}
    evaluator = SupervisedEvaluator(
        device=torch.device("cpu"), val_data_loader=[item], network=Replay([dot(4, 6), dot(4, 6)]),
        postprocessing=Compose([CopyItemsd(keys="original_size", names="scored_original_size")]),
        key_val_metric={"val_hd95": HausdorffDistanceOrNaN(
            include_background=False, percentile=95,
            output_transform=from_engine(["pred", "label", "scored_original_size"]))})
    evaluator.run()
    assert evaluator.state.metrics["val_hd95"] == pytest.approx(12.0)
