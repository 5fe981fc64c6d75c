"""Fine-tuning engine parts: the classification trainer, layer-wise lr decay, report writing."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ignite.engine import Engine, Events
from torch import nn

from monai_ext.engines.base import RobustStepTrainer, batch_images
from monai_ext.engines.distributed import is_main_process
from monai_ext.engines.handlers import atomic_write_bytes
from monai_ext.engines.optim import param_groups_weight_decay

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


def layer_id_for_vit(name: str, num_layers: int) -> int:
    """MAE's ``get_layer_id_for_vit``: embeddings 0, block i -> i + 1, everything after the blocks num_layers + 1."""
    if name in ("cls_token", "pos_embed") or name.startswith("patch_embed"):
        return 0
    if name.startswith("blocks."):
        return int(name.split(".")[1]) + 1
    return num_layers + 1


def param_groups_layer_decay(model: nn.Module, lr: float, weight_decay: float, layer_decay: float) -> list[dict]:
    """Parameter groups with layer-wise lr decay (MAE fine-tuning): block i gets ``lr * decay^(L + 1 - (i + 1))``.

    No weight decay on biases, norms and tokens. Models without ViT ``blocks`` (the CNN baselines) get the plain
    two groups at ``lr``.
    """
    if not 0.0 < layer_decay <= 1.0:
        raise ValueError(f"layer_decay must be in (0, 1], got {layer_decay!r}")
    inner = getattr(model, "module", model)
    if not hasattr(inner, "blocks"):
        groups = param_groups_weight_decay(inner, weight_decay)
        return [{**g, "lr": lr} for g in groups]
    num_layers = len(inner.blocks)
    groups: dict[tuple[int, bool], dict] = {}
    for name, param in inner.named_parameters():
        if not param.requires_grad:
            continue
        no_decay = param.ndim <= 1 or name in ("cls_token", "pos_embed")
        layer = layer_id_for_vit(name, num_layers)
        scale = layer_decay ** (num_layers + 1 - layer)
        group = groups.setdefault((layer, no_decay), {"params": [], "weight_decay": 0.0 if no_decay else weight_decay,
                                                       "lr": lr * scale, "lr_scale": scale})
        group["params"].append(param)
    return list(groups.values())


def build_finetune_adamw(model: nn.Module, lr: float, weight_decay: float = 0.05, layer_decay: float = 0.75,
                         betas: tuple[float, float] = (0.9, 0.999)) -> torch.optim.AdamW:
    """AdamW over :func:`param_groups_layer_decay` (fused on CUDA)."""
    fused = all(p.is_cuda for p in model.parameters())
    groups = param_groups_layer_decay(model, lr, weight_decay, layer_decay)
    return torch.optim.AdamW(groups, lr=lr, betas=tuple(betas), fused=fused or None)


def freeze_encoder(model: nn.Module) -> nn.Module:
    """Linear probing: only the head trains (the BatchNorm of a linear-probe head has no affine parameters)."""
    inner = getattr(model, "module", model)
    for name, param in inner.named_parameters():
        param.requires_grad = name.startswith("head.")
    return model


def class_weights(datalist: list[dict[str, Any]], num_classes: int) -> torch.Tensor:
    """Inverse-frequency class weights normalised to mean 1 (a class absent from the data gets weight 0)."""
    counts = np.bincount([int(d["label"]) for d in datalist], minlength=num_classes).astype(np.float64)
    weights = np.where(counts > 0, counts.sum() / np.maximum(counts, 1) / num_classes, 0.0)
    return torch.tensor(weights, dtype=torch.float32)


def balanced_sampler(datalist: list[dict[str, Any]], seed: int = 0) -> torch.utils.data.WeightedRandomSampler:
    """Sampler drawing every class equally often (with replacement), one epoch = len(datalist) draws."""
    labels = np.array([int(d["label"]) for d in datalist])
    counts = np.bincount(labels)
    weights = 1.0 / counts[labels]
    return torch.utils.data.WeightedRandomSampler(weights.tolist(), num_samples=len(labels), replacement=True,
                                                  generator=torch.Generator().manual_seed(seed))


def plot_confusion_matrix(matrix: list[list[int]], class_names: list[str], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = np.asarray(matrix)
    fig, ax = plt.subplots(figsize=(2.6 + 0.8 * len(class_names), 2.2 + 0.8 * len(class_names)), dpi=120)
    ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(len(class_names)), class_names, rotation=45, ha="right")
    ax.set_yticks(range(len(class_names)), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    for (i, j), v in np.ndenumerate(cm):
        ax.text(j, i, str(v), ha="center", va="center", color="white" if v > cm.max() / 2 else "black")
    fig.tight_layout()
    save_figure(fig, path)


def plot_roc(roc: dict[str, dict[str, list[float]]], auc: float, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 4.2), dpi=120)
    for name, curve in roc.items():
        ax.plot(curve["fpr"], curve["tpr"], label=name)
    ax.plot([0, 1], [0, 1], color="gray", linestyle=":")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title(f"{title} (AUC {auc:.3f})")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    save_figure(fig, path)


def save_figure(fig: Any, path: Path) -> None:
    """Save a matplotlib figure as PNG atomically and close it."""
    import matplotlib.pyplot as plt
    from io import BytesIO

    buffer = BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())


class ClassificationReportWriter:
    """After an evaluation, write ``<prefix>report.json``, ``<prefix>confusion_matrix.png`` and ``<prefix>roc.png``.

    Args:
        output_dir: folder of the files.
        class_names: names of the classes.
        report_name: the ``ClassificationReport`` metric's name in ``state.metrics``.
        key_metric: the macro-F1 metric's name.
        prefix: file-name prefix (e.g. "test_").
        best_only: write only when macro-F1 improves on the best so far (during training).
    """

    def __init__(self, output_dir: str | os.PathLike, class_names: list[str], report_name: str = "report",
                 key_metric: str = "val_macro_f1", prefix: str = "", best_only: bool = False) -> None:
        self.folder = Path(output_dir)
        self.class_names = list(class_names)
        self.report_name, self.key_metric, self.prefix = report_name, key_metric, prefix
        self.best_only = best_only
        self.last_report: dict[str, Any] | None = None

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        score = float(engine.state.metrics[self.key_metric])
        if self.best_only and self.last_report is not None and score <= self.last_report["macro_f1"]:
            return
        report = {"macro_f1": score, **engine.state.metrics[self.report_name]}
        report["class_names"] = self.class_names
        self.last_report = report
        if not is_main_process():
            return
        atomic_write_bytes(self.folder / f"{self.prefix}report.json", json.dumps(report, indent=1).encode())
        title = f"macro-F1 {report['macro_f1']:.3f}"
        plot_confusion_matrix(report["confusion_matrix"], self.class_names, self.folder / f"{self.prefix}confusion_matrix.png", title)
        if report["roc"]:
            plot_roc(report["roc"], report["auc"], self.folder / f"{self.prefix}roc.png", "ROC")
        logger.info("classification report: %s (macro-F1 %.4f, accuracy %.4f, AUC %.4f)",
                    self.folder / f"{self.prefix}report.json", report["macro_f1"], report["accuracy"], report["auc"])
