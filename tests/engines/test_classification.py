"""ClassificationTrainer: the network sees the mixed batch, the loss gets the soft targets, outputs stay unmixed;
class weights are scikit-learn's balanced ones."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from monai_ext.engines.classification import ClassificationTrainer, class_weights
from monai_ext.transforms import MixupCutmix


class Recorder(nn.Module):
    """Linear classifier on 1x4x4 images that remembers its last input."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(16, 3)
        self.seen: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen = x.detach().clone()
        return self.fc(x.flatten(1))


def run_one_step(mixer: MixupCutmix | None) -> tuple[Recorder, dict, list[torch.Tensor]]:
    torch.manual_seed(0)
    network = Recorder()
    images = torch.rand(6, 1, 4, 4)
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    targets_seen: list[torch.Tensor] = []

    def loss_function(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        targets_seen.append(targets)
        return nn.functional.cross_entropy(logits, targets)

    trainer = ClassificationTrainer(
        device=torch.device("cpu"), max_epochs=1, train_data_loader=[{"image": images, "label": labels}],
        network=network, optimizer=torch.optim.SGD(network.parameters(), lr=0.1), loss_function=loss_function,
        precision="fp32", mixer=mixer, decollate=False,  # the whole batch's output, to compare with a reference
    )
    trainer.run()
    return network, {"image": images, "label": labels, **trainer.state.output}, targets_seen


@pytest.mark.parametrize("mixup_alpha,cutmix_alpha", [(1.0, 0.0), (0.0, 1.0)])
def test_network_sees_the_mixed_batch_and_loss_the_soft_targets(mixup_alpha, cutmix_alpha):
    network, out, targets_seen = run_one_step(MixupCutmix(3, mixup_alpha, cutmix_alpha).set_random_state(5))
    reference = MixupCutmix(3, mixup_alpha, cutmix_alpha).set_random_state(5)
    expected_images, expected_targets = reference(out["image"], out["label"])
    torch.testing.assert_close(network.seen, expected_images)
    torch.testing.assert_close(targets_seen[0], expected_targets)
    torch.testing.assert_close(out["label"], torch.tensor([0, 1, 2, 0, 1, 2]))  # metrics see the true labels


def test_without_mixer_the_loss_gets_hard_labels():
    network, out, targets_seen = run_one_step(None)
    torch.testing.assert_close(network.seen, out["image"])
    assert targets_seen[0].dtype == torch.int64


@pytest.mark.parametrize("labels, num_classes", [([0, 1, 1, 1], 2), ([0, 0, 1, 2, 2, 2, 2], 3), ([3, 1, 2, 0] * 5, 4),
                                                 ([0] * 9 + [1], 2)])
def test_class_weights_are_sklearns_balanced_weights(labels: list[int], num_classes: int) -> None:
    from sklearn.utils.class_weight import compute_class_weight

    weights = class_weights([{"label": y} for y in labels], num_classes)
    expected = compute_class_weight("balanced", classes=np.arange(num_classes), y=np.array(labels))
    assert weights.dtype == torch.float32
    np.testing.assert_allclose(weights.numpy(), expected, rtol=1e-6)
    assert float(weights[torch.tensor(labels)].mean()) == pytest.approx(1.0)  # the items' mean weight


def test_an_absent_class_gets_weight_zero_and_the_others_are_balanced_among_themselves() -> None:
    labels = [0, 0, 0, 2]
    weights = class_weights([{"label": y} for y in labels], 3)
    np.testing.assert_allclose(weights.numpy(), [4 / (2 * 3), 0.0, 4 / (2 * 1)], rtol=1e-6)


@pytest.mark.parametrize("labels, match", [([], "empty"), ([0, 3], r"\[0, 3\)"), ([-1, 0], r"\[0, 3\)")])
def test_class_weights_bad_labels(labels: list[int], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        class_weights([{"label": y} for y in labels], 3)
