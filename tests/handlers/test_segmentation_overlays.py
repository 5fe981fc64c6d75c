"""The evaluation's ``<split>_overlays/<id>.png``: enlarged as the reconstruction grids are (at network size a
1-px outline was hard to see), and a perfect prediction drawn in the agreement colour, not as a lone prediction."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from monai.engines import SupervisedEvaluator
from monai.handlers import MeanDice, from_engine
from monai.transforms import AsDiscreted, Compose

from monai_ext.handlers.segmentation import SegmentationReportWriter


class _Perfect(torch.nn.Module):
    """Logits of the one disc every image holds: a perfect prediction."""

    def __init__(self, truth: np.ndarray) -> None:
        super().__init__()
        self.logits = torch.nn.functional.one_hot(torch.as_tensor(truth), 2).permute(2, 0, 1).float()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits.expand(x.shape[0], -1, -1, -1)


def perfect_overlay(tmp_path, truth: np.ndarray, item: dict) -> np.ndarray:
    """The RGB overlay the report writer draws of ``item`` (its ``id``; a 32 x 32 image) predicted exactly as
    ``truth``."""
    data = [{"image": torch.rand(1, 32, 32), "label": torch.as_tensor(truth)[None], **item}]
    pair = from_engine(["pred", "label"])
    SupervisedEvaluator(
        device=torch.device("cpu"), val_data_loader=torch.utils.data.DataLoader(data, batch_size=1),
        network=_Perfect(truth),
        postprocessing=Compose([AsDiscreted(keys=["pred", "label"], argmax=[True, False], to_onehot=2)]),
        key_val_metric={"val_mean_dice": MeanDice(include_background=False, output_transform=pair)},
        val_handlers=[SegmentationReportWriter(tmp_path, ["background", "lesion"], prefix="test_", num_overlays=1)],
    ).run()
    return cv2.cvtColor(cv2.imread(str(tmp_path / "test_overlays" / f"{item['id']}.png")), cv2.COLOR_BGR2RGB)


def test_overlays_are_enlarged_and_a_perfect_prediction_shows_agreement(tmp_path) -> None:
    rows, cols = np.ogrid[:32, :32]
    truth = ((rows - 16) ** 2 + (cols - 16) ** 2 <= 64).astype(np.int64)
    overlay = perfect_overlay(tmp_path, truth, {"id": "img0"})
    assert overlay.shape == (192, 384, 3)  # 32 px enlarged 6x, as enlarge() does for the grids
    r, g, b = (overlay[:, :192, c].astype(int) for c in range(3))
    outline = (r != g) | (g != b)  # the gray image has equal channels
    assert outline.sum() > 200  # each 1-px outline pixel now 6 x 6
    assert (g[outline] > 150).all() and (r[outline] > 150).all()  # truth (green) and prediction (red) both shown


def test_an_overlay_keeps_the_aspect_of_the_image_as_read(tmp_path) -> None:
    """A 40 x 160 strip scored at 32 x 32 was drawn as a 192 x 192 square: its lesion, four times as wide as high in
    the file, showed as a square. With the image's size as read (``original_size``) it is drawn 1:4, its lesion too."""
    truth = np.zeros((32, 32), np.int64)
    truth[8:24, 8:24] = 1  # a square on the squeezed grid: a 10 x 80 band in the 40 x 160 file
    overlay = perfect_overlay(tmp_path, truth, {"id": "strip", "original_size": torch.tensor([40, 160])})
    assert overlay.shape == (192, 1536, 3)  # 40 x 160 at 192 rows (6 x 32 px), beside the plain image
    r, g, b = (overlay[:, :768, c].astype(int) for c in range(3))
    rows, cols = np.nonzero((r != g) | (g != b))
    height, width = rows.max() - rows.min(), cols.max() - cols.min()
    assert width == pytest.approx(4 * height, rel=0.05)  # the lesion as in the file, not a square
