"""Fine-tuning engine parts: the classification trainer, layer-wise lr decay, report writing."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
from torch import nn

from monai_ext.engines.base import RobustStepTrainer, batch_images

logger = logging.getLogger(__name__)


class ClassificationTrainer(RobustStepTrainer):
    """Supervised fine-tuning: ``logits = network(image)``, ``loss = loss_function(logits, label)``.

    Args:
        mixer: optional batch mixer such as :class:`monai_ext.transforms.MixupCutmix`: ``(images, labels) ->
            (mixed images, soft targets (N, K))``. The loss then receives the soft targets, which
            ``torch.nn.CrossEntropyLoss`` accepts as class probabilities (label smoothing and class weights included).
        *args, **kwargs: as :class:`RobustStepTrainer`.

    Iteration output: ``{"image": (N, C, H, W), "label": (N,), "pred": (N, K) logits, "loss": scalar}``; "image" and
    "label" are the unmixed batch.
    """

    def __init__(self, *args: Any, mixer: Any = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.mixer = mixer

    def forward_loss(self, engine: ClassificationTrainer, batchdata: Any) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        images = batch_images(batchdata, engine.state.device, engine.non_blocking)
        labels = torch.as_tensor(batchdata["label"]).reshape(-1).long().to(engine.state.device)
        inputs, targets = engine.mixer(images, labels) if engine.mixer is not None else (images, labels)
        logits = engine.network(inputs)
        loss = engine.loss_function(logits.float(), targets)
        return loss, {"image": images, "label": labels, "pred": logits.detach().float()}








def freeze_encoder(model: nn.Module) -> nn.Module:
    """Linear probing: only the head trains (the BatchNorm of a linear-probe head has no affine parameters)."""
    inner = getattr(model, "module", model)
    for name, param in inner.named_parameters():
        param.requires_grad = name.startswith("head.")
    return model


def class_weights(datalist: list[dict[str, Any]], num_classes: int) -> torch.Tensor:
    """scikit-learn's "balanced" class weights ``n / (n_present * count_c)``; a class absent from the data gets 0.

    The weights average 1 over the items. scikit-learn refuses a class without items, so the present classes are
    weighted among themselves and an absent one gets 0: with label smoothing or mixup targets, which put mass on
    every class, the loss then does not pull towards a class the training data never shows.

    Args:
        datalist: items with an integer ``"label"`` in [0, num_classes).
        num_classes: K.

    Returns:
        (K,) float32 weights for ``torch.nn.CrossEntropyLoss(weight=...)``.
    """
    from sklearn.utils.class_weight import compute_class_weight

    labels = np.array([int(d["label"]) for d in datalist], dtype=np.int64)
    if len(labels) == 0:
        raise ValueError("cannot weight classes of an empty datalist")
    if labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(f"labels must be in [0, {num_classes}), got {sorted(set(labels.tolist()))!r}")
    present = np.unique(labels)
    weights = np.zeros(num_classes, dtype=np.float64)
    weights[present] = compute_class_weight("balanced", classes=present, y=labels)
    return torch.tensor(weights, dtype=torch.float32)


def balanced_sampler(datalist: list[dict[str, Any]], seed: int = 0) -> torch.utils.data.WeightedRandomSampler:
    """Sampler drawing every class equally often (with replacement), one epoch = len(datalist) draws."""
    labels = np.array([int(d["label"]) for d in datalist])
    counts = np.bincount(labels)
    weights = 1.0 / counts[labels]
    return torch.utils.data.WeightedRandomSampler(weights.tolist(), num_samples=len(labels), replacement=True,
                                                  generator=torch.Generator().manual_seed(seed))








