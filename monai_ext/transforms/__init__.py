"""Ultrasound transforms in MONAI's conventions (array and dictionary versions)."""

from __future__ import annotations

from monai_ext.transforms.intensity import ScaleIntensityByDtype, ScaleIntensityByDtyped, ToGrayscale, ToGrayscaled
from monai_ext.transforms.regularization import MixupCutmix
from monai_ext.transforms.spatial import RandResizedCrop, RandResizedCropd

#: ImageNet statistics used by the released USF-MAE recipe (gray replicated to 3 channels).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)



def normalization_stats(in_channels: int) -> tuple[list[float], list[float]]:
    """(mean, std) per channel: ImageNet's for 3 channels, their averages for 1 channel."""
    if in_channels == 3:
        return list(IMAGENET_MEAN), list(IMAGENET_STD)
    if in_channels == 1:
        return [sum(IMAGENET_MEAN) / 3], [sum(IMAGENET_STD) / 3]
    raise ValueError(f"in_channels must be 1 or 3, got {in_channels!r}")


__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "MixupCutmix",
    "RandResizedCrop",
    "RandResizedCropd",
    "ScaleIntensityByDtype",
    "ScaleIntensityByDtyped",
    "ToGrayscale",
    "ToGrayscaled",
    "normalization_stats",
]
