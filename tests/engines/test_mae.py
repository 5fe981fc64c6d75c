"""MAE engines: mask_ratio validation, validation loss independent of batching, loss reduced only when logged."""

from __future__ import annotations

import re

import pytest
import torch
from monai.data import DataLoader

from monai_ext.engines import base
from monai_ext.engines.mae import MAEEvaluator, MAETrainer, with_positions
from monai_ext.engines.metrics import ImageCount, ImageMeanLoss
from monai_ext.networks.mae import MaskedAutoencoderViT

TINY = {"img_size": 32, "patch_size": 8, "embed_dim": 32, "depth": 1, "num_heads": 4, "decoder_embed_dim": 16, "decoder_depth": 1,
            "decoder_num_heads": 2}  # 16 patches


def tiny_mae() -> MaskedAutoencoderViT:
    torch.manual_seed(0)
    return MaskedAutoencoderViT(**TINY)


def images(count: int) -> list[dict[str, torch.Tensor]]:
    gen = torch.Generator().manual_seed(5)
    return [{"image": torch.randn(3, 32, 32, generator=gen)} for _ in range(count)]


def trainer(loader, **kwargs) -> MAETrainer:
    network = tiny_mae()
    return MAETrainer(device=torch.device("cpu"), max_epochs=1, train_data_loader=loader, network=network,
                      optimizer=torch.optim.SGD(network.parameters(), lr=0.01), precision="fp32", **kwargs)


@pytest.mark.parametrize("ratio", [0, 0.0, 1.0, -0.25, 1.5])
def test_mask_ratio_outside_the_open_interval_is_refused(ratio: float) -> None:
    with pytest.raises(ValueError, match=r"mask_ratio must be in \(0, 1\)"):
        trainer([images(1)[0]], mask_ratio=ratio)
    with pytest.raises(ValueError, match=r"mask_ratio must be in \(0, 1\)"):
        MAEEvaluator(device=torch.device("cpu"), val_data_loader=[], network=tiny_mae(), mask_ratio=ratio)


def test_mask_ratio_that_keeps_no_patch_is_refused() -> None:
    with pytest.raises(ValueError, match="keeps no patch of the 16"):
        trainer([images(1)[0]], mask_ratio=0.95)  # int(16 x 0.05) = 0 patches visible
    assert trainer([images(1)[0]], mask_ratio=0.9).mask_ratio == 0.9  # one visible patch is enough


@pytest.mark.parametrize("amp, refused", [(True, True), ("true", True), (1, True), (False, False), (None, False),
                                           ("false", False)])
@pytest.mark.parametrize("engine", ["MAETrainer", "MAEEvaluator", "ClassificationTrainer", "SegmentationTrainer"])
def test_amp_that_the_engine_would_ignore_is_refused_pointing_to_precision(engine, amp, refused) -> None:
    """``--train#trainer#amp true`` was taken by MONAI's SupervisedTrainer and ignored by these engines' own
    iterations (they autocast by ``precision``): the run trained in float32 without a word."""
    from monai_ext.engines.classification import ClassificationTrainer
    from monai_ext.engines.segmentation import SegmentationTrainer

    network = tiny_mae()
    common = {"device": torch.device("cpu"), "network": network, "precision": "fp32", "amp": amp}
    build = {
        "MAETrainer": lambda: trainer([images(1)[0]], amp=amp),
        "MAEEvaluator": lambda: MAEEvaluator(val_data_loader=[], **common),
        "ClassificationTrainer": lambda: ClassificationTrainer(
            max_epochs=1, train_data_loader=[], optimizer=torch.optim.SGD(network.parameters(), lr=0.1),
            loss_function=torch.nn.CrossEntropyLoss(), **common),
        "SegmentationTrainer": lambda: SegmentationTrainer(
            max_epochs=1, train_data_loader=[], optimizer=torch.optim.SGD(network.parameters(), lr=0.1),
            loss_function=torch.nn.CrossEntropyLoss(), **common),
    }[engine]
    if refused:
        with pytest.raises(ValueError, match=rf"^{engine} does not use amp \(got {re.escape(repr(amp))}\): .*use "
                                             r"--precision bf16 \(bf16 autocast on CUDA\)"):
            build()
    else:
        assert type(build()).__name__ == engine


def test_monai_evaluators_keep_their_amp() -> None:
    """The classification and segmentation evaluators run MONAI's own iteration, which autocasts by amp (the bundles
    set it from the precision on CUDA): they take it."""
    from monai_ext.engines.classification import ClassificationEvaluator
    from monai_ext.engines.segmentation import SegmentationEvaluator

    for evaluator in (ClassificationEvaluator, SegmentationEvaluator):
        assert evaluator(device=torch.device("cpu"), val_data_loader=[], network=tiny_mae(), amp=True).amp


def validation(batch_size: int, positions: bool) -> dict[str, float]:
    data = with_positions(images(5)) if positions else images(5)
    evaluator = MAEEvaluator(
        device=torch.device("cpu"), val_data_loader=DataLoader(data, batch_size=batch_size), network=tiny_mae(),
        precision="fp32", key_val_metric={"val_loss": ImageMeanLoss()}, additional_metrics={"n": ImageCount()},
    )
    evaluator.run()
    return dict(evaluator.state.metrics)


def test_validation_loss_is_a_mean_over_images_whatever_the_batching() -> None:
    reference = validation(5, positions=True)
    assert reference["n"] == 5
    for batch_size in (1, 2, 3):
        got = validation(batch_size, positions=True)
        assert got["n"] == 5
        assert got["val_loss"] == pytest.approx(reference["val_loss"], rel=1e-6)
    # Without the positions the masks follow the batches, and so does the loss: what the positions are for.
    assert validation(2, positions=False)["val_loss"] != pytest.approx(reference["val_loss"], rel=1e-6)


def test_training_loss_is_reduced_only_on_logged_iterations(monkeypatch) -> None:
    reduced_at = []
    engine = trainer(DataLoader(images(5), batch_size=1), mask_ratio=0.75, log_interval=2)

    def recording_mean(value: torch.Tensor) -> torch.Tensor:
        reduced_at.append(engine.state.iteration)
        return value

    monkeypatch.setattr(base, "all_reduce_mean", recording_mean)
    flags = []
    engine.add_event_handler(base.Events.ITERATION_COMPLETED, lambda e: flags.append(e.state.output[0]["loss_is_global"]))
    engine.run()
    assert reduced_at == [2, 4, 5]  # every second iteration and the epoch's last
    assert flags == [False, True, False, True, True]
    with pytest.raises(ValueError, match="log_interval"):
        trainer([images(1)[0]], log_interval=0)
