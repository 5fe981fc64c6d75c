"""The input statistics the networks' first layer is trained for: ImageNet-normalised RGB, as the released MAE and
USF-MAE weights were, or one gray channel normalised with the three channels' averages.

They live with the networks, not only with the transforms that apply them, because adapting a patch embedding from
3 channels to 1 (or back) must know both normalisations to keep its response to a gray image
(:func:`monai_ext.networks.checkpoints.adapt.adapt_patch_embed`).
"""

from __future__ import annotations

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def input_stats(in_channels: int) -> tuple[list[float], list[float]]:
    """(mean, std) per channel: ImageNet's for 3 channels, their averages for 1 channel.

    Raises:
        ValueError: ``in_channels`` other than 1 or 3, quoting it.
    """
    if in_channels == 3:
        return list(IMAGENET_MEAN), list(IMAGENET_STD)
    if in_channels == 1:
        return [sum(IMAGENET_MEAN) / 3], [sum(IMAGENET_STD) / 3]
    raise ValueError(f"in_channels must be 1 or 3, got {in_channels!r}")
