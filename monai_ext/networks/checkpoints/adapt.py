"""Adapting a filtered state dict to a model of another size: position-embedding interpolation, input-channel changes, shape checks."""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from monai_ext.io.checkpoints import CheckpointError
from monai_ext.networks.checkpoints.layouts import StateDict


def interpolate_pos_embed(pos: torch.Tensor, grid_size: tuple[int, int], num_extra_tokens: int = 1) -> torch.Tensor:
    """Resize a (1, extra + h*w, D) position embedding to another patch grid by bicubic interpolation.

    The source grid must be square (as every released checkpoint is); the extra (cls) tokens are kept as they are.

    Returns:
        (1, extra + grid_h * grid_w, D).
    """
    extra, patches = pos[:, :num_extra_tokens], pos[:, num_extra_tokens:]
    side = int(round(patches.shape[1] ** 0.5))
    if side * side != patches.shape[1]:
        raise CheckpointError(f"cannot interpolate a non-square position grid of {patches.shape[1]!r} patches")
    if (side, side) == tuple(grid_size):
        return pos
    dim = patches.shape[-1]
    grid = patches.reshape(1, side, side, dim).permute(0, 3, 1, 2).float()
    grid = F.interpolate(grid, size=tuple(grid_size), mode="bicubic", align_corners=False)
    patches = grid.permute(0, 2, 3, 1).reshape(1, -1, dim).to(pos.dtype)
    return torch.cat([extra, patches], dim=1)


def adapt_patch_embed_channels(weight: torch.Tensor, in_chans: int) -> torch.Tensor:
    """Convert a patch-embedding kernel (D, C, P, P) between 3 and 1 input channels.

    3 -> 1 sums the RGB kernels (a gray image replicated to RGB gives the same response); 1 -> 3 divides the kernel
    by 3 and replicates it (same response to a replicated gray image).
    """
    old = weight.shape[1]
    if old == in_chans:
        return weight
    if (old, in_chans) == (3, 1):
        return weight.sum(dim=1, keepdim=True)
    if (old, in_chans) == (1, 3):
        return weight.repeat(1, 3, 1, 1) / 3.0
    raise CheckpointError(f"cannot adapt patch embedding from {old!r} to {in_chans!r} channels")


def adapt_decoder_pred_channels(param: torch.Tensor, patch_size: int, in_chans: int) -> torch.Tensor:
    """Convert ``decoder_pred`` weight (P*P*C, Dd) or bias (P*P*C,) between 3 and 1 output channels.

    Outputs are laid out (row, column, channel); 3 -> 1 averages the channel outputs, 1 -> 3 replicates them.
    """
    old = param.shape[0] // (patch_size * patch_size)
    if old == in_chans:
        return param
    grouped = param.reshape(patch_size * patch_size, old, *param.shape[1:])
    if (old, in_chans) == (3, 1):
        return grouped.mean(dim=1).reshape(patch_size * patch_size, *param.shape[1:])
    if (old, in_chans) == (1, 3):
        return grouped.repeat_interleave(3, dim=1).reshape(-1, *param.shape[1:])
    raise CheckpointError(f"cannot adapt decoder_pred from {old!r} to {in_chans!r} channels")


def adapt_to_model(state_dict: StateDict, model: nn.Module) -> tuple[StateDict, list[str]]:
    """Fit position grids and input channels of ``state_dict`` to ``model``. Returns (new dict, adapted keys)."""
    target = model.state_dict()
    out, adapted = dict(state_dict), []
    for key in sorted(set(out) & set(target)):
        if out[key].ndim != target[key].ndim:  # no adaptation changes a weight's rank: a wrong file, said plainly
            raise CheckpointError(f"{key}: checkpoint shape {tuple(out[key].shape)}, the model's "
                                  f"{tuple(target[key].shape)}")
    grid = model.patch_embed.grid_size
    for key in ("pos_embed", "decoder_pos_embed"):
        if key in out and key in target and out[key].shape != target[key].shape:
            out[key] = interpolate_pos_embed(out[key], grid)
            adapted.append(key)
    key = "patch_embed.proj.weight"
    if key in out and out[key].shape[1] != target[key].shape[1]:
        out[key] = adapt_patch_embed_channels(out[key], target[key].shape[1])
        adapted.append(key)
    for key in ("decoder_pred.weight", "decoder_pred.bias"):
        if key in out and key in target and out[key].shape != target[key].shape:
            out[key] = adapt_decoder_pred_channels(out[key], model.patch_size, model.in_chans)
            adapted.append(key)
    return out, adapted


def check_shapes(state_dict: Mapping[str, torch.Tensor], model: nn.Module, source: str) -> None:
    """Raise ``CheckpointError`` naming the first key whose shape does not fit ``model``."""
    target = model.state_dict()
    for key, value in state_dict.items():
        if key in target and tuple(value.shape) != tuple(target[key].shape):
            raise CheckpointError(
                f"{source}: key {key!r} has shape {tuple(value.shape)!r}, the model expects {tuple(target[key].shape)!r}"
            )
