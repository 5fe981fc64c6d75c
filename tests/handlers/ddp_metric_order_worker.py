"""Worker of ``test_metric_values_ddp.py``: one validation of 7 images with this project's Dice, IoU and HD95
handlers and its segmentation report, in one process or as one rank of a torchrun gloo group (unpadded shards: 4/3 on 2 ranks, 3/2/2 on 3).

Usage: python ddp_metric_order_worker.py OUT.json (rank r writes OUT.json.rank{r}).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import torch
from monai.engines import SupervisedEvaluator
from monai.handlers import from_engine
from torch.utils.data import DataLoader

from monai_ext.engines.base import ShardSafeEvaluatorMixin
from monai_ext.engines.distributed import UnpaddedShardSampler, init_process_group, rank
from monai_ext.handlers.metric_values import HausdorffDistanceOrNaN, MeanDiceOrNaN, MeanIoUOrNaN
from monai_ext.handlers.segmentation import SegmentationReportWriter
from tests.handlers.test_metric_values import Replay  # each image's stored prediction

SIDE = 32
#: (overlap, predicted pixels, true pixels) per image: Dice 2k / (p + t). Chosen so that MONAI's float32 sum of the 7
#: Dice values differs between the datalist's order and the ranks' (0, 2, 4, 6, 1, 3, 5 and 0, 3, 6, 1, 4, 2, 5).
IMAGES = [(183, 199, 280), (79, 79, 202), (7, 7, 187), (41, 41, 188), (24, 24, 207), (144, 144, 295), (70, 123, 298)]


def masks(overlap: int, predicted: int, true: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One-hot (2, SIDE, SIDE) prediction and truth: runs of ``predicted`` and ``true`` pixels sharing ``overlap``."""
    pred, truth = torch.zeros(SIDE * SIDE), torch.zeros(SIDE * SIDE)
    pred[:predicted] = 1
    truth[predicted - overlap : predicted - overlap + true] = 1
    pred, truth = pred.reshape(SIDE, SIDE), truth.reshape(SIDE, SIDE)
    return torch.stack([1 - pred, pred]), torch.stack([1 - truth, truth])


class Evaluator(ShardSafeEvaluatorMixin, SupervisedEvaluator):
    """MONAI's evaluator, safe for an empty shard, as the bundles' are."""


def validate(report_dir: Path) -> dict[str, Any]:
    """The evaluator's metrics and the segmentation report's per-image ids, as this rank holds them."""
    pairs = [masks(*image) for image in IMAGES]
    data = [{"image": torch.tensor([i]), "label": truth, "id": f"img{i}"} for i, (_, truth) in enumerate(pairs)]
    pair = from_engine(["pred", "label"])
    evaluator = Evaluator(
        device=torch.device("cpu"), network=Replay([p for p, _ in pairs]),
        val_data_loader=DataLoader(data, batch_size=2, sampler=UnpaddedShardSampler(data)),
        key_val_metric={"val_mean_dice": MeanDiceOrNaN(include_background=False, output_transform=pair)},
        additional_metrics={"val_mean_iou": MeanIoUOrNaN(include_background=False, output_transform=pair),
                            "val_hd95": HausdorffDistanceOrNaN(include_background=False, output_transform=pair)})
    report = SegmentationReportWriter(report_dir, ["background", "lesion"], num_overlays=0)
    report.attach(evaluator)
    evaluator.run()
    return {**{name: float(value) for name, value in evaluator.state.metrics.items()},
            "per_image": [(entry["id"], entry["dice"]["lesion"]) for entry in report.last_report["per_image"]]}


if __name__ == "__main__":
    out = Path(sys.argv[1])
    init_process_group(device="cpu")  # gloo under torchrun; nothing in a plain process
    os.makedirs(out.parent, exist_ok=True)
    Path(f"{out}.rank{rank()}").write_text(json.dumps(validate(out.parent / "report")))
