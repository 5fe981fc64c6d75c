"""Validation over unequal shards (issue #16, acceptance 1; #20, acceptance 4): every bundle's validation of 1, 3 and
7 images on 2 and 3 ranks (gloo, CPU), and the classification bundle's with a BatchNorm network (the ResNet-18 CNN
baseline, whose DDP wrapper broadcasts buffers at the start of a forward), gives the metrics of a single-process
evaluation of the same images, with ``n`` the set's size.

Shards are 1/0, 2/1, 4/3 images on 2 ranks and 1/0/0, 1/1/1, 3/2/2 on 3, in batches of 2: ranks with no image, shards
ending in a short batch, and a set smaller than the world. A padding sampler would count images twice (``n`` too
large); an equal-length gather would hang or fail ("Connection reset by peer").
"""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path

import pytest

from tests.launch import run_bounded, run_torchrun

pytestmark = pytest.mark.slow

WORKER = Path(__file__).with_name("ddp_validation_worker.py")
REPO = Path(__file__).resolve().parents[2]
SIZES = ("1", "3", "7")
BUNDLES = ("usf_mae_pretrain", "usf_mae_classify", "usf_mae_segment", "usf_mae_classify_cnn")  # the last: ResNet-18


def launch(out: Path, cache: Path, processes: int) -> list[dict]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    if processes == 1:
        result = run_bounded([sys.executable, WORKER, out, cache], env=env, timeout=400)
    else:
        result = run_torchrun([WORKER, out, cache], processes=processes, env=env, timeout=400)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-5000:]
    return [json.loads(Path(f"{out}.rank{r}").read_text()) for r in range(processes)]


@pytest.fixture(scope="module")
def single_process(module_tmp) -> tuple[dict, Path]:
    cache = module_tmp("cache")  # written here once (synthetic images), then only read by the ranks
    return launch(module_tmp("single") / "metrics.json", cache, 1)[0], cache


@pytest.mark.parametrize("processes", [2, 3])
def test_validation_over_unequal_shards_equals_one_process(tmp_path, single_process, processes: int) -> None:
    reference, cache = single_process
    ranks = launch(tmp_path / "metrics.json", cache, processes)
    for got in ranks:  # every rank holds the same, gathered, metrics
        assert got["world_size"] == processes
        for bundle in BUNDLES:
            for size in SIZES:
                expected, actual = reference[bundle][size], got[bundle][size]
                assert actual["n"] == expected["n"] == int(size), (bundle, size)
                assert set(actual) == set(expected)
                for name, value in expected.items():
                    if math.isnan(value):
                        assert math.isnan(actual[name]), (bundle, size, name)
                    else:  # float32 losses summed in another order: equal to about 1e-7
                        assert actual[name] == pytest.approx(value, rel=1e-6, abs=1e-7), (bundle, size, name)
        # a file missing on one rank only is left out on every rank: the 6 others each counted once, as in one
        # process (shards drawn from lists that differ between ranks counted two images twice and two never)
        expected, actual = reference["unreadable_on_last_rank"], got["unreadable_on_last_rank"]
        assert actual["n"] == expected["n"] == 6
        assert actual == pytest.approx(expected, rel=1e-6, abs=1e-7)
    assert set(reference["usf_mae_classify_cnn"]["7"]) == set(reference["usf_mae_classify"]["7"])
    assert set(reference["usf_mae_classify"]["7"]) >= {"val_macro_f1", "accuracy", "balanced_accuracy", "auc", "n"}
    assert set(reference["usf_mae_segment"]["7"]) >= {"val_mean_dice", "val_mean_iou", "n"}
    assert set(reference["usf_mae_pretrain"]["7"]) == {"val_loss", "n"}
