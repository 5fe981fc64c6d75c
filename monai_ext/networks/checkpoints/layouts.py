"""Recognising a checkpoint's layout and mapping it to this project's MAE key names: one pure filter per foreign layout (timm's ``checkpoint_filter_fn`` pattern)."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

import torch

from monai_ext.io.checkpoints import CheckpointError

FORMAT_NAME = "monai_ext"


FORMAT_VERSION = 1


PREFIXES = ("module.", "_orig_mod.")


#: SHA-256 of the released 100-epoch USF-MAE checkpoint (from the published repository).
USF_MAE_100EP_SHA256 = "f815c629878c17136985af9f4fdc81c2cfa02a94e4d992c026699957f75ccb66"


StateDict = dict[str, torch.Tensor]


def strip_prefixes(state_dict: Mapping[str, torch.Tensor], prefixes: tuple[str, ...] = PREFIXES) -> StateDict:
    """Remove wrapper prefixes (DDP's ``module.``, ``torch.compile``'s ``_orig_mod.``) from every key, repeatedly."""
    out: StateDict = {}
    for key, value in state_dict.items():
        changed = True
        while changed:
            changed = False
            for prefix in prefixes:
                if key.startswith(prefix):
                    key, changed = key[len(prefix) :], True
        out[key] = value
    return out


def filter_usf_mae(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    """The released USF-MAE file: a plain MAE state dict already in our key names."""
    return strip_prefixes(state_dict)


def filter_facebook_mae(checkpoint: Mapping[str, Any]) -> StateDict:
    """Facebook MAE ``.pth``: ``{"model": state_dict, "optimizer"?, "epoch"?, "args"?, ...}``."""
    return strip_prefixes(checkpoint["model"])


def filter_timm_vit(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    """timm ``vit_*`` state dicts use our encoder key names already (the head, if any, is dropped later)."""
    return strip_prefixes(state_dict)


def filter_monai_ext(checkpoint: Mapping[str, Any]) -> StateDict:
    """This project's files: ``{"model": state_dict, "arch": {...}, ...}``."""
    return strip_prefixes(checkpoint["model"])


_MONAI_BLOCK_RENAMES = (
    (r"\.attn\.out_proj\.", ".attn.proj."),
    (r"\.mlp\.linear1\.", ".mlp.fc1."),
    (r"\.mlp\.linear2\.", ".mlp.fc2."),
)


def _with_zero_cls_slot(pos: torch.Tensor) -> torch.Tensor:
    """MONAI adds no position to the cls token; a zero first slot is the exact equivalent in our layout."""
    return torch.cat([torch.zeros_like(pos[:, :1]), pos], dim=1)


def _rename_monai_blocks(state_dict: Mapping[str, torch.Tensor], prefix: str, norm_name: str) -> StateDict:
    """Rename MONAI transformer blocks under ``prefix``; MONAI keeps the final norm as the last ``prefix.{n}``."""
    ids = {int(m.group(1)) for k in state_dict if (m := re.match(rf"{prefix}\.(\d+)\.", k))}
    last = max(ids) if ids else -1
    out: StateDict = {}
    for key, value in state_dict.items():
        if not key.startswith(prefix + "."):
            continue
        if key.startswith(f"{prefix}.{last}.") and key.count(".") == 2:  # e.g. blocks.12.weight: the final LayerNorm
            out[f"{norm_name}.{key.rsplit('.', 1)[1]}"] = value
            continue
        if ".norm_cross_attn." in key:  # unused in MONAI's self-attention blocks: dropped
            continue
        for pattern, repl in _MONAI_BLOCK_RENAMES:
            key = re.sub(pattern, repl, key)
        out[key] = value
    return out


def filter_monai_vit(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    """MONAI ``ViT`` (2-D, conv patch embedding) to our encoder names; its linear classification head becomes ``head``."""
    sd = strip_prefixes(state_dict)
    out: StateDict = {"cls_token": sd["cls_token"]}
    out["pos_embed"] = _with_zero_cls_slot(sd["patch_embedding.position_embeddings"])
    out["patch_embed.proj.weight"] = sd["patch_embedding.patch_embeddings.weight"]
    out["patch_embed.proj.bias"] = sd["patch_embedding.patch_embeddings.bias"]
    # ViT keeps its final norm as "norm.*", so no "blocks.{n}.weight" key exists for the renamer to take as one.
    out.update(_rename_monai_blocks(sd, "blocks", "norm"))
    for key, value in sd.items():
        if key.startswith("norm."):
            out[key] = value
        elif key.startswith("classification_head."):
            # Linear head with or without MONAI's Tanh post-activation (``classification_head.0.*`` then).
            out["head." + key.rsplit(".", 1)[1]] = value
    return out


def filter_monai_mae(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    """MONAI ``MaskedAutoEncoderViT`` (2-D) to our MAE names."""
    sd = strip_prefixes(state_dict)
    out: StateDict = {"cls_token": sd["cls_token"], "mask_token": sd["mask_tokens"]}
    out["pos_embed"] = _with_zero_cls_slot(sd["patch_embedding.position_embeddings"])
    out["decoder_pos_embed"] = _with_zero_cls_slot(sd["decoder_pos_embedding"])
    out["patch_embed.proj.weight"] = sd["patch_embedding.patch_embeddings.weight"]
    out["patch_embed.proj.bias"] = sd["patch_embedding.patch_embeddings.bias"]
    out.update(_rename_monai_blocks(sd, "blocks", "norm"))
    out.update(_rename_monai_blocks(sd, "decoder_blocks", "decoder_norm"))
    for key in ("decoder_embed.weight", "decoder_embed.bias", "decoder_pred.weight", "decoder_pred.bias"):
        out[key] = sd[key]
    return out



LAYOUT_FILTERS: dict[str, Callable[[Any], StateDict]] = {
    "monai_ext": filter_monai_ext,
    "facebook_mae": filter_facebook_mae,
    "usf_mae": filter_usf_mae,
    "monai_mae": filter_monai_mae,
    "monai_vit": filter_monai_vit,
    "timm_vit": filter_timm_vit,
}


def detect_layout(checkpoint: Any) -> str:
    """Name the layout of a loaded checkpoint (a key of ``LAYOUT_FILTERS``).

    Raises:
        CheckpointError: for anything that is not one of the known layouts.
    """
    if not isinstance(checkpoint, Mapping):
        raise CheckpointError(f"a checkpoint must be a dict, got {type(checkpoint).__name__!r}")
    arch = checkpoint.get("arch")
    if isinstance(arch, Mapping) and arch.get("format") == FORMAT_NAME and "model" in checkpoint:
        return "monai_ext"
    if isinstance(checkpoint.get("model"), Mapping):
        return "facebook_mae"
    keys = {k for k in strip_prefixes(checkpoint)}
    if "patch_embed.proj.weight" in keys:
        return "usf_mae" if "decoder_pred.weight" in keys else "timm_vit"
    if "patch_embedding.patch_embeddings.weight" in keys:
        return "monai_mae" if "decoder_pred.weight" in keys else "monai_vit"
    sample = sorted(keys)[:5]
    raise CheckpointError(f"unrecognised checkpoint layout; first keys: {sample!r}")


def to_state_dict(checkpoint: Any) -> tuple[str, StateDict]:
    """Detect the layout and map it to this project's key names. Returns ``(layout, state_dict)``."""
    layout = detect_layout(checkpoint)
    try:
        return layout, LAYOUT_FILTERS[layout](checkpoint)
    except KeyError as e:
        raise CheckpointError(f"checkpoint looks like layout {layout!r} but lacks key {e.args[0]!r}") from e
