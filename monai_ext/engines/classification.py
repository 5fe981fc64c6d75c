"""Fine-tuning engine parts: the classification trainer, layer-wise lr decay, report writing."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from monai.engines import SupervisedEvaluator
from torch import nn
from torch.utils.data import DistributedSampler

from monai_ext.engines.base import RobustStepTrainer, ShardSafeEvaluatorMixin, batch_images
from monai_ext.engines.distributed import rank as distributed_rank
from monai_ext.engines.distributed import world_size

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


class ClassificationEvaluator(ShardSafeEvaluatorMixin, SupervisedEvaluator):
    """MONAI's ``SupervisedEvaluator`` that also works when a rank's validation shard is empty (see
    :class:`~monai_ext.engines.base.ShardSafeEvaluatorMixin`)."""


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


def balanced_weights(datalist: list[dict[str, Any]]) -> list[float]:
    """Per-item sampling weights 1 / (count of the item's class): every class is drawn equally often."""
    labels = np.array([int(d["label"]) for d in datalist])
    if len(labels) == 0:
        raise ValueError("cannot balance an empty datalist")
    return (1.0 / np.bincount(labels)[labels]).tolist()


class DistributedBalancedSampler(DistributedSampler):
    """Weighted sampling with replacement split over ranks: the ranks' draws together are one single-process draw.

    Each epoch draws ``ceil(N / world) * world`` indices from the weights with a generator seeded by
    (``seed``, ``epoch``) (the same on every rank) and rank r takes draws r, r + world, ... Hand-written because MONAI's
    ``DistributedWeightedRandomSampler`` samples each rank's shard with the global weights, which under-draws rare
    classes when shards are small (0.42 instead of 0.5 for the rare class of a 90/10 set of 100 on 8 ranks).
    Deterministic per epoch, so a resumed run draws what the uninterrupted one drew. A ``DistributedSampler``,
    so MONAI's workflows call :meth:`set_epoch` at each epoch.

    Args:
        weights: N non-negative weights, one per item.
        num_replicas, rank: the world (default: the current process group).
        seed: base seed of the draws.
    """

    def __init__(self, weights: Sequence[float], num_replicas: int | None = None, rank: int | None = None,
                 seed: int = 0) -> None:
        self.weights = torch.as_tensor(list(weights), dtype=torch.double)
        if self.weights.ndim != 1 or len(self.weights) == 0 or (self.weights < 0).any() or self.weights.sum() <= 0:
            raise ValueError(f"weights must be a non-empty list of non-negative numbers, not all 0; got {weights!r}")
        num_replicas = world_size() if num_replicas is None else num_replicas
        rank = distributed_rank() if rank is None else rank
        super().__init__(range(len(self.weights)), num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed)

    def __iter__(self) -> Iterator[int]:
        # (seed, epoch) as one number without collisions: seed + epoch made seed 1's epoch 0 seed 0's epoch 1
        gen = torch.Generator().manual_seed(int(np.random.SeedSequence([self.seed, self.epoch]).generate_state(1)[0]))
        draws = torch.multinomial(self.weights, self.total_size, replacement=True, generator=gen)
        return iter(draws[self.rank :: self.num_replicas].tolist())

    def __len__(self) -> int:
        return self.num_samples


def balanced_sampler(
    datalist: list[dict[str, Any]], seed: int = 0, distributed: bool | None = None
) -> torch.utils.data.Sampler:
    """Sampler drawing every class equally often (with replacement), one epoch = len(datalist) draws in all.

    A :class:`DistributedBalancedSampler` in one process too (a world of one): its draws are seeded by
    (``seed``, ``epoch``), so a resumed run draws what the uninterrupted one did. PyTorch's ``WeightedRandomSampler``
    keeps its generator's state inside itself, out of the checkpoints' reach: a run resumed at epoch 3 drew epoch 1's
    indices again.

    Args:
        datalist: items with integer "label".
        seed: seed of the draws.
        distributed: split the draws over the ranks; default: when running in a process group of more than one rank.
    """
    weights = balanced_weights(datalist)
    if distributed is None:
        distributed = world_size() > 1
    if distributed:
        return DistributedBalancedSampler(weights, seed=seed)
    return DistributedBalancedSampler(weights, num_replicas=1, rank=0, seed=seed)
