"""One rank of an evaluation over a split with unreadable files, as the bundles' multi-GPU validation runs it.

    python -m torch.distributed.run --standalone --nproc_per_node N tests/handlers/ddp_reports_worker.py ITEMS.json OUT

``ITEMS.json`` holds the datalist (images under "image", masks under "mask"). Each rank builds the evaluation
dataset (which screens the list), takes its unpadded shard in batches of 3, and writes ``OUT.rank<r>.json`` with the
classification and segmentation reports it ends with (every rank gathers the metrics and the ids).
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import torch
from monai.engines import SupervisedEvaluator
from monai.handlers import MeanDice, from_engine
from monai.transforms import AsDiscreted, Compose

from monai_ext.data.datasets import SkipCorruptDataset
from monai_ext.engines.classification import ClassificationEvaluator
from monai_ext.engines.distributed import UnpaddedShardSampler, destroy_process_group, init_process_group, rank
from monai_ext.engines.metrics import ClassificationReport, MacroF1
from monai_ext.handlers.reports import ClassificationReportWriter
from monai_ext.handlers.segmentation import SegmentationReportWriter
from tests.data.unreadable import load, square_mask

CLASSES = ["even", "odd"]


class Parity(torch.nn.Module):
    """Logits (N, 2) from the case index the image's pixels hold: its parity is the label."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.one_hot(x[:, 0, 0, 0].long() % 2, 2).float() * 10


class Squares(torch.nn.Module):
    """Logits (N, 2, H, W) of the case's square mask: the truth of each good image."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        masks = torch.stack([torch.as_tensor(square_mask(int(v))) for v in x[:, 0, 0, 0].tolist()]).long()
        return torch.nn.functional.one_hot(masks, 2).permute(0, 3, 1, 2).float()


def loader(items: list[dict], keys: tuple[str, ...]) -> torch.utils.data.DataLoader:
    dataset = SkipCorruptDataset(items, load(keys=keys))
    return torch.utils.data.DataLoader(dataset, batch_size=3, sampler=UnpaddedShardSampler(dataset))


def classification(items: list[dict], folder: str) -> dict:
    writer = ClassificationReportWriter(folder, CLASSES, prefix="test_")
    ClassificationEvaluator(
        device=torch.device("cpu"), val_data_loader=loader(items, ("image",)), network=Parity(), decollate=False,
        key_val_metric={"val_macro_f1": MacroF1(CLASSES)},
        additional_metrics={"report": ClassificationReport(CLASSES)}, val_handlers=[writer],
    ).run()
    return writer.last_report


def segmentation(items: list[dict], folder: str) -> dict:
    masked = [{**item, "label": item["mask"]} for item in items]
    writer = SegmentationReportWriter(folder, ["background", "lesion"], prefix="test_", num_overlays=0)
    pair = from_engine(["pred", "label"])
    SupervisedEvaluator(
        device=torch.device("cpu"), val_data_loader=loader(masked, ("image", "label")), network=Squares(),
        postprocessing=Compose([AsDiscreted(keys=["pred", "label"], argmax=[True, False], to_onehot=2)]),
        key_val_metric={"val_mean_dice": MeanDice(include_background=False, output_transform=pair)},
        val_handlers=[writer],
    ).run()
    return writer.last_report


def main(items_file: str, out: str) -> None:
    init_process_group()
    items = json.loads(Path(items_file).read_text())
    with tempfile.TemporaryDirectory() as folder:
        result = {"classification": classification(items, folder), "segmentation": segmentation(items, folder)}
    Path(f"{out}.rank{rank()}.json").write_text(json.dumps(result))
    destroy_process_group()


if __name__ == "__main__":
    main(*sys.argv[1:3])
