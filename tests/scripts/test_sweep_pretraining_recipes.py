"""scripts/sweep_pretraining_recipes.py: its blurred target, its cross-validation protocol and its command line."""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from monai_ext.networks.mae import build_mae
from tests.warm_python import run_python

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "sweep_pretraining_recipes.py"


@pytest.fixture(scope="module")
def sweep():
    spec = importlib.util.spec_from_file_location("sweep_pretraining_recipes", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tiny_mae() -> torch.nn.Module:
    return build_mae("mae_vit_tiny_patch16_dec128d2b", img_size=32, patch_size=8, in_chans=1, depth=2,
                     decoder_depth=1)


def test_blurred_target_keeps_structure_and_removes_speckle_scale_detail(sweep):
    torch.manual_seed(0)
    rows = torch.arange(32).view(32, 1).expand(32, 32)
    checker = ((rows + torch.arange(32)) % 2).float()      # one-pixel detail, like speckle
    ramp = rows.float() / 31                                  # structure: a brightness gradient in depth
    images = (checker + 4 * ramp).view(1, 1, 32, 32).repeat(2, 1, 1, 1)
    model = tiny_mae()
    raw = model.patch_targets(images)
    sweep.use_blurred_targets(model, 2.0)
    blurred = model.patch_targets(images)
    assert blurred.shape == raw.shape == (2, 16, 64)
    # in the interior patches (away from the zero-padded border) the checkerboard is gone and the gradient is left
    structure = tiny_mae().patch_targets((0.5 + 4 * ramp).view(1, 1, 32, 32).repeat(2, 1, 1, 1))
    interior = [5, 6, 9, 10]
    assert not torch.allclose(raw[:, interior], structure[:, interior], atol=0.4)
    assert torch.allclose(blurred[:, interior], structure[:, interior], atol=0.05)
    assert type(blurred) is torch.Tensor
    loss, _, _ = model(images, 0.75)                          # the training loss uses the blurred target
    assert torch.isfinite(loss)


@pytest.mark.parametrize("informative", [True, False])
def test_cross_validation_separates_informative_features_and_not_noise(sweep, informative):
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(4), 60)
    features = rng.standard_normal((240, 16))
    if informative:
        features[np.arange(240), labels] += 4.0
    per_fold = sweep.cross_validate(features, labels, seed=0)
    assert set(per_fold) == {"macro_f1", "auc", "balanced_accuracy", "knn_macro_f1"}
    assert all(len(v) == 5 for v in per_fold.values())
    if informative:
        assert per_fold["macro_f1"].mean() > 0.9 and per_fold["knn_macro_f1"].mean() > 0.9
    else:
        assert 0.35 < per_fold["auc"].mean() < 0.65 and per_fold["macro_f1"].mean() < 0.4


def test_an_unknown_recipe_is_one_line_and_exit_code_2(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = run_python([sys.executable, SCRIPT, "--recipes", "demo,bogus", "--out", tmp_path], env=env, timeout=300)
    assert result.returncode == 2
    assert "unknown recipes ['bogus']" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("args, message", [
    (["--per_class", "3"], "--per_class must be a whole number of at least 5 (the benchmark's 5 folds test one image "
                           "of each class in each), got 3"),  # failed in scikit-learn after pretraining
    (["--seed", "-1"], "--seed must be at least 0, got -1"),  # failed in numpy after pretraining
    (["--frames", "0"], "--frames must be at least 1, got 0"),
    (["--strength", "-1"], "--strength must be a finite number of at least 0, got -1.0"),
    (["--strength", "nan"], "--strength must be a finite number of at least 0, got nan"),  # all-black frames cached
    (["--strength", "inf"], "--strength must be a finite number of at least 0, got inf"),
    (["--image_size", "100"], "--image_size must be a positive multiple of recipe 'demo''s patch 16, got 100"),
    (["--recipes", "patch_8", "--image_size", "12"], "recipe 'patch_8''s patch 8, got 12"),
    (["--recipes", ","], "--recipes names no recipe"),  # ran nothing and wrote an empty table
])
def test_a_bad_size_is_refused_before_any_work(sweep, capsys, monkeypatch, tmp_path, args, message):
    monkeypatch.setattr(sys, "argv", [str(SCRIPT), "--out", str(tmp_path / "out"), *args])
    with pytest.raises(SystemExit) as exit_info:
        sweep.main()
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_pooled_features_at_earlier_depths_match_a_manual_forward(sweep):
    torch.manual_seed(0)
    model, images = tiny_mae(), torch.randn(5, 1, 32, 32)
    features = sweep.pooled_features(model, images, ("mean", "cls", "max"), depths=(1,), batch_size=2)
    assert set(features) == {"mean", "cls", "max", "mean@1", "cls@1", "max@1"}
    assert all(f.shape == (5, model.cls_token.shape[-1]) for f in features.values())
    # independent reference: embed, add positions, prepend cls, run the blocks by hand
    with torch.no_grad():
        x = model.patch_embed(images) + model.pos_embed[:, 1:]
        x = torch.cat([(model.cls_token + model.pos_embed[:, :1]).expand(5, -1, -1), x], 1)
        first = model.blocks[0](x)
        last = model.norm(model.blocks[1](first))
        first = torch.nn.functional.layer_norm(first, first.shape[-1:])
    np.testing.assert_allclose(features["mean@1"], first[:, 1:].mean(1).numpy(), atol=1e-5)
    np.testing.assert_allclose(features["max@1"], first[:, 1:].amax(1).numpy(), atol=1e-5)
    np.testing.assert_allclose(features["cls"], last[:, 0].numpy(), atol=1e-5)
    np.testing.assert_allclose(features["mean"], last[:, 1:].mean(1).numpy(), atol=1e-5)
    assert not model.blocks[0]._forward_hooks                  # the capture hook is removed


@pytest.mark.parametrize("parse, value, message", [("parse_depths", "0,4", "--depths must lie in 1..12"),
                                                    ("parse_depths", "two", "--depths must be comma-separated integers"),
                                                    ("parse_poolings", "mean,median", "--poolings must be"),
                                                    ("parse_poolings", ",", "--poolings must be")])
def test_a_bad_depth_or_pooling_is_a_command_line_error(sweep, capsys, parse, value, message):
    with pytest.raises(SystemExit) as stop:
        getattr(sweep, parse)(argparse.ArgumentParser(), value)
    assert stop.value.code == 2 and message in capsys.readouterr().err


def test_good_depths_and_poolings_parse(sweep):
    parser = argparse.ArgumentParser()
    assert sweep.parse_depths(parser, "2,12") == [2, 12] and sweep.parse_depths(parser, "") == []
    assert sweep.parse_poolings(parser, "cls,max") == ["cls", "max"]


def test_pooled_features_refuse_a_depth_the_model_lacks(sweep):
    with pytest.raises(ValueError, match=r"depths must lie in 1..2 .*got \[3\]"):
        sweep.pooled_features(tiny_mae(), torch.zeros(1, 1, 32, 32), depths=(3,))
