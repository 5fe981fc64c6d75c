"""The segmentation metrics over unequal validation shards (2 and 3 gloo ranks, 7 images) equal one process's
exactly, not within float32 rounding: MONAI sums per-image values in float32 in the gathered order, rank by rank."""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path

import pytest
import torch
from monai.metrics.utils import do_metric_reduction

from tests.handlers.ddp_metric_order_worker import IMAGES
from tests.launch import run_bounded, run_torchrun

pytestmark = pytest.mark.slow

WORKER = Path(__file__).with_name("ddp_metric_order_worker.py")
REPO = Path(__file__).resolve().parents[2]


def launch(out: Path, processes: int) -> list[dict[str, float]]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    if processes == 1:
        result = run_bounded([sys.executable, WORKER, out], env=env, timeout=300)
    else:  # a rank blocked in a gather fails the test at the timeout instead of hanging it
        result = run_torchrun([WORKER, out], processes=processes, env=env, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-5000:]
    return [json.loads(Path(f"{out}.rank{r}").read_text()) for r in range(processes)]


def test_the_images_make_monais_float32_sum_depend_on_the_order() -> None:
    """The test means something: MONAI's reduction of these Dice values in the ranks' order is not the datalist's."""
    dice = torch.tensor([[2 * k / (p + t)] for k, p, t in IMAGES], dtype=torch.float32)
    datalist_order = do_metric_reduction(dice.clone(), "mean")[0].item()
    for order in ([0, 2, 4, 6, 1, 3, 5], [0, 3, 6, 1, 4, 2, 5]):
        assert do_metric_reduction(dice[order].clone(), "mean")[0].item() != datalist_order


@pytest.mark.parametrize("processes", [2, 3])
def test_metrics_over_unequal_shards_equal_one_process_exactly(tmp_path, processes: int) -> None:
    reference = launch(tmp_path / "one" / "metrics.json", 1)[0]
    expected_dice = math.fsum(2 * k / (p + t) for k, p, t in IMAGES) / len(IMAGES)
    assert reference["val_mean_dice"] == pytest.approx(expected_dice, rel=1e-7)
    assert [image_id for image_id, _ in reference["per_image"]] == [f"img{i}" for i in range(len(IMAGES))]
    # every rank holds the gathered metrics, and the report lists the images in datalist order, as one process does
    # (they came rank by rank: img0, img2, img4, img6, img1, ... on 2 ranks)
    for got in launch(tmp_path / "ddp" / "metrics.json", processes):
        assert got == reference
