"""Ultrasound transforms in MONAI's conventions (array and dictionary versions), plus a GPU batch path."""

from __future__ import annotations

from monai_ext.transforms.deannotate import (
    Deannotate,
    Deannotated,
    DopplerToGray,
    DopplerToGrayd,
    colour_mask,
    deannotate,
)
from monai_ext.transforms.fov import (
    FieldOfView,
    FieldOfViewMask,
    FieldOfViewMaskd,
    detect_fov,
    detect_screen_fov,
    detect_view_boxes,
    detect_views,
)
from monai_ext.transforms.gpu import UltrasoundBatchAugment
from monai_ext.transforms.intensity import ScaleIntensityByDtype, ScaleIntensityByDtyped, ToGrayscale, ToGrayscaled
from monai_ext.transforms.masks import LoadMask, LoadMaskd
from monai_ext.transforms.normalize import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    NormalizeUltrasound,
    NormalizeUltrasoundd,
    corpus_statistics,
    normalization_stats,
)
from monai_ext.transforms.physics import (
    RandAxialLateralBlur,
    RandAxialLateralBlurd,
    RandDepthGain,
    RandDepthGaind,
    RandDynamicRange,
    RandDynamicRanged,
    RandGammaGain,
    RandGammaGaind,
    RandSpeckle,
    RandSpeckled,
)
from monai_ext.transforms.regularization import MixupCutmix
from monai_ext.transforms.spatial import RandResizedCrop, RandResizedCropd
from monai_ext.transforms.tint import display_tint

__all__ = [
    "IMAGENET_MEAN", "IMAGENET_STD", "Deannotate", "Deannotated", "DopplerToGray", "DopplerToGrayd", "FieldOfView",
    "FieldOfViewMask", "FieldOfViewMaskd", "LoadMask", "LoadMaskd", "MixupCutmix", "NormalizeUltrasound", "NormalizeUltrasoundd",
    "RandAxialLateralBlur", "RandAxialLateralBlurd", "RandDepthGain", "RandDepthGaind", "RandDynamicRange",
    "RandDynamicRanged", "RandGammaGain", "RandGammaGaind", "RandResizedCrop", "RandResizedCropd", "RandSpeckle",
    "RandSpeckled", "ScaleIntensityByDtype", "ScaleIntensityByDtyped", "ToGrayscale", "ToGrayscaled",
    "UltrasoundBatchAugment", "colour_mask", "corpus_statistics", "deannotate", "detect_fov", "detect_screen_fov",
    "detect_view_boxes", "detect_views", "display_tint", "normalization_stats",
]
