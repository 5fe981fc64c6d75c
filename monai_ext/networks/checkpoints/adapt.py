"""Adapting a filtered state dict to a model of another size: position-embedding interpolation, input-channel changes, shape checks."""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from monai_ext.io.checkpoints import CheckpointError
from monai_ext.networks.checkpoints.layouts import StateDict
from monai_ext.networks.input_stats import input_stats

#: The ViT sizes by embedding width, named in the hint for a file of another size.
WIDTH_NAMES = {192: "mae_vit_tiny_patch16_dec128d2b", 384: "mae_vit_small_patch16_dec256d4b",
               768: "mae_vit_base_patch16_dec512d8b", 1024: "mae_vit_large_patch16_dec512d8b"}


def interpolate_pos_embed(pos: torch.Tensor, grid_size: tuple[int, int], num_extra_tokens: int = 1,
                          source_grid: tuple[int, int] | None = None) -> torch.Tensor:
    """Resize a (1, extra + h*w, D) position embedding to another patch grid by bicubic interpolation.

    The source grid is ``source_grid`` (h, w) when the file records it (this project's files), else taken as square
    (as every released checkpoint is); the extra (cls) tokens are kept as they are.

    Returns:
        (1, extra + grid_h * grid_w, D).
    """
    extra, patches = pos[:, :num_extra_tokens], pos[:, num_extra_tokens:]
    if source_grid is None:
        side = int(round(patches.shape[1] ** 0.5))
        if side * side != patches.shape[1]:
            whole = pos.shape[1]
            if num_extra_tokens and int(round(whole ** 0.5)) ** 2 == whole:  # e.g. 196 = 14 x 14 with no slot left
                raise CheckpointError(f"its position embedding has {whole} entries, a {int(round(whole ** 0.5))}-square "
                                      f"patch grid with no slot for the {num_extra_tokens} cls token(s) this ViT puts "
                                      "first (timm's no_embed_class layout), which this model's layout does not hold")
            raise CheckpointError(f"cannot interpolate a non-square position grid of {patches.shape[1]!r} patches "
                                  "without a record of its shape")
        source_grid = (side, side)
    height, width = source_grid
    if height * width != patches.shape[1]:
        raise CheckpointError(f"the recorded {height} x {width} patch grid does not fit a position embedding of "
                              f"{patches.shape[1]!r} patches")
    if (height, width) == tuple(grid_size):
        return pos
    dim = patches.shape[-1]
    grid = patches.reshape(1, height, width, dim).permute(0, 3, 1, 2).float()
    grid = F.interpolate(grid, size=tuple(grid_size), mode="bicubic", align_corners=False)
    patches = grid.permute(0, 2, 3, 1).reshape(1, -1, dim).to(pos.dtype)
    return torch.cat([extra, patches], dim=1)


def adapt_patch_embed(weight: torch.Tensor, bias: torch.Tensor | None,
                      in_chans: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Convert a patch embedding, kernel (D, C, P, P) and bias (D,), between 3 and 1 input channels so that it gives
    the same response to a gray image through either pipeline's normalisation.

    The two pipelines normalise differently (:func:`~monai_ext.networks.input_stats.input_stats`): 3 channels with
    ImageNet's per-channel statistics, 1 channel with their averages. Summing the RGB kernels alone answers
    ``(g - m_c) / s_c`` with ``(g - m) / s``: a gain off by up to 1.3 % and a bias shift per feature. So the kernel a
    gray pixel sees, ``A = sum_c W_c / s_c`` (in raw intensity units), is shared among the new channels as
    ``W'_c = A * s'_c / C'``, and the bias absorbs the difference of the two mean offsets,
    ``b' = b - sum_c sum_k W_c m_c / s_c + sum_k A * mean_c(m'_c)``. A pipeline with other statistics than these
    would need its own.

    Returns:
        (kernel (D, in_chans, P, P), bias (D,) or None where the file has none).
    """
    old = weight.shape[1]
    if old == in_chans:
        return weight, bias
    if {old, in_chans} != {1, 3}:
        raise CheckpointError(f"cannot adapt patch embedding from {old!r} to {in_chans!r} channels")
    (mean, std), (new_mean, new_std) = input_stats(old), input_stats(in_chans)
    source = weight.double()
    gray = sum(source[:, c] / std[c] for c in range(old))  # (D, P, P): the response to one unit of raw gray
    new_weight = torch.stack([gray * new_std[c] / in_chans for c in range(in_chans)], dim=1).to(weight.dtype)
    if bias is None:
        return new_weight, None
    offset = sum(source[:, c].sum(dim=(1, 2)) * mean[c] / std[c] for c in range(old))
    new_offset = gray.sum(dim=(1, 2)) * (sum(new_mean) / in_chans)
    return new_weight, (bias.double() - offset + new_offset).to(bias.dtype)


def adapt_decoder_pred_channels(param: torch.Tensor, patch_size: int, in_chans: int) -> torch.Tensor:
    """Convert ``decoder_pred`` weight (P*P*C, Dd) or bias (P*P*C,) between 3 and 1 output channels.

    Outputs are laid out (row, column, channel); 3 -> 1 averages the channel outputs, 1 -> 3 replicates them.
    """
    area = patch_size * patch_size
    if param.shape[0] % area:  # another patch size: no channel count makes these outputs
        raise CheckpointError(f"cannot adapt decoder_pred of {param.shape[0]!r} outputs to {patch_size} x "
                              f"{patch_size} patches: not a whole number of channels")
    old = param.shape[0] // area
    if old == in_chans:
        return param
    grouped = param.reshape(patch_size * patch_size, old, *param.shape[1:])
    if (old, in_chans) == (3, 1):
        return grouped.mean(dim=1).reshape(patch_size * patch_size, *param.shape[1:])
    if (old, in_chans) == (1, 3):
        return grouped.repeat_interleave(3, dim=1).reshape(-1, *param.shape[1:])
    raise CheckpointError(f"cannot adapt decoder_pred from {old!r} to {in_chans!r} channels")


def _file_grid(pos: torch.Tensor, source_grid: tuple[int, int] | None,
              num_extra_tokens: int = 1) -> tuple[int, int] | None:
    """The (h, w) patch grid a (1, extra + h*w, D) position embedding belongs to: ``source_grid`` where the file
    records it, else (side, side) for a square count (every released checkpoint is square), else None (unknown).
    """
    if source_grid is not None:
        return (int(source_grid[0]), int(source_grid[1]))
    patches = pos.shape[1] - num_extra_tokens
    side = math.isqrt(max(patches, 0))
    return (side, side) if side * side == patches else None


def _channel_change(param: torch.Tensor, model: nn.Module) -> bool:
    """Whether a ``decoder_pred`` weight or bias differs from ``model``'s by its channels alone: P*P*1 or P*P*3
    outputs for the model's patch P. Another patch size (a ViT-H/14 file into a /16 model) is left for
    :func:`check_shapes`, which names the key and the --arch to give, where reshaping it crashed."""
    area = model.patch_embed.patch_size ** 2
    return param.shape[0] in (area, 3 * area)


def adapt_to_model(state_dict: StateDict, model: nn.Module,
                   source_grid: tuple[int, int] | None = None) -> tuple[StateDict, list[str]]:
    """Fit position grids and input channels of ``state_dict`` to ``model``. Returns (new dict, adapted keys).

    ``source_grid`` is the (h, w) patch grid the file records (:func:`recorded_geometry`); a file that records none
    (released USF-MAE, Facebook, timm, MONAI) has a square grid where its patch count is a square. Either way a grid
    of the same count but another shape (12 x 16 into 16 x 12, 14 x 14 into 7 x 28) is resized too, where comparing
    sizes alone loaded it as it was, each embedding at another image position.
    """
    target = model.state_dict()
    out, adapted = dict(state_dict), []
    for key in sorted(set(out) & set(target)):
        if out[key].ndim != target[key].ndim:  # no adaptation changes a weight's rank: a wrong file, said plainly
            raise CheckpointError(f"{key}: checkpoint shape {tuple(out[key].shape)}, the model's "
                                  f"{tuple(target[key].shape)}")
    grid = tuple(model.patch_embed.grid_size)
    for key in ("pos_embed", "decoder_pos_embed"):
        if key not in out or key not in target:
            continue
        known = _file_grid(out[key], source_grid)
        if out[key].shape != target[key].shape or (known is not None and known != grid):
            # an unknown (non-square, unrecorded) grid of another count is refused there, naming the count
            out[key] = interpolate_pos_embed(out[key], grid, source_grid=known)
            adapted.append(key)
    key, bias_key = "patch_embed.proj.weight", "patch_embed.proj.bias"
    if key in out and out[key].shape[1] != target[key].shape[1]:
        out[key], bias = adapt_patch_embed(out[key], out.get(bias_key), target[key].shape[1])
        adapted.append(key)
        if bias is not None:
            out[bias_key] = bias
            adapted.append(bias_key)
    for key in ("decoder_pred.weight", "decoder_pred.bias"):
        if key in out and key in target and out[key].shape != target[key].shape and _channel_change(out[key], model):
            out[key] = adapt_decoder_pred_channels(out[key], model.patch_size, model.in_chans)
            adapted.append(key)
    return out, adapted


def check_shapes(state_dict: Mapping[str, torch.Tensor], model: nn.Module, source: str) -> None:
    """Raise ``CheckpointError`` naming the first key whose shape does not fit ``model``."""
    target = model.state_dict()
    for key, value in state_dict.items():
        if key in target and tuple(value.shape) != tuple(target[key].shape):
            raise CheckpointError(f"{source}: key {key!r} has shape {tuple(value.shape)!r}, the model expects "
                                  f"{tuple(target[key].shape)!r}{_shape_hint(key, value, target[key])}")


def _shape_hint(key: str, value: torch.Tensor, wanted: torch.Tensor) -> str:
    """What to change for a misfit the shapes alone do not explain: another encoder width (told by ``cls_token``) or
    another patch size (told by the patch kernel, e.g. a ViT-H/14 file into a /16 model); else nothing."""
    if key == "cls_token" and value.shape[-1] != wanted.shape[-1]:
        width = value.shape[-1]
        return (f": the file's encoder is {width} wide, the model's {wanted.shape[-1]}; give the --arch of that width "
                f"({WIDTH_NAMES.get(width, 'see the registered architectures')})")
    if key == "patch_embed.proj.weight" and value.shape[-2:] != wanted.shape[-2:]:
        return (f": the file's patches are {tuple(value.shape[-2:])!r} pixels, the model's "
                f"{tuple(wanted.shape[-2:])!r}; give the --arch of that patch size (see the registered architectures)")
    return ""


def recorded_geometry(checkpoint: object) -> dict[str, object]:
    """What a file of this project records of its geometry: ``grid`` (h, w) of patches, ``num_heads`` and
    ``decoder_num_heads`` (weights cannot tell 3 heads of 64 from 6 of 32); empty for foreign files, which record
    nothing.

    Raises:
        CheckpointError: a record whose image or patch size is not a whole number or a pair of them.
    """
    record = checkpoint.get("arch") if isinstance(checkpoint, Mapping) else None
    args = record.get("arch_args") if isinstance(record, Mapping) else None
    if not isinstance(args, Mapping):
        return {}
    found: dict[str, object] = {}
    img, patch = args.get("img_size"), args.get("patch_size")
    if img is not None and patch is not None:
        size = [img, img] if isinstance(img, int) else list(img) if isinstance(img, (list, tuple)) else None
        if size is None or len(size) != 2 or not all(isinstance(v, int) for v in (*size, patch)) or patch < 1:
            raise CheckpointError(f"its architecture record has img_size {img!r} and patch_size {patch!r}: not whole "
                                  "numbers (or a pair for the image)")
        found["grid"] = (size[0] // patch, size[1] // patch)
    for key in ("num_heads", "decoder_num_heads"):
        if isinstance(args.get(key), int):
            found[key] = args[key]
    return found


def check_heads(geometry: Mapping[str, object], model: nn.Module) -> None:
    """Refuse a file recorded with another number of attention heads (encoder's, or decoder's for an MAE) than
    ``model``'s: the weights fit either way, and the loaded attention would split its features into other heads than
    it was trained with."""
    model_args = getattr(model, "arch_args", None) or {}
    for key, part in (("num_heads", "encoder"), ("decoder_num_heads", "decoder")):
        heads, model_heads = geometry.get(key), model_args.get(key)
        if heads is not None and model_heads is not None and heads != model_heads:
            raise CheckpointError(f"its {part} was trained with {heads} attention heads, the model has {model_heads}: "
                                  f"give the matching --arch (or {key})")
