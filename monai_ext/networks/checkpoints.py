"""Reading, converting and writing checkpoints: released USF-MAE, Facebook MAE, timm, MONAI and this project's own.

Following timm's ``checkpoint_filter_fn`` pattern, every foreign layout has one pure function that maps it to this
project's MAE key names; loading then checks the exact sets of missing and dropped keys instead of trusting a
silent ``strict=False``. Checkpoints are untrusted input: they are always read with ``weights_only=True`` and only
``argparse.Namespace`` (found in Facebook's files) is allow-listed.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import pickle
import re
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

FORMAT_NAME = "monai_ext"
FORMAT_VERSION = 1
PREFIXES = ("module.", "_orig_mod.")
#: SHA-256 of the released 100-epoch USF-MAE checkpoint (from the published repository).
USF_MAE_100EP_SHA256 = "f815c629878c17136985af9f4fdc81c2cfa02a94e4d992c026699957f75ccb66"

StateDict = dict[str, torch.Tensor]


class CheckpointError(ValueError):
    """A checkpoint that cannot be read safely or does not fit the model."""


# --------------------------------------------------------------------------------------------------------- reading
def sha256_of(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_checkpoint(path: str | os.PathLike, sha256: str | None = None) -> Any:
    """Load a checkpoint file safely onto the CPU.

    Args:
        path: file written by ``torch.save``.
        sha256: expected hex digest; checked before anything is unpickled.

    Returns:
        The unpickled object (tensors, containers, numbers, strings, ``argparse.Namespace``).

    Raises:
        FileNotFoundError: no such file.
        CheckpointError: digest mismatch, or the file is corrupt or pickles anything beyond the allow-list.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    if sha256 is not None:
        actual = sha256_of(path)
        if actual.lower() != sha256.lower():
            raise CheckpointError(f"checkpoint {str(path)!r} has SHA-256 {actual!r}, expected {sha256!r}")
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(
            f"refused to load {str(path)!r}: it pickles objects outside the allow-list "
            f"(tensors, containers, argparse.Namespace); nothing in it was run. Detail: {e}"
        ) from e
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        raise CheckpointError(f"cannot read checkpoint {str(path)!r}: corrupt or not a torch file ({e})") from e


# --------------------------------------------------------------------------------------------- one filter a layout
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


# ------------------------------------------------------------------------------------------------------ adaptation
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


# ---------------------------------------------------------------------------------------------------------- loading
@dataclass
class LoadReport:
    """What a load did: the source layout, parameters the model kept at initialisation, and what was left out."""

    layout: str
    missing: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    adapted: list[str] = field(default_factory=list)

    def summary(self) -> str:
        def brief(keys: list[str]) -> str:
            groups = sorted({k.split(".")[0] for k in keys})
            return f"{len(keys)} ({', '.join(groups)})" if keys else "0"

        return (
            f"layout={self.layout}; new (initialised here)={brief(self.missing)}; "
            f"dropped={brief(self.dropped)}; adapted={self.adapted or 'none'}"
        )


def _resolve(source: str | os.PathLike | Mapping[str, Any], sha256: str | None) -> tuple[str, StateDict, str]:
    name = str(source) if not isinstance(source, Mapping) else "<in-memory checkpoint>"
    checkpoint = source if isinstance(source, Mapping) else read_checkpoint(source, sha256)
    layout, state_dict = to_state_dict(checkpoint)
    return layout, state_dict, name


def _load_exact(
    model: nn.Module, state_dict: StateDict, expected_missing: set[str], report: LoadReport, name: str
) -> LoadReport:
    """Load, then assert that exactly ``expected_missing`` were missing and nothing unexpected arrived."""
    check_shapes(state_dict, model, name)
    result = model.load_state_dict(state_dict, strict=False)
    missing, unexpected = set(result.missing_keys), set(result.unexpected_keys)
    # BatchNorm never reports its num_batches_tracked counter as missing (torch keeps old files loadable).
    expected_missing = {k for k in expected_missing if not k.endswith("num_batches_tracked")}
    if missing != expected_missing or unexpected:
        raise CheckpointError(
            f"{name}: keys do not match the model. Missing beyond the expected: {sorted(missing - expected_missing)!r}; "
            f"expected missing but provided: {sorted(expected_missing - missing)!r}; unexpected: {sorted(unexpected)!r}"
        )
    report.missing = sorted(missing)
    return report


def load_mae_weights(
    model: nn.Module, source: str | os.PathLike | Mapping[str, Any], sha256: str | None = None
) -> LoadReport:
    """Load a full MAE (encoder and decoder) from any known layout into ``model``, strictly.

    Every model key must be provided and every provided key used, after position grids and channels are adapted.
    """
    layout, state_dict, name = _resolve(source, sha256)
    state_dict, adapted = adapt_to_model(state_dict, model)
    report = LoadReport(layout=layout, adapted=adapted)
    return _load_exact(model, state_dict, set(), report, name)


def load_encoder_weights(
    model: nn.Module, source: str | os.PathLike | Mapping[str, Any], sha256: str | None = None
) -> LoadReport:
    """Initialise a :class:`ViTClassifier`'s encoder from an MAE or ViT checkpoint.

    Keys the classifier has no use for (decoder, mask token, a foreign head, the unused final norm) are dropped
    and reported; the head (and ``fc_norm`` with average pooling) must be exactly the keys left at initialisation.
    """
    layout, state_dict, name = _resolve(source, sha256)
    wanted = set(model.encoder_parameter_names())
    absent = sorted(wanted - set(state_dict))
    if absent:
        raise CheckpointError(f"{name}: layout {layout!r} lacks encoder keys {absent[:8]!r}")
    kept = {k: v for k, v in state_dict.items() if k in wanted}
    kept, adapted = adapt_to_model(kept, model)
    report = LoadReport(layout=layout, dropped=sorted(set(state_dict) - wanted), adapted=adapted)
    expected_missing = set(model.state_dict()) - wanted
    return _load_exact(model, kept, expected_missing, report, name)


# ---------------------------------------------------------------------------------------------------------- writing
def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` to a temporary file in the same folder, fsync, then rename over ``path``.

    A crash mid-write leaves the previous file intact, never a truncated one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def arch_record(model: nn.Module, kind: str, config: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The architecture record stored beside the weights, enough to rebuild ``model`` from the file alone."""
    if kind not in ("mae", "classifier", "external"):
        raise ValueError(f"kind must be 'mae', 'classifier' or 'external', got {kind!r}")
    # "external" networks (e.g. MONAI CNN baselines) have no arch_args: their files hold weights and the config only.
    arch_args = getattr(model, "arch_args", None)
    if kind != "external" and arch_args is None:
        raise ValueError(f"a {kind!r} model must carry arch_args; {type(model).__name__} does not")
    return {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "kind": kind,
        "arch_args": dict(arch_args) if arch_args is not None else None,
        "network": f"{type(model).__module__}.{type(model).__qualname__}",
        "config": dict(config or {}),
    }


def save_model_checkpoint(
    path: str | os.PathLike, model: nn.Module, kind: str, config: Mapping[str, Any] | None = None
) -> None:
    """Write ``{"model": state_dict, "arch": arch_record}`` atomically (wrapper prefixes removed)."""
    state_dict = strip_prefixes(model.state_dict())
    atomic_torch_save({"model": state_dict, "arch": arch_record(model, kind, config)}, path)


def build_from_checkpoint(source: str | os.PathLike | Mapping[str, Any]) -> nn.Module:
    """Rebuild and load a model from a file written by this project (its ``arch`` record)."""
    from monai_ext.networks.classifier import ViTClassifier
    from monai_ext.networks.mae import MaskedAutoencoderViT

    checkpoint = source if isinstance(source, Mapping) else read_checkpoint(source)
    if detect_layout(checkpoint) != "monai_ext":
        raise CheckpointError(f"{source!s}: not a {FORMAT_NAME} checkpoint; it carries no architecture record")
    arch = checkpoint["arch"]
    cls = {"mae": MaskedAutoencoderViT, "classifier": ViTClassifier}.get(arch.get("kind"))
    if cls is None:
        raise CheckpointError(f"{source!s}: unknown model kind {arch.get('kind')!r}")
    model = cls(**arch["arch_args"])
    state_dict = filter_monai_ext(checkpoint)
    check_shapes(state_dict, model, str(source))
    model.load_state_dict(state_dict, strict=True)
    return model
