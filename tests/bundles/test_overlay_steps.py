"""The overlays keep the base config's own steps: ``multi_gpu_train.yaml`` replaced ``finalize`` with its process
group's teardown alone, so under torchrun a run that validated no epoch (or lost its best model) ended with exit 0
and an earlier run's ``model.pt`` in place, and no summary line."""

from __future__ import annotations

import pytest
from monai.bundle import ConfigParser

from tests.bundles.helpers import REPO

BUNDLES = ("usf_mae_pretrain", "usf_mae_classify", "usf_mae_segment")


def _merged(bundle: str, *overlays: str) -> ConfigParser:
    parser = ConfigParser()
    parser.read_config([str(REPO / "bundles" / bundle / "configs" / name) for name in ("train.yaml", *overlays)])
    return parser


@pytest.mark.parametrize("bundle", BUNDLES)
def test_multi_gpu_finalize_runs_the_base_steps_after_the_teardown(bundle) -> None:
    base = _merged(bundle)
    overlay = _merged(bundle, "multi_gpu_train.yaml")
    assert base["finalize"] == "@finish" and overlay["finish"] == base["finish"]
    assert overlay["finalize"][0].startswith("$monai_ext.engines.distributed.destroy_process_group(")
    assert overlay["finalize"][1:] == ["@finish"]


@pytest.mark.parametrize("bundle", ["usf_mae_classify", "usf_mae_segment"])
def test_the_base_steps_refuse_a_run_without_a_best_model(bundle) -> None:
    assert any("require_best_model(" in step for step in _merged(bundle)["finish"])


@pytest.mark.parametrize("bundle", BUNDLES)
def test_the_summary_line_is_printed_by_rank_0_alone(bundle) -> None:
    printed = [step for step in _merged(bundle)["finish"] if "print(" in step]
    assert printed and all(step.endswith("if monai_ext.engines.distributed.is_main_process() else None")
                           for step in printed)


@pytest.mark.parametrize("bundle", BUNDLES)
def test_every_training_reseeds_its_augmentations_by_position(bundle) -> None:
    """Without PositionSeeding (the segmentation bundle had none) a run with no loader workers, resumed after a
    crash, drew other augmentations than the uninterrupted run and ended with other weights."""
    parser = _merged(bundle)
    assert parser["seeding"]["_target_"] == "monai_ext.handlers.seeding.PositionSeeding"
    assert "@train#preprocessing" in parser["seeding"]["randomizables"]
    assert any("@seeding.attach(@train#trainer)" in step for step in parser["run"])
