"""Writing this project's checkpoints: weights plus the architecture record that rebuilds the model (nanoGPT-style)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from torch import nn

from monai_ext.io.atomic import atomic_torch_save
from monai_ext.networks.checkpoints.layouts import FORMAT_NAME, FORMAT_VERSION, strip_prefixes


def arch_record(model: nn.Module, kind: str, config: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The architecture record stored beside the weights, enough to rebuild ``model`` from the file alone."""
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
