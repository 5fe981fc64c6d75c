"""Small helpers that the bundle configs call: locating the bundle, choosing a recipe, initial weights."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from monai_ext.networks.checkpoints import load_encoder_weights, load_mae_weights

logger = logging.getLogger(__name__)
REPO_BUNDLES = Path(__file__).resolve().parents[1] / "bundles"


def _bundle_name(folder: Path) -> str | None:
    meta = folder / "configs" / "metadata.json"
    try:
        return json.loads(meta.read_text()).get("name")
    except (OSError, ValueError):
        return None


def locate_bundle_root(name: str) -> str:
    """Find bundle ``name`` so that commands work from the bundle folder, the repository root or anywhere else.

    Looks in this order: the current folder (when it is that bundle), ``./bundles/<name>``, and the copy beside this
    package. Override with ``--bundle_root`` to use a bundle elsewhere.
    """
    cwd = Path.cwd()
    for candidate in (cwd, cwd / "bundles" / name, REPO_BUNDLES / name):
        if _bundle_name(candidate) == name:
            return str(candidate)
    raise ValueError(f"cannot find bundle {name!r} from {str(cwd)!r}; pass --bundle_root /path/to/{name}")


def select_recipe(recipes: Mapping[str, Any], name: str) -> Any:
    """The recipe preset called ``name``."""
    if name not in recipes:
        raise ValueError(f"unknown recipe {name!r}; choose one of {sorted(recipes)}")
    return recipes[name]


def initialize_weights(
    network: torch.nn.Module, checkpoint: str | os.PathLike | None, sha256: str | None = None, encoder_only: bool = False
) -> str:
    """Load initial weights (released USF-MAE, Facebook MAE, MONAI, timm or this project's), or keep random ones.

    Returns:
        A one-line summary of what was loaded, also logged.
    """
    if checkpoint in (None, "", "None"):
        summary = "random initialisation"
    else:
        load = load_encoder_weights if encoder_only else load_mae_weights
        summary = f"{checkpoint}: {load(network, checkpoint, sha256).summary()}"
    logger.info("initial weights: %s", summary)
    return summary


def first_images(dataset: Sequence[Mapping[str, Any]], count: int, key: str = "image") -> torch.Tensor:
    """Stack the ``key`` tensors of the first ``count`` items of a dataset: (K, C, H, W)."""
    count = min(count, len(dataset))
    if count < 1:
        raise ValueError(f"need at least one image, the dataset has {len(dataset)!r}")
    return torch.stack([torch.as_tensor(dataset[i][key]) for i in range(count)])
