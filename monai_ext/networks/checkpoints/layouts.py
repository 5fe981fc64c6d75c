"""Recognising a checkpoint's layout and mapping it to this project's MAE key names: one pure filter per foreign layout (timm's ``checkpoint_filter_fn`` pattern)."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

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


def unwrapped(model: nn.Module) -> nn.Module:
    """The network inside ``model``'s wrappers: DDP's and DataParallel's ``module``, ``torch.compile``'s
    ``_orig_mod`` (in any nesting).

    The wrapper shares the network's parameters, so loading into the network loads the wrapper; but its own
    state-dict keys carry the wrapper's prefix (``_orig_mod.blocks.0...``), against which a load of a compiled or
    DDP model ended in a bare ``KeyError: 'patch_embed.proj.weight'``.
    """
    while True:
        if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            model = model.module
        elif isinstance(getattr(model, "_orig_mod", None), nn.Module):  # torch.compile's OptimizedModule
            model = model._orig_mod
        else:
            return model


def filter_usf_mae(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    """The released USF-MAE file: a plain MAE state dict already in our key names."""
    return strip_prefixes(state_dict)


def filter_facebook_mae(checkpoint: Mapping[str, Any]) -> StateDict:
    """Facebook MAE ``.pth``: ``{"model": state_dict, "optimizer"?, "epoch"?, "args"?, ...}``.

    MONAI bundles save ``{"model": ..., "optimizer": ...}`` too, so the nested dict goes through the filter of its own
    flat layout (a MONAI ``ViT`` trained in a bundle is renamed; Facebook's keys are ours already).
    """
    inner = _string_keys(checkpoint["model"], "weights under 'model'")
    layout = _plain_layout(inner)
    return LAYOUT_FILTERS[layout](inner) if layout else strip_prefixes(inner)


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
    # MONAI's attention defaults to qkv_bias=False (no key); a zero bias is exactly that in our blocks, which have one
    for key in [k for k in out if k.endswith(".attn.qkv.weight")]:
        bias = key[: -len("weight")] + "bias"
        if bias not in out:
            out[bias] = out[key].new_zeros(out[key].shape[0])
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


#: Keys under which training code nests the weights: PyTorch Lightning and many repositories (``state_dict``),
#: PyTorch's saving tutorial (``model_state_dict``), MONAI / ignite ``CheckpointSaver`` save dicts (``network``, ``net``).
CONTAINER_KEYS = ("state_dict", "model_state_dict", "network", "net")


#: Attribute names under which a training module (a ``LightningModule``, a wrapper ``nn.Module``) holds the network.
OWNER_PREFIXES = ("model.", "net.", "network.", "mae.", "backbone.", "encoder.")


#: Keys that every known flat layout has: they tell which owner prefix holds the network.
MARKER_KEYS = ("patch_embed.proj.weight", "patch_embedding.patch_embeddings.weight")


def _container_key(checkpoint: Mapping[str, Any]) -> str | None:
    """The first of ``CONTAINER_KEYS`` that holds a mapping, or None."""
    return next((k for k in CONTAINER_KEYS if isinstance(checkpoint.get(k), Mapping)), None)


def unwrap_container(checkpoint: Mapping[str, Any]) -> StateDict:
    """The weights nested under a container key, with wrapper prefixes removed and, unless the network is already
    at the top level, the owner prefix that holds its marker key (``model.`` in ``model.patch_embed.proj.weight``,
    also ``model._orig_mod.patch_embed...`` of a compiled module) removed from the keys that carry it.

    Keys outside the owner (a loss's class weights, a metric's buffers, an EMA copy) keep their names, so the loaders
    name them as unexpected instead of dropping them unseen.

    Returns:
        The flat state dict.

    Raises:
        CheckpointError: no container key holds a mapping; several owners hold a network (a teacher and a student:
            which one is meant cannot be guessed); removing the owner would give two tensors one name.
    """
    key = _container_key(checkpoint)
    if key is None:
        raise CheckpointError(f"no weights under any of {CONTAINER_KEYS}")
    inner = strip_prefixes(_string_keys(checkpoint[key], f"weights under {key!r}"))
    if _plain_layout(inner) is not None:
        return inner
    owners = [p for p in OWNER_PREFIXES if any(k.startswith(p) and _has_marker(k[len(p):]) for k in inner)]
    if len(owners) > 1:
        raise CheckpointError(f"weights under {key!r} hold several networks ({', '.join(owners)}); save the one meant "
                              f"on its own, e.g. {{k[len('{owners[0]}'):]: v for k, v in sd.items() if k.startswith"
                              f"('{owners[0]}')}}")
    if not owners:
        return inner
    owner = owners[0]
    renamed = strip_prefixes({(k[len(owner):] if k.startswith(owner) else k): v for k, v in inner.items()})
    if len(renamed) < len(inner):  # e.g. "model.head.weight" beside a top-level "head.weight"
        clashes = sorted({k[len(owner):] for k in inner if k.startswith(owner)} & set(inner))
        raise CheckpointError(f"weights under {key!r}: removing {owner!r} gives names that other keys already "
                              f"have, e.g. {clashes[:3]!r}")
    return renamed


def _string_keys(state_dict: Mapping[Any, Any], what: str) -> Mapping[str, Any]:
    """``state_dict`` itself when every key is a string; a state dict keyed otherwise is not a checkpoint we know."""
    odd = [k for k in state_dict if not isinstance(k, str)]
    if odd:
        raise CheckpointError(f"{what} are keyed by {type(odd[0]).__name__} {odd[0]!r}, not by parameter names")
    return state_dict


def _has_marker(key: str) -> bool:
    """``key``, after wrapper prefixes, is one of ``MARKER_KEYS``."""
    return next(iter(strip_prefixes({key: None}))) in MARKER_KEYS


def _plain_layout(state_dict: Mapping[str, Any]) -> str | None:
    """Name the flat state-dict layout by its marker keys, or None."""
    keys = set(strip_prefixes(state_dict))
    if MARKER_KEYS[0] in keys:
        return "usf_mae" if "decoder_pred.weight" in keys else "timm_vit"
    if MARKER_KEYS[1] in keys:
        return "monai_mae" if "decoder_pred.weight" in keys else "monai_vit"
    return None


def filter_wrapped(checkpoint: Mapping[str, Any]) -> StateDict:
    """A training checkpoint (Lightning ``{"state_dict": {"model.blocks.0...": ...}, "epoch": ...}`` and the like):
    the nested weights (:func:`unwrap_container`), mapped by the filter of their own flat layout.
    """
    return _filter_nested(checkpoint)[1]


def _filter_nested(checkpoint: Mapping[str, Any]) -> tuple[str, StateDict]:
    """(name of the nested flat layout, the nested weights mapped by its filter) of a wrapped checkpoint."""
    inner = unwrap_container(checkpoint)
    layout = _plain_layout(inner)
    if layout is None:
        raise CheckpointError(f"weights under {_container_key(checkpoint)!r} have an unrecognised layout; "
                              f"first keys: {sorted(inner)[:5]!r}")
    return layout, LAYOUT_FILTERS[layout](inner)


LAYOUT_FILTERS: dict[str, Callable[[Any], StateDict]] = {
    "monai_ext": filter_monai_ext,
    "facebook_mae": filter_facebook_mae,
    "usf_mae": filter_usf_mae,
    "monai_mae": filter_monai_mae,
    "monai_vit": filter_monai_vit,
    "timm_vit": filter_timm_vit,
    "wrapped": filter_wrapped,
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
    layout = _plain_layout(_string_keys(checkpoint, "the checkpoint's entries"))
    if layout is not None:
        return layout
    if _container_key(checkpoint) is not None:
        return "wrapped"
    sample = sorted(checkpoint)[:5]
    raise CheckpointError(f"unrecognised checkpoint layout; first keys: {sample!r}")


def to_state_dict(checkpoint: Any) -> tuple[str, StateDict]:
    """Detect the layout and map it to this project's key names. Returns ``(layout, state_dict)``."""
    layout = detect_layout(checkpoint)
    try:
        if layout != "wrapped":
            return layout, _only_tensors(LAYOUT_FILTERS[layout](checkpoint), layout)
        inner_layout, state_dict = _filter_nested(checkpoint)
    except KeyError as e:
        raise CheckpointError(f"checkpoint looks like layout {layout!r} but lacks key {e.args[0]!r}") from e
    # reports name what was inside, e.g. "wrapped(state_dict: timm_vit)"
    layout = f"wrapped({_container_key(checkpoint)}: {inner_layout})"
    return layout, _only_tensors(state_dict, layout)


def _only_tensors(state_dict: StateDict, layout: str) -> StateDict:
    """``state_dict`` when every value is a tensor; a number or text where weights belong is refused here, naming
    the key, rather than failing later inside a shape check or a parameter count."""
    for key, value in state_dict.items():
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(f"checkpoint of layout {layout!r}: {key!r} holds {type(value).__name__} "
                                  f"{repr(value)[:40]}, not a tensor of weights")
    return state_dict
