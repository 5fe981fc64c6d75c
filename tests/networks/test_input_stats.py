"""input_stats (networks/input_stats.py): ImageNet's statistics for 3 channels, their averages for one gray channel,
any other channel count refused quoting it."""

from __future__ import annotations

import pytest

from monai_ext.networks.input_stats import IMAGENET_MEAN, IMAGENET_STD, input_stats


def test_three_channels_are_imagenet_normalised() -> None:
    mean, std = input_stats(3)
    assert mean == [0.485, 0.456, 0.406] and std == [0.229, 0.224, 0.225]
    mean.append(0.0)  # a fresh list each call: a caller's edit cannot change the next caller's statistics
    assert input_stats(3)[0] == list(IMAGENET_MEAN)


def test_one_channel_gets_the_averages_of_the_three() -> None:
    mean, std = input_stats(1)
    assert mean == pytest.approx([(0.485 + 0.456 + 0.406) / 3]) and std == pytest.approx([(0.229 + 0.224 + 0.225) / 3])
    assert len(mean) == len(std) == 1 and std[0] == pytest.approx(sum(IMAGENET_STD) / 3)


@pytest.mark.parametrize("channels", [0, 2, 4, "3"])
def test_other_channel_counts_are_refused_quoting_them(channels) -> None:
    with pytest.raises(ValueError, match=f"in_channels must be 1 or 3, got {channels!r}"):
        input_stats(channels)
