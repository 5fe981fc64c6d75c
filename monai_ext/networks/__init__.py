"""Networks: the MAE Vision Transformer, the classifier on its encoder, and checkpoint interoperability."""

from __future__ import annotations

from monai_ext.networks.checkpoints import (
    CheckpointError,
    LoadReport,
    build_from_checkpoint,
    load_encoder_weights,
    load_mae_weights,
    read_checkpoint,
    save_model_checkpoint,
)
from monai_ext.networks.classifier import CLASSIFIER_FACTORIES, ViTClassifier, build_classifier
from monai_ext.networks.mae import MAE_FACTORIES, MaskedAutoencoderViT, build_mae
from monai_ext.networks.segmentation import ViTSegmenter, build_segmenter

__all__ = [
    "CLASSIFIER_FACTORIES",
    "MAE_FACTORIES",
    "CheckpointError",
    "LoadReport",
    "MaskedAutoencoderViT",
    "ViTClassifier",
    "ViTSegmenter",
    "build_classifier",
    "build_from_checkpoint",
    "build_mae",
    "build_segmenter",
    "load_encoder_weights",
    "load_mae_weights",
    "read_checkpoint",
    "save_model_checkpoint",
]
