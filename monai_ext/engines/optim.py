"""Optimiser and learning-rate schedule of the MAE recipes."""

from __future__ import annotations

import logging
import math
import warnings
from typing import Any

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

from monai_ext.engines.distributed import is_main_process
from monai_ext.networks.checkpoints import unwrapped

#: Parameters that never get weight decay besides biases and norm weights (every tensor of ndim <= 1), by the last
#: part of their name: the MAE / timm names, and MONAI's for the same tokens and position embeddings (its ``ViT``
#: learns ``patch_embedding.position_embeddings``, which an external ``network_def`` trained with weight decay).
NO_DECAY_NAMES = ("cls_token", "mask_token", "pos_embed", "decoder_pos_embed",
                  "position_embeddings", "mask_tokens", "decoder_pos_embedding")

logger = logging.getLogger(__name__)


def scaled_lr(base_lr: float, batch_size: int, accumulation_steps: int = 1, world_size: int = 1,
              announce: bool = False) -> float:
    """The MAE scaling rule: ``lr = base_lr * batch_size * accumulation_steps * world_size / 256``.

    The product is the effective batch: images per optimiser step over all processes.

    Args:
        base_lr: lr for an effective batch of 256.
        batch_size: images per process per micro-step.
        accumulation_steps: micro-steps per optimiser step.
        world_size: processes (GPUs).
        announce: print the rule with its parts (on rank 0 only), as a run does at start.
    """
    parts = {"batch_size": batch_size, "accumulation_steps": accumulation_steps, "world_size": world_size}
    # a command-line typo (--base_lr 1e-3x, --batch_size 16.5x) arrives as text: refused here, not by a TypeError
    numbers = [base_lr, *parts.values()]
    if any(isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) for v in numbers):
        raise ValueError(f"need base_lr > 0 and whole numbers >= 1 for {sorted(parts)}, got {base_lr!r} and {parts!r}")
    if base_lr <= 0 or any(int(v) != v or v < 1 for v in parts.values()):
        raise ValueError(f"need base_lr > 0 and whole numbers >= 1 for {sorted(parts)}, got {base_lr!r} and {parts!r}")
    lr = base_lr * batch_size * accumulation_steps * world_size / 256.0
    if announce and is_main_process():
        print(f"lr = base_lr {base_lr:g} x batch {batch_size} x accumulation {accumulation_steps} x world "
              f"{world_size} / 256 = {lr:g} (effective batch {batch_size * accumulation_steps * world_size})",
              flush=True)
    return lr


def param_groups_weight_decay(
    model: nn.Module, weight_decay: float, no_decay_all: bool = False
) -> list[dict]:
    """Split trainable parameters into a decayed group and one without decay (biases, norms, tokens).

    Args:
        model: the network (wrappers such as DDP are fine: names are matched by their last part).
        weight_decay: decay of the first group.
        no_decay_all: decay every parameter alike (the published USF-MAE notebook did).

    Returns:
        Two parameter groups for an optimiser.
    """
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        plain = param.ndim <= 1 or name.split(".")[-1] in NO_DECAY_NAMES
        (no_decay if plain and not no_decay_all else decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_adamw(
    model: nn.Module,
    lr: float,
    weight_decay: float = 0.05,
    betas: tuple[float, float] = (0.9, 0.95),
    decay_everything: bool = False,
) -> torch.optim.AdamW:
    """AdamW over :func:`param_groups_weight_decay`, fused when the parameters are on CUDA."""
    fused = all(p.is_cuda for p in model.parameters())
    groups = param_groups_weight_decay(model, weight_decay, no_decay_all=decay_everything)
    return torch.optim.AdamW(groups, lr=lr, betas=tuple(betas), fused=fused or None)


def warmup_cosine_factor(step: int, warmup_steps: int, total_steps: int, min_factor: float) -> float:
    """Multiplier of the peak lr at ``step``: linear warmup, then a half cosine from 1 down to ``min_factor``."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_factor + (1.0 - min_factor) * 0.5 * (1.0 + math.cos(math.pi * progress))


class WarmupCosineLR(LambdaLR):
    """Per-iteration warmup and half-cosine decay to ``min_lr``, as in MAE's ``lr_sched``.

    MONAI's ``WarmupCosineSchedule`` decays to zero and clamps at its end lr, which is a different curve from the
    MAE recipe's ``min_lr + (lr - min_lr) * cosine``; hence this small class.

    Args:
        optimizer: optimiser whose groups' initial lr is the peak lr.
        total_steps: steps (``step()`` calls) of the whole run. The bundles step it every iteration, so with
            gradient accumulation these are micro-batches (epochs x batches per epoch), not optimiser steps: counted
            in optimiser steps, the schedule would end after 1 / accumulation_steps of the run and stay at ``min_lr``.
        warmup_steps: steps of linear warmup, at least 0 (or give ``warmup_fraction``).
        warmup_fraction: warmup as a fraction of ``total_steps`` when ``warmup_steps`` is None.
        min_lr: final learning rate.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        total_steps: int,
        warmup_steps: int | None = None,
        warmup_fraction: float = 0.1,
        min_lr: float = 0.0,
        last_epoch: int = -1,
    ) -> None:
        if total_steps < 1:
            raise ValueError(f"total_steps must be at least 1, got {total_steps!r}")
        if warmup_steps is None:
            if not 0.0 <= warmup_fraction < 1.0:
                raise ValueError(f"warmup_fraction must be in [0, 1), got {warmup_fraction!r}")
            warmup_steps = int(round(warmup_fraction * total_steps))
        if warmup_steps < 0:  # a negative warmup started the run part-way down the cosine, below its peak lr
            raise ValueError(f"warmup_steps must be at least 0, got {warmup_steps!r}")
        self.total_steps, self.warmup_steps = int(total_steps), int(warmup_steps)
        # One multiplier for every group: groups scaled by layer-wise decay keep their ratio down to the end, as in
        # MAE (where min_lr is reached by the largest group).
        peak = max(group.get("initial_lr", group["lr"]) for group in optimizer.param_groups)
        if min_lr >= peak and is_main_process():
            # min_lr is absolute while the peak scales with the batch: a small batch can put the peak below it
            logger.warning("min_lr %g is not below the peak lr %g: the lr stays at its peak after warmup, with no "
                           "cosine decay; lower min_lr (or raise base_lr or the batch) for a decaying schedule",
                           min_lr, peak)
        factor = min(1.0, min_lr / peak)
        super().__init__(optimizer, lambda s: warmup_cosine_factor(s, self.warmup_steps, self.total_steps, factor),
                         last_epoch)

    def step(self, epoch: int | None = None) -> None:
        """One step along the schedule (PyTorch's ``step``), without its warning of a step before the optimiser's.

        With gradient accumulation the bundles step the schedule every micro-batch, so its first step comes before
        the first optimiser step, and PyTorch warned that "the first value of the learning rate schedule" was
        skipped: none is (the lr is computed from the step count), so the warning only misled.

        Filtered at the first step only, where PyTorch checks: ``catch_warnings`` resets every module's record of
        the warnings already shown, so entered at each step it showed a warning raised at every iteration (a
        transform's, a deprecation) once per step instead of once.
        """
        if self._step_count != 1:
            super().step(epoch)
            return
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler\.step\(\)` before "
                                    r"`optimizer\.step\(\)`")
            super().step(epoch)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the position in the schedule (the steps taken), keeping this run's shape.

        The shape (``total_steps``, ``warmup_steps``, the peak lr of each group) comes from this run's settings, as
        MAE's ``lr_sched`` recomputes the lr from its arguments at every step: a finished run resumed with more
        epochs continues on the longer cosine (the saved shape kept it at ``min_lr`` for every added epoch), and a
        run resumed on another number of processes uses the lr it announced for its effective batch. The
        optimiser's groups, which ``optimizer.load_state_dict`` set to the saved run's lr, get this schedule's.
        """
        own_shape = {"total_steps": self.total_steps, "warmup_steps": self.warmup_steps, "base_lrs": list(self.base_lrs)}
        super().load_state_dict({**state_dict, **own_shape})
        self.seek(self.last_epoch)

    def seek(self, step: int) -> None:
        """Move to ``step`` (steps taken) and give every optimiser group the schedule's lr there."""
        if step < 0:
            raise ValueError(f"step must be >= 0, got {step!r}")
        self.last_epoch = int(step)
        self._last_lr = [base * factor(self.last_epoch) for factor, base in zip(self.lr_lambdas, self.base_lrs)]
        for group, lr in zip(self.optimizer.param_groups, self._last_lr):
            group["lr"] = lr


def layer_id_for_vit(name: str, num_layers: int) -> int:
    """MAE's ``get_layer_id_for_vit``: embeddings 0, block i -> i + 1, everything after the blocks num_layers + 1."""
    if name in ("cls_token", "pos_embed") or name.startswith("patch_embed"):
        return 0
    if name.startswith("blocks."):
        return int(name.split(".")[1]) + 1
    return num_layers + 1


def param_groups_layer_decay(model: nn.Module, lr: float, weight_decay: float, layer_decay: float) -> list[dict]:
    """Parameter groups with layer-wise lr decay (MAE fine-tuning): block i gets ``lr * decay^(L + 1 - (i + 1))``.

    No weight decay on biases, norms, tokens and position embeddings (:data:`NO_DECAY_NAMES`). Parameters outside
    the embeddings and the blocks (the final norm, a classifier's head, a segmenter's decoder) are layer L + 1 and get
    ``lr`` itself. Models without ViT ``blocks`` (the CNN baselines) get the plain two groups at ``lr``.
    """
    if not 0.0 < layer_decay <= 1.0:
        raise ValueError(f"layer_decay must be in (0, 1], got {layer_decay!r}")
    # torch.compile's wrapper too: its parameters are named "_orig_mod.blocks.3...", so no name had a layer and every
    # parameter of a compiled ViT got the full lr (layer decay silently off)
    inner = unwrapped(getattr(model, "module", model))
    if not hasattr(inner, "blocks"):
        groups = param_groups_weight_decay(inner, weight_decay)
        return [{**g, "lr": lr} for g in groups]
    num_layers = len(inner.blocks)
    groups: dict[tuple[int, bool], dict] = {}
    for name, param in inner.named_parameters():
        if not param.requires_grad:
            continue
        no_decay = param.ndim <= 1 or name.split(".")[-1] in NO_DECAY_NAMES
        layer = layer_id_for_vit(name, num_layers)
        scale = layer_decay ** (num_layers + 1 - layer)
        group = groups.setdefault((layer, no_decay), {"params": [], "weight_decay": 0.0 if no_decay else weight_decay,
                                                       "lr": lr * scale, "lr_scale": scale})
        group["params"].append(param)
    return list(groups.values())


def build_finetune_adamw(model: nn.Module, lr: float, weight_decay: float = 0.05, layer_decay: float = 0.65,
                         betas: tuple[float, float] = (0.9, 0.999)) -> torch.optim.AdamW:
    """AdamW over :func:`param_groups_layer_decay` (fused on CUDA); ``layer_decay`` defaults to MAE's value for
    ViT-B (0.65; MAE uses 0.75 for ViT-L)."""
    fused = all(p.is_cuda for p in model.parameters())
    groups = param_groups_layer_decay(model, lr, weight_decay, layer_decay)
    return torch.optim.AdamW(groups, lr=lr, betas=tuple(betas), fused=fused or None)
