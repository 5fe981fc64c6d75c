"""MixupCutmix: targets always match the pixels, draws are reproducible, arguments are validated."""

from __future__ import annotations

import pytest
import torch

from monai_ext.transforms import MixupCutmix


def constant_batch(num_classes: int, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample k is an image filled with the value 10^k and has label k, so any mix is readable from the pixels."""
    labels = torch.arange(num_classes)
    values = 10.0 ** labels.double()
    images = values.view(-1, 1, 1, 1).expand(-1, 2, height, width).clone()
    return images, labels


@pytest.mark.parametrize("mixup_alpha,cutmix_alpha", [(0.8, 0.0), (0.0, 1.0), (0.8, 1.0), (0.2, 0.2)])
@pytest.mark.parametrize("height,width", [(16, 16), (7, 5), (1, 9)])
def test_targets_equal_the_pixel_mixture(mixup_alpha, cutmix_alpha, height, width):
    images, labels = constant_batch(4, height, width)
    mixer = MixupCutmix(4, mixup_alpha, cutmix_alpha).set_random_state(0)
    values = 10.0 ** torch.arange(4).double()
    for _ in range(20):  # many draws: boxes clipped at borders, both modes
        mixed, targets = mixer(images, labels)
        assert mixed.shape == images.shape and targets.shape == (4, 4)
        torch.testing.assert_close(targets.sum(1), torch.ones(4))
        # Each image's mean is the target-weighted mixture of the class values, whichever mode was drawn.
        torch.testing.assert_close(mixed.mean(dim=(1, 2, 3)), targets.double() @ values, rtol=1e-5, atol=1e-9)


def test_cutmix_pastes_a_box_from_the_partner():
    images, labels = constant_batch(3, 32, 32)
    mixer = MixupCutmix(3, mixup_alpha=0.0, cutmix_alpha=1.0).set_random_state(3)
    mixed, targets = mixer(images, labels)
    top, bottom, left, right = mixer.box(32, 32)
    for i in range(3):
        partner = mixer._perm[i]
        inside = mixed[i, :, top:bottom, left:right]
        assert torch.all(inside == images[partner, 0, 0, 0])
        outside = mixed[i].clone()
        outside[:, top:bottom, left:right] = images[i, 0, 0, 0]
        assert torch.all(outside == images[i, 0, 0, 0])


@pytest.mark.parametrize("switch_prob, cutmix", [(0.0, False), (1.0, True)])
def test_switch_prob_is_the_probability_of_cutmix(switch_prob, cutmix):
    """``switch_prob`` is the chance of cutmix (timm's meaning): read the other way round, a recipe asking for
    cutmix only (1.0) got mixup on every batch and one asking for mixup only (0.0) got cutmix."""
    images, labels = constant_batch(4, 16, 16)
    values = set((10.0 ** torch.arange(4).double()).tolist())
    mixer = MixupCutmix(4, mixup_alpha=0.8, cutmix_alpha=1.0, switch_prob=switch_prob).set_random_state(0)
    boxes = blends = 0
    for _ in range(20):
        mixed, _ = mixer(images, labels)
        for image in mixed:
            pixels = set(image.unique().tolist())
            boxes += len(pixels) > 1  # cutmix: pure pixels of two images; mixup: one blended value everywhere
            blends += not pixels <= values
    assert (boxes > 0, blends > 0) == (cutmix, not cutmix), (boxes, blends)


def test_same_seed_same_draws_and_short_batches():
    images = torch.rand(6, 1, 8, 8)
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    first = MixupCutmix(3).set_random_state(7)
    second = MixupCutmix(3).set_random_state(7)
    for n in (6, 6, 5, 1):  # a short last batch and a single sample
        a, ta = first(images[:n], labels[:n])
        b, tb = second(images[:n], labels[:n])
        torch.testing.assert_close(a, b)
        torch.testing.assert_close(ta, tb)
    different = MixupCutmix(3).set_random_state(8)(images, labels)[0]
    assert not torch.equal(different, MixupCutmix(3).set_random_state(7)(images, labels)[0])


def test_prob_zero_gives_the_batch_and_one_hot_targets():
    images = torch.rand(4, 3, 8, 8)
    labels = torch.tensor([2, 0, 1, 2])
    mixed, targets = MixupCutmix(3, prob=0.0)(images, labels)
    assert mixed is images
    torch.testing.assert_close(targets, torch.nn.functional.one_hot(labels, 3).float())


@pytest.mark.parametrize("kwargs,message", [
    ({"num_classes": 1}, "num_classes must be at least 2, got 1"),
    ({"num_classes": 3, "mixup_alpha": -1.0}, "mixup_alpha must be >= 0, got -1.0"),
    ({"num_classes": 3, "cutmix_alpha": -0.5}, "cutmix_alpha must be >= 0, got -0.5"),
    ({"num_classes": 3, "mixup_alpha": 0.0, "cutmix_alpha": 0.0}, "nothing to mix"),
    ({"num_classes": 3, "switch_prob": 1.5}, "switch_prob must be in [0, 1], got 1.5"),
])
def test_bad_arguments_are_quoted(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        MixupCutmix(**kwargs)


def test_bad_shapes_are_rejected():
    with pytest.raises(ValueError, match=r"\(2, 8, 8\)"):
        MixupCutmix(3)(torch.rand(2, 8, 8), torch.tensor([0, 1]))


def test_cross_entropy_on_soft_targets_equals_the_weighted_hard_losses():
    """The trainer hands the soft targets to ``CrossEntropyLoss``; for a mix that is lam * CE(y_a) + (1-lam) * CE(y_b)."""
    torch.manual_seed(0)
    logits = torch.randn(5, 3)
    labels = torch.tensor([0, 1, 2, 1, 0])
    mixer = MixupCutmix(3, mixup_alpha=1.0, cutmix_alpha=0.0).set_random_state(1)
    _, targets = mixer(torch.rand(5, 1, 4, 4), labels)
    perm = torch.tensor(mixer._perm)
    lam = mixer._lam
    ce = torch.nn.CrossEntropyLoss()
    expected = lam * ce(logits, labels) + (1 - lam) * ce(logits, labels[perm])
    torch.testing.assert_close(ce(logits, targets), expected)


def test_mixup_of_a_uint8_batch_keeps_uint8_as_documented():
    """Mixup returned float32 for uint8 images (cutmix kept uint8); the docstring says same dtype."""
    images = torch.randint(0, 256, (4, 1, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    mixer = MixupCutmix(num_classes=2, mixup_alpha=0.8, cutmix_alpha=0.0)
    mixer.set_random_state(0)
    mixed, _ = mixer(images, torch.tensor([0, 1, 0, 1]))
    assert mixed.dtype == torch.uint8
    blend = images.float() * mixer._lam + images[torch.as_tensor(mixer._perm)].float() * (1 - mixer._lam)
    assert torch.equal(mixed, blend.round().to(torch.uint8))
