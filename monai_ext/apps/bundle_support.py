"""Small helpers that the bundle configs call: locating the bundle, choosing a recipe, initial weights."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from monai_ext.networks.checkpoints import (
    check_shapes,
    detect_layout,
    filter_monai_ext,
    load_encoder_weights,
    load_mae_weights,
    read_checkpoint,
)

logger = logging.getLogger(__name__)
BUNDLE_NAMES = ("usf_mae_pretrain", "usf_mae_classify", "usf_mae_segment")


def shipped_bundles_dir() -> Path:
    """The folder holding the bundles that came with this package.

    Installed (``pip install .``: ``setup.py`` ships ``bundles/`` as ``monai_ext/bundles``), that is the package's
    data folder; in a checkout or an editable install, the repository's ``bundles/`` beside the package.
    """
    installed = Path(str(resources.files("monai_ext").joinpath("bundles")))
    if installed.is_dir():
        return installed
    return Path(__file__).resolve().parents[2] / "bundles"


def _bundle_name(folder: Path) -> str | None:
    meta = folder / "configs" / "metadata.json"
    try:
        return json.loads(meta.read_text()).get("name")
    except (OSError, ValueError):
        return None


def bundle_path(name: str) -> Path:
    """The folder of the bundle ``name`` that ships with this package (installed or in a checkout).

    Raises:
        ValueError: an unknown bundle name, or a broken installation without it.
    """
    if name not in BUNDLE_NAMES:
        raise ValueError(f"unknown bundle {name!r}; choose one of {list(BUNDLE_NAMES)}")
    folder = shipped_bundles_dir() / name
    if _bundle_name(folder) != name:
        raise ValueError(f"bundle {name!r} is missing from {str(folder.parent)!r}; reinstall the package")
    return folder


def locate_bundle_root(name: str) -> str:
    """Find bundle ``name`` so that commands work from the bundle folder, the repository root or anywhere else.

    Looks in this order: the current folder (when it is that bundle), ``./bundles/<name>``, and the copy that ships
    with this package (:func:`bundle_path`; in a checkout, the repository's). Override with ``--bundle_root`` to use
    a bundle elsewhere.
    """
    cwd = Path.cwd()
    for candidate in (cwd, cwd / "bundles" / name):
        if _bundle_name(candidate) == name:
            return str(candidate)
    try:
        return str(bundle_path(name))
    except ValueError as e:
        raise ValueError(f"cannot find bundle {name!r} from {str(cwd)!r} ({e}); pass --bundle_root /path/to/{name}") \
            from e


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
        content = read_checkpoint(checkpoint, sha256)
        if detect_layout(content) == "monai_ext" and content["arch"].get("kind") != "mae":
            # A file of this same kind of network (a classifier or an external CNN): everything must match.
            state_dict = filter_monai_ext(content)
            check_shapes(state_dict, network, str(checkpoint))
            network.load_state_dict(state_dict, strict=True)
            summary = f"{checkpoint}: all {len(state_dict)} tensors (strict)"
        else:
            load = load_encoder_weights if encoder_only else load_mae_weights
            summary = f"{checkpoint}: {load(network, content).summary()}"
    logger.info("initial weights: %s", summary)
    return summary


def first_images(dataset: Sequence[Mapping[str, Any]], count: int, key: str = "image") -> torch.Tensor:
    """Stack the ``key`` tensors of the first ``count`` items of a dataset: (K, C, H, W)."""
    count = min(count, len(dataset))
    if count < 1:
        raise ValueError(f"need at least one image, the dataset has {len(dataset)!r}")
    return torch.stack([torch.as_tensor(dataset[i][key]) for i in range(count)])


def classification_split(
    datalist_file: str | os.PathLike | None, cache_dir: str | os.PathLike, fold: int = 0, seed: int = 0,
    per_class: int = 60, max_train: int = 100, multiclass: bool = False,
) -> dict[str, Any]:
    """The classification bundle's data: a JSON datalist file, or else fold ``fold`` of the synthetic lesion benchmark.

    Returns:
        ``{"class_names": [...], "train": [...], "validation": [...], "test": [...]}``.
    """
    from monai_ext.data.downstream import folder_protocol, read_split
    from monai_ext.data.synthetic import synthetic_lesion_dataset

    if datalist_file not in (None, "", "None"):
        return read_split(datalist_file)
    folder = synthetic_lesion_dataset(Path(cache_dir), per_class=per_class, multiclass=multiclass, seed=seed)
    protocol = folder_protocol(folder, folds=5, val_fraction=0.2, seed=seed, max_train=max_train)
    if not 0 <= fold < len(protocol.splits):
        raise ValueError(f"fold must be in [0, {len(protocol.splits)}), got {fold!r}")
    return {"class_names": protocol.class_names, **protocol.splits[fold]}


def empty_split_error(name: str) -> None:
    """Raise the error for evaluating on a split that has no items."""
    raise ValueError(f"the datalist has no {name!r} items to evaluate")


def trained_settings(path: str | os.PathLike) -> dict[str, Any]:
    """Bundle settings fixed by a trained bundle checkpoint's architecture record, or ``{}`` before training.

    Standalone inference configs read their network settings from here, so they need no training config, run
    before any checkpoint exists (``verify_net_in_out``, ``ckpt_export``) and follow the checkpoint once it does.

    Returns:
        The recorded ones of: arch, image_size, class_names (classifiers), in_channels, global_pool, linear_probe,
        norm_pix_loss (MAEs).
    """
    if not Path(path).is_file():
        logger.info("no checkpoint at %s yet: the inference config's defaults apply", path)
        return {}
    record = read_checkpoint(path).get("arch") or {}
    config, arch_args = record.get("config") or {}, record.get("arch_args") or {}
    found = {
        "arch": config.get("arch"),
        "image_size": config.get("image_size"),
        "class_names": config.get("class_names"),
        "in_channels": arch_args.get("in_chans"),
        "global_pool": arch_args.get("global_pool"),
        "linear_probe": arch_args.get("linear_probe"),
        "norm_pix_loss": arch_args.get("norm_pix_loss"),
    }
    return {key: value for key, value in found.items() if value is not None}


def load_inference_weights(network: torch.nn.Module, path: str | os.PathLike) -> str:
    """Load a trained bundle checkpoint into ``network``, or keep random weights, loudly, when there is none yet.

    Returns:
        A one-line summary of what was loaded.
    """
    if not Path(path).is_file():
        logger.warning("no checkpoint at %s: RANDOM WEIGHTS (train the bundle first, or pass --ckpt_path)", path)
        return "random initialisation (no checkpoint yet)"
    return initialize_weights(network, path)


def inference_files(input_dir: str | os.PathLike | None, input_files: Sequence[str] | None) -> list[str]:
    """Files to predict: every file under ``input_dir`` that the decoder reads as one image (pictures, DICOM, NIfTI,
    NRRD / MHA / MHD) plus ``input_files``."""
    from monai_ext.data.folders import list_images
    from monai_ext.io.images import SINGLE_IMAGE_SUFFIXES

    files = [str(p) for p in list_images(input_dir, SINGLE_IMAGE_SUFFIXES)] if input_dir else []
    files += [str(f) for f in input_files or []]
    if not files:
        raise ValueError("give --input_dir or --input_files")
    return files
