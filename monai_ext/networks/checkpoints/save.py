"""Writing this project's checkpoints: weights plus the architecture record that rebuilds the model (nanoGPT-style)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from monai_ext.io.atomic import atomic_torch_save
from monai_ext.networks.checkpoints.layouts import FORMAT_NAME, FORMAT_VERSION, strip_prefixes, unwrapped


def arch_record(model: nn.Module, kind: str, config: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The architecture record stored beside the weights, enough to rebuild ``model`` from the file alone.

    A compiled or DDP-wrapped ``model`` is recorded as the network it wraps (:func:`unwrapped`): a DataParallel
    model was refused as carrying no ``arch_args``, and a compiled one recorded ``OptimizedModule`` as its network.
    """
    model = unwrapped(model)
    if kind not in ("mae", "classifier", "segmenter", "external"):
        raise ValueError(f"kind must be 'mae', 'classifier', 'segmenter' or 'external', got {kind!r}")
    # "external" networks (e.g. MONAI CNN baselines) have no arch_args: their files hold weights and the config only.
    arch_args = getattr(model, "arch_args", None)
    if kind != "external" and arch_args is None:
        raise ValueError(f"a {kind!r} model must carry arch_args; {type(model).__name__} does not")
    return {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "kind": kind,
        "arch_args": readable_record(arch_args, "arch_args") if arch_args is not None else None,
        "network": f"{type(model).__module__}.{type(model).__qualname__}",
        "config": readable_record(config or {}, "config"),
    }


def readable_record(value: Any, key: str) -> Any:
    """``value`` in the types the safe reader (``weights_only=True``) loads back: paths become text, numpy scalars
    numbers, tuples lists; anything else is refused naming its key. Without this a file was written that its own
    reader then refused as "pickling objects outside the allow-list" (a ``Path`` in the config)."""
    if isinstance(value, np.generic):  # first: np.float64 is also a float, and pickles as a numpy scalar
        return value.item()
    if value is None or isinstance(value, (str, bool, int, float, torch.Tensor)):
        return value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, (list, tuple)):
        return [readable_record(v, f"{key}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, Mapping):
        return {str(k): readable_record(v, f"{key}.{k}") for k, v in value.items()}
    raise ValueError(f"{key} is a {type(value).__name__}, which a checkpoint cannot hold safely; give text, numbers, "
                     f"lists or dicts, got {value!r}")


def save_model_checkpoint(
    path: str | os.PathLike, model: nn.Module, kind: str, config: Mapping[str, Any] | None = None
) -> None:
    """Write ``{"model": state_dict, "arch": arch_record}`` atomically (wrapper prefixes removed)."""
    model = unwrapped(model)
    state_dict = strip_prefixes(model.state_dict())
    atomic_torch_save({"model": state_dict, "arch": arch_record(model, kind, config)}, path)
